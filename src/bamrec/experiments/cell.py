"""Run one cell of an experiment: train (or resume), test in both protocols, write the summary.

A cell runs in its own process (``python -m bamrec.experiments JOB.json``), so parallel jobs
each get their own thread count and an interrupted cell never takes the runner down. The run
directory is a normal `bamrec train` run directory; the cell adds ``test_ranks.npz`` (per-user test
ranks in both protocols, for paired bootstraps) and writes its small summary to
``cells/<id>.json`` (meant to be committed) with a copy of the ranks beside it.

What an existing run directory means:
- ``summary.json`` from a finished (not interrupted) training with the same config: only test again;
- ``last.ckpt``: resume training from the last validation check;
- anything else: start the run again.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bamrec import files, locks
from bamrec.devices import available_cpus

CELL_FORMAT = "bamrec-cell/1"
RANKS_FILE = "test_ranks.npz"
PROTOCOLS = ("standard", "reference")
EXIT_INTERRUPTED = 130


def cell_file(cells_dir: Path, cell_id: str) -> Path:
    return cells_dir / f"{cell_id}.json"


def ranks_file(cells_dir: Path, cell_id: str) -> Path:
    return cells_dir / f"{cell_id}.ranks.npz"


def git_commit(start: Path | None = None) -> str:
    """The bamrec source tree's commit (``+dirty`` when it has uncommitted changes), or ``unknown``.

    ``BAMREC_COMMIT`` overrides it, for code run from an exported snapshot of a commit (no .git)."""
    if os.environ.get("BAMREC_COMMIT"):
        return os.environ["BAMREC_COMMIT"]
    where = start or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def machine(threads: int, device: str) -> dict[str, Any]:
    import torch

    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": available_cpus(),
        "threads": threads,
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "torch": torch.__version__,
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def compact_diagnostics(diagnostics: dict[str, Any]) -> dict[str, Any]:
    """The diagnostics' headline numbers (the full file stays in the run directory)."""
    out: dict[str, Any] = {}
    selection = (diagnostics.get("selection") or {}).get("overall") or {}
    for key in ("normalized_entropy", "dead_interests", "shares"):
        if key in selection:
            out[f"selection_{key}"] = selection[key]
    balance = ((diagnostics.get("recall_by_interest") or {}).get("balance")) or {}
    if "normalized_entropy" in balance:
        out["retrieval_normalized_entropy"] = balance["normalized_entropy"]
    similarity = diagnostics.get("similarity") or {}
    if "mean" in similarity:
        out["interest_similarity_mean"] = similarity["mean"]
    planted = diagnostics.get("planted") or {}
    if planted:
        out["planted_coverage"] = (planted.get("coverage") or {}).get("mean")
        out["planted_minor_recall"] = (planted.get("recall") or {}).get("minor")
    return out


CURVE_METRICS = ("recall@10", "recall@20")  # the validation metrics a cell's curve keeps


def validation_curve(run_dir: Path) -> dict[str, list]:
    """The validation checks of a run as columns: ``iter``, ``time_s`` (training wall time since the
    start, checks included) and each of ``CURVE_METRICS`` (None where a check did not compute it)."""
    from bamrec.rundir import layout as ckpt

    lines = ckpt.read_jsonl(run_dir / ckpt.METRICS_FILE) if (run_dir / ckpt.METRICS_FILE).is_file() else []
    curve: dict[str, list] = {"iter": [line.get("iter") for line in lines],
                              "time_s": [line.get("time_s") for line in lines]}
    for metric in CURVE_METRICS:
        curve[metric] = [(line.get("valid") or {}).get(metric) for line in lines]
    return curve


def last_selection_shares(run_dir: Path) -> list[float] | None:
    """Each interest's share of the training examples between the last two validation checks."""
    from bamrec.rundir import layout as ckpt

    lines = ckpt.read_jsonl(run_dir / ckpt.METRICS_FILE) if (run_dir / ckpt.METRICS_FILE).is_file() else []
    return lines[-1].get("selection_shares") if lines else None


def far_target_recall(config, users, ranks: dict[str, Any]) -> dict[str, Any]:
    """Recall on the third of test users whose item is farthest from their history (``evaluation.far_targets``)."""
    import numpy as np

    from bamrec.data.sequences import SequenceDataset
    from bamrec.data.split import LeaveOneOut
    from bamrec.evaluation import far_targets

    split = LeaveOneOut(SequenceDataset.load(config.data))
    affinity_users, affinity = far_targets.history_affinity(split, config.model.seq_len)
    far, cutoff = far_targets.far_users(affinity_users, affinity)
    users = np.asarray(users, dtype=np.int64)
    return {"share": far_targets.FAR_SHARE, "users": int(len(far)), "affinity_cutoff": round(cutoff, 6),
            "recall": {protocol: far_targets.far_recall(np.asarray(r, dtype=np.int64), users, far,
                                                         config.eval.cutoffs)
                       for protocol, r in ranks.items()}}


def _finished_training(run_dir: Path, config) -> bool:
    from bamrec.rundir import layout as ckpt

    summary = run_dir / ckpt.SUMMARY_FILE
    if not summary.is_file() or not (run_dir / ckpt.WEIGHTS_FILE).is_file():
        return False
    if _interrupted(ckpt.read_json(summary).get("stopped")):
        return False
    saved, _ = ckpt.read_config(run_dir)
    return _identity(saved) == _identity(config)


def _interrupted(stopped: object) -> bool:
    """``interrupted`` or ``interrupted (SIGTERM)``: the trainer kept its best checkpoint, the cell is unfinished."""
    return str(stopped or "").startswith("interrupted")


def _identity(config) -> dict[str, Any]:
    """A config without the options that only say how it runs (device, progress bar)."""
    from bamrec.presets import resolve_presets
    from bamrec.rundir import layout as ckpt

    values = ckpt.to_dict(resolve_presets(config))  # saved configs are resolved (remi_beta None -> 0.01 / 0)
    for key in ("device", "progress"):
        values["train"].pop(key, None)
    return values


def _small_ints(values) -> "np.ndarray":
    """The narrowest unsigned dtype that holds ``values`` (ranks and user ids are never negative)."""
    import numpy as np

    values = np.asarray(values)
    top = int(values.max()) if len(values) else 0
    return values.astype(np.uint16 if top < 2**16 else np.uint32)


def run_cell(job: dict[str, Any]) -> int:
    """Train and test one cell as ``job`` says; returns the process exit code.

    The cell holds its run directory's lock (``bamrec.locks``) from its first look to its last write:
    a `bamrec train` already writing there is never replaced, and none can start there meanwhile."""
    with locks.write_lock(job["run_dir"], f"bamrec experiment cell {job['cell']}", flag="--runs-dir"):
        return _run_cell(job)


def _run_cell(job: dict[str, Any]) -> int:
    import numpy as np
    import torch

    from bamrec.api import load_run, train
    from bamrec.config import run_config_from_flat
    from bamrec.devices import resolve_device
    from bamrec.presets import resolve_presets
    from bamrec.rundir import layout as ckpt

    threads = int(job.get("threads") or 1)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    options = dict(job["options"])
    if job.get("device"):
        options["device"] = job["device"]
    options["progress"] = False
    config = resolve_presets(run_config_from_flat(options))
    run_dir, cells_dir = Path(job["run_dir"]), Path(job["cells_dir"])
    resumed = False
    if _finished_training(run_dir, config):
        summary = ckpt.read_json(run_dir / ckpt.SUMMARY_FILE)
        result = None
        print(f"cell {job['cell']}: training already finished in {run_dir}; testing it", flush=True)
    else:
        resumed = (run_dir / ckpt.RESUME_FILE).is_file()
        if not resumed:
            (run_dir / RANKS_FILE).unlink(missing_ok=True)  # not one of the trainer's files: ours to clear
        callbacks = []
        if job.get("tensorboard"):
            from bamrec.reports.tensorboard import TensorBoardLogger, clear_events

            if not resumed:
                clear_events(Path(job["tensorboard"]) / job["cell"])
            callbacks.append(TensorBoardLogger(Path(job["tensorboard"]) / job["cell"]))
        result = train(config, run_dir, overwrite=not resumed, resume=resumed, progress=False, callbacks=callbacks)
        if _interrupted(result.stopped):
            print(f"cell {job['cell']}: interrupted at iteration {result.iters}; rerun to resume", flush=True)
            return EXIT_INTERRUPTED
        summary = ckpt.read_json(run_dir / ckpt.SUMMARY_FILE)
    run = load_run(run_dir, device=str(resolve_device(config.train.device)))
    tests: dict[str, Any] = {}
    ranks: dict[str, Any] = {}
    users = None
    for protocol in PROTOCOLS:
        evaluated = run.evaluate_result(split="test", protocol=protocol)
        tests[protocol] = evaluated.metrics()
        ranks[protocol] = _small_ints(evaluated.ranks)
        users = _small_ints(evaluated.users)
    cells_dir.mkdir(parents=True, exist_ok=True)
    for path in (run_dir / RANKS_FILE, ranks_file(cells_dir, job["cell"])):
        with files.atomic_write(path) as handle:
            np.savez_compressed(handle, users=users, **ranks)

    record = run.record
    diagnostics_path = run_dir / ckpt.DIAGNOSTICS_FILE
    diagnostics = ckpt.read_json(diagnostics_path) if diagnostics_path.is_file() else {}
    cell = {
        "format": CELL_FORMAT,
        "experiment": job["experiment"],
        "cell": job["cell"],
        "axes": job["axes"],
        "options": job["options"],
        "config_key": job["config_key"],
        "seed": config.train.seed,
        "config": ckpt.to_dict(config),
        "best_iter": summary.get("best_iter"),
        "iters": summary.get("iters"),
        "stopped": summary.get("stopped"),
        "train_time_s": summary.get("train_time_s"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "resumed": resumed,
        "best_valid": summary.get("best_valid"),
        "early_stopping": {"eval_every": config.train.eval_every, "patience": config.train.patience,
                           "max_iters": config.train.max_iters,
                           "cap_bound": summary.get("stopped") == "max_iters"},
        "curve": validation_curve(run_dir),
        "selection_shares_last": last_selection_shares(run_dir),
        "test": tests,
        "far_targets": far_target_recall(config, users, ranks),
        "diagnostics": compact_diagnostics(diagnostics),
        "dataset": {k: record["dataset"].get(k) for k in ("checksum", "num_users", "num_items")}
        | {"name": Path(str(options.get("data", ""))).name},
        "machine": machine(threads, str(run.device)),
        "commit": git_commit(),
        "versions": record.get("versions"),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ranks_file": ranks_file(cells_dir, job["cell"]).name,
    }
    ckpt.write_json(cell_file(cells_dir, job["cell"]), cell)
    return 0


def main(argv: list[str] | None = None) -> int:
    from bamrec.errors import BamrecError

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bamrec.experiments JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        return run_cell(job)
    except BamrecError as exc:
        print(f"bamrec: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # 74: the disk is full (the runner stops the experiment)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
