"""Budget verdicts whose false-alarm rate holds although the sampler looks more than once.

The old sampler took 5 samples, judged, and while undecided added ONE sample and judged again, up
to ``max_samples``. Every extra look is another chance for noise to cross the limit, so a verdict
meant to err 2.5% of the time erred more often (simulated: 2.7% -> 4.3%). Here the looks are
planned: the sampler judges only at the sample counts in ``Plan.looks`` (default: ``samples`` and
``max_samples``), and each look gets ``alpha / len(looks)`` per side (a Bonferroni split of the
error budget). The union bound then caps the chance of a false FAIL over all looks at ``alpha``
whatever the correlation between looks, with no tables to calibrate. Between looks a verdict is
CONTINUE; an interval that cannot reach the look's coverage (too few samples) is INCONCLUSIVE,
never decisive.

The statistic is the t interval of the mean of log values (see ``intervals``): at CV 5% it reaches
95% power at 10% past the limit with 5-10 samples, where the distribution-free order-statistic
interval of the median cannot make a 2.5% one-sided statement below N=6 and needs N=10 for that
power. ``stat="median"`` keeps the distribution-free choice for whoever prefers it; the seeded
simulations (``simulation``) compare both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from pytest_specgate.verdict.intervals import (
    FloatArray,
    coverage_label,
    log_t_bounds,
    median_bound_rank,
    median_bounds,
    median_coverage,
)

Kind = Literal["min", "max"]
Stat = Literal["t", "median"]


class Outcome(StrEnum):
    """A verdict; the values match the gate's existing ``Verdict`` strings, plus ``continue``."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    CONTINUE = "continue"


#: integer codes for the vectorised simulations
CODES = (Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE, Outcome.CONTINUE)
PASS, FAIL, INCONCLUSIVE, CONTINUE = range(4)


@dataclass(frozen=True)
class Plan:
    """Where the sampler may judge, and the error budget it spends there.

    ``alpha`` is the one-sided error allowed on each side over the whole plan: a false FAIL at the
    limit, and likewise a false PASS. ``confidence`` 0.95 in a config is ``alpha`` 0.025.
    """

    n_min: int
    n_max: int
    alpha: float = 0.025
    looks: tuple[int, ...] = ()
    stat: Stat = "t"
    _looks: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.n_min <= self.n_max:
            raise ValueError(f"Plan needs 1 <= n_min <= n_max, got n_min={self.n_min}, n_max={self.n_max}. "
                             f"Fix: set samples <= max_samples.")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"Plan alpha must be in (0, 0.5), got {self.alpha}. Fix: confidence 0.95 is alpha 0.025.")
        looks = tuple(sorted(set(self.looks or (self.n_min, self.n_max))))
        if looks[0] < self.n_min or looks[-1] != self.n_max:
            raise ValueError(f"Plan looks {looks} must lie in [{self.n_min}, {self.n_max}] and end at n_max. "
                             f"Fix: list sample counts between samples and max_samples, the last = max_samples.")
        object.__setattr__(self, "_looks", looks)

    @classmethod
    def fixed(cls, n: int, alpha: float = 0.025, stat: Stat = "t") -> Plan:
        """One look at N: the classical fixed design."""
        return cls(n, n, alpha, (n,), stat)

    @classmethod
    def from_confidence(cls, samples: int, max_samples: int, confidence: float = 0.95, quick: bool = False,
                        quick_samples: int = 3, stat: Stat = "t") -> Plan:
        """The plan for a config's ``workloads`` table: quick mode is one look at ``quick_samples``,
        at the same confidence (fewer samples give a wider interval, never a weaker claim)."""
        alpha = round((1.0 - confidence) / 2.0, 12)
        if quick:
            return cls.fixed(quick_samples, alpha, stat)
        return cls(samples, max(samples, max_samples), alpha, stat=stat)

    @property
    def planned_looks(self) -> tuple[int, ...]:
        return self._looks

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / len(self._looks)

    @property
    def look_coverage(self) -> float:
        """Two-sided coverage of each look's interval: at least the plan's 1 - 2 * alpha."""
        return 1.0 - 2.0 * self.alpha_per_look

    def look_for(self, n: int) -> int | None:
        """The last planned look that ``n`` samples reach (None before the first)."""
        reached = [k for k in self._looks if k <= n]
        return reached[-1] if reached else None

    def next_look(self, n: int) -> int | None:
        later = [k for k in self._looks if k > n]
        return later[0] if later else None

    def describe(self) -> str:
        how = "t interval of log values" if self.stat == "t" else "order-statistic interval of the median"
        return (f"looks at N={', '.join(map(str, self._looks))}, {self.alpha:.2%} per side over all looks "
                f"({self.alpha_per_look:.2%} each, Bonferroni), {how}")


@dataclass(frozen=True)
class Decision:
    """A budget verdict: the interval it rests on, its real two-sided coverage, N used, and why."""

    verdict: Outcome
    low: float
    high: float
    coverage: float
    n: int
    why: str
    estimate: float = math.nan

    @property
    def label(self) -> str:
        return coverage_label(self.coverage)

    @property
    def decisive(self) -> bool:
        return self.verdict in (Outcome.PASS, Outcome.FAIL)


def _bounds(x: FloatArray, alpha: float, stat: Stat) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    if x.shape[1] < 2:
        return None
    return log_t_bounds(x, alpha) if stat == "t" else median_bounds(x, alpha)


def _codes(low: FloatArray, high: FloatArray, limit: float, kind: Kind) -> npt.NDArray[np.int8]:
    good = low >= limit if kind == "min" else high <= limit
    bad = high < limit if kind == "min" else low > limit
    return np.where(good, PASS, np.where(bad, FAIL, INCONCLUSIVE)).astype(np.int8)


def decide_many(samples: FloatArray, limit: float, kind: Kind, plan: Plan) -> tuple[npt.NDArray[np.int8],
                                                                                       npt.NDArray[np.int64]]:
    """Vectorised ``decide`` over rows of ``samples`` (reps x n_max): (verdict codes, N used).

    Each row stops at the first look whose interval is decisive; rows undecided at the last look are
    INCONCLUSIVE. This is the code path the gate runs, one row at a time, and the one the
    simulations measure.
    """
    x = np.atleast_2d(np.asarray(samples, dtype=float))
    verdict = np.full(x.shape[0], CONTINUE, dtype=np.int8)
    used = np.zeros(x.shape[0], dtype=np.int64)
    for look in plan.planned_looks:
        if look > x.shape[1]:
            break
        open_rows = verdict == CONTINUE
        b = _bounds(x[:, :look], plan.alpha_per_look, plan.stat)
        codes = _codes(b[1], b[2], limit, kind) if b is not None else np.full(x.shape[0], INCONCLUSIVE, np.int8)
        decided = open_rows & (codes != INCONCLUSIVE)
        verdict[decided] = codes[decided]
        used[open_rows] = look
    if x.shape[1] >= plan.n_max:
        verdict[verdict == CONTINUE] = INCONCLUSIVE
    return verdict, used


def decide(values: Sequence[float], limit: float, kind: Kind, plan: Plan) -> Decision:
    """Judge a ``min`` (value >= limit) or ``max`` (value <= limit) budget at the planned looks.

    Takes all samples so far. Samples beyond the last look reached are not judged yet (CONTINUE
    names the next look), so calling this after every sample spends no extra error. A look that
    is already decisive stays so: the verdict is the first decisive look's.
    """
    if kind not in ("min", "max"):
        raise ValueError(f"budget kind must be 'min' or 'max', got {kind!r}")
    vals = [float(v) for v in values]
    n = len(vals)
    look = plan.look_for(n)
    if look is None:
        return Decision(Outcome.CONTINUE, math.nan, math.nan, 0.0, n,
                        f"{n} of {plan.planned_looks[0]} samples before the first look")
    x = np.asarray(vals[:look], dtype=float)[None, :]
    earlier = [k for k in plan.planned_looks if k < look]
    for k in earlier:  # a decisive earlier look is final: the sampler would have stopped there
        d = _decision_at(x[:, :k], k, limit, kind, plan, last=False)
        if d.decisive:
            return d
    return _decision_at(x, look, limit, kind, plan, last=look == plan.n_max)


def _decision_at(x: FloatArray, look: int, limit: float, kind: Kind, plan: Plan, last: bool) -> Decision:
    op = ">=" if kind == "min" else "<="
    b = _bounds(x, plan.alpha_per_look, plan.stat)
    if b is None:
        reach = 1.0 - 2.0 * 0.5**look if look >= 2 else 0.0
        why = (f"N={look} cannot reach the {coverage_label(plan.look_coverage)} this plan asks for "
               f"(at most {coverage_label(reach)}): more samples would decide it")
        return Decision(Outcome.INCONCLUSIVE if last else Outcome.CONTINUE, math.nan, math.nan, reach, look, why)
    est, low, high = (float(a[0]) for a in b)
    code = int(_codes(b[1], b[2], limit, kind)[0])
    coverage = plan.look_coverage
    if plan.stat == "median":  # order statistics reach a discrete coverage, at least the asked one
        coverage = median_coverage(look, median_bound_rank(look, plan.alpha_per_look) or 1)
    where = f"{coverage_label(coverage)} [{low:.4g}, {high:.4g}] at N={look}"
    if code == PASS:
        why = f"{where} lies within {op} {limit:g}"
    elif code == FAIL:
        why = f"{where} lies entirely beyond {op} {limit:g}"
    else:
        nxt = plan.next_look(look)
        why = f"{where} straddles {limit:g}" + (f": next look at N={nxt}" if nxt and not last else
                                                 ": more samples or a quieter machine would decide it")
        code = INCONCLUSIVE if last else CONTINUE
    return Decision(CODES[code], low, high, coverage, look, why, est)
