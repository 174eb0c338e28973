"""PNG plots comparing runs: validation curves, interest-selection balance, metrics by method.

matplotlib is imported inside the functions and forced onto the Agg backend there (no import-time
side effects, no display needed). Figures are built with ``matplotlib.figure.Figure`` rather than
pyplot, so nothing accumulates in pyplot's global figure list. A plot whose data no run has is
skipped (the function returns None).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bamrec import files
from bamrec.reports.tables import RunRecord

PLOT_FILES = {
    "validation": "validation_curves.png",
    "selection_shares": "selection_shares.png",
    "selection_entropy": "selection_entropy.png",
    "metrics": "metrics_by_method.png",
}
_DPI = 120


def plot_validation_curves(records: Sequence[RunRecord], path: str | Path, metric: str = "recall@20") -> Path | None:
    """Validation ``metric`` against iteration, one line per run (from metrics.jsonl)."""
    series = []
    for record in records:
        points = [(r["iter"], r["valid"][metric]) for r in record.metrics
                  if isinstance((r.get("valid") or {}).get(metric), (int, float)) and "iter" in r]
        if points:
            series.append((record.name, *zip(*points)))
    return _line_plot(series, path, title=f"Validation {metric} during training", ylabel=f"validation {metric}")


def plot_selection_shares(records: Sequence[RunRecord], path: str | Path) -> Path | None:
    """Share of training targets that selected each interest slot, grouped bars per run."""
    shares = [(r.name, (r.selection_balance() or {}).get("shares")) for r in records]
    shares = [(name, s) for name, s in shares if s]
    if not shares:
        return None
    slots = max(len(s) for _, s in shares)
    fig, ax = _figure()
    width = 0.8 / len(shares)
    for i, (name, values) in enumerate(shares):
        ax.bar(np.arange(len(values)) + (i - (len(shares) - 1) / 2) * width, values, width, label=name)
    ax.axhline(1 / slots, color="grey", linestyle="--", linewidth=1, label=f"balanced (1/{slots})")
    ax.set_xticks(np.arange(slots), [f"interest {k}" for k in range(slots)])
    ax.set(title="Interest selection during training", xlabel="interest slot", ylabel="share of training targets")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_selection_entropy(records: Sequence[RunRecord], path: str | Path) -> Path | None:
    """Normalised entropy of the selection shares at each validation check, one line per run."""
    series = []
    for record in records:
        selection = (record.diagnostics or {}).get("selection") or _selection_from_metrics(record)
        points = [(h["iter"], h["normalized_entropy"]) for h in (selection or {}).get("history", [])
                  if h.get("normalized_entropy") is not None and h.get("iter") is not None]
        if points:
            series.append((record.name, *zip(*points)))
    return _line_plot(series, path, title="Balance of interest selection during training",
                      ylabel="selection entropy / log K", ylim=(0, 1.05))


def _line_plot(series: list, path: str | Path, *, title: str, ylabel: str,
               ylim: tuple[float, float] | None = None) -> Path | None:
    """One line per ``(name, iterations, values)`` against iteration; None when there is nothing to draw."""
    if not series:
        return None
    fig, ax = _figure()
    for name, iters, values in series:
        ax.plot(iters, values, marker="o", markersize=3, label=name)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set(title=title, xlabel="iteration", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_metric_by_method(records: Sequence[RunRecord], path: str | Path, cutoff: int = 20) -> Path | None:
    """Bars of test recall@cutoff and, where present, minor-interest recall@cutoff per run."""
    names = [r.name for r in records]
    bars: dict[str, list[float]] = {}
    recall = [r.test_metric(f"recall@{cutoff}") for r in records]
    minor = [r.minor_recall(cutoff) for r in records]
    if any(v is not None for v in recall):
        bars[f"recall@{cutoff}"] = [np.nan if v is None else v for v in recall]
    if any(v is not None for v in minor):
        bars[f"minor-interest recall@{cutoff}"] = [np.nan if v is None else v for v in minor]
    if not bars:
        return None
    fig, ax = _figure(width=max(6.0, 1.2 * len(names) + 2))
    width = 0.8 / len(bars)
    for i, (label, values) in enumerate(bars.items()):
        x = np.arange(len(names)) + (i - (len(bars) - 1) / 2) * width
        drawn = ax.bar(x, values, width, label=label)
        ax.bar_label(drawn, fmt="%.3f", fontsize="x-small")
    crowded = len(names) > 3
    ax.set_xticks(np.arange(len(names)), names, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    top = np.nanmax([v for values in bars.values() for v in values])
    ax.set_ylim(0, 1.3 * top if top > 0 else 1)  # headroom for the legend and the bar labels
    ax.set(title=f"Test recall@{cutoff} by method", xlabel="run", ylabel=f"recall@{cutoff}")
    ax.legend(fontsize="small", loc="upper left", ncols=len(bars))
    return _save(fig, path)


def write_plots(records: Sequence[RunRecord], out_dir: str | Path, cutoff: int = 20) -> list[Path]:
    """Write every plot the runs have data for into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        plot_validation_curves(records, out / PLOT_FILES["validation"], metric=f"recall@{cutoff}"),
        plot_selection_shares(records, out / PLOT_FILES["selection_shares"]),
        plot_selection_entropy(records, out / PLOT_FILES["selection_entropy"]),
        plot_metric_by_method(records, out / PLOT_FILES["metrics"], cutoff=cutoff),
    ]
    return [p for p in written if p is not None]


def _selection_from_metrics(record: RunRecord) -> dict[str, Any] | None:
    from bamrec.evaluation.diagnostics import selection_over_training

    return selection_over_training(record.metrics) if record.metrics else None


def _figure(width: float = 7.0, height: float = 4.5):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_write(path) as handle:
        fig.savefig(handle, dpi=_DPI, format=path.suffix.lstrip(".") or "png")
    return path
