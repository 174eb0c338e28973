"""bamrec against the original BaM code on this machine, in the same minutes: only same-run ratios.

    BAM_ORIGINAL_SRC=/tmp/bam-original python benchmarks/side_by_side.py --prepared prepared \\
        --work /tmp/bamrec-sbs --json bench-results/side-by-side.json --doc docs/PERFORMANCE.md

``--prepared`` holds ``ml-1m/`` and ``ml-100k/`` from ``bamrec data prepare``. The original runs through
``../shared/baselines/bam-original/time_original.py`` (``--time-original``) from ``BAM_ORIGINAL_SRC``;
without it every comparison is skipped with a message and only bamrec's own figures are printed.

Sections (each measurement a fresh process; original and bamrec interleaved A/B/A/B, ``--repeats``
times; medians reported, with the 1-minute load average at each measurement):

- training it/s, ComiRec-SA (ML-1M L = 200, ml-100k L = 50) and MIND (ML-1M L = 100, ml-100k L = 50),
  hard and BaM_p + multi-loss, batch 128, D = 64, K = 4, 1,280 negatives: bamrec with its default
  shared negatives and with the original's per-example negatives, against the original (per-example);
  bamrec's step is ``benchmarks/train_speed.py``'s (the trainer's step), which also gives the fraction
  of an equal-FLOP matmul timed in the same process;
- full ML-1M test evaluation of the original's BaM_p_T1 checkpoint (imported with ``bamrec
  import-reference``), both protocols: the whole ``bamrec evaluate RUN --json`` command less the
  start-up of the interpreter and its imports (timed alone, same minutes) against the original's
  test loop (its own timer, without its data loading);
- peak RSS of evaluation against the number of users (test users repeated 1x, 4x, 16x);
- concurrency: ``bamrec train`` (defaults) alone, two at once, and beside a ``while 1: pass`` spinner.

Both sides run with the same thread settings: ``--threads`` (default: bamrec's default, one per
available CPU) and ``OMP_WAIT_POLICY=PASSIVE``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
from bamrec.threads import default_threads  # noqa: E402

TIME_ORIGINAL = REPO.parent / "shared" / "baselines" / "bam-original" / "time_original.py"
REFERENCE_CKPT = REPO.parent / "shared" / "data" / "bam-reference" / "ml1m" / "BaM_p_T1" / "model.pt"
# (dataset, model, seq_len): the original's workloads named by the speed issue.
# REMI (ComiRec-SA with interest-aware hard negatives and routing regularisation) is the paper's ML-1M
# configuration, timed for the time-to-quality comparison (docs/RESULTS.md).
WORKLOADS = [("ml-1m", "comirec-sa", 200), ("ml-1m", "mind", 100), ("ml-100k", "comirec-sa", 50),
             ("ml-100k", "mind", 50), ("ml-1m", "remi", 200)]
SCHEMES = ["hard", "bam-p+multi-loss"]
ORIGINAL_MODEL = {"comirec-sa": "comirec", "mind": "mind", "remi": "remi"}
ORIGINAL_SELECTION = {"hard": "hard", "bam-p": "p", "bam-l": "l"}


# ----------------------------------------------------------------------------------------- helpers
def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").is_file() else float("nan")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


LOADS: list[float] = []  # the 1-minute load average at the start of every measurement


def run_json(command: list[str], env: dict[str, str], timeout: float = 1800) -> dict[str, Any]:
    """Run a command that prints a JSON line last; add wall time and the load average."""
    load = load_average()
    LOADS.append(load)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    result["wall_s"] = wall
    result["load"] = load
    return result


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average():.1f}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- training
def original_train(args, dataset: str, model: str, seq_len: int, scheme: str) -> dict[str, Any]:
    selection, _, multi = scheme.partition("+")
    command = [sys.executable, str(args.time_original), "--src", args.original_src, "--data",
               str(args.work / f"{dataset}.txt"), "--model", ORIGINAL_MODEL[model], "--selection",
               ORIGINAL_SELECTION[selection], "--seq-len", str(seq_len), "--iters", str(args.original_iters),
               "--threads", str(args.threads)]
    if multi:
        command.append("--multi-loss")
    return run_json(command, child_env(args.threads))


def bamrec_train(args, dataset: str, model: str, seq_len: int, scheme: str, negatives: str) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "train_speed.py"), "--one", "--data", str(args.prepared / dataset),
               "--model", model, "--scheme", scheme, "--seq-len", str(seq_len), "--iters", str(args.iters),
               "--warmup", "10", "--negatives", negatives]
    return run_json(command, child_env(args.threads))


def training_section(args) -> list[dict[str, Any]]:
    rows = []
    for dataset, model, seq_len in [w for w in WORKLOADS if f"{w[0]}:{w[1]}" in args.workloads]:
        for scheme in SCHEMES:
            samples: dict[str, list[dict]] = {"original": [], "shared": [], "per-example": []}
            for repeat in range(args.repeats):
                if args.original_src:
                    samples["original"].append(original_train(args, dataset, model, seq_len, scheme))
                for negatives in ("shared", "per-example"):
                    samples[negatives].append(bamrec_train(args, dataset, model, seq_len, scheme, negatives))
                log(f"train {dataset} {model} L={seq_len} {scheme} repeat {repeat + 1}: " + ", ".join(
                    f"{k} {v[-1].get('train_iterations_per_s', v[-1].get('iterations_per_s', 0)):.2f} it/s"
                    for k, v in samples.items() if v))
            original = median([s["train_iterations_per_s"] for s in samples["original"]])
            row = {"dataset": dataset, "model": model, "seq_len": seq_len, "scheme": scheme,
                   "original_its": original if samples["original"] else None,
                   "original_runs": [s["train_iterations_per_s"] for s in samples["original"]],
                   "load": median([s["load"] for v in samples.values() for s in v])}
            for negatives in ("shared", "per-example"):
                runs = samples[negatives]
                its = median([s["iterations_per_s"] for s in runs])
                row[negatives] = {
                    "its": its, "runs": [s["iterations_per_s"] for s in runs],
                    # paired ratios: each bamrec run against the original run of the same repeat
                    "ratio": its / original if samples["original"] else None,
                    "paired_ratios": [b["iterations_per_s"] / o["train_iterations_per_s"]
                                      for b, o in zip(runs, samples["original"])],
                    "fraction_of_matmul": median([s["fraction_of_matmul"] for s in runs]),
                    "achieved_gflops": median([s["achieved_gflops"] for s in runs]),
                    "matmul_gflops": median([s["matmul_gflops_same_flops"] for s in runs]),
                    "peak_rss_gb": median([s["peak_rss_gb"] for s in runs]),
                }
            rows.append(row)
    return rows


# -------------------------------------------------------------------------------------- evaluation
# `bamrec evaluate RUN --json` as the console script runs it, timed inside the process after the
# interpreter and bamrec's imports: the command's own cost (data, checkpoint, evaluation, any lazy
# import) without a noisy subtraction of two separately timed processes.
EVALUATE_PROBE = """
import io, json, sys, time, contextlib
t0 = time.perf_counter()
import bamrec.cli, bamrec.api, bamrec.evaluation.ranking
imports_s = time.perf_counter() - t0
out = io.StringIO()
t1, c1 = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(out):
    code = bamrec.cli.main(sys.argv[1:])
command_s, command_cpu_s = time.perf_counter() - t1, time.process_time() - c1
assert code == 0, code
metrics = json.loads(out.getvalue())
print(json.dumps({"imports_s": imports_s, "command_s": command_s, "command_cpu_s": command_cpu_s,
                  "recall@20": metrics["recall@20"]}))
"""


# The exact ranking's irreducible part, timed alone in a fresh process with the same threads: the
# score products of every test user's K interests with the whole item table, as the evaluation
# forms them (per batch of B users, one [B, D] x [D, N + 1] product per interest into a reused
# output, which measured 2x faster here than one [B K, D] product), nothing else: no forward, no
# max over interests, no counting. Its best of 3 passes is a floor for this exact evaluation.
RANKING_BOUND_PROBE = """
import json, sys, time, torch
users, k, d, n, batch = map(int, sys.argv[1:6])
g = torch.Generator().manual_seed(0)
items_t = torch.randn(n + 1, d, generator=g).t()  # [D, N + 1], a transposed view as in score_chunk
queries = torch.randn(k, batch, d, generator=g)  # [K, B, D]
out = torch.empty(batch, n + 1)  # [B, N + 1]
def one_batch():
    for i in range(k):
        torch.matmul(queries[i], items_t, out=out)
for _ in range(5):
    one_batch()
best = float("inf")
for _ in range(3):
    t = time.perf_counter()
    for _ in range(-(-users // batch)):
        one_batch()
    best = min(best, time.perf_counter() - t)
print(json.dumps({"bound_s": best, "gflop": 2e-9 * users * k * d * (n + 1)}))
"""


def ranking_bound(args, run: Path) -> dict[str, Any]:
    record = json.loads((run / "config.json").read_text())  # the run records its dataset's sizes
    config, dataset = record["config"], record["dataset"]
    shape = [dataset["num_users"], config["model"]["num_interests"], config["model"]["hidden_size"],
             dataset["num_items"], config["eval"]["user_batch_size"]]
    return run_json([sys.executable, "-c", RANKING_BOUND_PROBE, *map(str, shape)], child_env(args.threads))


def evaluation_section(args) -> list[dict[str, Any]]:
    run = args.work / "run-bamp"
    if not (run / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "bamrec.cli", "import-reference", str(REFERENCE_CKPT), "--data",
                        str(args.prepared / "ml-1m"), "--out", str(run), "--overwrite"], env=child_env(args.threads),
                       check=True, capture_output=True)
    env = child_env(args.threads)
    samples: dict[str, list[dict]] = {"original": [], "standard": [], "reference": []}
    for repeat in range(args.repeats):
        if args.original_src:
            command = [sys.executable, str(args.time_original), "--src", args.original_src, "--data",
                       str(args.work / "ml-1m.txt"), "--model", "comirec", "--seq-len", "200", "--iters", "0",
                       "--eval", "--checkpoint", str(REFERENCE_CKPT), "--threads", str(args.threads)]
            samples["original"].append(run_json(command, env))
        for protocol in ("standard", "reference"):
            command = [sys.executable, "-c", EVALUATE_PROBE, "evaluate", str(run), "--json", "--protocol", protocol]
            samples[protocol].append(run_json(command, env))
        log(f"evaluate repeat {repeat + 1}: " + ", ".join(
            f"{k} {v[-1].get('eval_s', v[-1].get('command_s')):.2f} s" for k, v in samples.items() if v))
    original = median([s["eval_s"] for s in samples["original"]]) if samples["original"] else None
    bound = ranking_bound(args, run)
    log(f"ranking products alone: {bound['bound_s']:.3f} s ({bound['gflop']:.1f} GFLOP)")
    rows = []
    for protocol in ("standard", "reference"):
        runs = samples[protocol]
        net = median([s["command_s"] for s in runs])
        rows.append({"protocol": protocol, "net_s": net, "runs_s": [s["command_s"] for s in runs],
                     "cpu_s": median([s["command_cpu_s"] for s in runs]),
                     "imports_s": median([s["imports_s"] for s in runs]),
                     "process_wall_s": median([s["wall_s"] for s in runs]),
                     "original_loop_s": original,
                     "original_runs_s": [s["eval_s"] for s in samples["original"]],
                     "ratio": original / net if original else None,
                     "ranking_bound_s": bound["bound_s"], "ranking_gflop": bound["gflop"],
                     "ratio_at_bound": original / bound["bound_s"] if original else None,
                     "recall@20": runs[-1]["recall@20"],
                     "original_recall@20": samples["original"][-1].get("recall@20") if samples["original"] else None,
                     "load": median([s["load"] for s in runs])})
    return rows


def memory_section(args) -> list[dict[str, Any]]:
    rows = []
    for repeat_users in (1, 4, 16):
        command = [sys.executable, str(HERE / "eval_speed.py"), "--run", str(args.work / "run-bamp"),
                   "--only-evaluate", "--protocol", "standard", "--repeats", "1", "--repeat-users", str(repeat_users)]
        result = run_json(command, child_env(args.threads))
        rows.append({"users": result["users"], "peak_rss_gb": result["peak_rss_gb"], "evaluate_s": result["evaluate_s"],
                     "page_faults": result.get("page_faults"), "load": result["load"]})
        log(f"memory {result['users']} users: {result['peak_rss_gb']:.3f} GB")
    return rows


# ------------------------------------------------------------------------------------- concurrency
def _train_command(args, out: Path, threads: int | None) -> list[str]:
    command = [sys.executable, "-m", "bamrec.cli", "train", "--data", str(args.prepared / "ml-100k"), "--out", str(out),
               "--overwrite", "--seq-len", "50", "--max-iters", str(args.concurrency_iters), "--eval-every",
               str(args.concurrency_iters), "--valid-users", "50", "--no-progress"]
    return command + (["--threads", str(threads)] if threads else [])


def _its(out: Path) -> float:
    summary = json.loads((out / "summary.json").read_text())
    return summary["iters"] / summary["train_time_s"]


def concurrency_section(args) -> list[dict[str, Any]]:
    """`bamrec train` with its defaults (threads and wait policy not set in the environment)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    work = args.work / "concurrency"
    samples: dict[str, list[float]] = {"solo": [], "pair": [], "spinner": []}
    loads: dict[str, list[float]] = {k: [] for k in samples}
    for repeat in range(args.repeats):
        loads["solo"].append(load_average())
        LOADS.append(loads["solo"][-1])
        subprocess.run(_train_command(args, work / "solo", None), env=env, check=True, capture_output=True)
        samples["solo"].append(_its(work / "solo"))
        loads["pair"].append(load_average())
        pair = [subprocess.Popen(_train_command(args, work / f"pair{i}", None), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
        for p in pair:
            if p.wait() != 0:
                raise RuntimeError(p.stderr.read().decode()[-2000:])
        samples["pair"].append(min(_its(work / f"pair{i}") for i in range(2)))  # the slower of the two
        loads["spinner"].append(load_average())
        spinner = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
        try:
            subprocess.run(_train_command(args, work / "spin", None), env=env, check=True, capture_output=True)
        finally:
            spinner.kill()
            spinner.wait()
        samples["spinner"].append(_its(work / "spin"))
        log(f"concurrency repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f} it/s" for k, v in samples.items()))
    solo = median(samples["solo"])
    return [{"case": case, "its": median(v), "runs": v, "fraction_of_solo": median(v) / solo,
             "load": median(loads[case])} for case, v in samples.items()]


# ------------------------------------------------------------------------------------------ output
def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio_at_bound(mode: dict[str, Any]) -> float | None:
    """The ratio a step doing the same FLOPs at the matmul's rate would reach: ratio / fraction."""
    ratio, fraction = mode.get("ratio"), mode.get("fraction_of_matmul")
    return ratio / fraction if ratio and fraction else None


def render(result: dict[str, Any]) -> dict[str, str]:
    """Markdown tables of a result, by section name."""
    out = {}
    if result.get("training"):
        rows = []
        for r in result["training"]:
            L = r["seq_len"]
            rows.append([f"{r['dataset']} {r['model']} L={L}", r["scheme"], r["original_its"], r["shared"]["its"],
                         r["shared"]["ratio"], r["per-example"]["its"], r["per-example"]["ratio"],
                         r["shared"]["fraction_of_matmul"], r["per-example"]["fraction_of_matmul"],
                         ratio_at_bound(r["shared"]), r["load"]])
        out["training"] = table(["workload", "scheme", "original it/s", "bamrec it/s (shared)", "ratio",
                                 "bamrec it/s (per-example)", "ratio", "of matmul bound (shared)",
                                 "of matmul bound (per-example)", "ratio at the bound (shared)", "load"], rows)
    if result.get("evaluation"):
        rows = [[r["protocol"], r["original_loop_s"], r["net_s"], r["ratio"], r["cpu_s"], r["imports_s"],
                 r["process_wall_s"], r.get("ranking_bound_s"), r.get("ratio_at_bound"),
                 r["original_recall@20"], r["recall@20"], r["load"]] for r in result["evaluation"]]
        out["evaluation"] = table(["protocol", "original test loop s", "bamrec evaluate less start-up s", "ratio",
                                   "its CPU s", "interpreter imports s", "whole process s",
                                   "ranking products alone s", "ratio at that floor",
                                   "original recall@20", "bamrec recall@20", "load"], rows)
    if result.get("memory"):
        out["memory"] = table(["users", "peak RSS GB", "evaluate s", "page faults", "load"],
                              [[r["users"], r["peak_rss_gb"], r["evaluate_s"], r.get("page_faults"), r["load"]]
                               for r in result["memory"]])
    if result.get("concurrency"):
        out["concurrency"] = table(["case", "it/s (median)", "runs", "of solo", "load"],
                                   [[r["case"], r["its"], ", ".join(f"{x:.1f}" for x in r["runs"]),
                                     r["fraction_of_solo"], r["load"]] for r in result["concurrency"]])
    return out


def verdicts(result: dict[str, Any]) -> dict[str, str]:
    """One sentence per target: met or not, by how much (computed, never typed)."""
    out = {}
    training = [(f"{r['dataset']} {r['model']} {r['scheme']} ({mode})", r[mode]["ratio"])
                for r in result.get("training", []) for mode in ("shared", "per-example") if r[mode]["ratio"]]
    if training:
        short = [(name, ratio) for name, ratio in training if ratio < 20]
        lo, hi = min(r for _, r in training), max(r for _, r in training)
        out["training_verdict"] = (f"Same-run ratios {lo:.1f}x-{hi:.1f}x. " + (
            "Met everywhere." if not short else f"Met for {len(training) - len(short)} of {len(training)}; short: "
            + "; ".join(f"{name} {ratio:.1f}x ({ratio / 20:.0%} of the target)" for name, ratio in short) + "."))
    else:
        out["training_verdict"] = "Not compared in this run (no original)."
    evaluation = [(r["protocol"], r["ratio"]) for r in result.get("evaluation", []) if r["ratio"]]
    if evaluation:
        out["evaluation_verdict"] = "; ".join(
            f"{p}: {ratio:.1f}x ({'met' if ratio >= 20 else f'short, {ratio / 20:.0%} of the target'})"
            for p, ratio in evaluation) + "."
    else:
        out["evaluation_verdict"] = "Not compared in this run (no original)."
    concurrency = {r["case"]: r["fraction_of_solo"] for r in result.get("concurrency", [])}
    if concurrency:
        out["concurrency_verdict"] = "; ".join(
            f"{case}: {fraction:.0%} of solo ({'met' if fraction >= 0.4 else 'not met'})"
            for case, fraction in concurrency.items() if case != "solo") + "."
    return out


def write_doc(result: dict[str, Any], template: Path, doc: Path) -> None:
    text = template.read_text(encoding="utf-8")
    env, settings = result["environment"], result["settings"]
    busy = ("The machine was busy: other processes ran beside the benchmark (see the note), so absolute "
            "figures are lower than on a quiet machine and vary between repeats; the ratios compare "
            "measurements interleaved in the same minutes."
            # The benchmark's own measurements run `threads` threads, so a load up to about that is its own.
            if env["load_median"] > env["threads"] + 0.5 else
            "The machine was otherwise quiet: the load average is the benchmark's own measurements.")
    if result.get("note"):
        busy += f" Note: {result['note']}."
    values = {"cpu": env["cpu_model"], "date": env["date"], "cpus": str(env["cpus"]), "torch": env["torch"],
              "threads": str(env["threads"]),
              "load": f"{env['load_min']:.1f}-{env['load_max']:.1f} (median {env['load_median']:.1f})",
              "busy": busy, "bf16": "yes" if env["bf16_matrix_units"] else "no (bf16 autocast would be emulated: not used)",
              "command": result["command"], "minutes": f"{env['wall_minutes']:.0f}",
              "iters": str(settings["iters"]), "original_iters": str(settings["original_iters"]),
              "concurrency_iters": str(settings["concurrency_iters"]), **verdicts(result)}
    for name, body in render(result).items():
        values[f"table:{name}"] = body
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    doc.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True, help="folder with ml-1m/ and ml-100k/ (bamrec data prepare)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (exported data, runs)")
    parser.add_argument("--time-original", type=Path, default=TIME_ORIGINAL)
    parser.add_argument("--threads", type=int, default=default_threads(), help="threads on both sides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=100, help="bamrec steps timed per measurement")
    parser.add_argument("--original-iters", type=int, default=20, help="original steps timed per measurement")
    parser.add_argument("--concurrency-iters", type=int, default=300)
    parser.add_argument("--sections", default="training,evaluation,memory,concurrency")
    parser.add_argument("--workloads", default=",".join(f"{d}:{m}" for d, m, _ in WORKLOADS))
    parser.add_argument("--note", default=None, help="a sentence on the run's conditions (other work on the machine), printed in the page")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", type=Path, default=None, help="regenerate this page from benchmarks/PERFORMANCE.template.md")
    parser.add_argument("--from-json", type=Path, default=None, help="render --doc from an earlier --json; run nothing")
    args = parser.parse_args()

    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        result = measure_all(args)
    for name, body in render(result).items():
        print(f"\n## {name}\n\n{body}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.doc:
        write_doc(result, HERE / "PERFORMANCE.template.md", args.doc)
        print(f"wrote {args.doc}", file=sys.stderr)


def measure_all(args) -> dict[str, Any]:
    args.original_src = os.environ.get("BAM_ORIGINAL_SRC")
    if not args.original_src or not (Path(args.original_src) / "BasicModel.py").is_file():
        print("side_by_side: BAM_ORIGINAL_SRC is not set to the original's src/ folder "
              "(see ../shared/baselines/bam-original/README.md): comparisons skipped, bamrec figures only",
              file=sys.stderr)
        args.original_src = None
    elif not args.time_original.is_file():
        print(f"side_by_side: {args.time_original} not found: comparisons skipped", file=sys.stderr)
        args.original_src = None
    args.work = args.work or Path(tempfile.mkdtemp(prefix="bamrec-sbs-"))
    args.work.mkdir(parents=True, exist_ok=True)
    args.workloads = set(args.workloads.split(","))
    for name in ("ml-1m", "ml-100k"):
        if args.original_src and not (args.work / f"{name}.txt").is_file():
            subprocess.run([sys.executable, "-m", "bamrec.cli", "data", "export", str(args.prepared / name),
                            "--format", "uid-iid", "--out", str(args.work / f"{name}.txt")],
                           env=child_env(1), check=True, capture_output=True)
    import torch

    started = time.perf_counter()
    result: dict[str, Any] = {"command": shlex.join(["python", *sys.argv])}  # quoted: the page shows it verbatim
    if args.note:
        result["note"] = args.note
    sections = args.sections.split(",")
    for name, function in (("training", training_section), ("evaluation", evaluation_section),
                           ("memory", memory_section), ("concurrency", concurrency_section)):
        if name in sections:
            result[name] = function(args)
            if args.json:  # partial results survive an interrupted run
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({**result, "partial": True}, indent=2) + "\n")
    result["environment"] = {
        "cpu_model": cpu_model(), "cpus": default_threads(), "threads": args.threads, "torch": torch.__version__,
        "bf16_matrix_units": bool(cpu_flags() & {"amx_bf16", "avx512_bf16"}), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_minutes": (time.perf_counter() - started) / 60, "load_min": min(LOADS), "load_max": max(LOADS), "load_median": median(LOADS), "original": bool(args.original_src),
    }
    result["settings"] = {"iters": args.iters, "original_iters": args.original_iters, "repeats": args.repeats,
                          "concurrency_iters": args.concurrency_iters}
    return result


if __name__ == "__main__":
    main()
