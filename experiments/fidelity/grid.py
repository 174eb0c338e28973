#!/usr/bin/env python3
"""What each difference between the original BaM recipe and bamrec's defaults does (docs/fidelity.md).

Runs the cells of a grid one at a time (resumable: a cell whose summary exists is skipped) and
writes one small JSON summary per cell under experiments/fidelity/results/<grid>/ (never weights;
run directories go to --runs, outside the repository). A cell is (model, scheme, variant, seed):

- scheme ``hard``: hard selection; ``bamp-multi``: BaM_p + multi-interest loss;
- variant ``bamrec``: our defaults as they were when the grid ran (MIND routing_norm = "valid", pinned
  here; the default is now "interests", which the grid measured as ``+routing_norm=interests``);
  ``original``: ``recipe=original``; ``+<option>``: those defaults
  with that one option set to the original's value (bamrec.recipes.ORIGINAL).

Every cell trains with the same budget (--max-iters, --eval-every; see docs/fidelity.md) and is
tested under both evaluation protocols (MIND's random routing, where on, is seeded before each).

    PYTHONPATH=src OMP_NUM_THREADS=1 nohup python experiments/fidelity/grid.py --grid ml-100k \
        --data /tmp/recipe/ml-100k --runs /tmp/recipe/runs > /tmp/recipe/grid.log 2>&1 &

Several processes may share a grid (each claims a cell before running it), e.g. a second one with
``--reverse``; a claim left by a killed process is taken over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

import bamrec
from bamrec.recipes import ORIGINAL

HERE = Path(__file__).resolve().parent
SCHEMES = {"hard": {"selection": "hard"}, "bamp-multi": {"selection": "bam-p", "multi_loss": True}}
METRICS = ("recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50")
# The switches that act on each backbone. Not switched: MIND's routing on ComiRec-SA (unused there),
# REMI's terms and BaM_l's projections (no REMI or BaM_l cells in this grid), the test protocol
# (every cell is tested under both), and the patience of 15 vs 16 checks (it never triggers within
# the iteration cap).
SWITCHES = {
    "mind": ("negatives", "valid_protocol", "routing_norm", "routing_eval"),
    "comirec-sa": ("negatives", "valid_protocol"),
}
SEEDS = (2021, 2022, 2023)


def grid_cells(grid: str) -> list[tuple[str, str, str, int]]:
    """Cells in the order they run: the most informative first (original vs defaults for MIND)."""
    cells: list[tuple[str, str, str, int]] = []
    if grid == "ml-100k":
        for model in ("mind", "comirec-sa"):
            cells += [(model, s, v, seed) for seed in SEEDS for s in SCHEMES for v in ("bamrec", "original")]
        # Seed-major across both backbones, so an interrupted grid has every switch at the first seeds.
        cells += [(model, s, "+" + o, seed) for seed in SEEDS for model in ("comirec-sa", "mind")
                  for s in SCHEMES for o in SWITCHES[model]]
        cells += [("mind", s, "+routing_norm=interests", seed) for seed in SEEDS for s in SCHEMES]
    else:
        # ML-1M (original recipe vs defaults, REMI and MIND) runs through the experiment runner:
        # experiments/fidelity/ml-1m.toml.
        raise SystemExit(f"unknown grid {grid!r}: ml-100k (ML-1M: bamrec experiment experiments/fidelity/ml-1m.toml)")
    return cells


def cell_name(model: str, scheme: str, variant: str, seed: int) -> str:
    return f"{model}_{scheme}_{variant.lstrip('+').replace('=', '-')}_{seed}"


def cell_config(model: str, scheme: str, variant: str, seed: int, args: argparse.Namespace) -> dict:
    flat = {"data": args.data, "model": model, "seq_len": args.seq_len, "seed": seed, "max_iters": args.max_iters,
            "eval_every": args.eval_every, "progress": False, "device": "cpu", **SCHEMES[scheme]}
    if model == "mind" and variant != "original":
        # The defaults these cells measured: MIND's routing_norm was "valid" until the measurements
        # made B2I ("interests") the default, so it is pinned for the committed cells to reproduce.
        flat["routing_norm"] = "valid"
    if variant == "original":
        flat["recipe"] = "original"
    elif variant.startswith("+"):
        option, _, value = variant[1:].partition("=")
        flat[option] = value or ORIGINAL[option]
    return flat


def test_metrics(run_dir: Path, protocol: str) -> dict:
    torch.manual_seed(0)  # MIND with routing_eval=random draws its routing start from the global RNG
    metrics = bamrec.load_run(run_dir).evaluate(split="test", protocol=protocol, cutoffs=(10, 20, 50))
    return {k: round(float(metrics[k]), 6) for k in METRICS}


def claim(out_dir: Path, name: str) -> Path | None:
    """Claim cell ``name`` for this process (a ``.<name>.claim`` file holding the pid, created
    exclusively), so that several grid processes can share one results folder; a claim whose process
    is gone is taken over. None when another live process holds it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    file = out_dir / f".{name}.claim"
    for _ in range(2):
        try:
            fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(file.read_text() or 0), 0)
                return None  # held by a live process
            except (ProcessLookupError, ValueError):
                file.unlink(missing_ok=True)  # stale: its process died
                continue
            except PermissionError:
                return None
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return file
    return None


def run_cell(cell: tuple[str, str, str, int], args: argparse.Namespace, out_dir: Path) -> None:
    name = cell_name(*cell)
    summary_file = out_dir / f"{name}.json"
    if summary_file.is_file():
        return
    claimed = claim(out_dir, name)
    if claimed is None:
        return  # another grid process runs it
    try:
        train_cell(cell, name, summary_file, args, out_dir)
    finally:
        claimed.unlink(missing_ok=True)


def train_cell(cell: tuple[str, str, str, int], name: str, summary_file: Path, args: argparse.Namespace,
               out_dir: Path) -> None:
    flat = cell_config(*cell, args)
    run_dir = Path(args.runs) / args.grid / name
    started = time.time()
    result = bamrec.train(flat, run_dir, overwrite=True, verbose=False)
    if result.stopped.startswith("interrupted"):
        # A stopped training has tested its best checkpoint so far: not a finished cell. Record
        # nothing (a rerun trains the cell again) and stop the grid, as the signal asked.
        raise SystemExit(f"{name}: {result.stopped}; no summary written")
    config = json.loads((run_dir / "config.json").read_text())["config"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    summary = {
        "cell": name, "grid": args.grid, "model": cell[0], "scheme": cell[1], "variant": cell[2], "seed": cell[3],
        "options": {k: v for k, v in flat.items() if k != "data"},
        "resolved": {opt: config[section][opt] for opt, section in
                     (("negatives", "train"), ("valid_protocol", "train"), ("patience", "train"),
                      ("routing_norm", "model"), ("routing_eval", "model"), ("rr_positions", "train"),
                      ("ihn_detach", "train"), ("bam_l_grad", "train"), ("protocol", "eval"),
                      ("remi_beta", "train"), ("remi_lambda", "train"), ("recipe", "train"))},
        "best_iter": result.best_iter, "iters": result.iters, "stopped": result.stopped,
        "train_time_s": round(result.train_time_s, 1), "wall_s": round(time.time() - started, 1),
        "valid_curve": [[r["iter"], round(r["valid"]["recall@10"], 4)] for r in records],
        "selection_shares_last": records[-1]["selection_shares"] if records else None,
        "test_standard": test_metrics(run_dir, "standard"),
        "test_reference": test_metrics(run_dir, "reference"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = summary_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    tmp.replace(summary_file)
    if not args.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {summary['wall_s']} s, best iter {result.best_iter}, "
          f"test std recall@20 {summary['test_standard']['recall@20']:.4f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True, choices=("ml-100k",))
    p.add_argument("--data", required=True, help="prepared dataset (bamrec data prepare)")
    p.add_argument("--runs", required=True, help="where run directories go (outside the repository)")
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--max-iters", type=int, default=5000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--only", default="", help="comma-separated substrings: run only matching cells")
    p.add_argument("--keep-runs", action="store_true", help="keep run directories (default: delete after summary)")
    p.add_argument("--list", action="store_true", help="print the cells in order and exit")
    p.add_argument("--reverse", action="store_true",
                   help="run the cells last first (a second process on the same grid meets the first in the middle)")
    args = p.parse_args(argv)
    out_dir = HERE / "results" / args.grid
    cells = grid_cells(args.grid)
    if args.only:
        keys = [k for k in args.only.split(",") if k]
        cells = [c for c in cells if any(k in cell_name(*c) for k in keys)]
    if args.list:
        for c in cells:
            print(cell_name(*c), "(done)" if (out_dir / f"{cell_name(*c)}.json").is_file() else "")
        return 0
    for cell in reversed(cells) if args.reverse else cells:
        run_cell(cell, args, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
