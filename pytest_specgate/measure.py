"""Samples -> statistics -> verdicts.

The field report's first lesson is that one sample misleads by 1.5x to 4x. So every figure here
is a distribution: median, p10/p90, min/max and a distribution-free confidence interval of the
median (binomial order statistics: no normality assumption, honest at N=5). A budget is judged
against the interval, not the median, which gives three outcomes: pass, fail, or inconclusive
when the interval straddles the limit. Inconclusive means "sample more", and the adaptive
sampler does exactly that until the verdict is decisive or ``max_samples`` is reached.
"""

from __future__ import annotations

import math
from enum import Enum
from statistics import median as _median

from pydantic import BaseModel, ConfigDict, Field

from pytest_specgate.config import Budget
from pytest_specgate.sample import Sample

#: metric -> (unit, higher is better). Keep in step with config.MetricName and the README.
METRICS: dict[str, tuple[str, bool]] = {
    "decode_tps": ("tok/s", True),
    "client_decode_tps": ("tok/s", True),
    "ttft_ms": ("ms", False),
    "prefill_ms": ("ms", False),
    "prompt_tps": ("tok/s", True),
    "wall_ms": ("ms", False),
    "reasoning_share": ("", False),
    "cache_reuse": ("", True),
    "prefix_reuse": ("", True),
    "prefill_speedup": ("x", True),
    "acceptance": ("", True),
    "mean_accepted_run": ("tok", True),
    "speedup": ("x", True),
    "wall_speedup": ("x", True),
    "decode_collapse": ("x", True),
    "crossover_tokens": ("tok", False),
    "exact_match": ("", True),
    "drift_chars": ("chars", False),
    "first_divergence": ("chars", True),
    "vram_peak_mib": ("MiB", False),
    "vram_idle_mib": ("MiB", False),
    "rss_peak_mib": ("MiB", False),
}

#: metrics that only exist on one measurement variant (A/B pairs, the lossless probe)
VARIANT_OF_METRIC = {"speedup": "ab", "wall_speedup": "ab", "exact_match": "lossless", "drift_chars": "lossless",
                     "first_divergence": "lossless"}

#: the per-sample metrics summarised for every measured point
SAMPLE_METRICS = (
    "decode_tps", "client_decode_tps", "ttft_ms", "prefill_ms", "prompt_tps",
    "wall_ms", "reasoning_share", "cache_reuse", "acceptance", "mean_accepted_run",
)


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"


class Stats(BaseModel):
    """Summary of one metric's samples. ``ci_*`` bound the median at ``confidence``."""

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
    lo, hi, _ = median_ci(vals, confidence)
    return Stats(
        n=len(vals), median=_median(vals), p10=_quantile(vals, 0.1), p90=_quantile(vals, 0.9),
        min=vals[0], max=vals[-1], ci_low=lo, ci_high=hi, confidence=confidence, values=vals,
    )


class BudgetResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget: Budget
    verdict: Verdict
    config: str = ""
    stats: Stats | None = None
    message: str


def check_budget(budget: Budget, stats: Stats | None, reason: str = "") -> BudgetResult:
    """Judge a budget on the interval of the median: decisive only when the interval says so."""
    if stats is None:
        msg = f"{budget.describe()}: skipped ({reason or 'not measured'})"
        return BudgetResult(budget=budget, verdict=Verdict.SKIPPED, message=msg)
    limit = budget.limit
    if budget.min is not None:
        good, bad = stats.ci_low >= limit, stats.ci_high < limit
    else:
        good, bad = stats.ci_high <= limit, stats.ci_low > limit
    verdict = Verdict.PASS if good else Verdict.FAIL if bad else Verdict.INCONCLUSIVE
    unit = METRICS.get(budget.metric, ("", True))[0]
    samples = ", ".join(f"{v:.4g}" for v in stats.values)
    msg = (
        f"{budget.describe()}: {verdict.value.upper()}: median {stats.median:.4g}{' ' + unit if unit else ''}, "
        f"{stats.confidence:.0%} interval of the median [{stats.ci_low:.4g}, {stats.ci_high:.4g}], "
        f"N={stats.n}, samples [{samples}]"
    )
    if verdict is Verdict.INCONCLUSIVE:
        msg += " (the interval straddles the budget: more samples or a quieter machine would decide it)"
    if budget.note:
        msg += f". Note: {budget.note}"
    return BudgetResult(budget=budget, verdict=verdict, stats=stats, message=msg)


class Measurement(BaseModel):
    """N samples of one config at one workload point, plus any point-level extra figures."""

    model_config = ConfigDict(extra="forbid")

    config: str
    workload: str
    point: int | None = None
    #: "" for a point's own samples, "ab" for samples taken in A/B alternation with the reference
    variant: str = ""
    samples: list[Sample] = Field(default_factory=list)
    warmups: int = 0
    #: the discarded warm-up requests, kept so harness overhead can be accounted for
    warmup_samples: list[Sample] = Field(default_factory=list)
    extra: dict[str, list[float]] = Field(default_factory=dict)
    confidence: float = 0.95

    def values(self, metric: str) -> list[float]:
        if metric in self.extra:
            return list(self.extra[metric])
        out = []
        for s in self.samples:
            v = s.metric(metric)
            if v is not None:
                out.append(v)
        return out

    def stats(self, metric: str) -> Stats | None:
        vals = self.values(metric)
        return summarize(vals, self.confidence) if vals else None

    def all_stats(self) -> dict[str, Stats]:
        names = list(SAMPLE_METRICS) + [m for m in self.extra if m not in SAMPLE_METRICS]
        return {m: s for m in names if (s := self.stats(m)) is not None}

    def check(self, budgets: list[Budget]) -> list[BudgetResult]:
        return [
            check_budget(b, self.stats(b.metric), f"{b.metric} not reported by this config").model_copy(
                update={"config": self.config})
            for b in budgets
        ]


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


def decisive(results: list[BudgetResult]) -> bool:
    return all(r.verdict is not Verdict.INCONCLUSIVE for r in results)
