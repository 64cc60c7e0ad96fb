"""Seeded simulations of the verdicts' error rates, run through the verdicts' own code.

Each scenario draws many sessions at once (rows of a numpy array) and runs them through the same
vectorised functions the gate calls one row at a time, so the rates printed by ``bench/simulate.py``
and asserted by ``tests/test_simulation.py`` are those of the shipped code, not of a re-derivation.
The pre-issue-8 designs are reproduced here (``legacy_*``) only to show what changed.

Noise model, as in the issue: a sample is ``true * (1 + cv * Z)``, Z standard normal, CV 5%;
session drift multiplies a sample taken at fraction t of the session by ``1 + drift * t``;
run-to-run drift multiplies a whole run by ``1 + run_sd * Z``; every model load of an A/B session
runs ``1 + load_sd * Z`` fast (4.6% measured between fresh loads on the development machine).
``contamination`` adds the shared machine's other habit: a share of samples slowed by a factor, to show how
each statistic copes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from pytest_specgate.verdict.intervals import FloatArray
from pytest_specgate.verdict.paired import (
    AB_ALPHA,
    AB_LOADS,
    CANDIDATE,
    REFERENCE,
    abba_schedule,
    judge_blocks_many,
    judge_paired_many,
    pair_periods,
)
from pytest_specgate.verdict.sequential import FAIL, INCONCLUSIVE, PASS, Kind, Plan, decide_many
from pytest_specgate.verdict.trend import judge_trend_many

SEED = 20261129
Design = Literal["blocks", "abba3", "ref_first"]


@dataclass(frozen=True)
class Rates:
    """Shares of FAIL / PASS / INCONCLUSIVE over ``reps`` simulated verdicts, and the mean N used."""

    fail: float
    passed: float
    inconclusive: float
    mean_n: float
    reps: int

    @classmethod
    def of(cls, codes: npt.NDArray[np.int8], n_used: float | npt.NDArray[np.int64]) -> Rates:
        return cls(float(np.mean(codes == FAIL)), float(np.mean(codes == PASS)),
                   float(np.mean(codes == INCONCLUSIVE)), float(np.mean(n_used)), int(codes.size))


def noise(rng: np.random.Generator, shape: tuple[int, ...], cv: float, contamination: float = 0.0,
          slowdown: float = 0.7) -> FloatArray:
    """Multiplicative sample noise: 1 + cv * Z, and a ``contamination`` share of samples x ``slowdown``."""
    out = 1.0 + cv * rng.standard_normal(shape)
    if contamination:
        out = np.where(rng.random(shape) < contamination, out * slowdown, out)
    return out


# ------------------------------------------------------------------------------------------------
# budgets


def budget_samples(ratio: float, n: int, reps: int, seed: int, cv: float = 0.05,
                   contamination: float = 0.0) -> FloatArray:
    """Samples of a metric whose true median is ``ratio`` x the limit (limit = 1)."""
    return ratio * noise(np.random.default_rng(seed), (reps, n), cv, contamination)


def budget_rates(plan: Plan, ratio: float, kind: Kind = "min", cv: float = 0.05, reps: int = 20000,
                 seed: int = SEED, contamination: float = 0.0) -> Rates:
    """The planned design: a budget at limit 1 whose true value is ``ratio``."""
    x = budget_samples(ratio, plan.n_max, reps, seed, cv, contamination)
    codes, used = decide_many(x, 1.0, kind, plan)
    return Rates.of(codes, used)


def legacy_median_ci(sorted_x: FloatArray, confidence: float) -> tuple[FloatArray, FloatArray]:
    """The pre-issue-8 interval: the narrowest order-statistic pair reaching ``confidence``, or
    [min, max] when none does (then printed as "95%" although N=5 reaches 93.75%)."""
    n = sorted_x.shape[1]
    j, cdf = 1, 0.0
    for cand in range(1, n // 2 + 1):
        cdf += math.comb(n, cand - 1) / 2**n
        if 1 - 2 * cdf < confidence:
            break
        j = cand
    return sorted_x[:, j - 1], sorted_x[:, n - j]


def legacy_budget_rates(n_min: int, n_max: int, ratio: float, confidence: float = 0.95, cv: float = 0.05,
                        reps: int = 20000, seed: int = SEED, contamination: float = 0.0) -> Rates:
    """The pre-issue-8 sampler for a ``min`` budget: judge at ``n_min``, then after EVERY added sample
    up to ``n_max``, stop at the first decisive interval. ``n_min == n_max`` is its fixed-N form."""
    x = budget_samples(ratio, n_max, reps, seed, cv, contamination)
    verdict = np.full(reps, -1, dtype=np.int8)
    used = np.zeros(reps, dtype=np.int64)
    for n in range(n_min, n_max + 1):
        open_rows = verdict < 0
        low, high = legacy_median_ci(np.sort(x[:, :n], axis=1), confidence)
        codes = np.where(low >= 1.0, PASS, np.where(high < 1.0, FAIL, INCONCLUSIVE))
        decided = open_rows & (codes != INCONCLUSIVE)
        verdict[decided] = codes[decided]
        used[open_rows] = n
    verdict[verdict < 0] = INCONCLUSIVE
    return Rates.of(verdict, used)


# ------------------------------------------------------------------------------------------------
# upgrade A/B in one session


def session_schedule(n_per_side: int, design: Design, loads: int = AB_LOADS) -> list[tuple[str, int]]:
    """The shipped blocks (ABBA x loads/4), the old ABBA on 3 loads, or the legacy reference-first rounds."""
    if design == "blocks":
        return abba_schedule(n_per_side, loads)
    if design == "abba3":
        return abba_schedule(n_per_side, 4)
    first = (n_per_side + 1) // 2
    return [(REFERENCE, first), (CANDIDATE, first), (REFERENCE, n_per_side - first),
            (CANDIDATE, n_per_side - first)]


def session_samples(schedule: list[tuple[str, int]], fresh: bool, change: float, reps: int, seed: int,
                    cv: float = 0.05, drift: float = -0.14, contamination: float = 0.0, load_sd: float = 0.0
                    ) -> tuple[FloatArray, FloatArray]:
    """(candidate, reference): one point measured in the schedule's order while the machine slows
    linearly by ``drift`` over the session, and every model load runs ``1 + load_sd * Z`` fast (a block
    per load when ``fresh``, else a load per change of side). With several points per block each point's
    samples are spread over the block, which keeps the same offsets as fractions of the session."""
    total = sum(c for _, c in schedule)
    t = (np.arange(total) + 0.5) / total
    sides = np.array([side for side, count in schedule for _ in range(count)])
    load_of_block = np.cumsum([1 if fresh or i == 0 or schedule[i - 1][0] != side else 0
                               for i, (side, _) in enumerate(schedule)]) - 1
    load = np.array([load_of_block[b] for b, (_, count) in enumerate(schedule) for _ in range(count)])
    rng = np.random.default_rng(seed)
    x = (1.0 + drift * t) * noise(rng, (reps, total), cv, contamination)
    x = x * (1.0 + load_sd * rng.standard_normal((reps, int(load_of_block[-1]) + 1)))[:, load]
    return x[:, sides == CANDIDATE] * (1.0 + change), x[:, sides == REFERENCE]


def ab_rates(n_per_side: int, change: float, design: Design = "blocks", loads: int = AB_LOADS,
             threshold: float = 0.05, alpha: float = AB_ALPHA, cv: float = 0.05, drift: float = -0.14,
             load_sd: float = 0.0, reps: int = 20000, seed: int = SEED, contamination: float = 0.0) -> Rates:
    """Upgrade verdict on a higher-is-better metric (decode_tps) whose true change is ``change``.

    ``blocks``: the shipped design, every block on a fresh load, judged on block means
    (``judge_blocks_many``). ``abba3``: the design before it, A, BB, A on 3 loads, a sample-level
    crossover test. ``ref_first``: the legacy order with a plain paired t.
    """
    schedule = session_schedule(n_per_side, design, loads)
    cand, ref = session_samples(schedule, design == "blocks", change, reps, seed, cv, drift, contamination, load_sd)
    if design == "blocks":
        codes, *_ = judge_blocks_many(cand, ref, schedule, threshold, True, alpha)
    else:
        periods = pair_periods(schedule) if design == "abba3" else None
        codes, *_ = judge_paired_many(cand, ref, threshold, True, alpha, periods)
    return Rates.of(codes, n_per_side)


# ------------------------------------------------------------------------------------------------
# stored baselines


def run_medians(runs: int, n: int, change: float, reps: int, rng: np.random.Generator, cv: float,
                run_sd: float) -> tuple[FloatArray, FloatArray]:
    """(medians reps x runs, samples reps x runs x n) of runs that each drift by ``1 + run_sd * Z``."""
    offset = 1.0 + run_sd * rng.standard_normal((reps, runs, 1))
    samples = (1.0 + change) * offset * noise(rng, (reps, runs, n), cv)
    return np.median(samples, axis=2), samples


def trend_rates(k: int, n: int, change: float, threshold: float = 0.05, alpha: float = 0.005, cv: float = 0.05,
                run_sd: float = 0.07, reps: int = 20000, seed: int = SEED) -> Rates:
    """The new run (true ``change``) against the last ``k`` stored runs of the unchanged config."""
    rng = np.random.default_rng(seed)
    history, _ = run_medians(k, n, 0.0, reps, rng, cv, run_sd)
    new, _ = run_medians(1, n, change, reps, rng, cv, run_sd)
    codes, *_ = judge_trend_many(history, new[:, 0], threshold, True, alpha)
    return Rates.of(codes, n)


def legacy_baseline_rates(n: int, change: float, threshold: float = 0.05, confidence: float = 0.95,
                          cv: float = 0.05, run_sd: float = 0.07, reps: int = 4000, resamples: int = 1000,
                          seed: int = SEED) -> Rates:
    """The pre-issue-8 stored-baseline comparison: a bootstrap interval of median(new)/median(old) - 1
    from the two runs' samples, FAIL when it lies entirely past -threshold. Blind to run-to-run drift."""
    rng = np.random.default_rng(seed)
    _, old = run_medians(1, n, 0.0, reps, rng, cv, run_sd)
    _, new = run_medians(1, n, change, reps, rng, cv, run_sd)
    boot = rng.integers(0, n, size=(2, reps, resamples, n))
    om = np.median(np.take_along_axis(old[:, 0, None, :], boot[0], axis=2), axis=2)
    nm = np.median(np.take_along_axis(new[:, 0, None, :], boot[1], axis=2), axis=2)
    a = (1.0 - confidence) / 2
    low, high = np.quantile(nm / om - 1.0, [a, 1 - a], axis=1)
    codes = np.where(high < -threshold, FAIL, np.where(low > -threshold, PASS, INCONCLUSIVE)).astype(np.int8)
    return Rates.of(codes, n)
