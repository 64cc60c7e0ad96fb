"""Statistics of a point's samples: the median and a distribution-free interval of it.

The field report's first lesson is that one sample misleads by 1.5x to 4x. So every figure here
is a distribution: median, p10/p90, min/max and a distribution-free confidence interval of the
median (binomial order statistics: no normality assumption, honest at N=5). Also the two pieces of
arithmetic suites share: paired ratios and the wall-clock crossover of two configs.
"""

from __future__ import annotations

import math
from statistics import median as _median

from pydantic import BaseModel, ConfigDict

__all__ = ["Stats", "crossover_point", "crossovers", "median_ci", "paired_ratios", "summarize"]


class Stats(BaseModel):
    """Summary of one metric's samples. ``ci_*`` bound the median with the coverage ``coverage``.

    ``confidence`` is what the config asked for; ``coverage`` is what N samples reached: the
    order-statistic interval has an exact coverage fixed by N (75% at N=3, 93.75% at N=5), so a
    report prints ``coverage`` (``verdict.intervals.coverage_label``), never ``confidence``.
    """

    model_config = ConfigDict(extra="forbid")

    n: int
    median: float
    p10: float
    p90: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    confidence: float
    values: list[float]
    #: the exact coverage of [ci_low, ci_high] (0 for one value); older stored runs lack it
    coverage: float = 0.0

    def spread(self) -> str:
        return f"p10-p90 {self.p10:.4g}-{self.p90:.4g}"


def _quantile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), written out to avoid a numpy dependency here."""
    pos = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def median_ci(sorted_vals: list[float], confidence: float) -> tuple[float, float, float]:
    """Order-statistic interval for the median: (low, high, achieved coverage).

    For n samples, the interval [x_(j), x_(n-j+1)] covers the median with probability
    1 - 2 * P(Binomial(n, 1/2) < j). We take the narrowest j that still reaches ``confidence``;
    when even [min, max] falls short (n <= 5 at 95%), we return [min, max] with its real coverage
    so callers can say so instead of pretending.
    """
    n = len(sorted_vals)
    if n == 1:
        return sorted_vals[0], sorted_vals[0], 0.0
    best = (sorted_vals[0], sorted_vals[-1], 1 - 2 * 0.5**n)
    cdf = 0.0
    for j in range(1, n // 2 + 1):
        cdf += math.comb(n, j - 1) * 0.5**n  # P(B <= j-1)
        coverage = 1 - 2 * cdf
        if coverage < confidence:
            break
        best = (sorted_vals[j - 1], sorted_vals[n - j], coverage)
    return best


def summarize(values: list[float], confidence: float = 0.95) -> Stats:
    vals = sorted(float(v) for v in values)
    if not vals:
        raise ValueError("no values to summarize")
    lo, hi, coverage = median_ci(vals, confidence)
    return Stats(
        n=len(vals), median=_median(vals), p10=_quantile(vals, 0.1), p90=_quantile(vals, 0.9),
        min=vals[0], max=vals[-1], ci_low=lo, ci_high=hi, confidence=confidence, values=vals, coverage=coverage,
    )


def paired_ratios(num: list[float], den: list[float]) -> list[float]:
    """Sample i of one series over sample i of another: the noise of both stays in the spread,
    which a ratio of two medians would hide."""
    return [a / b for a, b in zip(num, den) if a and b]


def crossover_point(config: str, ref: str, t_c: float, d_c: float, t_r: float, d_r: float) -> tuple[float | None, str]:
    """Where wall(N) = TTFT + N / decode of the two configs cross, and which side wins where.

    Two lines cross at most once: N* = (TTFT_c - TTFT_r) / (1/d_r - 1/d_c). Which side of N* the config
    wins depends on the signs: a faster decoder with a prefill tax wins above N* (the field report's MTP,
    ~900 tokens); a slower decoder with faster prefill wins only below N*.
    """
    tax, gain = t_c - t_r, 1 / d_r - 1 / d_c  # extra seconds before the first token; seconds saved per token
    if gain > 0 and tax > 0:
        n = tax / gain
        return n, f"{config} is faster above ~{n:.0f} output tokens, {ref} below"
    if gain < 0 and tax < 0:
        n = tax / gain
        return n, f"{config} is faster below ~{n:.0f} output tokens, {ref} above"
    if gain == 0 and tax == 0:
        return None, f"{config} and {ref} take the same wall clock"
    if gain >= 0 and tax <= 0:
        return None, f"{config} is faster at every output length"
    return None, f"{config} is never faster than {ref} (no faster prefill, no faster decode)"


def crossovers(ttft_c: list[float], decode_c: list[float], ttft_r: list[float],
               decode_r: list[float]) -> list[float | None]:
    """The crossover of sample i of each series: the output length from which the config is faster on wall
    clock (0 when it is faster at every length), or None when it is not faster at long outputs at all.

    One figure per sample, so that a budget on it is judged on an interval with the coverage it has,
    like every other figure, instead of on one number computed from medians. TTFT in seconds.
    """
    out: list[float | None] = []
    for t_c, d_c, t_r, d_r in zip(ttft_c, decode_c, ttft_r, decode_r):
        if not (d_c > 0 and d_r > 0):
            out.append(None)
            continue
        tax, gain = t_c - t_r, 1 / d_r - 1 / d_c
        if gain >= 0 and tax <= 0:
            out.append(0.0)
        elif gain > 0:
            out.append(tax / gain)
        else:
            out.append(None)
    return out
