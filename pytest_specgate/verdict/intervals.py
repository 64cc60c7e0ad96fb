"""Intervals that say the coverage they really have.

Two kinds of interval sit under every verdict of the gate:

* the order-statistic interval of the median, [x_(j), x_(n-j+1)], which assumes nothing about the
  noise but has a coverage fixed by N alone: 1 - 2 * P(Binomial(N, 1/2) <= j - 1). With j = 1 that is
  50% at N=2, 75% at N=3, 87.5% at N=4 and 93.75% at N=5, so "95%" printed next to a 5-sample
  interval overstated it. ``median_interval`` returns the coverage it reached and never more;
* the t interval of the mean of log values, which reaches any requested coverage from N=2 on, under
  the model the simulations check (multiplicative noise that is about normal on the log scale).

The Student t distribution is written out here (integer degrees of freedom, closed form of
Abramowitz & Stegun 26.7.3/26.7.4) so that the verdict layer needs nothing beyond numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def binom_half_cdf(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) <= k), exactly (n is small: a sample count)."""
    if k < 0:
        return 0.0
    return min(1.0, sum(math.comb(n, i) for i in range(min(k, n) + 1)) / float(2**n))


def median_coverage(n: int, j: int = 1) -> float:
    """Exact coverage of [x_(j), x_(n-j+1)] for the median of any continuous distribution."""
    if n < 2 or not 1 <= j <= n // 2:
        return 0.0
    return 1.0 - 2.0 * binom_half_cdf(n, j - 1)


def median_interval(values: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """(low, high, achieved coverage) of the median, never claiming more than was reached.

    Takes the narrowest order-statistic pair whose coverage still reaches ``confidence``. When even
    [min, max] falls short (N <= 5 at 95%), returns [min, max] with its real coverage, so that the
    caller prints "75% CI" rather than pretending; with one value the coverage is 0.
    """
    vals = sorted(float(v) for v in values)
    if not vals:
        raise ValueError("median_interval needs at least one value. Fix: measure before summarising.")
    n = len(vals)
    best = (vals[0], vals[-1], median_coverage(n, 1))
    for j in range(2, n // 2 + 1):
        coverage = median_coverage(n, j)
        if coverage < confidence:
            break
        best = (vals[j - 1], vals[n - j], coverage)
    return best


def median_bound_rank(n: int, alpha: float) -> int | None:
    """Largest j whose one-sided bound x_(j) (or x_(n-j+1)) errs with probability <= ``alpha``.

    ``None`` when even the extreme value errs more often (P = 0.5**n): then no one-sided statement
    at that level can be made from N samples, and the verdict must say inconclusive.
    """
    best = None
    for j in range(1, n + 1):
        if binom_half_cdf(n, j - 1) > alpha:
            break
        best = j
    return best


def coverage_label(coverage: float) -> str:
    """"75% CI", "87.5% CI", "93.7% CI": rounded DOWN to 0.1%, so the label never claims more."""
    tenths = math.floor(coverage * 1000 + 1e-9)
    text = f"{tenths // 10}" if tenths % 10 == 0 else f"{tenths / 10:.1f}"
    return f"{text}% CI"


def t_cdf(t: float, df: int) -> float:
    """CDF of Student's t with integer ``df`` (closed form, exact to float precision)."""
    if df < 1:
        raise ValueError(f"t distribution needs df >= 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:
        total = 0.0
        if df > 1:
            term = total = c
            for k in range(3, df - 1, 2):
                term *= c * c * (k - 1) / k
                total += term
        inside = 2.0 / math.pi * (theta + s * total)
    else:
        term = total = 1.0
        for k in range(2, df - 1, 2):
            term *= c * c * (k - 1) / k
            total += term
        inside = s * total
    return 0.5 + math.copysign(0.5 * inside, t)


def t_quantile(p: float, df: int) -> float:
    """Inverse of ``t_cdf`` by bisection (monotone, so 200 halvings are exact to float precision)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t quantile needs 0 < p < 1, got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def log_t_bounds(samples: FloatArray, alpha: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Row-wise (estimate, low, high): one-sided ``alpha`` on each side, for every row of ``samples``.

    On the log scale when every value is positive (throughputs and latencies: noise is a percentage,
    and the back-transformed interval is symmetric in relative terms), on the raw scale otherwise
    (a share that can be 0). Rows of equal values give a point interval: nothing varied.
    """
    x = np.atleast_2d(np.asarray(samples, dtype=float))
    n = x.shape[1]
    if n < 2:
        raise ValueError("a t interval needs at least 2 samples")
    logs = bool(np.all(x > 0))
    y = np.log(x) if logs else x
    mean = y.mean(axis=1)
    half = t_quantile(1.0 - alpha, n - 1) * y.std(axis=1, ddof=1) / math.sqrt(n)
    if logs:
        return np.exp(mean), np.exp(mean - half), np.exp(mean + half)
    return mean, mean - half, mean + half


def median_bounds(samples: FloatArray, alpha: float) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """Row-wise (median, low, high) from order statistics at one-sided ``alpha``; None if N cannot."""
    x = np.sort(np.atleast_2d(np.asarray(samples, dtype=float)), axis=1)
    n = x.shape[1]
    j = median_bound_rank(n, alpha)
    if j is None or 2 * j > n + 1:
        return None
    return np.median(x, axis=1), x[:, j - 1], x[:, n - j]
