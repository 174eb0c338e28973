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
        tied = i < len(scores_a) and any(
            abs(s[i] - s[i - 1]) <= atol + rtol * max(abs(s[i]), abs(s[i - 1])) for s in (scores_a, scores_b))
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
