"""The upgrade verdict: candidate and deployed config measured in one session, judged load by load.

A stored baseline cannot beat machine drift: on a shared 2-core machine an unchanged rerun a minute
later came out 14% slower. Measured side by side, drift hits both configs alike, and the ratio of
sample i of the candidate to sample i of the reference keeps only what differs between them.

Order matters. "Reference first, then candidate", repeated, puts every candidate sample later than
its partner, so a machine slowing down over the session reads as a regression of the candidate.
ABBA blocks (candidate, reference, reference, candidate, ...) put the sides' mean times together.

Loads matter too. Every server start lands on its own memory pages and cores, and on the 2-core
development machine decode differed between fresh loads of one unchanged config by 4.6% (SD of
6-sample means over 10 loads, ``bench/load_spread.py``) where the samples' own noise explains 1.9%. Judging
samples as if they were independent then mistakes one unlucky load for a regression: the old design
(A, BB, A on 3 loads, a sample-level crossover test) false-FAILed an unchanged config 17% of the
time in simulation with that load noise (``bench/simulate.py``). So the unit is the load: every
block of ``upgrade_schedule`` runs on a fresh server, and ``judge_blocks`` fits the blocks' mean log
values with a side effect and a linear drift over the session (ABBA keeps the two apart). The load's
own spread is then part of the residual the interval is built from, whatever its size, with
``blocks - 3`` degrees of freedom. 12 loads (ABBA x 3) is the shipped design: 4 loads leave 1
degree of freedom (a 99% t quantile of 31.8 instead of 2.8), and a true 10% regression then fails
13% of the time instead of 98%.

The verdict, on the log scale with a t interval (two-sided coverage 1 - 2 * alpha):
FAIL when the interval excludes "unchanged" on the bad side (one-sided alpha: an unchanged config
fails at most alpha of the time) AND the estimate is worse than ``threshold`` (a real but small change
does not fail the gate); PASS when the interval rules out a change worse than ``threshold``;
INCONCLUSIVE otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pytest_specgate.verdict.intervals import FloatArray, coverage_label, t_quantile
from pytest_specgate.verdict.sequential import CODES, FAIL, INCONCLUSIVE, PASS, Outcome

CANDIDATE, REFERENCE = "A", "B"

#: the design the seeded simulations validate (``verdict/simulation.py``, CV 5%, -14% drift over the
#: session): 12 samples per side in 12 blocks (ABBA x 3), each block on a fresh load, 98% interval
#: (alpha 1% per side), judged against the shipped 5% decode threshold.
AB_SAMPLES = 12
AB_LOADS = 12
#: the speedup A/B of a speculative config against its ``reference``: ABBA, the middle BB on one load
AB_BLOCKS = 4
AB_ALPHA = 0.01
_ABBA = (CANDIDATE, REFERENCE, REFERENCE, CANDIDATE)


def abba_schedule(n_per_side: int, blocks: int = AB_BLOCKS) -> list[tuple[str, int]]:
    """Block order for one session: [(side, samples per point), ...], "A" = candidate, "B" = reference.

    ``blocks`` counts the blocks of both sides (a multiple of 4 for ABBA ABBA ...; 2 gives AB). Each
    side's ``n_per_side`` samples are split as evenly as possible over its blocks. Each block measures
    every point of the workload before the next block starts, so model loads depend on the block
    order only (``model_loads``), never on the number of points.
    """
    if n_per_side < 1:
        raise ValueError(f"abba_schedule needs n_per_side >= 1, got {n_per_side}. Fix: raise samples.")
    if blocks < 2 or blocks % 2 or (blocks > 2 and blocks % 4):
        raise ValueError(f"abba_schedule needs blocks = 2 or a multiple of 4 (ABBA), got {blocks}. "
                         f"Fix: use 4 (A, B, B, A: 3 model loads).")
    per_side = blocks // 2
    if n_per_side < per_side:
        raise ValueError(f"abba_schedule: {n_per_side} samples cannot fill {per_side} blocks per side. "
                         f"Fix: fewer blocks or more samples.")
    sizes = [n_per_side // per_side + (1 if r < n_per_side % per_side else 0) for r in range(per_side)]
    out: list[tuple[str, int]] = []
    taken = {CANDIDATE: 0, REFERENCE: 0}
    for b in range(blocks):
        side = _ABBA[b % 4]
        out.append((side, sizes[taken[side]]))
        taken[side] += 1
    return out


def model_loads(schedule: Sequence[tuple[str, int]], fresh: bool = False) -> int:
    """Server starts the schedule costs per config pair: one per block when every block runs on a
    ``fresh`` load (the upgrade verdict), else one per change of side (ABBA: 3)."""
    if fresh:
        return len(schedule)
    return sum(1 for i, (side, _) in enumerate(schedule) if i == 0 or schedule[i - 1][0] != side)


def pair_periods(schedule: Sequence[tuple[str, int]]) -> list[int]:
    """For pair i (i-th sample of each side), a label of which blocks it joins.

    Pairs with the same label share the same time offset between their two samples, hence the same
    drift bias; ``judge_paired`` removes each label's own mean before estimating the noise.
    """
    blocks: dict[str, list[int]] = {CANDIDATE: [], REFERENCE: []}
    for b, (side, count) in enumerate(schedule):
        blocks[side] += [b] * count
    if len(blocks[CANDIDATE]) != len(blocks[REFERENCE]):
        raise ValueError("pair_periods needs as many candidate as reference samples")
    labels: dict[tuple[int, int], int] = {}
    return [labels.setdefault(key, len(labels)) for key in zip(blocks[CANDIDATE], blocks[REFERENCE], strict=True)]


@dataclass(frozen=True)
class PairedDecision:
    """Relative change of the candidate vs the reference (+5% = 5% higher), interval and coverage."""

    verdict: Outcome
    change: float
    low: float
    high: float
    coverage: float
    n: int
    why: str

    @property
    def label(self) -> str:
        return coverage_label(self.coverage)


def _bad_limit(threshold: float, higher_is_better: bool) -> float:
    """The threshold on the log-ratio scale, signed so that below it is worse."""
    return math.log(1.0 - threshold) if higher_is_better else -math.log(1.0 + threshold)


def block_means(cand: FloatArray, ref: FloatArray, schedule: Sequence[tuple[str, int]]) -> FloatArray:
    """Mean log value of every block, in schedule order (reps x blocks); a side's samples are in its
    blocks' order, as the sampler took them."""
    c, r = np.atleast_2d(np.log(cand)), np.atleast_2d(np.log(ref))
    want = {side: sum(n for s, n in schedule if s == side) for side in (CANDIDATE, REFERENCE)}
    if (want[CANDIDATE], want[REFERENCE]) != (c.shape[1], r.shape[1]):
        raise ValueError(f"the schedule holds {want[CANDIDATE]} candidate and {want[REFERENCE]} reference samples, "
                         f"got {c.shape[1]} and {r.shape[1]}")
    taken = {CANDIDATE: 0, REFERENCE: 0}
    out = []
    for side, count in schedule:
        x = c if side == CANDIDATE else r
        out.append(x[:, taken[side]:taken[side] + count].mean(axis=1))
        taken[side] += count
    return np.stack(out, axis=1)


def judge_blocks_many(cand: FloatArray, ref: FloatArray, schedule: Sequence[tuple[str, int]], threshold: float,
                      higher_is_better: bool, alpha: float = AB_ALPHA
                      ) -> tuple[npt.NDArray[np.int8], FloatArray, FloatArray, FloatArray]:
    """Vectorised ``judge_blocks`` over rows (reps x samples): (verdict codes, change, low, high).

    Least squares on the block means: y_b = level + effect * [b is the candidate's] + drift * b. The
    residual variance (``blocks - 3`` df) holds the sample noise over the block AND the load's own
    offset, so the interval is as wide as load-to-load differences make it.
    """
    c, r = np.atleast_2d(np.asarray(cand, dtype=float)), np.atleast_2d(np.asarray(ref, dtype=float))
    if np.any(c <= 0) or np.any(r <= 0):
        raise ValueError("paired ratios need positive samples. Fix: judge a metric that cannot be 0 (decode_tps, "
                         "ttft_ms), or compare a share with a budget instead.")
    y = block_means(c, r, schedule)
    blocks = y.shape[1]
    df = blocks - 3
    if df < 1:
        nan = np.full(y.shape[0], np.nan)
        return np.full(y.shape[0], INCONCLUSIVE, np.int8), nan, nan, nan
    t = np.arange(blocks, dtype=float)
    x = np.stack([np.ones(blocks), [1.0 if side == CANDIDATE else 0.0 for side, _ in schedule], t - t.mean()], axis=1)
    xtx_inv = np.linalg.inv(x.T @ x)
    beta = y @ (x @ xtx_inv)  # (reps x 3): each row's least-squares fit
    resid = y - beta @ x.T
    se = np.sqrt((resid**2).sum(axis=1) / df * xtx_inv[1, 1])
    return _codes(beta[:, 1], se, df, threshold, higher_is_better, alpha)


def _codes(est: FloatArray, se: FloatArray, df: int, threshold: float, higher_is_better: bool, alpha: float
           ) -> tuple[npt.NDArray[np.int8], FloatArray, FloatArray, FloatArray]:
    """FAIL / PASS / INCONCLUSIVE from a log-scale estimate, its standard error and the t df."""
    half = t_quantile(1.0 - alpha, df) * se
    low, high = est - half, est + half
    sign = 1.0 if higher_is_better else -1.0
    g_est, g_low, g_high = sign * est, np.minimum(sign * low, sign * high), np.maximum(sign * low, sign * high)
    bad = _bad_limit(threshold, higher_is_better)
    fail = (g_high < 0.0) & (g_est < bad)
    ok = g_low > bad
    codes = np.where(fail, FAIL, np.where(ok, PASS, INCONCLUSIVE)).astype(np.int8)
    return codes, np.expm1(est), np.expm1(low), np.expm1(high)


def judge_paired_many(cand: FloatArray, ref: FloatArray, threshold: float, higher_is_better: bool,
                      alpha: float = AB_ALPHA, periods: Sequence[int] | None = None
                      ) -> tuple[npt.NDArray[np.int8], FloatArray, FloatArray, FloatArray]:
    """Vectorised ``judge_paired`` over rows (reps x pairs): (verdict codes, change, low, high)."""
    c, r = np.atleast_2d(np.asarray(cand, dtype=float)), np.atleast_2d(np.asarray(ref, dtype=float))
    if c.shape != r.shape:
        raise ValueError(f"paired samples need equal counts, got {c.shape[1]} candidate and {r.shape[1]} reference. "
                         f"Fix: take the same number of samples of each side.")
    if np.any(c <= 0) or np.any(r <= 0):
        raise ValueError("paired ratios need positive samples. Fix: judge a metric that cannot be 0 (decode_tps, "
                         "ttft_ms), or compare a share with a budget instead.")
    d = np.log(c / r)
    n = d.shape[1]
    groups = np.asarray(periods if periods is not None else [0] * n)
    if groups.size != n:
        raise ValueError(f"periods has {groups.size} labels for {n} pairs")
    labels = np.unique(groups)
    df = n - labels.size
    if df < 1:
        nan = np.full(d.shape[0], np.nan)
        return np.full(d.shape[0], INCONCLUSIVE, np.int8), nan, nan, nan
    means = np.stack([d[:, groups == g].mean(axis=1) for g in labels], axis=1)
    resid = d - means[:, np.searchsorted(labels, groups)]
    var = (resid**2).sum(axis=1) / df
    counts = np.array([(groups == g).sum() for g in labels])
    se = np.sqrt(var * (1.0 / counts).sum()) / labels.size
    return _codes(means.mean(axis=1), se, df, threshold, higher_is_better, alpha)


def judge_paired(cand: Sequence[float], ref: Sequence[float], threshold: float, higher_is_better: bool,
                 alpha: float = AB_ALPHA, periods: Sequence[int] | None = None) -> PairedDecision:
    """Judge candidate vs reference on pair i = (cand[i], ref[i]); ``threshold`` is relative (0.05 = 5%).

    Valid only when every sample is independent given its period, i.e. fresh loads do not differ; the
    upgrade verdict uses ``judge_blocks``. ``alpha`` is the one-sided error on each side; the interval
    printed has coverage 1 - 2 * alpha. Pass ``periods=pair_periods(schedule)`` for ABBA blocks.
    """
    got = judge_paired_many(np.asarray(cand, dtype=float)[None, :], np.asarray(ref, dtype=float)[None, :],
                            threshold, higher_is_better, alpha, periods)
    return _decision(got, len(cand), threshold, higher_is_better, alpha, f"{len(cand)} pairs")


def judge_blocks(cand: Sequence[float], ref: Sequence[float], schedule: Sequence[tuple[str, int]], threshold: float,
                 higher_is_better: bool, alpha: float = AB_ALPHA) -> PairedDecision:
    """Judge candidate vs reference sampled in ``schedule``'s blocks, each block on a fresh load.

    ``alpha`` is the one-sided error on each side: an unchanged candidate FAILs at most ``alpha`` of
    the time (noise about normal on the log scale, load offsets included); the interval printed has
    coverage 1 - 2 * alpha.
    """
    got = judge_blocks_many(np.asarray(cand, dtype=float)[None, :], np.asarray(ref, dtype=float)[None, :],
                            schedule, threshold, higher_is_better, alpha)
    return _decision(got, len(cand), threshold, higher_is_better, alpha, f"{len(schedule)} loads")


def _decision(got: tuple[npt.NDArray[np.int8], FloatArray, FloatArray, FloatArray], n: int, threshold: float,
              higher_is_better: bool, alpha: float, units: str) -> PairedDecision:
    codes, change, low, high = got
    verdict = CODES[int(codes[0])]
    coverage = 1.0 - 2.0 * alpha
    if math.isnan(float(change[0])):
        return PairedDecision(verdict, math.nan, math.nan, math.nan, 0.0, n,
                              f"{units} leave no degrees of freedom for the noise: take more")
    ch, lo, hi = float(change[0]), float(low[0]), float(high[0])
    worse = f"{-threshold:+.0%}" if higher_is_better else f"{threshold:+.0%}"
    where = f"change {ch:+.1%}, {coverage_label(coverage)} [{lo:+.1%}, {hi:+.1%}], {n} samples a side, {units}"
    if verdict is Outcome.FAIL:
        why = f"{where}: worse than unchanged, and the estimate is past the {worse} threshold"
    elif verdict is Outcome.PASS:
        why = f"{where}: rules out a change past the {worse} threshold"
    else:
        why = f"{where}: cannot rule out a change past {worse}, nor show one: more loads would decide it"
    return PairedDecision(verdict, ch, lo, hi, coverage, n, why)
