"""Seeded simulations of the verdicts' error rates (issue 8), with the SHIPPED sampler settings.

Each rate comes from the verdict layer's own vectorised code (``pytest_specgate.verdict``), on
normal noise at CV 5%. The margins are real: every assertion on the new design is also checked to
fail for the design it replaces (the add-one-sample loop, reference-first A/B), so none of these
tests passes whatever the code does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pytest_specgate.config import Thresholds, Workloads, load
from pytest_specgate.metrics import METRICS
from pytest_specgate.verdict.intervals import (
    coverage_label,
    median_coverage,
    median_interval,
    t_cdf,
    t_quantile,
)
from pytest_specgate.verdict.paired import (
    AB_ALPHA,
    AB_LOADS,
    AB_SAMPLES,
    abba_schedule,
    judge_blocks,
    judge_paired,
    model_loads,
    pair_periods,
)
from pytest_specgate.verdict.sequential import (
    CODES,
    Outcome,
    Plan,
    decide,
    decide_many,
)
from pytest_specgate.verdict.simulation import (
    ab_rates,
    budget_rates,
    budget_samples,
    legacy_budget_rates,
    trend_rates,
)
from pytest_specgate.verdict.trend import judge_trend
from pytest_specgate.verdict.upgrade import upgrade_schedule

REPS = 50_000
ROOT = Path(__file__).resolve().parent.parent


def shipped_samplers() -> list[tuple[int, int, int, float]]:
    """(samples, max_samples, quick_samples, confidence) of every shipped config that judges a budget
    through the sampler, plus the defaults a config without a workloads table gets.

    Configs whose budgets are all exact figures (judged value by value, e.g. the CI twins' reasoning
    tokens) never run the sequential design, so their sample counts are not held to its error rates.
    """
    d = Workloads()
    found = {(d.samples, d.max_samples, d.quick_samples, d.confidence)}
    for cfg in load(ROOT / "specgate.toml").configs.values():
        if any(not METRICS[b.metric].exact for b in cfg.budgets):
            wl = cfg.workloads
            found.add((wl.samples, wl.max_samples, wl.quick_samples, wl.confidence))
    return sorted(found)


SAMPLERS = shipped_samplers()


# ------------------------------------------------------------------------------------------------
# honest intervals


@pytest.mark.parametrize(("n", "coverage", "label"), [(2, 0.5, "50% CI"), (3, 0.75, "75% CI"),
                                                       (4, 0.875, "87.5% CI"), (5, 0.9375, "93.7% CI")])
def test_median_interval_reports_its_exact_coverage(n: int, coverage: float, label: str) -> None:
    low, high, got = median_interval(list(range(n)), 0.95)
    assert (low, high) == (0, n - 1)
    assert got == coverage
    assert coverage_label(got) == label


def test_median_coverage_is_what_a_simulation_sees() -> None:
    rng = np.random.default_rng(1)
    for n in (3, 5, 9):
        x = np.sort(rng.standard_normal((40_000, n)), axis=1)
        _, _, claimed = median_interval(list(range(n)), 0.95)
        j = next(j for j in range(1, n // 2 + 1) if median_coverage(n, j) == claimed)
        seen = float(np.mean((x[:, j - 1] <= 0) & (x[:, n - j] >= 0)))
        assert abs(seen - claimed) < 0.01, (n, seen, claimed)


def test_median_interval_never_claims_more_than_it_reaches() -> None:
    for n in range(1, 30):
        for conf in (0.8, 0.9, 0.95, 0.99):
            low, high, cov = median_interval([float(i) for i in range(n)], conf)
            j = int(low) + 1
            assert cov == median_coverage(n, j) and high == n - j
            if n > 1 and median_coverage(n, 1) >= conf:
                assert cov >= conf  # reached: the narrowest pair that still reaches it
    assert coverage_label(0.9999) == "99.9% CI"  # rounded down, never up


def test_t_distribution_matches_published_tables() -> None:
    for p, df, table in [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.99, 8, 2.896),
                         (0.95, 3, 2.353), (0.975, 30, 2.042), (0.995, 11, 3.106)]:
        assert t_quantile(p, df) == pytest.approx(table, abs=1e-3)
        assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# budgets: planned looks


@pytest.mark.parametrize(("samples", "max_samples", "quick", "confidence"), SAMPLERS)
def test_shipped_budget_sampler_holds_its_false_alarm_rate(samples: int, max_samples: int, quick: int,
                                                           confidence: float) -> None:
    plan = Plan.from_confidence(samples, max_samples, confidence)
    alpha = (1 - confidence) / 2
    at_min, at_max = budget_rates(plan, 1.0, "min", reps=REPS), budget_rates(plan, 1.0, "max", reps=REPS)
    assert at_min.fail <= alpha and at_max.fail <= alpha, (plan.describe(), at_min, at_max)
    assert budget_rates(plan, 0.9, "min", reps=REPS).fail >= 0.95
    assert budget_rates(plan, 1.1, "max", reps=REPS).fail >= 0.95
    # PASS errs no more than FAIL does: a budget 10% on the wrong side passes almost never
    assert budget_rates(plan, 0.9, "min", reps=REPS).passed <= alpha


def test_adding_one_sample_and_rejudging_inflated_false_alarms() -> None:
    """The pre-issue-8 loop (judge at 5, then after every added sample up to 9) against the plan."""
    fixed = legacy_budget_rates(5, 5, 1.0, reps=REPS)
    peeking = legacy_budget_rates(5, 9, 1.0, reps=REPS)
    planned = budget_rates(Plan.from_confidence(5, 9), 1.0, reps=REPS)
    assert peeking.fail > fixed.fail + 0.005 and peeking.fail > 0.035  # 3.3% -> 4.4%
    assert planned.fail <= 0.025
    # same noise, same verdict code: the plan's only difference is where it looks and at what level
    assert budget_rates(Plan.from_confidence(5, 9), 0.9, reps=REPS).fail >= 0.99


@pytest.mark.parametrize(("samples", "max_samples", "quick", "confidence"), SAMPLERS)
def test_quick_mode_is_never_decisive_below_the_asked_coverage(samples: int, max_samples: int, quick: int,
                                                               confidence: float) -> None:
    for stat in ("t", "median"):
        plan = Plan.from_confidence(samples, max_samples, confidence, quick=True, quick_samples=quick, stat=stat)
        x = budget_samples(0.8, quick, 300, seed=3)
        decisions = [decide(row, 1.0, "min", plan) for row in x]
        for d in decisions:
            assert d.verdict is not Outcome.CONTINUE
            if d.decisive:
                assert d.coverage >= confidence, d
        if stat == "median" and median_coverage(quick) < confidence:
            assert all(d.verdict is Outcome.INCONCLUSIVE and d.coverage < confidence for d in decisions)
            assert "cannot reach" in decisions[0].why
    # the honest t interval at N=3 still errs no more than asked, and still catches a 20% breach
    plan = Plan.from_confidence(5, 10, quick=True, quick_samples=3)
    assert budget_rates(plan, 1.0, reps=REPS).fail <= 0.025
    assert budget_rates(plan, 0.8, reps=REPS).fail >= 0.95


def test_decide_is_the_simulated_code_path_row_by_row() -> None:
    plan = Plan.from_confidence(5, 10)
    x = budget_samples(0.97, 10, 400, seed=7)
    codes, used = decide_many(x, 1.0, "min", plan)
    for row, code, n in zip(x, codes, used, strict=True):
        d = decide(row, 1.0, "min", plan)
        assert (d.verdict, d.n) == (CODES[code], n)
        if d.decisive:  # samples taken past a decisive look do not change it
            assert decide(list(row) + [0.5] * 3, 1.0, "min", Plan(5, 13)).verdict is not Outcome.CONTINUE


def test_decide_continues_between_looks_only() -> None:
    plan = Plan.from_confidence(5, 10)
    vals = [1.0, 0.97, 1.03, 0.99, 1.02]
    assert decide(vals[:4], 1.0, "min", plan).verdict is Outcome.CONTINUE
    first = decide(vals, 1.0, "min", plan)
    assert first.verdict is Outcome.CONTINUE and "next look at N=10" in first.why
    assert decide([*vals, 1.0], 1.0, "min", plan) == first  # N=6 is no look: same verdict as at 5
    assert decide(vals * 2, 1.0, "min", plan).verdict is Outcome.INCONCLUSIVE
    assert decide([2.0, 2.1, 1.9, 2.0, 2.05], 1.0, "min", plan).verdict is Outcome.PASS
    assert decide([2.0, 2.1, 1.9, 2.0, 2.05], 1.0, "max", plan).verdict is Outcome.FAIL
    assert decide([0.0] * 5, 0.5, "min", plan).verdict is Outcome.FAIL  # a share that is 0: raw scale


def test_bad_plans_say_the_fix() -> None:
    with pytest.raises(ValueError, match="Fix: set samples <= max_samples"):
        Plan(10, 5)
    with pytest.raises(ValueError, match="end at n_max"):
        Plan(5, 10, looks=(5, 8))
    with pytest.raises(ValueError, match="'min' or 'max'"):
        decide([1.0] * 5, 1.0, "above", Plan(5, 5))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# upgrade A/B in one session


def test_abba_schedule_costs_three_loads_or_one_per_fresh_block_whatever_the_points() -> None:
    schedule = abba_schedule(AB_SAMPLES, 4)
    assert schedule == [("A", 6), ("B", 6), ("B", 6), ("A", 6)]
    assert model_loads(schedule) == 3
    assert pair_periods(schedule) == [0] * 6 + [1] * 6
    assert abba_schedule(5, 4) == [("A", 3), ("B", 3), ("B", 2), ("A", 2)]
    assert model_loads(abba_schedule(8, 8)) == 5
    shipped = upgrade_schedule(AB_SAMPLES)
    assert [side for side, _ in shipped] == list("ABBA" * 3) and {c for _, c in shipped} == {2}
    assert model_loads(shipped, fresh=True) == AB_LOADS == 12
    with pytest.raises(ValueError, match="Fix: use 4"):
        abba_schedule(12, 6)


def test_upgrade_verdict_beats_drift_with_the_shipped_threshold() -> None:
    threshold = Thresholds().decode_tps
    unchanged = ab_rates(AB_SAMPLES, 0.0, threshold=threshold, reps=REPS)
    regressed = ab_rates(AB_SAMPLES, -0.10, threshold=threshold, reps=REPS)
    assert unchanged.fail <= 0.01, unchanged
    assert regressed.fail >= 0.95, regressed
    # what ABBA buys: reference-always-first reads the -14% drift as a candidate regression
    ref_first = ab_rates(AB_SAMPLES, 0.0, "ref_first", threshold=threshold, reps=REPS)
    assert ref_first.fail > 10 * max(unchanged.fail, 0.001)


def test_upgrade_verdict_holds_its_false_fail_rate_when_fresh_loads_differ() -> None:
    """Loads of one unchanged config differed by 4.6% on the development machine (bench/load_spread.py).
    Judged per load, that spread widens the interval instead of failing an unchanged config; the old
    design (A, BB, A on 3 loads, samples judged as independent) false-FAILed about one run in six."""
    load_sd = 0.046
    unchanged = ab_rates(AB_SAMPLES, 0.0, load_sd=load_sd, reps=REPS)
    old = ab_rates(AB_SAMPLES, 0.0, "abba3", load_sd=load_sd, reps=REPS)
    assert unchanged.fail <= 0.0125, unchanged  # alpha 1%, within the simulation's own error
    assert old.fail >= 0.10, old
    assert ab_rates(AB_SAMPLES, -0.30, load_sd=load_sd, reps=REPS).fail >= 0.95  # a big drop still fails
    # 4 fresh loads leave the interval 1 degree of freedom: honest, and nearly always INCONCLUSIVE
    assert ab_rates(AB_SAMPLES, -0.10, loads=4, reps=REPS).inconclusive >= 0.8


def test_block_verdict_reads_direction_and_load_offsets() -> None:
    schedule = upgrade_schedule(AB_SAMPLES)
    ref = [100.0, 101.0, 99.0, 100.5, 99.5, 100.0] * 2
    d = judge_blocks([v * 0.85 for v in ref], ref, schedule, 0.05, True, alpha=AB_ALPHA)
    assert d.verdict is Outcome.FAIL and d.change == pytest.approx(-0.15, abs=0.01) and d.label == "98% CI"
    assert "12 loads" in d.why
    assert judge_blocks(ref, ref, schedule, 0.05, True).verdict is Outcome.PASS
    # one slow load of the candidate (-8% on its 2 samples) is not a regression: 12 loads judge it
    lucky = list(ref)
    lucky[0:2] = [v * 0.92 for v in lucky[0:2]]
    assert judge_blocks(lucky, ref, schedule, 0.05, True).verdict is not Outcome.FAIL
    with pytest.raises(ValueError, match="schedule holds 12 candidate"):
        judge_blocks(ref[:10], ref, schedule, 0.05, True)


def test_paired_judgement_reads_direction_and_says_why() -> None:
    ref = [100.0, 101.0, 99.0, 100.5, 99.5, 100.0]
    slow = [v * 0.85 for v in ref]
    d = judge_paired(slow, ref, 0.05, higher_is_better=True, alpha=AB_ALPHA)
    assert d.verdict is Outcome.FAIL and d.change == pytest.approx(-0.15) and d.label == "98% CI"
    assert judge_paired(slow, ref, 0.05, higher_is_better=False).verdict is Outcome.PASS  # lower ttft: good
    assert judge_paired(ref, ref, 0.05, True).verdict is Outcome.PASS
    with pytest.raises(ValueError, match="Fix: take the same number"):
        judge_paired(ref, ref[:5], 0.05, True)


# ------------------------------------------------------------------------------------------------
# stored baselines as a trend


@pytest.mark.parametrize("k", [3, 5, 8])
def test_trend_against_stored_runs_holds_its_false_fail_rate(k: int) -> None:
    threshold = Thresholds().decode_tps
    assert trend_rates(k, 5, 0.0, threshold=threshold, reps=REPS).fail <= 0.01
    assert trend_rates(k, 5, -0.40, threshold=threshold, reps=REPS).fail >= 0.25  # it can fail (K=3: 30%)
    # and it never waves a real regression through: a run AT the threshold passes <= alpha of the time
    assert trend_rates(k, 5, -threshold, threshold=threshold, reps=REPS).passed <= 0.005


def test_trend_with_too_few_runs_cannot_tell() -> None:
    d = judge_trend([100.0, 90.0], [50.0] * 5, 0.05, True)
    assert d.verdict is Outcome.INCONCLUSIVE and "cannot tell" in d.why
    history = [100.0, 100.2, 99.8, 100.1, 99.9]
    assert judge_trend(history, [60.0] * 5, 0.05, True).verdict is Outcome.FAIL
    assert judge_trend(history, [99.5] * 5, 0.05, True).verdict is Outcome.PASS
    assert judge_trend(history, [99.5] * 5, 0.05, False).verdict is Outcome.PASS
    assert judge_trend(history, [140.0] * 5, 0.05, False).verdict is Outcome.FAIL  # latency up 40%
    wide = [100.0, 80.0, 120.0, 90.0, 110.0]
    assert judge_trend(wide, [88.0] * 5, 0.05, True).verdict is Outcome.INCONCLUSIVE
    assert math.isnan(judge_trend([], [1.0], 0.05, True).change)
