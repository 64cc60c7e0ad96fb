"""The verdict at a glance: one banner, the same in the terminal, report.md and report.html.

An operator reads the top of the page, not row 60. So every report opens with the run's verdict
(PASS / FAIL / INCONCLUSIVE), the counts behind it (budgets judged, failed, unjudged; measured with
no budget), then the failures with everything needed to act on them (budget, median, interval with
the coverage it really has, N, and what changed in the fingerprint), then what could not be judged
and why, then the build identity (binary sha256, the server's build_info, GGUF name and sha256).

Rules: FAIL when a budget, the upgrade verdict or the baseline comparison failed; INCONCLUSIVE when
nothing failed but something could not be judged (an unjudged or inconclusive budget, an upgrade
or trend comparison that cannot tell, a config missing from the baseline, or nothing judged at
all); under ``--specgate-strict`` those fail too. PASS only when every judged thing passed and
nothing was left unjudged. Rendered from a stored run only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pytest_specgate.fingerprint import ConfigFingerprint
from pytest_specgate.metrics import unit as metric_unit
from pytest_specgate.store import RunResults
from pytest_specgate.verdict.budget import BudgetResult, Verdict
from pytest_specgate.verdict.intervals import coverage_label

__all__ = ["Banner", "banner", "identity"]

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


@dataclass
class Banner:
    status: str
    #: "3 budgets judged: 1 failed, 2 passed; 1 unjudged; 2 measured, no budget"
    counts: str
    judged: int = 0
    failed: int = 0
    unjudged: int = 0
    no_budget: int = 0
    #: one line per failure, first: budget, median, interval (coverage), N, what changed
    failures: list[str] = field(default_factory=list)
    #: one line per thing that could not be judged, with why
    unjudged_lines: list[str] = field(default_factory=list)
    #: one line per config: binary sha256, build_info, GGUF name and sha256
    identity: list[str] = field(default_factory=list)
    #: the upgrade verdict's header (pair, block order, model loads), when there is one
    upgrade: str = ""

    @property
    def headline(self) -> str:
        return f"specgate {self.status}: {self.counts}"


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _changed(run: RunResults, config: str) -> str:
    """What changed in the fingerprint, from the upgrade verdict or the baseline comparison."""
    if run.upgrade is not None and run.upgrade.config == config and run.upgrade.fingerprint:
        return f"; changed vs {run.upgrade.against}: " + "; ".join(run.upgrade.fingerprint)
    cmp = run.comparison
    if cmp is not None and cmp.fingerprint.get(config):
        return f"; changed since baseline {cmp.baseline!r}: " + "; ".join(cmp.fingerprint[config])
    return ""


def failure_line(r: BudgetResult, run: RunResults) -> str:
    """A failed budget in one line: budget, median, interval with its coverage, N, what changed."""
    head = f"{r.config}: {r.budget.describe()}"
    if r.stats is None:
        return head + ": FAIL"
    unit = metric_unit(r.budget.metric)
    text = f"{head}: FAIL: median {_fmt(r.stats.median)}{' ' + unit if unit else ''}"
    low, high, coverage = getattr(r, "low", None), getattr(r, "high", None), getattr(r, "coverage", None)
    if low is not None and high is not None and coverage is not None:
        text += f", {coverage_label(coverage)} [{_fmt(low)}, {_fmt(high)}]"
    elif r.stats.n > 1:
        label = coverage_label(getattr(r.stats, "coverage", 0.0))
        text += f", {label} [{_fmt(r.stats.ci_low)}, {_fmt(r.stats.ci_high)}]"
    n = getattr(r, "n", None) or r.stats.n
    return text + f", N={n}" + _changed(run, r.config)


def identity(fp: ConfigFingerprint) -> str:
    """``demo: llama-server sha256 1a2b3c4d5e6f (build_info b11434-0a1b2c3); gemma3-270m.gguf sha256 ...``."""
    build = f" (build_info {fp.build_info})" if fp.build_info else ""
    return (f"{fp.name}: {Path(fp.binary).name} sha256 {fp.binary_sha256[:12]}{build}; "
            f"{Path(fp.model).name} sha256 {fp.model_sha256[:12]}")


def _latest(verdicts: list[BudgetResult]) -> list[BudgetResult]:
    """One verdict per (config, budget): the last one recorded (a point re-judged keeps its last word)."""
    out: dict[tuple[str, str], BudgetResult] = {}
    for r in verdicts:
        out[(r.config, repr(r.budget))] = r
    return list(out.values())


def banner(run: RunResults, *, strict: bool = False, errors: list[str] | None = None) -> Banner:
    """The run's verdict and the lines behind it (``errors``: results or baseline files that failed)."""
    verdicts = _latest(run.verdicts)
    failed = [r for r in verdicts if r.verdict is Verdict.FAIL]
    passed = [r for r in verdicts if r.verdict is Verdict.PASS]
    unjudged = [u.message for u in run.unjudged]
    no_budget = [nb.message for nb in run.no_budget]
    failures = [failure_line(r, run) for r in failed]
    cannot_tell: list[str] = []
    status = getattr(run, "status", "complete")
    reasons = "; ".join(getattr(run, "status_reasons", [])[:2]) or "no reason recorded"
    if status == "failed":  # an error kept a test from measuring: that is not a pass of anything
        failures.append(f"the run failed before everything was measured ({reasons})")
    elif status == "interrupted":
        cannot_tell.append(f"the run was interrupted ({reasons})")
    up = run.upgrade
    if up is not None:
        failures += [f"{c.config}: {c.describe()}{up.explain()}" for c in up.changes if c.verdict is Verdict.FAIL]
        cannot_tell += [f"{c.config}: {c.describe()}: {c.why}" for c in up.changes
                        if c.verdict in (Verdict.INCONCLUSIVE, Verdict.SKIPPED)]
    cmp = run.comparison
    if cmp is not None:
        failures += [f"{ch.config}: {ch.describe()}{cmp.explain(ch.config)}" for ch in cmp.changes
                     if ch.verdict is Verdict.FAIL]
        cannot_tell += [f"{ch.config}: {ch.describe()}" for ch in cmp.changes if ch.verdict is Verdict.INCONCLUSIVE]
        cannot_tell += list(cmp.unjudged)
    failures += [f"error: {e}" for e in errors or []]
    judged = len(failed) + len(passed)
    parts = [f"{judged} budget(s) judged: {len(failed)} failed, {len(passed)} passed",
             f"{len(unjudged)} unjudged"]
    if no_budget:
        parts.append(f"{len(no_budget)} measured, no budget")
    if up is not None:
        bad = sum(c.verdict is Verdict.FAIL for c in up.changes)
        parts.append(f"upgrade vs {up.against}: {len(up.changes)} point(s), {bad} failed")
    if cmp is not None:
        c = cmp.counts()
        parts.append(f"baseline {cmp.baseline!r}: {c['fail']} failed, {c['inconclusive']} cannot tell")
    anything = judged or (up is not None and up.changes) or (cmp is not None and cmp.changes)
    if failures:
        status = FAIL
    elif unjudged or cannot_tell or not anything:
        status = FAIL if strict else INCONCLUSIVE
    else:
        status = PASS
    if not anything:
        cannot_tell.append("nothing was judged: no budget, upgrade or baseline verdict in this run")
    return Banner(status=status, counts="; ".join(parts), judged=judged, failed=len(failed), unjudged=len(unjudged),
                  no_budget=len(no_budget), failures=failures,
                  unjudged_lines=unjudged + cannot_tell,
                  identity=[identity(fp) for _, fp in sorted(run.configs.items())],
                  upgrade=up.header() if up is not None else "")
