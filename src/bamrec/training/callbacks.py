"""Per-check callbacks: what the training loop tells the outside world after each validation check.

A callback is any object with ``on_check(check: Check) -> None`` and ``close() -> None``
(:class:`CheckCallback`). The trainer calls every callback of its list, on rank 0 only, after the check
is complete: early stopping updated, best weights and resume state saved, ``metrics.jsonl`` appended.
So a callback sees exactly what the run directory now says, and a failing callback cannot lose a
checkpoint. ``close`` is called once when the loop ends (however it ends).

Built in: :class:`LogCheck` (the ``iter N: loss ..., valid ...`` line of ``train.log``) and the
progress bar (:class:`ProgressBar`). Extra callbacks (a TensorBoard writer, say) are passed to
``train(..., callbacks=[...])`` or added where the trainer builds its list (``_callbacks``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO

from tqdm import tqdm

from bamrec import files


@dataclass(frozen=True)
class Check:
    """One validation check, as the callbacks see it."""

    iteration: int
    elapsed_s: float  # training time so far (validation included)
    loss: float  # mean training loss since the previous check
    valid: dict[str, Any]  # the validation metrics ("recall@10": .., "users": .., "protocol": ..)
    selection_shares: list[float]  # share of training examples that selected each interest
    metric: str  # the early-stopping metric
    improved: bool  # this check is the new best
    best_metric: float
    best_iter: int


class CheckCallback(Protocol):
    def on_check(self, check: Check) -> None: ...

    def close(self) -> None: ...


class Log:
    """Writes to ``train.log`` and, above the progress bar, to stderr."""

    def __init__(self, file: Path | None, echo: bool) -> None:
        self.file = file
        self.echo = echo

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        if self.file is not None:
            files.append_line(self.file, line)  # a whole line or none, even on a full disk
        if self.echo:
            tqdm.write(line, file=sys.stderr)


class LogCheck:
    """The one log line per check."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log

    def on_check(self, check: Check) -> None:
        best = " (best)" if check.improved else f" (best {check.best_metric:.4f} at {check.best_iter})"
        self.log(f"iter {check.iteration}: loss {check.loss:.4f}, valid {format_check_metrics(check)}{best}")

    def close(self) -> None:
        pass


def format_check_metrics(check: Check) -> str:
    """``ndcg@20 0.1234 recall@20 0.2345 recall@50 0.3456``: the early-stopping metric, then recall at every
    computed cutoff (only metrics the check computed)."""
    names = [check.metric] + sorted((k for k in check.valid if k.startswith("recall@") and k != check.metric),
                                    key=lambda k: int(k.split("@")[1]))
    return " ".join(f"{name} {float(check.valid[name]):.4f}" for name in names)


class ProgressBar:
    """The tqdm bar of the loop: iterations, the recent loss and the last check's metric."""

    def __init__(self, total: int, initial: int, enabled: bool, file: TextIO | None = None) -> None:
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="it",
                        dynamic_ncols=True, mininterval=0.5, file=file)
        self.last_loss = ""
        self.last_valid = ""

    def update(self) -> None:
        self.bar.update(1)

    def set_loss(self, loss: float) -> None:
        self.last_loss = f"loss={loss:.4f}"
        self._show(refresh=False)  # the bar redraws on its next update; no extra terminal writes per step

    def on_check(self, check: Check) -> None:
        # Shown now, not at the next loss read-out: else the bar shows the previous check's value
        # until then (and for good when the run ends at a check).
        self.last_valid = f"val {check.metric}={float(check.valid[check.metric]):.4f}"
        self._show(refresh=True)

    def _show(self, refresh: bool) -> None:
        self.bar.set_postfix_str(", ".join(part for part in (self.last_loss, self.last_valid) if part),
                                 refresh=refresh)

    def close(self) -> None:
        self.bar.close()
