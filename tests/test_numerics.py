"""The shared float comparisons (tests/numerics.py) accept rounding and tie order, and nothing more."""

from __future__ import annotations

import pytest
from numerics import assert_ranking_close, assert_topk_tables_close


def test_ranking_accepts_rounding_and_reordered_ties():
    assert_ranking_close(["a", "b", "c"], [3.0, 2.0, 1.0], ["a", "b", "c"], [3.0 + 1e-7, 2.0, 1.0])
    assert_ranking_close(["a", "b", "c"], [3.0, 2.0, 2.0], ["a", "c", "b"], [3.0, 2.0, 2.0 + 1e-7], truncated=False)
    # A tie at the cut-off may continue past it: another item may hold the last place.
    assert_ranking_close(["a", "b", "c"], [3.0, 2.0, 2.0], ["a", "b", "x"], [3.0, 2.0, 2.0])


@pytest.mark.parametrize("items, scores, extra", [
    (["b", "a", "c"], [3.0, 2.0, 1.0], [0, 0, 0]),       # untied items swapped
    (["a", "b", "c"], [3.0, 2.1, 1.0], [0, 0, 0]),       # a score off by more than rounding
    (["a", "b", "c"], [3.0, 2.0, 1.0], [0, 1, 0]),       # the item's interest differs
    (["a", "b"], [3.0, 2.0], [0, 0]),                    # a line missing
])
def test_ranking_refuses_real_differences(items, scores, extra):
    with pytest.raises(AssertionError):
        assert_ranking_close(items, scores, ["a", "b", "c"], [3.0, 2.0, 1.0], extra_a=extra, extra_b=[0, 0, 0])


def test_tables_compare_users_and_ranks_exactly():
    table = {"user": [1, 1, 2], "rank": [1, 2, 1], "item": [5, 6, 5], "score": [1.0, 0.5, 0.7], "interest": [0, 1, 0]}
    assert_topk_tables_close(table, dict(table, score=[1.0 + 1e-7, 0.5, 0.7]))
    with pytest.raises(AssertionError, match="user 2"):
        assert_topk_tables_close(table, dict(table, item=[5, 6, 9]))
    with pytest.raises(AssertionError):
        assert_topk_tables_close(table, dict(table, user=[1, 2, 2]))


def test_near_tied_targets_finds_rivals_within_rounding_and_zero():
    import numpy as np

    from numerics import assert_rank_metrics_close, assert_ranks_close, near_tied_targets

    table = np.array([[9.0, 9.0], [1.0, 0.0], [0.5, 0.0], [0.5 + 1e-8, 0.0], [1e-9, 0.0]])  # row 0: padding
    interests = np.array([[[1.0, 0.0]]] * 4)  # [U=4, K=1, D=2]: score of item i is table[i, 0]
    tied = near_tied_targets(interests, table, np.array([1, 2, 3, 4]))
    # item 1: no rival (padding is never ranked); 2 and 3 tie; item 4 ties with a window item's 0.
    assert tied.tolist() == [False, True, True, True]
    two = np.array([[[1.0, 0.0], [1.0 + 1e-9, 1e-9]], [[1.0, 0.0], [0.0, 1.0]]])  # [U=2, K=2, D=2]
    assert near_tied_targets(two, table, np.array([1, 1])).tolist() == [True, False]  # interests tie on item 1
    assert_ranks_close([0, 1, 2, 3], [0, 2, 1, 4], tied)
    with pytest.raises(AssertionError, match="users at"):
        assert_ranks_close([0, 1, 2, 3], [1, 1, 2, 3], tied)
    a = {"recall@1": 0.5, "users": 4, "protocol": "standard"}
    assert_rank_metrics_close(a, dict(a, **{"recall@1": 0.75}), tied=1)
    with pytest.raises(AssertionError):
        assert_rank_metrics_close(a, dict(a, **{"recall@1": 0.75}), tied=0)
