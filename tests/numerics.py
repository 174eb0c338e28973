"""Comparing floating-point results computed at different shapes, thread counts, devices or processes.

A matrix product of another shape (a different batch or chunk size), another number of threads or
another CPU (AVX2 against AVX-512) sums in another order, so its float32 results differ in the last
bits. Tests compare such results with a tolerance; ranked lists compare their items exactly except
where two neighbouring scores are tied within that tolerance, since rounding may order those either
way. Bit-equality is for one computation repeated at the same shapes on one machine (resume,
determinism) and the tests that rely on it say so. docs/testing.md states the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# float32 sums of a few hundred terms reordered: well below 1e-5 relative.
RTOL = 1e-5
ATOL = 1e-6


def _tie_groups(scores_a: np.ndarray, scores_b: np.ndarray, rtol: float, atol: float) -> list[range]:
    """Runs of consecutive positions whose scores are tied within tolerance in either list."""
    groups, start = [], 0
    for i in range(1, len(scores_a) + 1):
        tied = i < len(scores_a) and any(  # -inf marks a missing line (shortfall): tied with nothing
            np.isfinite(s[i]) and np.isfinite(s[i - 1])
            and abs(s[i] - s[i - 1]) <= atol + rtol * max(abs(s[i]), abs(s[i - 1])) for s in (scores_a, scores_b))
        if not tied:
            groups.append(range(start, i))
            start = i
    return groups


def assert_ranking_close(items_a: Sequence[Any], scores_a: Sequence[float], items_b: Sequence[Any],
                         scores_b: Sequence[float], *, extra_a: Sequence[Any] | None = None,
                         extra_b: Sequence[Any] | None = None, truncated: bool = True,
                         rtol: float = RTOL, atol: float = ATOL) -> None:
    """Two top-k lists (best first) agree: same length, scores within tolerance position by position,
    items exactly where the score is not tied, the same set of items within each run of tied scores.

    ``extra_a``/``extra_b`` are per-position values that belong to the item (its interest, ...): equal
    where the item is untied. ``truncated``: the lists are the top of a longer ranking, so a tie that
    reaches the last position may continue past it and its items are not compared.
    """
    assert len(items_a) == len(items_b), f"{len(items_a)} items against {len(items_b)}"
    sa, sb = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    np.testing.assert_allclose(sa, sb, rtol=rtol, atol=atol)
    for group in _tie_groups(sa, sb, rtol, atol):
        got, want = [items_a[i] for i in group], [items_b[i] for i in group]
        if len(group) == 1:
            assert got == want, f"position {group.start}: item {got[0]!r} against {want[0]!r}"
            if extra_a is not None and extra_b is not None:
                assert extra_a[group.start] == extra_b[group.start], f"position {group.start}"
        elif not (truncated and group.stop == len(sa)):
            assert sorted(map(repr, got)) == sorted(map(repr, want)), f"tied positions {group}: {got} against {want}"


def assert_topk_tables_close(table_a: Mapping[str, list], table_b: Mapping[str, list], *,
                             rtol: float = RTOL, atol: float = ATOL) -> None:
    """Two top-k tables in the long format of ``recommend --all-users`` (user, rank, item, score,
    interest; by user then rank) agree: users and ranks exactly, each user's ranking as above."""
    assert set(table_a) == set(table_b)
    assert table_a["user"] == table_b["user"] and table_a["rank"] == table_b["rank"]
    users = table_a["user"]
    bounds = [0] + [i for i in range(1, len(users)) if users[i] != users[i - 1]] + [len(users)]
    for lo, hi in zip(bounds, bounds[1:]):
        def column(table: Mapping[str, list], name: str) -> list:
            return table[name][lo:hi]
        try:
            assert_ranking_close(column(table_a, "item"), column(table_a, "score"), column(table_b, "item"),
                                 column(table_b, "score"), extra_a=column(table_a, "interest"),
                                 extra_b=column(table_b, "interest"), rtol=rtol, atol=atol)
        except AssertionError as error:
            raise AssertionError(f"user {users[lo]!r}: {error}") from None


def near_tied_targets(interests: np.ndarray, item_table: np.ndarray, targets: np.ndarray, *,
                      rtol: float = RTOL, atol: float = ATOL) -> np.ndarray:
    """bool ``[U]``: users whose target's score (max over interests) is within tolerance of another
    item's score or of 0 (what the reference protocol gives window items), so that rounding at another
    shape may put the target on either side of it; or whose two best interests score the target within
    tolerance of each other, so that either may be the one that retrieves it.
    ``interests`` [U, K, D], ``item_table`` [N + 1, D]."""
    by_interest = np.einsum("ukd,nd->ukn", np.asarray(interests, np.float64), np.asarray(item_table, np.float64))
    users = np.arange(len(targets))
    interest_tie = np.zeros(len(targets), dtype=bool)
    if by_interest.shape[1] > 1:
        best_two = -np.sort(-by_interest[users, :, targets], axis=1)[:, :2]  # [U, 2]
        interest_tie = np.abs(best_two[:, 0] - best_two[:, 1]) <= atol + rtol * np.abs(best_two).max(1)
    scores = by_interest.max(1)  # [U, N + 1]
    target = scores[users, targets]  # [U]
    rival = np.ones(scores.shape, dtype=bool)
    rival[users, targets] = False  # not a rival of itself
    rival[:, 0] = False  # padding row 0 is never ranked...
    scores[:, 0] = 0.0  # ...but a window item scored 0 (reference protocol) is
    scale = np.maximum(np.abs(scores), np.abs(target)[:, None])
    close = np.abs(scores - target[:, None]) <= atol + rtol * scale  # [U, N + 1]
    return (close & rival).any(1) | close[:, 0] | interest_tie


def assert_ranks_close(ranks_a: np.ndarray, ranks_b: np.ndarray, tied: np.ndarray) -> None:
    """Per-user ranks equal wherever the target is not tied (``near_tied_targets``)."""
    ranks_a, ranks_b = np.asarray(ranks_a), np.asarray(ranks_b)
    assert ranks_a.shape == ranks_b.shape
    differ = np.flatnonzero((ranks_a != ranks_b) & ~tied)
    assert len(differ) == 0, f"users at {differ.tolist()}: ranks {ranks_a[differ].tolist()} against {ranks_b[differ].tolist()}"


def assert_rank_metrics_close(metrics_a: Mapping[str, Any], metrics_b: Mapping[str, Any], tied: int) -> None:
    """Metric dicts (recall/ndcg/mrr@K, users, protocol) of the same users ranked at other shapes: equal
    up to the ``tied`` users whose rank rounding may change, each of whom moves a mean by at most
    1 / users (a user's recall, nDCG and MRR lie in [0, 1]); other entries exactly."""
    assert metrics_a.keys() == metrics_b.keys()
    users = metrics_a["users"]
    for key, value in metrics_a.items():
        if isinstance(value, float):
            assert abs(value - metrics_b[key]) <= tied / users + 1e-12, (key, value, metrics_b[key], tied)
        else:
            assert value == metrics_b[key], key


def run_tied_targets(run: Any, split: str = "test", data: Any = None) -> np.ndarray:
    """``near_tied_targets`` of a run's users on ``split`` (standard protocol windows), in view order."""
    from bamrec.data.split import LeaveOneOut

    dataset = run.dataset(data)
    view = LeaveOneOut(dataset).view(split)
    interests = run.interests([dataset.items[s:e] for s, e in zip(view.history_start, view.history_end)])
    return near_tied_targets(interests.numpy(), run.model.item_embeddings().detach().numpy(), view.targets)
