"""Statistics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bamrec.experiments.stats import paired_bootstrap, paired_over_seeds, summarize


def test_summary_mean_std_and_t_interval():
    s = summarize([0.1, 0.2, 0.3])
    assert s.n == 3 and s.mean == pytest.approx(0.2)
    assert s.std == pytest.approx(0.1)  # sqrt(((-0.1)^2 + 0 + 0.1^2) / 2)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t_{0.975, 2} from a t table
    assert (s.ci_low, s.ci_high) == pytest.approx((0.2 - half, 0.2 + half))


def test_summary_of_one_or_no_value():
    one = summarize([0.25])
    assert one.mean == 0.25 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert summarize([]).n == 0


def test_paired_t_test_and_gain():
    # differences 1, 2, 2: mean 5/3, sd sqrt(1/3), t = (5/3) / (sqrt(1/3) / sqrt(3)) = 5;
    # for 2 degrees of freedom the two-sided p is 1 - |t| / sqrt(t^2 + 2) = 1 - 5 / sqrt(27).
    p = paired_over_seeds([1.0, 2.0, 3.0], [2.0, 4.0, 5.0])
    assert p.n == 3 and p.diff == pytest.approx(5 / 3)
    assert p.relative_gain == pytest.approx(11 / 6 / 1 - 1)  # mean 11/3 over mean 2
    assert p.t_pvalue == pytest.approx(1 - 5 / math.sqrt(27))


def test_wilcoxon_exact():
    # differences 1, 2, 4, -3: W+ = 1 + 2 + 4 = 7 of the 16 equally likely sign patterns; P(W+ <= 3) =
    # 5/16 (sums 0, 1, 2, 3, 1+2), so the two-sided p is 10/16.
    p = paired_over_seeds([0.0, 0.0, 0.0, 3.0], [1.0, 2.0, 4.0, 0.0])
    assert p.wilcoxon_pvalue == pytest.approx(10 / 16)


def test_identical_results_or_one_seed_have_no_p_value():
    p = paired_over_seeds([0.2, 0.3], [0.2, 0.3])
    assert p.diff == 0 and math.isnan(p.t_pvalue) and math.isnan(p.wilcoxon_pvalue)
    one = paired_over_seeds([0.2], [0.25])
    assert one.diff == pytest.approx(0.05) and math.isnan(one.t_pvalue) and math.isnan(one.wilcoxon_pvalue)


def test_bootstrap_on_two_users():
    # Per-user differences 0 and 1: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4.
    b = paired_bootstrap(np.array([1.0, 0.0]), np.array([1.0, 1.0]), resamples=4000, seed=3)
    assert b.diff == 0.5 and b.users == 2
    assert (b.ci_low, b.ci_high) == (0.0, 1.0)
    assert b.pvalue == pytest.approx(2 * 0.25, abs=0.04)  # 2 * P(mean* <= 0)
    assert b.relative_gain == pytest.approx(1.0)  # 1.0 / 0.5 - 1


def test_bootstrap_of_a_constant_difference_is_exact():
    a = np.zeros(50)
    b = paired_bootstrap(a, a + 0.1, resamples=100)
    assert b.ci_low == pytest.approx(0.1) and b.ci_high == pytest.approx(0.1) and b.pvalue == 0.0
