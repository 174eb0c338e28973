"""Early stopping on one validation metric: keep the best check, stop after ``patience`` checks
without improvement (the original BaM code: recall@10, patience 15; docs/method.md).

:class:`EarlyStopping` only decides; the trainer saves the weights when :meth:`EarlyStopping.update`
says the check improved, and stores :meth:`EarlyStopping.state_dict` in the resume state so that a
resumed run keeps its best score and its count of bad checks.

Under DDP only rank 0 validates, so only rank 0's object is updated; the decision reaches the other
ranks through :meth:`bamrec.training.distributed.Communicator.agree_on_stop`.
"""

from __future__ import annotations

import math
from typing import Any


class EarlyStopping:
    """Tracks the best value of ``metric`` (higher is better) over validation checks."""

    def __init__(self, metric: str, patience: int) -> None:
        self.metric = metric
        self.patience = patience
        self.best_metric = -math.inf
        self.best_iter = 0
        self.best_valid: dict[str, Any] | None = None
        self.bad_checks = 0

    def update(self, iteration: int, metrics: dict[str, Any]) -> bool:
        """Record one check; True when it is the new best (strictly better than every earlier one)."""
        if self.metric not in metrics:
            computed = ", ".join(k for k in metrics if "@" in k)
            raise KeyError(f"early-stopping metric {self.metric!r} was not computed (computed: {computed})")
        score = float(metrics[self.metric])
        if score > self.best_metric:
            self.best_metric, self.best_iter, self.best_valid, self.bad_checks = score, iteration, metrics, 0
            return True
        self.bad_checks += 1
        return False

    @property
    def should_stop(self) -> bool:
        """``patience`` checks in a row without improvement."""
        return self.bad_checks >= self.patience

    def describe_best(self) -> str:
        return f"best {self.best_metric:.4f} at {self.best_iter}"

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best_metric": self.best_metric, "best_iter": self.best_iter,
                "best_valid": self.best_valid, "bad_checks": self.bad_checks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved state; ``patience`` stays this object's (it may change on resume)."""
        self.best_metric = float(state["best_metric"])
        self.best_iter = int(state["best_iter"])
        self.best_valid = state["best_valid"]
        self.bad_checks = int(state["bad_checks"])
