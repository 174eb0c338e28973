"""Training throughput: examples/s, ms per step split into data / forward / backward / optimiser,
peak RSS, and achieved GFLOP/s against an equal-FLOP matmul timed in the same process. Ratios to the
original implementation are measured side by side, in the same run, by ``side_by_side.py``.

One configuration:
    python benchmarks/train_speed.py --data prepared/ml-100k --model comirec-sa --selection bam-p --multi-loss
The matrix the speed issue asks for (each configuration in a fresh process for a clean memory figure):
    python benchmarks/train_speed.py --data prepared/ml-100k --matrix --seq-len 50 --json bench-results/train-ml100k.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (Stopwatch, environment, markdown_table, matmul_gflops, peak_rss_gb,  # noqa: E402
                     run_child, write_json)

from bamrec.config import run_config_from_flat  # noqa: E402
from bamrec.data.sampling import TrainSampler  # noqa: E402
from bamrec.data.sequences import SequenceDataset  # noqa: E402
from bamrec.data.split import LeaveOneOut  # noqa: E402
from bamrec.models import build_backbone, resolve_presets  # noqa: E402
from bamrec.training.objective import Objective  # noqa: E402
from bamrec.training.trainer import resolve_device  # noqa: E402

MATRIX = [(model, scheme) for model in ("comirec-sa", "mind")
          for scheme in ("hard", "bam-p", "hard+multi-loss", "bam-p+multi-loss")]


def measure(args: argparse.Namespace) -> dict:
    selection, _, multi = args.scheme.partition("+")
    config = resolve_presets(run_config_from_flat({
        "data": args.data, "model": args.model, "seq_len": args.seq_len, "selection": selection,
        "multi_loss": multi == "multi-loss", "negatives": args.negatives, "batch_size": args.batch_size,
        "num_negatives": args.num_negatives, "hidden_size": args.hidden_size,
        "num_interests": args.num_interests, "device": args.device, "loss": args.loss,
    }))
    device = resolve_device(config.train.device)
    torch.manual_seed(0)
    load_start = time.perf_counter()
    dataset = SequenceDataset.load(args.data)
    split = LeaveOneOut(dataset)
    load_s = time.perf_counter() - load_start
    backbone = build_backbone(config.model, dataset.num_items, seed=0)
    objective = Objective(backbone, config.train, dataset.num_items).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=config.train.lr)
    sampler = TrainSampler(split, config.model.seq_len, config.train.batch_size, seed=0, device=device)
    generator = torch.Generator(device=device)
    generator.manual_seed(1)

    def step(watch: Stopwatch | None) -> None:
        if watch:
            watch.start()
        batch = sampler.sample()
        if watch:
            watch.lap("data")
        out = objective(batch.history, batch.mask, batch.target, generator)
        if watch:
            watch.lap("forward")
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if watch:
            watch.lap("backward")
        optimizer.step()
        if watch:
            watch.lap("optimizer")

    for _ in range(args.warmup):
        step(None)
    with FlopCounterMode(display=False) as counter:
        step(None)
    step_flops = counter.get_total_flops()

    # Unsplit timing (what training really costs), then a phase-split pass (adds syncs on GPU).
    Stopwatch(device).start()
    start = time.perf_counter()
    for _ in range(args.iters):
        step(None)
    Stopwatch(device).lap("total")
    seconds = time.perf_counter() - start
    watch = Stopwatch(device)
    for _ in range(max(args.iters // 4, 10)):
        step(watch)
    split_steps = max(args.iters // 4, 10)
    phases_ms = {name: 1000 * total / split_steps for name, total in watch.totals.items()}

    its = args.iters / seconds
    bsz, seq_len, d = config.train.batch_size, config.model.seq_len, config.model.hidden_size
    achieved = step_flops * its / 1e9
    rows = bsz * seq_len
    bound = matmul_gflops(rows, d, max(int(step_flops / (2 * rows * d)), 1), device)
    return {
        "model": args.model, "scheme": args.scheme, "negatives": args.negatives, "loss": args.loss,
        "seq_len": seq_len, "batch_size": bsz, "hidden_size": d, "num_negatives": config.train.num_negatives,
        "iterations_per_s": its, "examples_per_s": its * bsz, "ms_per_step": 1000 / its,
        "phase_ms": phases_ms,
        "data_share": phases_ms.get("data", 0.0) / sum(phases_ms.values()),
        "step_gflop": step_flops / 1e9, "achieved_gflops": achieved, "matmul_gflops_same_flops": bound,
        "fraction_of_matmul": achieved / bound, "peak_rss_gb": peak_rss_gb(), "dataset_load_s": load_s,
        "device": str(device), "env": environment(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="comirec-sa")
    parser.add_argument("--scheme", default="hard", help="hard, bam-p, bam-l, optionally +multi-loss")
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-interests", type=int, default=4)
    parser.add_argument("--num-negatives", type=int, default=1280)
    parser.add_argument("--negatives", default="shared", choices=("shared", "per-example"))
    parser.add_argument("--loss", default="sampled", choices=("sampled", "full"))
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--matrix", action="store_true", help="ComiRec-SA and MIND x hard/BaM-p/+multi-loss")
    parser.add_argument("--models", default=None, help="with --matrix: comma-separated models")
    parser.add_argument("--seq-len-mind", type=int, default=None, help="with --matrix: MIND's seq len")
    parser.add_argument("--json", default=None, help="write results here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one or not args.matrix:
        result = measure(args)
        if args.one:
            print(json.dumps(result))
            return
        results = [result]
    else:
        models = args.models.split(",") if args.models else ["comirec-sa", "mind"]
        results = []
        for model, scheme in [(m, s) for m, s in MATRIX if m in models]:
            seq_len = args.seq_len_mind if (model == "mind" and args.seq_len_mind) else args.seq_len
            child = [__file__, "--one", "--data", args.data, "--model", model, "--scheme", scheme,
                     "--seq-len", str(seq_len), "--iters", str(args.iters), "--warmup", str(args.warmup),
                     "--negatives", args.negatives, "--device", args.device, "--batch-size", str(args.batch_size),
                     "--num-negatives", str(args.num_negatives), "--loss", args.loss]
            results.append(run_child(child))
            print(f"  {model} {scheme}: {results[-1]['iterations_per_s']:.1f} it/s", file=sys.stderr)
    rows = []
    for r in results:
        rows.append([r["model"], r["scheme"], r["seq_len"], r["negatives"], r["iterations_per_s"],
                     r["examples_per_s"],
                     r["phase_ms"]["data"], r["phase_ms"]["forward"], r["phase_ms"]["backward"],
                     r["phase_ms"]["optimizer"], 100 * r["data_share"], r["achieved_gflops"],
                     r["matmul_gflops_same_flops"], r["peak_rss_gb"]])
    print(markdown_table(["model", "scheme", "L", "negatives", "it/s", "examples/s",
                          "data ms", "fwd ms", "bwd ms", "optim ms", "data %", "GFLOP/s", "matmul GFLOP/s",
                          "peak RSS GB"], rows))
    write_json(args.json, {"results": results})


if __name__ == "__main__":
    main()
