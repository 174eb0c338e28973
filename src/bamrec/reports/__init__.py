"""Reports comparing training runs: a markdown table (``report.md``) and PNG plots.

``write_report(["runs/a", "runs/b"], "runs/report")`` reads the run directories the trainer wrote,
writes ``report.md`` and the plots into the output folder and returns what it wrote.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bamrec import files, locks
from bamrec.errors import RunDirError
from bamrec.reports.plots import PLOT_FILES, write_plots
from bamrec.reports.tables import (
    RunRecord,
    comparison_rows,
    dataset_groups,
    load_run_record,
    load_runs,
    markdown_table,
    report_markdown,
)

REPORT_FILE = "report.md"

__all__ = [
    "Report",
    "RunRecord",
    "comparison_rows",
    "default_out_dir",
    "load_run_record",
    "load_runs",
    "markdown_table",
    "report_markdown",
    "write_plots",
    "write_report",
]


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote."""

    markdown: str  # the content of report.md
    path: Path  # report.md
    plots: list[Path]  # PNG files written beside it
    runs: list[RunRecord]  # the runs compared


def default_out_dir(runs: Sequence[RunRecord]) -> Path:
    """``report/`` in the folder that holds the runs (their common parent)."""
    parents = [str(r.path.resolve().parent) for r in runs]
    return Path(os.path.commonpath(parents)) / "report"


def write_report(
    runs: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    cutoff: int = 20,
    plots: bool = True,
) -> Report:
    """Compare the run directories ``runs`` (or folders of runs) and write ``report.md`` + plots.

    ``out_dir`` defaults to :func:`default_out_dir`; an existing report there is only replaced
    with ``overwrite``. ``cutoff`` picks the test metrics shown (recall@cutoff, ndcg@cutoff).
    """
    records = load_runs(runs)
    out = Path(out_dir) if out_dir is not None else default_out_dir(records)
    with locks.write_lock(out, "bamrec report"):  # two reports into one --out: the second is refused
        return _write_report(records, out, overwrite=overwrite, cutoff=cutoff, plots=plots)


def _write_report(records: Sequence[RunRecord], out: Path, *, overwrite: bool, cutoff: int, plots: bool) -> Report:
    ours = [out / REPORT_FILE, *(out / name for name in PLOT_FILES.values())]
    existing = [p.name for p in ours if p.exists()]
    if existing and not overwrite:
        raise RunDirError(f"{out} already holds a report ({', '.join(existing)}); pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    for stale in ours[1:]:  # plots a previous report had but this one may not draw
        stale.unlink(missing_ok=True)
    groups = dataset_groups(records)
    plotted = records if len(groups) == 1 else [  # several datasets: say which one in every legend
        dataclasses.replace(record, name=f"{label}: {record.name}") for label, group in groups.items() for record in group]
    written = write_plots(plotted, out, cutoff=cutoff) if plots else []
    markdown = report_markdown(records, cutoff=cutoff, plots=[p.name for p in written])
    path = out / REPORT_FILE
    files.write_text(path, markdown)
    return Report(markdown=markdown, path=path, plots=written, runs=records)
