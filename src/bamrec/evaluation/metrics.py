"""Ranking metrics with one target per user: recall (hit rate), nDCG and MRR at cutoffs.

All metrics are functions of the 0-based rank ``r`` of the user's single target among the ranked
items (docs/method.md, "Evaluation"; the definitions used by ComiRec, Cen et al. KDD 2020, and BaM,
Lee et al. BigData 2024, for leave-one-out evaluation):

- ``recall@k = 1 if r < k else 0`` (with one target, recall equals the hit rate);
- ``ndcg@k = 1 / log2(r + 2) if r < k else 0`` (the ideal DCG of a single target is 1);
- ``mrr@k = 1 / (r + 1) if r < k else 0``.

Averages are over the evaluated users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bamrec.config import METRIC_KINDS
from bamrec.errors import ConfigError

METRICS = METRIC_KINDS
DEFAULT_CUTOFFS = (10, 20, 50)


def check_cutoffs(cutoffs: Sequence[int]) -> tuple[int, ...]:
    """``cutoffs`` as a tuple of positive ints; raises ConfigError when empty or not positive."""
    values = tuple(cutoffs)
    if not values or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > 0 for k in values):
        raise ConfigError(f"cutoffs must be positive integers, got {values}")
    return tuple(dict.fromkeys(int(k) for k in values))  # order kept, duplicates dropped


def parse_metric(name: str) -> tuple[str, int]:
    """Split a metric name such as ``"ndcg@20"`` into ``("ndcg", 20)``."""
    kind, sep, cutoff = name.partition("@")
    if kind not in METRICS or not sep or not cutoff.isdigit() or int(cutoff) <= 0:
        raise ConfigError(
            f"unknown metric {name!r}: use <metric>@<k> with metric one of {', '.join(METRICS)}, e.g. ndcg@10"
        )
    return kind, int(cutoff)


def metric_values(ranks: np.ndarray, name: str) -> np.ndarray:
    """Per-user values (float64 ``[U_e]``) of metric ``name`` (``"recall@10"``, ...) from 0-based ranks."""
    kind, k = parse_metric(name)
    ranks = np.asarray(ranks, dtype=np.int64)
    hit = ranks < k
    if kind == "recall":
        return hit.astype(np.float64)
    if kind == "ndcg":
        gain = 1.0 / np.log2(ranks.astype(np.float64) + 2.0)
    else:
        gain = 1.0 / (ranks.astype(np.float64) + 1.0)
    return np.where(hit, gain, 0.0)


def summarize(ranks: np.ndarray, cutoffs: Sequence[int], protocol: str) -> dict[str, float | int | str]:
    """Averages of every metric at every cutoff, in the order ``recall@k, ndcg@k, mrr@k`` per cutoff,
    then ``users`` (how many were evaluated) and ``protocol``."""
    out: dict[str, float | int | str] = {}
    for k in check_cutoffs(cutoffs):
        for kind in METRICS:
            values = metric_values(ranks, f"{kind}@{k}")
            out[f"{kind}@{k}"] = float(values.mean()) if len(values) else float("nan")
    out["users"] = int(len(ranks))
    out["protocol"] = protocol
    return out


@dataclass(frozen=True, eq=False)
class EvalResult:
    """What one evaluation pass produces; metrics are derived from the ranks on demand."""

    ranks: np.ndarray  # int64 [U_e] 0-based rank of each user's target
    target_interest: np.ndarray  # int64 [U_e] argmax_k m_k . e_target (the interest that retrieves it)
    users: np.ndarray  # int64 [U_e] internal user ids (1-based), in view order
    protocol: str  # "standard" or "reference"
    cutoffs: tuple[int, ...] = DEFAULT_CUTOFFS  # cutoffs reported by metrics()

    def __len__(self) -> int:
        return len(self.ranks)

    def metrics(self) -> dict[str, float | int | str]:
        """``{"recall@10": .., "ndcg@10": .., "mrr@10": .., "recall@20": .., ..., "users": U_e, "protocol": ..}``."""
        return summarize(self.ranks, self.cutoffs, self.protocol)

    def per_user(self, metric_name: str) -> np.ndarray:
        """Per-user values (float64 ``[U_e]``, aligned with ``users``) of e.g. ``"ndcg@10"``; any cutoff works."""
        return metric_values(self.ranks, metric_name)
