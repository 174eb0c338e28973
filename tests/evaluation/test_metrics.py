"""Metric formulas on hand-computed ranks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bamrec.errors import ConfigError
from bamrec.evaluation.metrics import EvalResult, check_cutoffs, metric_values, parse_metric, summarize

RANKS = np.array([1, 0, 2, 3, 3], dtype=np.int64)


def test_per_user_values_match_formulas():
    np.testing.assert_array_equal(metric_values(RANKS, "recall@3"), [1, 1, 1, 0, 0])
    np.testing.assert_allclose(metric_values(RANKS, "ndcg@3"), [1 / math.log2(3), 1.0, 0.5, 0, 0])
    np.testing.assert_allclose(metric_values(RANKS, "mrr@3"), [0.5, 1.0, 1 / 3, 0, 0])
    expected = [1 / math.log2(3), 1.0, 0.5, 1 / math.log2(5), 1 / math.log2(5)]
    np.testing.assert_allclose(metric_values(RANKS, "ndcg@4"), expected)


def test_summary_keys_order_and_values():
    out = summarize(RANKS, (1, 3), "standard")
    assert list(out) == ["recall@1", "ndcg@1", "mrr@1", "recall@3", "ndcg@3", "mrr@3", "users", "protocol"]
    assert out["recall@1"] == pytest.approx(0.2)
    assert out["ndcg@1"] == pytest.approx(0.2)
    assert out["mrr@1"] == pytest.approx(0.2)
    assert out["recall@3"] == pytest.approx(0.6)
    assert out["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 + 0.5) / 5)
    assert out["mrr@3"] == pytest.approx((0.5 + 1 + 1 / 3) / 5)
    assert out["users"] == 5 and out["protocol"] == "standard"


def test_eval_result_methods():
    result = EvalResult(RANKS, np.zeros(5, np.int64), np.arange(1, 6), "reference", (10, 20, 50))
    metrics = result.metrics()
    assert list(metrics)[:3] == ["recall@10", "ndcg@10", "mrr@10"]
    assert metrics["recall@10"] == 1.0 and metrics["protocol"] == "reference"
    np.testing.assert_allclose(result.per_user("mrr@2"), [0.5, 1.0, 0, 0, 0])
    assert len(result) == 5


@pytest.mark.parametrize("name", ["recall", "hit@10", "ndcg@0", "mrr@x", "auc@5"])
def test_bad_metric_names(name):
    with pytest.raises(ConfigError):
        parse_metric(name)


@pytest.mark.parametrize("cutoffs", [(), (0,), (10, -1), (2.5,), (True,)])
def test_bad_cutoffs(cutoffs):
    with pytest.raises(ConfigError):
        check_cutoffs(cutoffs)


def test_cutoffs_deduplicated_in_order():
    assert check_cutoffs([20, 10, 20]) == (20, 10)
