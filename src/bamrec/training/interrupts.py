"""Ctrl-C (SIGINT) and SIGTERM during training: stop the loop, keep what was saved, say which signal.

Inside :func:`catch_interrupts` both signals raise ``KeyboardInterrupt`` at once (a long step or
validation does not delay them), except inside :meth:`Interrupts.critical`: a signal arriving there is
held until the block ends, so a validation check's writes (best weights, early-stopping state, resume
state, ``metrics.jsonl``) are never left half done and never disagree with each other.

The trainer then finishes the run with its best checkpoint and records ``stopped: "interrupted (SIGTERM)"``;
the CLI exits ``128 + signal`` (130 for SIGINT, 143 for SIGTERM), the shell's convention, so that
``bamrec train ... && next-step`` stops. Off the main thread Python cannot handle signals: nothing
changes there.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Which signal stopped training (``signum``), and the critical-section bookkeeping."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._depth = 0
        self._pending = False

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self._depth:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """Hold signals until the block is done, then act on them."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending:
            self._pending = False
            raise KeyboardInterrupt


@contextlib.contextmanager
def catch_interrupts() -> Iterator[Interrupts]:
    """Install the handlers for the block (restoring the previous ones afterwards)."""
    interrupts = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield interrupts
        return
    previous = {signum: signal.signal(signum, interrupts.handle) for signum in HANDLED}
    try:
        yield interrupts
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
