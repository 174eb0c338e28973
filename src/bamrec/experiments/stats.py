"""Statistics for comparing configurations over seeds and over users.

- Over seeds: mean, sample standard deviation (``ddof = 1``) and the 95% confidence interval of
  the mean from the t-distribution, ``mean ± t_{0.975, n-1} · s / sqrt(n)``.
- Paired over seeds (cells with the same seed): relative gain of the means, the paired t-test and
  the Wilcoxon signed-rank test (exact for small n: with 3 seeds its smallest two-sided p is 0.25,
  so it can never be significant; the t-test is the informative one there).
- Paired over users within one seed: a bootstrap of the per-user metric difference (users resampled
  with replacement), giving a 95% percentile interval of the mean difference and a two-sided p.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (nan for one value)
    ci_low: float  # 95% t-interval of the mean (nan for one value)
    ci_high: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """Mean, standard deviation and 95% t confidence interval of ``values``."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Paired:
    n: int
    baseline_mean: float
    mean: float
    diff: float  # mean of (value - baseline)
    relative_gain: float  # mean / baseline_mean - 1
    t_pvalue: float  # paired t-test, two-sided (nan for n < 2 or identical differences)
    wilcoxon_pvalue: float  # Wilcoxon signed-rank, two-sided (nan for n < 2 or when every difference is 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_over_seeds(baseline: Sequence[float], values: Sequence[float]) -> Paired:
    """Paired comparison of ``values`` against ``baseline`` (same seeds, same order)."""
    from scipy import stats

    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(values, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    n = len(a)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    d = b - a
    t_p = math.nan
    if n >= 2 and np.ptp(d) > 0:
        t_p = float(stats.ttest_rel(b, a).pvalue)
    elif n >= 2 and d[0] != 0:
        t_p = 0.0  # identical non-zero differences: no spread, the difference is certain
    w_p = math.nan
    if n >= 2 and np.any(d != 0):  # one pair is no test (scipy would say p = 1)
        w_p = float(stats.wilcoxon(b, a, zero_method="wilcox", alternative="two-sided").pvalue)
    base_mean = float(a.mean())
    gain = float(b.mean() / base_mean - 1) if base_mean != 0 else math.nan
    return Paired(n, base_mean, float(b.mean()), float(d.mean()), gain, t_p, w_p)


@dataclass(frozen=True)
class Bootstrap:
    users: int
    resamples: int
    diff: float  # observed mean of (value - baseline) over users
    relative_gain: float
    ci_low: float  # 95% percentile interval of the resampled mean difference
    ci_high: float
    pvalue: float  # two-sided: 2 * min(P(diff* <= 0), P(diff* >= 0)), at most 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(baseline: np.ndarray, values: np.ndarray, resamples: int = 2000, seed: int = 0,
                     chunk: int = 250) -> Bootstrap:
    """Bootstrap over users of the mean per-user difference ``values - baseline`` (aligned arrays)."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(values, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"per-user arrays must be aligned and non-empty, got {a.shape} and {b.shape}")
    d = b - a  # [U]
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    for lo in range(0, resamples, chunk):  # [chunk, U] indices at a time bounds the memory
        hi = min(resamples, lo + chunk)
        means[lo:hi] = d[rng.integers(0, len(d), size=(hi - lo, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    p = min(1.0, 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    base = float(a.mean())
    gain = float(b.mean() / base - 1) if base != 0 else math.nan
    return Bootstrap(len(d), resamples, float(d.mean()), gain, float(low), float(high), p)
