"""Budgets judged at the sampler's planned looks: pass, fail, or inconclusive, with the coverage reached.

A budget is judged against an interval, not the median, which gives three outcomes: pass, fail,
or inconclusive when the interval straddles the limit. The interval is the error-controlled
sequential design of :mod:`verdict.sequential`: judged only at the planned looks (``samples``, then
``max_samples``), a t interval of log values at ``alpha / looks`` per side, so the chance of a false
FAIL over all looks stays at or below ``(1 - confidence) / 2``. Every verdict carries the coverage it
really had; a verdict is never decisive at a coverage below the config's ``confidence`` (too few
samples give INCONCLUSIVE, never a smaller claim dressed as 95%). Deterministic figures (memory
readings, temperature-0 comparisons: ``metrics.Metric.exact``) are judged value by value.

Also here: which budgets of a config a run left unjudged, and why. Pure: no I/O, no pytest.
"""

from __future__ import annotations

import math
from enum import Enum

from pydantic import BaseModel, ConfigDict

from pytest_specgate.config import Budget
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.stats import Stats, summarize
from pytest_specgate.metrics import METRICS, where
from pytest_specgate.metrics import unit as metric_unit
from pytest_specgate.verdict.intervals import coverage_label
from pytest_specgate.verdict.sequential import Decision, Outcome, Plan, decide

__all__ = ["BudgetResult", "NoBudget", "Unjudged", "Verdict", "check_budget", "check_point", "decisive",
           "find_unjudged", "plan_for"]


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"


class BudgetResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget: Budget
    verdict: Verdict
    config: str = ""
    stats: Stats | None = None
    message: str
    #: the interval the verdict rests on and its real two-sided coverage (None: skipped, or an exact figure)
    low: float | None = None
    high: float | None = None
    coverage: float | None = None
    #: samples the verdict used (the planned look reached), and why it came out so, in one clause
    n: int | None = None
    why: str = ""

    @property
    def coverage_label(self) -> str:
        """"97.5% CI", "75% CI"; "exact" for a deterministic figure; "" when skipped."""
        if self.coverage is not None:
            return coverage_label(self.coverage)
        return "exact" if self.stats is not None else ""


class Unjudged(BaseModel):
    """A budget of the selected config that this run did not judge, and why (a silent pass otherwise)."""

    model_config = ConfigDict(extra="forbid")

    config: str
    budget: Budget
    reason: str

    @property
    def message(self) -> str:
        return f"{self.config}: {self.budget.describe()}: UNJUDGED ({self.reason})"


class NoBudget(BaseModel):
    """A point a test measured and checked with no budget on any of its metrics: "measured, no budget".

    Such a test passes in pytest because nothing could fail it; reports show it as measured, and the
    gate never counts it as a pass.
    """

    model_config = ConfigDict(extra="forbid")

    config: str
    workload: str
    point: int | None = None
    variant: str = ""
    metrics: list[str]

    @property
    def message(self) -> str:
        return (f"{self.config}: {', '.join(self.metrics)} at {where(self.workload, self.point, self.variant)}: "
                f"measured, no budget (nothing could fail it)")


def plan_for(m: Measurement, n: int) -> Plan:
    """The plan a measurement was sampled under: its looks, or one look at the N it has (derived figures)."""
    alpha = round((1.0 - m.confidence) / 2.0, 12)
    looks = sorted(set(m.looks))
    if not looks:
        return Plan.fixed(max(n, 1), alpha)
    return Plan(looks[0], looks[-1], alpha, tuple(looks))


def _exact(budget: Budget, stats: Stats) -> tuple[Verdict, str]:
    worst = min(stats.values) if budget.min is not None else max(stats.values)
    ok = worst >= budget.limit if budget.min is not None else worst <= budget.limit
    what = "value" if stats.n == 1 else f"worst of {stats.n} values"
    return (Verdict.PASS if ok else Verdict.FAIL), f"a deterministic figure: {what} {worst:.4g} judged as read"


def _decided(budget: Budget, values: list[float], plan: Plan) -> tuple[Verdict, Decision]:
    d = decide(values, budget.limit, "min" if budget.min is not None else "max", plan)
    if d.verdict is Outcome.CONTINUE:  # fewer samples than the first planned look: say so, never decide
        reason = f"N={d.n}, fewer samples than the {plan.planned_looks[0]} planned: too few samples to judge"
        return Verdict.INCONCLUSIVE, Decision(Outcome.INCONCLUSIVE, math.nan, math.nan, 0.0, d.n, reason)
    return Verdict(d.verdict.value), d


def check_budget(budget: Budget, stats: Stats | None, reason: str = "", *, values: list[float] | None = None,
                 plan: Plan | None = None) -> BudgetResult:
    """Judge a budget: at the planned looks of ``plan`` on ``values`` in the order taken (default: one look
    at all of ``stats``' values, at ``stats.confidence``)."""
    if stats is None:
        msg = f"{budget.describe()}: skipped ({reason or 'not measured'})"
        return BudgetResult(budget=budget, verdict=Verdict.SKIPPED, message=msg)
    unit = metric_unit(budget.metric)
    samples = ", ".join(f"{v:.4g}" for v in stats.values)
    head = f"median {stats.median:.4g}{' ' + unit if unit else ''}"
    metric = METRICS.get(budget.metric)
    low = high = coverage = None
    if metric is not None and metric.exact:
        verdict, why = _exact(budget, stats)
        n = stats.n
        interval = why
    else:
        plan = plan or Plan.fixed(stats.n, round((1.0 - stats.confidence) / 2.0, 12))
        verdict, d = _decided(budget, list(values if values is not None else stats.values), plan)
        n, why = d.n, d.why
        if math.isnan(d.low):
            interval = f"no interval ({why})"
        else:
            low, high, coverage = d.low, d.high, d.coverage
            if metric is not None and metric.bounds is not None:  # a share's interval stays within 0..1
                low, high = max(low, metric.bounds[0]), min(high, metric.bounds[1])
            scale = "log mean" if all(v > 0 for v in stats.values) else "mean"
            interval = f"{d.label} [{low:.4g}, {high:.4g}] (t interval of the {scale}) at N={d.n}"
    msg = f"{budget.describe()}: {verdict.value.upper()}: {head}, {interval}, samples [{samples}]"
    if verdict is Verdict.INCONCLUSIVE and low is not None:
        msg += " (the interval straddles the budget: more samples or a quieter machine would decide it)"
    if budget.note:
        msg += f". Note: {budget.note}"
    return BudgetResult(budget=budget, verdict=verdict, stats=stats, message=msg, low=low, high=high,
                        coverage=coverage, n=n, why=why)


def check_point(m: Measurement, budgets: list[Budget]) -> list[BudgetResult]:
    """Judge ``budgets`` on a measurement's figures at its planned looks (a metric it lacks is SKIPPED)."""
    out = []
    for b in budgets:
        values = m.values(b.metric)
        stats = summarize(values, m.confidence) if values else None
        r = check_budget(b, stats, f"{b.metric} not reported by this config", values=values,
                         plan=plan_for(m, len(values)))
        out.append(r.model_copy(update={"config": m.config}))
    return out


def decisive(results: list[BudgetResult]) -> bool:
    return all(r.verdict is not Verdict.INCONCLUSIVE for r in results)


def find_unjudged(config: str, budgets: list[Budget], verdicts: list[BudgetResult], not_run: str) -> list[Unjudged]:
    """The budgets of ``config`` without a PASS or FAIL in ``verdicts``, each with why.

    ``not_run`` is the reason for a budget no test judged at all (the session knows whether tests
    were deselected, skipped or not collected).
    """
    out = []
    for b in budgets:
        mine = [r for r in verdicts if r.config == config and r.budget == b]
        if any(r.verdict in (Verdict.PASS, Verdict.FAIL) for r in mine):
            continue
        inconclusive = [r for r in mine if r.verdict is Verdict.INCONCLUSIVE]
        skipped = [r for r in mine if r.verdict is Verdict.SKIPPED]
        if inconclusive:
            reason = f"inconclusive: {inconclusive[-1].why or 'the interval straddles the budget'}"
        elif skipped:
            reason = skipped[-1].message.split(": skipped (", 1)[-1].rstrip(")")
            reason = f"skipped: {reason}"
        else:
            reason = not_run
        out.append(Unjudged(config=config, budget=b, reason=reason))
    return out
