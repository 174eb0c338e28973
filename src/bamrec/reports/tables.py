"""Run directories read for reporting, and the markdown table that compares them.

A run directory (written by the trainer, ``bamrec.rundir.layout``) holds ``config.json``,
``metrics.jsonl``, ``summary.json`` and ``diagnostics.json``. Only ``config.json`` or one of the
others is needed: a run still training has no summary yet, an old run may lack diagnostics, and
the table leaves those cells blank instead of failing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bamrec.errors import RunDirError
from bamrec.evaluation.diagnostics import selection_over_training
from bamrec.rundir.layout import CONFIG_FILE, DIAGNOSTICS_FILE, METRICS_FILE, SUMMARY_FILE

_RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE)
SELECTION_METRIC = "recall@10"  # the default select_metric: the trainer keeps the best checkpoint by it


@dataclass(frozen=True)
class RunRecord:
    """What a report needs from one run directory; missing pieces are empty/None."""

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)  # the "config" section of config.json
    metrics: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl records
    summary: dict[str, Any] | None = None  # summary.json
    diagnostics: dict[str, Any] | None = None  # diagnostics.json
    dataset: dict[str, Any] = field(default_factory=dict)  # the "dataset" section of config.json

    def dataset_name(self) -> str:
        """The dataset folder's name (``ml-1m``), or ``?`` when config.json does not say."""
        path = self.dataset.get("path") or self.config.get("data")
        return Path(str(path)).name if path else "?"

    def option(self, section: str, name: str, default: Any = None) -> Any:
        """A config value such as ``option("train", "selection")``; ``default`` when absent."""
        return (self.config.get(section) or {}).get(name, default)

    def test_metric(self, name: str) -> float | None:
        """A test metric from summary.json (``"recall@20"``), or None."""
        value = ((self.summary or {}).get("test") or {}).get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def minor_recall(self, cutoff: int) -> float | None:
        """Recall on test targets from a minor planted interest, when diagnostics have it at ``cutoff``."""
        diagnostics = self.diagnostics or {}
        planted = diagnostics.get("planted") or {}
        if diagnostics.get("cutoff", cutoff) != cutoff:
            return None
        return (planted.get("recall") or {}).get("minor")

    def selection_balance(self) -> dict[str, Any] | None:
        """Training-time selection balance over the whole run: from diagnostics.json, else metrics.jsonl."""
        selection = (self.diagnostics or {}).get("selection")
        if selection is None and self.metrics:
            selection = selection_over_training(self.metrics)
        return (selection or {}).get("overall")

    def best_iter(self) -> int | None:
        """Best validation iteration: summary.json's, else the best so far in metrics.jsonl."""
        if self.summary and self.summary.get("best_iter") is not None:
            return int(self.summary["best_iter"])
        metric = self.option("train", "select_metric", SELECTION_METRIC)
        scored = [r for r in self.metrics if isinstance((r.get("valid") or {}).get(metric), (int, float))]
        if not scored:
            return None
        return int(max(scored, key=lambda r: r["valid"][metric])["iter"])

    def train_time_s(self) -> float | None:
        """Training time: summary.json's, else the time of the last validation check."""
        if self.summary and self.summary.get("train_time_s") is not None:
            return float(self.summary["train_time_s"])
        return float(self.metrics[-1]["time_s"]) if self.metrics and "time_s" in self.metrics[-1] else None


def is_run_dir(path: Path) -> bool:
    """True when ``path`` holds at least one of the files a training run writes."""
    return path.is_dir() and any((path / name).is_file() for name in _RUN_FILES)


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories named by ``paths``: a run directory itself, or a folder of run directories."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise RunDirError(f"run directory {path} does not exist")
        if is_run_dir(path):
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if is_run_dir(p)) if path.is_dir() else []
        if not children:
            raise RunDirError(
                f"{path} is not a run directory (none of {', '.join(_RUN_FILES)}) and holds none; "
                "pass the directories `bamrec train` wrote"
            )
        found.extend(children)
    return found


def load_run_record(path: str | Path, name: str | None = None) -> RunRecord:
    """Read one run directory; RunDirError when it is not one or a file is unreadable."""
    path = Path(path)
    if not is_run_dir(path):
        raise RunDirError(f"{path} is not a run directory (none of {', '.join(_RUN_FILES)})")
    config_file = _read_json(path / CONFIG_FILE)
    return RunRecord(
        path=path,
        name=name or path.name,
        config=(config_file or {}).get("config") or {},
        dataset=(config_file or {}).get("dataset") or {},
        metrics=_read_jsonl(path / METRICS_FILE),
        summary=_read_json(path / SUMMARY_FILE),
        diagnostics=_read_json(path / DIAGNOSTICS_FILE),
    )


def load_runs(paths: Sequence[str | Path]) -> list[RunRecord]:
    """Records of every run named by ``paths`` (see :func:`find_runs`), with unique display names."""
    runs = find_runs(paths)
    return [load_run_record(path, name) for path, name in zip(runs, _unique_names(runs))]


def comparison_rows(records: Sequence[RunRecord], cutoff: int = 20) -> list[dict[str, str]]:
    """One row of formatted cells per run; blank cells where a run lacks the piece."""
    rows = []
    for record in records:
        balance = record.selection_balance() or {}
        rows.append({
            "run": record.name,
            "model": _model_label(record),
            "selection": _selection_label(record),
            "multi-loss": _yes_no(record.option("train", "multi_loss")),
            f"recall@{cutoff}": _number(record.test_metric(f"recall@{cutoff}")),
            f"ndcg@{cutoff}": _number(record.test_metric(f"ndcg@{cutoff}")),
            f"minor recall@{cutoff}": _number(record.minor_recall(cutoff)),
            "sel. entropy": _number(balance.get("normalized_entropy"), 3),
            "dead": "" if balance.get("dead_interests") is None else str(balance["dead_interests"]),
            "train time": format_duration(record.train_time_s()),
            "best iter": "" if record.best_iter() is None else str(record.best_iter()),
        })
    return rows


def markdown_table(rows: Sequence[dict[str, str]]) -> str:
    """A GitHub markdown table of ``rows`` (names left-aligned, numbers right-aligned)."""
    if not rows:
        return ""
    headers = list(rows[0])
    align = ["---" if h in ("run", "model", "selection", "multi-loss") else "---:" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_escape(row.get(h, "")) for h in headers) + " |")
    return "\n".join(lines)


def dataset_groups(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs by dataset, in order of first appearance. A dataset is its checksum (else its path);
    its label is the folder name, with the checksum's start where two datasets share a name."""
    by_key: dict[str, list[RunRecord]] = {}
    for record in records:
        key = str(record.dataset.get("checksum") or record.dataset.get("path") or record.config.get("data") or "?")
        by_key.setdefault(key, []).append(record)
    names = [group[0].dataset_name() for group in by_key.values()]
    labels: dict[str, list[RunRecord]] = {}
    for (key, group), name in zip(by_key.items(), names):
        label = f"{name} ({key[:8]})" if names.count(name) > 1 else name
        labels[label] = group
    return labels


def report_markdown(records: Sequence[RunRecord], cutoff: int = 20, plots: Sequence[str] = ()) -> str:
    """The whole report: one table per dataset, notes on the columns, warnings, and links to
    ``plots`` (file names)."""
    parts = ["# bamrec report", ""]
    groups = dataset_groups(records)
    for label, group in groups.items():
        users = (group[0].dataset.get("stats") or {}).get("users")
        items = (group[0].dataset.get("stats") or {}).get("items")
        size = f" ({users:,} users, {items:,} items)" if isinstance(users, int) and isinstance(items, int) else ""
        parts += [f"## Dataset {label}{size}", "", markdown_table(comparison_rows(group, cutoff)), ""]
    protocols = sorted({str(r.summary["test"].get("protocol")) for r in records if r.summary and r.summary.get("test")})
    users = sorted({r.summary["test"].get("users") for r in records if r.summary and r.summary.get("test")}, key=str)
    notes = [
        f"- recall@{cutoff}, ndcg@{cutoff}: test split, from summary.json"
        + (f" ({', '.join(protocols)} protocol)" if protocols else "") + ".",
        f"- minor recall@{cutoff}: recall on test targets from one of the user's minor planted interests "
        "(planted-interest data only).",
        "- sel. entropy: entropy of the training-time interest-selection shares divided by log K "
        "(1 = all interests selected equally, 0 = one interest only); dead: interests selected for "
        "under 1% of training targets.",
        "- best iter: validation check with the best early-stopping metric (each run's select_metric, "
        f"default {SELECTION_METRIC}); train time: wall clock of training.",
    ]
    if len(protocols) > 1:
        notes.append(f"- **Warning:** the runs were tested with different protocols ({', '.join(protocols)}); "
                     "their metrics are not comparable.")
    if len(groups) > 1:
        notes.append(f"- The runs use {len(groups)} different datasets: one table each; compare numbers "
                     "within a table only.")
    elif len(users) > 1:
        notes.append("- **Warning:** the runs were tested on different numbers of users "
                     f"({', '.join(map(str, users))}).")
    parts += ["Columns:", "", *notes]
    if plots:
        parts += ["", "## Plots", ""]
        for plot in plots:
            parts += [f"![{Path(plot).stem.replace('_', ' ')}]({plot})", ""]
        parts.pop()
    return "\n".join(parts) + "\n"


def format_duration(seconds: float | None) -> str:
    """``42.3 s``, ``12m 05s`` or ``1h 02m``; blank for None."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _model_label(record: RunRecord) -> str:
    model = record.option("model", "model")
    if model is None:
        return ""
    remi = (record.option("train", "remi_beta", 0) or 0) > 0 or (record.option("train", "remi_lambda", 0) or 0) > 0
    label = f"{model}+REMI" if remi and model != "remi" else str(model)
    k = record.option("model", "num_interests")
    return f"{label} (K={k})" if k is not None and model not in ("single", "sasrec") else label


def _selection_label(record: RunRecord) -> str:
    selection = record.option("train", "selection")
    if selection is None:
        return ""
    temperature = record.option("train", "temperature", 1.0)
    if selection != "hard" and temperature not in (None, 1, 1.0):
        return f"{selection} T={temperature:g}"
    return str(selection)


def _yes_no(value: Any) -> str:
    return "" if value is None else ("yes" if value else "no")


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _escape(cell: str) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Directory names, or paths relative to the runs' common folder where names clash."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath(resolved)) if len(resolved) > 1 else resolved[0].parent
    return [str(p.relative_to(common)) if p != common else p.name for p in resolved]


def _read_json(file: Path) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"cannot read {file}: {exc}; the run may be damaged, train it again") from None
    return value if isinstance(value, dict) else None


def _read_jsonl(file: Path) -> list[dict[str, Any]]:
    if not file.is_file():
        return []
    lines = [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # a run still training may be writing its last line
                break
            raise RunDirError(f"{file}:{number} is not valid JSON; the run may be damaged") from None
    return records
