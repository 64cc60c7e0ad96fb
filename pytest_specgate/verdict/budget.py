"""Budgets judged on the interval of the median: pass, fail, or inconclusive.

A budget is judged against the interval, not the median, which gives three outcomes: pass, fail,
or inconclusive when the interval straddles the limit. Inconclusive means "sample more", and the
adaptive sampler does exactly that until the verdict is decisive or ``max_samples`` is reached.
Pure: no I/O, no pytest.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict

from pytest_specgate.config import Budget
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.stats import Stats
from pytest_specgate.metrics import unit as metric_unit

__all__ = ["BudgetResult", "Verdict", "check_budget", "check_point", "decisive"]


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
    unit = metric_unit(budget.metric)
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


def check_point(m: Measurement, budgets: list[Budget]) -> list[BudgetResult]:
    """Judge ``budgets`` on a measurement's figures (a metric it lacks is SKIPPED, with the reason)."""
    return [
        check_budget(b, m.stats(b.metric), f"{b.metric} not reported by this config").model_copy(
            update={"config": m.config})
        for b in budgets
    ]


def decisive(results: list[BudgetResult]) -> bool:
    return all(r.verdict is not Verdict.INCONCLUSIVE for r in results)
