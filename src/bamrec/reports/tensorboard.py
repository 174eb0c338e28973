"""Training curves in TensorBoard (the optional ``tensorboard`` extra).

``metrics.jsonl`` stays the source of truth: ``TensorBoardLogger`` is a per-check training callback
(``bamrec.training.callbacks``) writing what each check appends to it as scalars, live; and
``export_metrics`` replays a run's whole ``metrics.jsonl``, so any run can be viewed at any time after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bamrec.errors import ConfigError


class TensorBoardLogger:
    """Writes validation checks as scalars: a training callback (``on_check``) or fed with
    ``metrics.jsonl`` records (``write``)."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch imports tensorboard lazily here
            raise ConfigError("--tensorboard needs the tensorboard package: pip install 'bamrec[tensorboard]'") from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_check(self, check) -> None:
        """A ``bamrec.training.callbacks.Check``, as the trainer calls it after each validation check."""
        self.write({"iter": check.iteration, "loss": check.loss, "valid": check.valid,
                    "selection_shares": check.selection_shares, "time_s": check.elapsed_s})
        self.writer.flush()

    def write(self, record: dict[str, Any]) -> None:
        """One ``metrics.jsonl`` record (``{"iter", "loss", "valid": {...}, "selection_shares": [...]}``)."""
        step = int(record["iter"])
        if isinstance(record.get("loss"), (int, float)):
            self.writer.add_scalar("train/loss", record["loss"], step)
        for name, value in (record.get("valid") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "@" in name:
                self.writer.add_scalar(f"valid/{name}", value, step)
        for slot, share in enumerate(record.get("selection_shares") or ()):
            self.writer.add_scalar(f"selection/share_{slot}", share, step)
        if isinstance(record.get("time_s"), (int, float)):
            self.writer.add_scalar("train/time_s", record["time_s"], step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def clear_events(log_dir: str | Path) -> None:
    """Remove earlier event files (a run started afresh must not show its old curves)."""
    log_dir = Path(log_dir)
    if log_dir.is_dir():
        for old in log_dir.glob("events.out.tfevents.*"):
            old.unlink()


def export_metrics(run_dir: str | Path, log_dir: str | Path) -> Path:
    """Write every validation check of ``run_dir/metrics.jsonl`` to TensorBoard events in ``log_dir``.

    Starts ``log_dir`` afresh (a resumed run is replayed whole, never doubled)."""
    from bamrec.rundir import layout as ckpt

    clear_events(log_dir)
    logger = TensorBoardLogger(log_dir)
    try:
        for record in ckpt.read_jsonl(Path(run_dir) / ckpt.METRICS_FILE):
            if "iter" in record:
                logger.write(record)
    finally:
        logger.close()
    return log_dir
