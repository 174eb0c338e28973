"""``bamrec demo``: what BaM is for, on planted-interest data, in a couple of minutes on a laptop CPU.

It generates the default planted-interest dataset (``data.synthetic``: one dominant and three minor
interests per user), trains the same backbone (ComiRec-SA) with hard selection, with BaM_p, and
with BaM_p plus the multi-interest loss, evaluates each on the test split, and prints one table:
recall@20 and nDCG@20 over all users, recall@20 on the users whose test item comes from one of
their minor interests, how evenly training spread over the interest slots (selection entropy, dead
interests) and the training time. The runs, a markdown report and plots are written under ``--out``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bamrec import locks
from bamrec.config import run_config_from_flat
from bamrec.data.synthetic import SyntheticConfig, write_synthetic
from bamrec.errors import RunDirError
from bamrec.rundir import layout as ckpt
from bamrec.training.trainer import train


@dataclass(frozen=True)
class DemoMethod:
    name: str  # run directory name and table label
    selection: str
    multi_loss: bool


METHODS = (
    DemoMethod("hard", "hard", False),
    DemoMethod("bam-p", "bam-p", False),
    DemoMethod("bam-p+multi", "bam-p", True),
)
# The same iteration budget for every method, sized to keep `make demo` within a few minutes on two
# CPU cores. At this budget BaM has converged and hard selection is still improving slowly: the
# converged comparison (README, "Planted-interest benchmark") keeps the same order and gap.
# --quick is a smoke run of the same pipeline.
FULL = {"max_iters": 3000, "eval_every": 250, "patience": 4}
QUICK = {"max_iters": 400, "eval_every": 100, "patience": 4}
QUICK_DATA = {"users": 1000, "items": 1000, "topics": 10}
# Written first into every demo output folder: `--overwrite` replaces only folders that carry it, so a
# mistyped `--out` can never wipe a folder of the user's.
DEMO_MARKER = ".bamrec-demo"


def demo_settings(quick: bool) -> tuple[SyntheticConfig, dict[str, Any]]:
    """The planted data and the training options the demo uses."""
    data = SyntheticConfig(**QUICK_DATA) if quick else SyntheticConfig()
    # L = 30 covers about ten sessions of the planted data; 500 negatives of 2,000 items.
    train_options = {"model": "comirec-sa", "seq_len": 30, "num_interests": 4, "hidden_size": 64,
                     "num_negatives": 500, **(QUICK if quick else FULL)}
    return data, train_options


def run_demo(out: str | Path, *, quick: bool = False, overwrite: bool = False, progress: bool = True,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate data, train the three methods, evaluate, report; returns the table's numbers."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a folder")
    with locks.write_lock(out, "bamrec demo"):  # a second demo into --out is refused before it removes anything
        return _run_demo(out, quick=quick, overwrite=overwrite, progress=progress, echo=echo)


def _run_demo(out: Path, *, quick: bool, overwrite: bool, progress: bool,
              echo: Callable[[str], None]) -> dict[str, Any]:
    _claim_output_dir(out, overwrite)
    started = time.perf_counter()
    data_config, options = demo_settings(quick)
    data_dir, dataset = write_synthetic(out / "data", data_config, overwrite=True)
    echo(f"planted-interest data: {dataset.num_users} users, {dataset.num_items} items, "
         f"{dataset.num_interactions} interactions, {data_config.interests_per_user} interests per user "
         f"(weights ∝ rank^-{data_config.imbalance}) -> {data_dir}")
    rows = []
    for method in METHODS:
        echo(f"training ComiRec-SA with {method.name} ...")
        config = run_config_from_flat({"data": str(data_dir), **options, "selection": method.selection,
                                       "multi_loss": method.multi_loss, "progress": progress})
        result = train(config, out / "runs" / method.name, overwrite=True, verbose=False)
        rows.append(_row(method, result.run_dir))
    summary = {
        "data": {"dir": str(data_dir), **dataclasses.asdict(data_config), **dataset.stats()},
        "training": options,
        "methods": rows,
        "total_time_s": round(time.perf_counter() - started, 1),
    }
    ckpt.write_json(out / "summary.json", summary)
    report_dir = _report(out, [out / "runs" / m.name for m in METHODS])
    echo("")
    echo(format_table(rows))
    echo("")
    echo(f"runs: {out / 'runs'}   report and plots: {report_dir}   numbers: {out / 'summary.json'}")
    echo(f"total time {summary['total_time_s']:.0f} s")
    return summary


def is_demo_output(path: Path) -> bool:
    """A folder this command wrote: the marker, or (outputs written before the marker) its fixed layout."""
    if (path / DEMO_MARKER).is_file():
        return True
    return (path / "summary.json").is_file() and (path / "runs").is_dir() and (path / "data").is_dir()


def _claim_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless it is a demo output and ``overwrite`` is set; then mark it."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a folder")
    if out.exists() and locks.contents(out):
        if not overwrite:
            raise RunDirError(f"{out} already exists; pass --overwrite to replace the demo output there")
        if not is_demo_output(out):
            raise RunDirError(f"refusing to --overwrite {out}: it is not a bamrec demo output (no {DEMO_MARKER} "
                              f"marker); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    ckpt.write_json(out / DEMO_MARKER, {"written_by": "bamrec demo"})


def _row(method: DemoMethod, run_dir: Path) -> dict[str, Any]:
    summary = ckpt.read_json(run_dir / ckpt.SUMMARY_FILE)
    diagnostics = ckpt.read_json(run_dir / ckpt.DIAGNOSTICS_FILE)
    planted = diagnostics.get("planted") or {}
    overall = (diagnostics.get("selection") or {}).get("overall") or {}
    return {
        "method": method.name,
        "run": str(run_dir),
        "recall@20": summary["test"]["recall@20"],
        "ndcg@20": summary["test"]["ndcg@20"],
        "minor_recall@20": (planted.get("recall") or {}).get("minor"),
        "dominant_recall@20": (planted.get("recall") or {}).get("dominant"),
        "planted_coverage": (planted.get("coverage") or {}).get("mean"),
        "selection_entropy": overall.get("normalized_entropy"),
        "dead_interests": overall.get("dead_interests"),
        "best_iter": summary["best_iter"],
        "train_time_s": summary["train_time_s"],
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """The demo's comparison table as aligned text."""
    columns = [("method", "method", "{}"), ("recall@20", "recall@20", "{:.4f}"), ("ndcg@20", "nDCG@20", "{:.4f}"),
               ("minor_recall@20", "minor recall@20", "{:.4f}"), ("dominant_recall@20", "dominant recall@20", "{:.4f}"),
               ("planted_coverage", "coverage", "{:.3f}"), ("selection_entropy", "sel. entropy", "{:.3f}"),
               ("dead_interests", "dead", "{}"), ("best_iter", "best iter", "{}"), ("train_time_s", "time s", "{:.0f}")]
    cells = [[label for _, label, _ in columns]]
    for row in rows:
        cells.append(["-" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _report(out: Path, runs: list[Path]) -> Path:
    from bamrec.reports import write_report

    report = write_report(runs, out / "report", overwrite=True)
    return report.path.parent
