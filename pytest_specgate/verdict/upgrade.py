"""The upgrade verdict: the candidate against the deployed config, measured side by side in one session.

Why this is the primary upgrade verdict and a stored baseline is not: on a shared machine an
unchanged rerun a minute after its baseline came out 14% slower on decode, and a comparison with a
stored run cannot tell that drift from a regression. Measured in the same session, in ABBA blocks
(candidate, deployed, deployed, candidate, ...) that span every point, each on a fresh load, drift
hits both sides alike, and ``paired.judge_blocks`` fits the block means with a linear drift, so drift
cancels and the spread between loads is part of the interval. Each point's ratio is judged with the
file's ``[thresholds]`` (the same relative changes the baseline comparison uses) at ``AB_ALPHA`` split over
the session's comparisons (Bonferroni), so an unchanged config fails at most ``AB_ALPHA`` of the time per
session.

Pure: it takes measurements and fingerprints and returns plain data; the sampler took the samples,
the session records the verdict, the reports render it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from pytest_specgate.config import Thresholds, Workloads
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.metrics import higher_is_better, where
from pytest_specgate.verdict.budget import Verdict
from pytest_specgate.verdict.intervals import coverage_label
from pytest_specgate.verdict.paired import AB_ALPHA, AB_BLOCKS, AB_LOADS, AB_SAMPLES, abba_schedule, judge_blocks

__all__ = ["AB_LOADS", "AB_SAMPLES", "AGAINST", "UPGRADE_METRICS", "PairedChange", "Upgrade", "judge_upgrade",
           "pair_plan", "pair_points", "pair_schedule", "upgrade_schedule"]

#: what the upgrade verdict judges at every point. Decode is what the field report's regressions were
#: about; wall clock and TTFT on the sweep's short prompt move with decode or are too small to judge
#: apart from it, and are shown in the results table from the same samples.
UPGRADE_METRICS: tuple[str, ...] = ("decode_tps",)


#: the measurement variant of samples taken side by side with the deployed config (``[against]`` in tables)
AGAINST = "against"


def pair_points(wl: Workloads, workload: str, point: int | None, quick: bool,
                collected: list[int] | None = None) -> list[int | None]:
    """The points one set of A/B blocks spans: every sweep point the session gates, so the blocks
    cost the same model loads for one point or ten. ``collected`` are the sweep points of the collected
    tests (``-k out64`` measures 64 only); without them, the sweep (quick: the quick sweep)."""
    if workload != "sweep" or point is None:
        return [point]
    points = collected or (wl.quick_sweep or [max(wl.sweep)] if quick else wl.sweep)
    return [*sorted({*points, point})]


def pair_plan(wl: Workloads, workload: str, point: int | None, quick: bool, collected: list[int] | None = None,
              paired: set[str] | None = None) -> list[tuple[str, int | None]]:
    """Every (workload, point) one set of A/B blocks spans: the requested workload's points (``pair_points``)
    plus those of the other workloads the collected tests pair (``paired``: their ``specgate_workload``
    marks), so a config pair costs 3 model loads per session, not 3 per paired workload."""
    out: list[tuple[str, int | None]] = []
    for name in sorted({workload, *(paired or ())}):
        if name == workload:
            out += [(name, p) for p in pair_points(wl, name, point, quick, collected)]
        elif name == "sweep":
            out += [(name, p) for p in sorted(collected or (wl.quick_sweep or [max(wl.sweep)] if quick else wl.sweep))]
        else:
            out.append((name, None))
    return out


def pair_schedule(n_per_side: int) -> list[tuple[str, int]]:
    """The speedup A/B's ABBA blocks for ``n_per_side`` samples per side (AB with one sample per side)."""
    return abba_schedule(n_per_side, AB_BLOCKS if n_per_side >= AB_BLOCKS // 2 else 2)


def upgrade_schedule(n_per_side: int, loads: int = AB_LOADS) -> list[tuple[str, int]]:
    """The upgrade verdict's blocks: ``loads`` of them (ABBA repeated), every one on a fresh load."""
    return abba_schedule(n_per_side, loads)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PairedChange(_Model):
    """One metric at one point: the candidate's change against the deployed config, paired and ABBA."""

    config: str
    against: str
    workload: str
    point: int | None = None
    metric: str
    #: relative change of the candidate (+5% = 5% higher); None when the pairs left no degrees of freedom
    change: float | None = None
    low: float | None = None
    high: float | None = None
    coverage: float = 0.0
    #: samples per side
    n: int = 0
    #: model loads the samples span (one per block); 0 in results written before blocks had their own loads
    loads: int = 0
    threshold: float
    higher_is_better: bool = True
    #: one-sided error of this comparison (``AB_ALPHA`` over the session's comparisons)
    alpha: float = AB_ALPHA
    candidate_median: float | None = None
    against_median: float | None = None
    verdict: Verdict
    why: str = ""

    @property
    def where(self) -> str:
        return where(self.workload, self.point)

    @property
    def signed_threshold(self) -> float:
        return -self.threshold if self.higher_is_better else self.threshold

    def interval(self) -> str:
        """``-12.3% [-15.0%, -9.1%] (98% CI, N=12 a side on 12 loads)``, or why there is none."""
        size = f"N={self.n} a side on {self.loads} loads" if self.loads else f"N={self.n} pairs"
        if self.change is None or self.low is None or self.high is None:
            return f"no interval ({size})"
        return f"{self.change:+.1%} [{self.low:+.1%}, {self.high:+.1%}] ({coverage_label(self.coverage)}, {size})"

    def describe(self) -> str:
        return (f"{self.metric} at {self.where} vs {self.against}: {self.interval()} "
                f"(threshold {self.signed_threshold:+.0%}): {self.verdict.value.upper()}")


class Upgrade(_Model):
    """The candidate held against the deployed config in one session."""

    config: str
    against: str
    #: the block order actually run: [("A", samples per point), ...], A = candidate
    schedule: list[tuple[str, int]] = Field(default_factory=list)
    #: server starts the schedule cost (one per block), whatever the number of points
    model_loads: int = 0
    changes: list[PairedChange] = Field(default_factory=list)
    #: what differs between the deployed config and the candidate ("flags changed: -t 2 -> -t 1")
    fingerprint: list[str] = Field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.verdict is Verdict.FAIL for c in self.changes)

    def explain(self) -> str:
        if self.fingerprint:
            return "; changed vs " + self.against + ": " + "; ".join(self.fingerprint)
        return f"; binary, GGUF and flags are the same as {self.against}'s"

    def header(self) -> str:
        order = "".join(side for side, _ in self.schedule)
        return (f"{self.config} against the deployed {self.against!r}: side by side in {order} blocks across "
                f"{len({c.where for c in self.changes})} point(s), {self.model_loads} model loads")

    def lines(self) -> list[str]:
        out = [self.header()]
        out += [f"{c.config}: {c.describe()}{self.explain() if c.verdict is Verdict.FAIL else ''}"
                for c in self.changes]
        if self.fingerprint and not self.failed:
            out.append(f"{self.config}: changed vs {self.against}: " + "; ".join(self.fingerprint))
        return out


def judge_upgrade(pairs: Sequence[tuple[Measurement, Measurement]], schedule: Sequence[tuple[str, int]],
                  thresholds: Thresholds, *, comparisons: int | None = None,
                  metrics: Sequence[str] = UPGRADE_METRICS) -> list[PairedChange]:
    """Judge (candidate, deployed) measurements taken in ``schedule``'s blocks, pair i with pair i.

    ``comparisons`` is how many such verdicts the session makes (default: one per pair and metric);
    each gets ``AB_ALPHA / comparisons`` so the session's false-FAIL rate stays at ``AB_ALPHA``.
    """
    limits = thresholds.model_dump()
    m = comparisons or max(1, len(pairs) * len(metrics))
    alpha = AB_ALPHA / m
    per_side = {side: sum(c for s, c in schedule if s == side) for side in ("A", "B")}
    out = []
    for cand, ref in pairs:
        for metric in metrics:
            c, r = cand.values(metric), ref.values(metric)
            higher = higher_is_better(metric)
            threshold = float(limits.get(metric, 0.05))
            base = dict(config=cand.config, against=ref.config, workload=cand.workload, point=cand.point,
                        metric=metric, threshold=threshold, higher_is_better=higher, alpha=alpha,
                        loads=len(schedule))
            if (len(c), len(r)) != (per_side["A"], per_side["B"]) or not c:
                out.append(PairedChange(**base, n=min(len(c), len(r)), verdict=Verdict.SKIPPED,  # type: ignore[arg-type]
                                        why=f"{len(c)} candidate and {len(r)} deployed samples do not fill the "
                                            f"schedule's {per_side['A']} and {per_side['B']}"))
                continue
            d = judge_blocks(c, r, schedule, threshold, higher, alpha=alpha)
            finite = not math.isnan(d.change)
            out.append(PairedChange(
                **base, change=d.change if finite else None, low=d.low if finite else None,  # type: ignore[arg-type]
                high=d.high if finite else None, coverage=d.coverage, n=d.n,
                candidate_median=cand.stats(metric).median if cand.stats(metric) else None,  # type: ignore[union-attr]
                against_median=ref.stats(metric).median if ref.stats(metric) else None,  # type: ignore[union-attr]
                verdict=Verdict(d.verdict.value), why=d.why))
    return out

