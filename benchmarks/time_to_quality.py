"""Time to quality on ML-1M: how long each converged configuration trains to reach the paper's accuracy.

    python benchmarks/time_to_quality.py --experiment experiments/converged-ml-1m.toml \\
        --cells experiments/converged-ml-1m/cells \\
        --side-by-side experiments/converged-ml-1m/side-by-side-remi.json \\
        --reference-cell remi_bam-p+multi-lr1e-3_s1-40fa6cd4 --beside comirec-sa_recommended_s1-0d82ebe9

The target is the released BaM_p checkpoint's test recall@20 under the reference protocol (0.329); the
original code's training log puts that checkpoint's best validation check at 34,000 iterations.

What is measured, and what is derived:

- For each cell, the iterations and the wall time (the cell's own validation curve, checks included) to
  its best validation check, and the test recall@20 of the model kept there. A cell's test metrics exist
  only for that model, so when it reaches the target this is an upper bound on the time to the target
  (an earlier check may already have been past it); a cell below the target never reached it.
- Iterations do not depend on the machine; seconds do (machines of this kind differ by 6x). The
  original's seconds per iteration come from a side-by-side run (``benchmarks/side_by_side.py``:
  the original and bamrec's REMI, BaM_p + multi-loss, shared negatives, in the same minutes), as a
  ratio to bamrec's REMI. A cell's time is turned into a ratio against the original only when it ran
  beside the reference REMI cell (``--beside``: same machine, same hours): then
  original time = original iterations x (REMI cell's s/it) x (side-by-side original/bamrec s/it ratio),
  and the ratio is that over the cell's time to its best check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bamrec.errors import BamrecError

ORIGINAL_ITERS = 34_000  # the original's training log: best validation check of the released BaM_p run
TARGET = 0.329  # the released BaM_p checkpoint, test recall@20, reference protocol
METRIC, PROTOCOL = "recall@20", "reference"


def load_cells(experiment_file: Path, cells_dir: Path, seed: int) -> list[dict[str, Any]]:
    """The finished cells of one seed, in the experiment's order: read as the study's report reads them
    (``bamrec.experiments.aggregate.load_cells``), so a summary whose options no longer match the
    experiment file, or a file that is not one of its cells, is left out."""
    from bamrec.experiments.aggregate import load_cells as finished_cells
    from bamrec.experiments.spec import load_experiment

    return [record for _, record in finished_cells(load_experiment(experiment_file), cells_dir)
            if record.get("seed") == seed]


def time_to_best(cell: dict[str, Any]) -> float:
    """Seconds of training (validation checks included) to the cell's best check, from its curve."""
    curve = cell["curve"]
    for iteration, seconds in zip(curve["iter"], curve["time_s"]):
        if iteration == cell["best_iter"]:
            return float(seconds)
    raise ValueError(f"cell {cell['cell']}: its curve has no check at its best iteration {cell['best_iter']}")


def seconds_per_iter(cell: dict[str, Any]) -> float:
    """The whole run's seconds per iteration, validation checks included."""
    return float(cell["train_time_s"]) / float(cell["iters"])


def original_to_bamrec_ratio(side_by_side: dict[str, Any]) -> float:
    """Original s/it over bamrec's (REMI, BaM_p + multi-loss, shared negatives), measured side by side:
    the ratio of the two sides' median speeds (the JSON's ``ratio``; its paired ratios are beside it)."""
    for row in side_by_side["training"]:
        if row["model"] == "remi" and row["scheme"] == "bam-p+multi-loss":
            return float(row["shared"]["ratio"])
    raise ValueError("the side-by-side JSON has no REMI BaM_p + multi-loss row")


def rows(cells: list[dict[str, Any]], reference_cell: str | None, beside: set[str], ratio: float | None,
         original_iters: int, target: float) -> tuple[list[dict[str, Any]], float | None]:
    """One row per cell; and the original's time to the target in seconds on the reference cell's machine."""
    by_id = {c["cell"]: c for c in cells}
    original_s = None
    if reference_cell and ratio:
        if reference_cell not in by_id:
            raise ValueError(f"reference cell {reference_cell} is not among the cells")
        original_s = original_iters * seconds_per_iter(by_id[reference_cell]) * ratio
    table = []
    for cell in cells:
        score = float(cell["test"][PROTOCOL][METRIC])
        seconds = time_to_best(cell)
        reaches = score >= target
        same_machine = cell["cell"] in beside or cell["cell"] == reference_cell
        table.append({
            "cell": cell["cell"], "method": f"{cell['axes']['model']} / {cell['axes']['scheme']}",
            "test": score, "reaches": reaches, "best_iter": int(cell["best_iter"]), "iters": int(cell["iters"]),
            "minutes_to_best": seconds / 60, "s_per_iter": seconds_per_iter(cell),
            "threads": cell["machine"].get("threads"), "stopped": cell.get("stopped"),
            "speedup": (original_s / seconds) if (original_s and reaches and same_machine) else None,
        })
    return table, original_s


def markdown(table: list[dict[str, Any]], original_s: float | None, original_iters: int, target: float,
             ratio: float | None) -> str:
    head = (f"| configuration (seed 1) | test {METRIC} ({PROTOCOL}) | reaches {target} | best check | stopped at |"
            " minutes to best check | s/it (with checks) | threads | time to quality against the original |\n"
            "|---|---:|---|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    if original_s is not None:
        lines.append(f"| the original code (released BaM_p, its log) | {target:.3f} | yes | {original_iters} | – |"
                     f" {original_s / 60:.0f} (derived: ratio {ratio:.2f}) | {original_s / original_iters:.3f} | 1 | 1 |")
    for r in table:
        speed = f"{r['speedup']:.1f}x faster" if r["speedup"] else ("–" if r["reaches"] else "not reached")
        lines.append(f"| {r['method']} | {r['test']:.3f} | {'yes' if r['reaches'] else 'no'} | {r['best_iter']} |"
                     f" {r['iters']} ({r['stopped']}) | {r['minutes_to_best']:.1f} | {r['s_per_iter']:.3f} |"
                     f" {r['threads']} | {speed} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, required=True, help="the study's TOML (ML-1M)")
    parser.add_argument("--cells", type=Path, required=True, help="the study's cells/ folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--side-by-side", type=Path, help="benchmarks/side_by_side.py --json output with REMI")
    parser.add_argument("--reference-cell", help="the bamrec REMI BaM_p + multi-loss cell the ratio scales")
    parser.add_argument("--beside", nargs="*", default=[], help="cells that ran beside the reference cell")
    parser.add_argument("--original-iters", type=int, default=ORIGINAL_ITERS)
    parser.add_argument("--target", type=float, default=TARGET)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    try:
        cells = load_cells(args.experiment, args.cells, args.seed)
        if not cells:
            raise ValueError(f"no cells of seed {args.seed} of {args.experiment} in {args.cells}")
        ratio = original_to_bamrec_ratio(json.loads(args.side_by_side.read_text())) if args.side_by_side else None
        table, original_s = rows(cells, args.reference_cell, set(args.beside), ratio, args.original_iters, args.target)
    except (OSError, ValueError, KeyError, BamrecError) as error:
        print(f"time_to_quality: {error}", file=sys.stderr)
        return 2
    print(markdown(table, original_s, args.original_iters, args.target, ratio), end="")
    if args.json:
        args.json.write_text(json.dumps({"original_s": original_s, "ratio": ratio, "rows": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
