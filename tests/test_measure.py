"""Unit tests of the statistics and verdicts, and of the per-sample metric definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_specgate.config import Budget
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.sample import Sample, Timings
from pytest_specgate.measure.stats import median_ci, paired_ratios, summarize
from pytest_specgate.verdict.budget import Verdict, check_budget, check_point, decisive


def sample(**kw) -> Sample:
    timing_keys = set(Timings.model_fields)
    kw.setdefault("predicted_n", 65)  # decode_tps is only defined for more than one token
    timings = Timings(**{k: kw.pop(k) for k in list(kw) if k in timing_keys})
    return Sample(workload=kw.pop("workload", "sweep"), wall_ms=kw.pop("wall_ms", 1000.0), timings=timings, **kw)


def brute_force_ci(n: int, confidence: float) -> tuple[int, float]:
    """Largest j whose interval [x_(j), x_(n-j+1)] covers the median with P >= confidence (j=1,
    i.e. [min, max], when none does), by summing the Binomial(n, 1/2) pmf: the interval covers the
    median iff j <= #(samples below the median) <= n - j."""
    coverage = {j: sum(math.comb(n, k) for k in range(j, n - j + 1)) / 2**n for j in range(1, n // 2 + 1)}
    j = max([j for j, c in coverage.items() if c >= confidence], default=1)
    return j, coverage[j]


def test_median_ci_n10_is_second_and_ninth():
    vals = [float(v) for v in range(10, 110, 10)]
    lo, hi, cov = median_ci(vals, 0.95)
    assert (lo, hi) == (vals[1], vals[8])
    assert cov == pytest.approx(1 - 2 * 11 / 1024)


@pytest.mark.parametrize("n", [6, 7, 8, 9, 10, 11, 15, 20, 30])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_median_ci_matches_brute_force(n, confidence):
    vals = [float(v) for v in range(n)]
    j, cov = brute_force_ci(n, confidence)
    assert median_ci(vals, confidence) == pytest.approx((vals[j - 1], vals[n - j], cov))


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_median_ci_small_n_is_min_max_with_real_coverage(n):
    vals = [float(v) for v in range(n)]
    lo, hi, cov = median_ci(vals, 0.95)
    assert (lo, hi) == (0.0, n - 1.0)
    assert cov == pytest.approx(1 - 2 * 0.5**n) and cov < 0.95


def test_summarize_agrees_with_numpy():
    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 10, 13):
        vals = list(rng.normal(40, 5, n))
        s = summarize(vals)
        assert s.n == n and s.values == sorted(vals)
        assert s.median == pytest.approx(np.median(vals))
        assert s.p10 == pytest.approx(np.percentile(vals, 10))
        assert s.p90 == pytest.approx(np.percentile(vals, 90))
        assert (s.min, s.max) == (min(vals), max(vals))
        assert s.ci_low <= s.median <= s.ci_high
    with pytest.raises(ValueError):
        summarize([])


def stats_of(*vals):
    return summarize(list(vals))  # n=5: interval is [min, max]


FLOOR = Budget(metric="decode_tps", point=2000, min=27)
CEILING = Budget(metric="ttft_ms", workload="latency", max=300, note="p50 latency")


@pytest.mark.parametrize(("budget", "vals", "verdict"), [
    (FLOOR, (28, 29, 30, 31, 32), Verdict.PASS),
    (FLOOR, (27, 29, 30, 31, 32), Verdict.PASS),  # the limit itself satisfies min
    (FLOOR, (20, 21, 22, 23, 26.9), Verdict.FAIL),
    (FLOOR, (25, 26, 28, 29, 30), Verdict.INCONCLUSIVE),
    (CEILING, (250, 260, 270, 280, 300), Verdict.PASS),
    (CEILING, (301, 310, 320, 330, 340), Verdict.FAIL),
    (CEILING, (250, 280, 290, 310, 320), Verdict.INCONCLUSIVE),
])
def test_check_budget_judges_the_interval(budget, vals, verdict):
    r = check_budget(budget, stats_of(*vals))
    assert r.verdict is verdict
    msg = r.message
    assert msg.startswith(budget.describe()) and verdict.value.upper() in msg
    assert f"median {np.median(vals):.4g}" in msg and "95% CI [" in msg and "at N=5" in msg
    assert "samples [" + ", ".join(f"{v:.4g}" for v in sorted(vals)) + "]" in msg
    assert ("straddles" in msg) is (verdict is Verdict.INCONCLUSIVE)
    assert ("Note: p50 latency" in msg) is (budget is CEILING)


def test_check_budget_median_alone_does_not_decide():
    # median 30 clears the floor, but the low end of the interval does not: not a pass
    assert check_budget(FLOOR, stats_of(10, 29, 30, 31, 32)).verdict is Verdict.INCONCLUSIVE


def test_check_budget_skipped():
    r = check_budget(FLOOR, None, "acceptance not reported by this config")
    assert r.verdict is Verdict.SKIPPED and r.stats is None
    assert "skipped (acceptance not reported by this config)" in r.message
    assert "not measured" in check_budget(FLOOR, None).message


def test_sample_metrics():
    s = sample(predicted_n=101, predicted_per_second=42.0, cache_n=300, prompt_n=100, prompt_ms=80.0,
               prompt_per_second=1250.0, ttft_ms=100.0, last_token_ms=2100.0,
               content="abc", reasoning_content="x" * 9)
    assert s.decode_tps == 42.0
    assert s.client_decode_tps == pytest.approx(1000 * 100 / 2000)
    assert s.cache_reuse == pytest.approx(0.75)
    assert s.prefill_ms == 80.0 and s.prompt_tps == 1250.0
    assert s.reasoning_share == pytest.approx(0.75)
    assert s.acceptance is None and s.metric("acceptance") is None
    assert sample(draft_n=10, draft_n_accepted=7).acceptance == pytest.approx(0.7)
    assert sample().reasoning_share == 0.0 and sample().cache_reuse == 0.0
    assert sample(ttft_ms=5.0).client_decode_tps is None  # no last token time
    assert sample(predicted_n=1, ttft_ms=5.0, last_token_ms=5.0).client_decode_tps is None
    assert sample(predicted_n=1, predicted_per_second=0.0).decode_tps is None  # one-token answer: no rate
    assert s.metric("wall_ms") == 1000.0 and s.metric("speedup") is None


def test_measurement_values_and_stats():
    m = Measurement(config="mtp", workload="sweep", point=2000, samples=[
        sample(predicted_per_second=v, draft_n=10 if i else 0, draft_n_accepted=5 + i if i else 0)
        for i, v in enumerate([30.0, 31.0, 29.0, 33.0, 32.0])
    ], extra={"speedup": [1.4, 1.5, 1.6], "decode_tps": [1.0]})
    assert m.values("speedup") == [1.4, 1.5, 1.6]
    assert m.values("decode_tps") == [1.0]  # extra wins over the sample metric of the same name
    assert m.values("acceptance") == pytest.approx([0.6, 0.7, 0.8, 0.9])  # the sample without drafts is left out
    assert m.stats("acceptance").n == 4
    assert m.stats("vram_peak_mib") is None
    assert m.values("wall_ms") == [1000.0] * 5
    all_ = m.all_stats()
    assert "speedup" in all_ and "client_decode_tps" not in all_


def test_measurement_check_names_config_and_skips_missing():
    m = Measurement(config="demo", workload="sweep", point=256,
                    samples=[sample(predicted_per_second=v) for v in (40, 41, 42, 43, 44)])
    res = check_point(m, [Budget(metric="decode_tps", point=256, min=8),
                          Budget(metric="acceptance", point=256, min=0.5)])
    assert [r.verdict for r in res] == [Verdict.PASS, Verdict.SKIPPED]
    assert all(r.config == "demo" for r in res)
    assert "acceptance not reported by this config" in res[1].message


def test_paired_ratios_and_decisive():
    assert paired_ratios([40.0, 45.0, 50.0], [20.0, 30.0, 25.0]) == [2.0, 1.5, 2.0]
    assert paired_ratios([40.0, 45.0], [0.0, 30.0]) == [1.5]  # a zero denominator is dropped, not inf
    pass_, inc = check_budget(FLOOR, stats_of(30, 31, 32, 33, 34)), check_budget(FLOOR, stats_of(1, 30, 31, 32, 33))
    skip = check_budget(FLOOR, None)
    assert decisive([pass_, skip]) and decisive([])
    assert not decisive([pass_, inc])
