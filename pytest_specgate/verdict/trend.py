"""Stored baselines as a trend: is this run out of line with the last K runs of the same config?

Two runs of one config on a shared machine differ by more than their samples suggest: the machine's
speed moves between runs (an unchanged rerun came out 14% slower a minute later). Comparing a run
with ONE stored run on within-run noise alone calls that drift a regression. The spread of the last
K stored medians measures the run-to-run variance directly, drift included, so the new run's median
is judged against a prediction band for "one more run like those": if run offsets were normal on
the log scale, an unchanged config would land below the band ``alpha`` of the time exactly, whatever
the size of the drift. Simulated with offsets normal on the raw scale (sd 7%, a heavier low tail on
the log scale) alpha 1% gives 1.0-1.35% for K = 3-8, so the default is 0.5% (0.5-0.7%). PASS needs
the same band on the other side, so a run whose true change is at the threshold passes at most
alpha of the time. With fewer than 3 stored runs the spread is not known and the answer is "cannot
tell"; with run-to-run drift of 7% it is "cannot tell" most of the time, which is the truth: the
side-by-side A/B (``paired``) is the upgrade verdict, this is for trends across runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

import numpy as np
import numpy.typing as npt

from pytest_specgate.verdict.intervals import FloatArray, coverage_label, t_quantile
from pytest_specgate.verdict.sequential import CODES, FAIL, INCONCLUSIVE, PASS, Outcome

#: fewest stored runs whose spread says anything (2 runs give 1 degree of freedom: a 99% bound x32)
MIN_RUNS = 3


@dataclass(frozen=True)
class TrendDecision:
    """FAIL = regression, PASS = in line with the history, INCONCLUSIVE = cannot tell; ``bound`` is the
    relative change below which a run is out of line (the history's prediction band)."""

    verdict: Outcome
    change: float
    bound: float
    coverage: float
    k: int
    why: str

    @property
    def label(self) -> str:
        return coverage_label(self.coverage)


def judge_trend_many(history: FloatArray, new_medians: FloatArray, threshold: float, higher_is_better: bool,
                     alpha: float = 0.005) -> tuple[npt.NDArray[np.int8], FloatArray, FloatArray]:
    """Vectorised ``judge_trend`` on rows: history (reps x K medians), new_medians (reps,).

    Returns (codes, change of the new median vs the history's geometric mean, the prediction bound
    as a relative change on the bad side).
    """
    h = np.atleast_2d(np.asarray(history, dtype=float))
    new = np.asarray(new_medians, dtype=float).reshape(h.shape[0])
    k = h.shape[1]
    if k < MIN_RUNS:
        nan = np.full(h.shape[0], np.nan)
        return np.full(h.shape[0], INCONCLUSIVE, np.int8), nan, nan
    if np.any(h <= 0) or np.any(new <= 0):
        raise ValueError("trend comparison needs positive medians. Fix: compare throughputs or latencies.")
    logs = np.log(h)
    centre = logs.mean(axis=1)
    spread = logs.std(axis=1, ddof=1) * math.sqrt(1.0 + 1.0 / k)
    sign = 1.0 if higher_is_better else -1.0
    g = sign * (np.log(new) - centre)  # below 0 is worse
    g_bound = -t_quantile(1.0 - alpha, k - 1) * spread
    bad = math.log(1.0 - threshold) if higher_is_better else -math.log(1.0 + threshold)
    fail = (g < g_bound) & (g < bad)
    ok = g + g_bound > bad  # the same band the other way: a run AT the threshold passes <= alpha of the time
    codes = np.where(fail, FAIL, np.where(ok, PASS, INCONCLUSIVE)).astype(np.int8)
    return codes, np.expm1(sign * g), np.expm1(sign * g_bound)


def judge_trend(history_medians: Sequence[float], new_samples: Sequence[float], threshold: float,
                higher_is_better: bool, alpha: float = 0.005) -> TrendDecision:
    """Judge the new run's median against the last K stored medians of the same config and metric.

    FAIL (regression): below the one-sided (1 - alpha) prediction bound of the history AND past
    ``threshold``. PASS (in line): short of ``threshold`` by more than that band, so a run whose true
    change is at the threshold passes at most ``alpha`` of the time (no silent pass). INCONCLUSIVE
    (cannot tell): everything between, and always with fewer than 3 stored runs. The new median must
    come from as many samples as the stored ones, or the band is not exact.
    """
    if not new_samples:
        raise ValueError("judge_trend needs the new run's samples. Fix: measure before comparing.")
    k = len(history_medians)
    codes, change, bound = judge_trend_many(np.asarray(history_medians, dtype=float)[None, :] if k else
                                            np.zeros((1, 0)), np.asarray([median(new_samples)]),
                                            threshold, higher_is_better, alpha)
    verdict = CODES[int(codes[0])]
    coverage = 1.0 - alpha
    if k < MIN_RUNS:
        return TrendDecision(verdict, math.nan, math.nan, 0.0, k,
                             f"cannot tell: {k} stored run(s), the run-to-run spread needs at least {MIN_RUNS}")
    ch, b = float(change[0]), float(bound[0])
    worse = f"{-threshold:+.0%}" if higher_is_better else f"{threshold:+.0%}"
    where = f"{ch:+.1%} vs the last {k} runs (one-sided {coverage_label(coverage)[:-3]} prediction bound {b:+.1%})"
    if verdict is Outcome.FAIL:
        why = f"regression: {where}, past the {worse} threshold"
    elif verdict is Outcome.PASS:
        why = f"in line: {where}: short of the {worse} threshold by more than run-to-run variance"
    else:
        why = (f"cannot tell: {where}: run-to-run variance is too large to rule a {worse} change in or out; "
               f"compare side by side (--specgate-against)")
    return TrendDecision(verdict, ch, b, coverage, k, why)
