"""A warning when the training loss grows by orders of magnitude over its start (``--lr 1000``).

The loop already stops on a non-finite loss; a loss that stays finite but explodes (4e8 where it
started near 7) trains on silently to ``max_iters`` without this. The loop reads the loss at its
first step (the reference) and at each of its usual read-outs; the first read-out above ``FACTOR``
times the reference gives one warning (once per run: a diverging run would otherwise repeat it
every ``LOG_EVERY`` steps). Training goes on: a spike can recover, and early stopping keeps the best
checkpoint either way.
"""

from __future__ import annotations

FACTOR = 100.0  # two orders of magnitude
FLOOR = 1.0  # a reference below 1 counts as 1: from 0.01, a loss of 2 is not yet divergence


class DivergenceWatch:
    """Compares read-out losses with the first one; :meth:`observe` returns the warning, once."""

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self.start: tuple[int, float] | None = None  # (iteration, loss) of the reference read-out
        self.warned = False

    @property
    def needs_reference(self) -> bool:
        return self.start is None

    def observe(self, iteration: int, loss: float) -> str | None:
        """The warning when ``loss`` (finite) is beyond ``FACTOR`` x the reference, the first time."""
        if self.start is None:
            self.start = (iteration, loss)
            return None
        first_iter, first = self.start
        if self.warned or loss <= FACTOR * max(abs(first), FLOOR):
            return None
        self.warned = True
        return (f"warning: the training loss grew from {first:.4g} at iteration {first_iter} to {loss:.4g} at "
                f"iteration {iteration} (more than {FACTOR:g}x its start): training is diverging; "
                f"lower --lr (now {self.lr:g})")
