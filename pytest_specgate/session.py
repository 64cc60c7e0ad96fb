"""The session object: one per pytest run, kept in ``config.stash``; the hooks only delegate here.

It holds the run's state (options, the config file, preflight results, the server pool, the
measurements, verdicts and notes) and hands the work to the layers below: preflight resolves, the
pool runs servers, the sampler samples, the lossless probe caches, the budget verdicts judge, and
finish.py stores. It loads the config file lazily (only when a test asks for a server), so the
plugin costs nothing to unrelated test suites. Every ``StashKey`` of the plugin is defined here.

The configs and servers (the config file, preflight, the pool, SIGTERM teardown) are its base class,
:class:`~pytest_specgate.serving.Serving`; this module adds measuring, verdicts and the stored run.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_specgate.config import Budget, ServingConfig, Thresholds
from pytest_specgate.errors import SpecgateError
from pytest_specgate.fingerprint import ConfigFingerprint, collect, file_sha256, fingerprint_changes, host_info
from pytest_specgate.finish import Outcome, Remote, build_run, merge_upgrades
from pytest_specgate.measure import lossless
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.roofline import decode_roofline
from pytest_specgate.measure.sampler import Sampler, sample_counts
from pytest_specgate.metrics import METRICS, VARIANT_OF_METRIC
from pytest_specgate.serving import Serving
from pytest_specgate.store import RunResults, RunStatus, check_results_dir
from pytest_specgate.verdict.budget import (
    BudgetResult,
    NoBudget,
    Unjudged,
    Verdict,
    check_point,
    decisive,
    find_unjudged,
)
from pytest_specgate.verdict.paired import model_loads
from pytest_specgate.verdict.upgrade import (
    AGAINST,
    UPGRADE_METRICS,
    PairedChange,
    Upgrade,
    judge_upgrade,
    pair_plan,
    pair_points,
    pair_schedule,
    upgrade_schedule,
)

__all__ = ["Session", "outcome_key", "remote_key", "run_key", "session_key"]

MeasurementKey = tuple[str, str, int | None, bool, str]


def _decided(m: Measurement, budgets: list[Budget]) -> bool:
    return decisive(check_point(m, budgets))


@dataclass
class Session(Serving):
    measurements: dict[MeasurementKey, Measurement] = field(default_factory=dict)
    verdicts: list[BudgetResult] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    #: first lines of the errors that kept a test from measuring (server never ready, request broke)
    errors: list[str] = field(default_factory=list)
    #: sweep points of the collected tests (the plugin sets it), so A/B blocks span exactly those
    sweep_points: list[int] | None = None
    #: workloads the collected tests measure in A/B pairs with the reference (their ``specgate_workload``
    #: marks; the plugin sets it), so one set of ABBA blocks spans them all
    paired_workloads: set[str] | None = None
    #: the A/B block schedule each (config, other, variant) pair was measured in
    pair_schedules: dict[tuple[str, str, str], list[tuple[str, int]]] = field(default_factory=dict)
    #: the upgrade verdict against the deployed config (``--specgate-against``)
    upgrade: Upgrade | None = None
    #: points a test measured and checked with no budget on them ("measured, no budget")
    no_budget: list[NoBudget] = field(default_factory=list)

    #: quick mode as decided from what was collected (the plugin sets it; ``quick`` explains)
    collected_quick: bool = False
    #: how many tests ``-m``/``-k``/``--deselect`` left out, and "test: reason" of each skipped test
    deselected: int = 0
    skipped_tests: list[str] = field(default_factory=list)

    @property
    def quick(self) -> bool:
        """Quick mode (fewer points, the config's ``quick_samples`` each): ``--specgate-quick``, or every
        collected test that needs a server carries the ``quick`` mark (``-m quick``). Decided from what
        was collected, never by reading the mark expression: ``-m "not quick"`` is a full run."""
        return self.options.quick or self.collected_quick

    # ---- measuring (the sampler does it) ----

    def sampler(self, log_dir: Path) -> Sampler:
        return Sampler(self.config, lambda name: self.server(name, log_dir), samples=self.options.samples,
                       quick=self.quick, stop=lambda: self.pool.stop() if self.pool else None)

    def sample_counts(self, cfg: ServingConfig, quick: bool) -> tuple[int, int]:
        """(samples per point, most samples while a budget is undecided) for ``cfg``."""
        return sample_counts(cfg, quick, self.options.samples)

    def point(self, name: str, workload: str, point: int | None, variant: str = "") -> Measurement:
        """The session's Measurement for a point (created empty on first use).

        ``variant`` keeps A/B-paired samples apart from a point's standalone samples: they are
        taken in alternating blocks and only mean something as pairs.
        """
        key = (name, workload, point, self.quick, variant)
        if key not in self.measurements:
            cfg = self.config(name)
            self.measurements[key] = Measurement(config=name, workload=workload, point=point, variant=variant,
                                                 warmups=cfg.workloads.warmup, confidence=cfg.workloads.confidence)
        return self.measurements[key]

    def measure(self, name: str, workload: str, point: int | None = None, *, log_dir: Path,
                budgets: list[Budget] | None = None) -> Measurement:
        """Measure one point once per session: warm-ups, N samples, more while a budget is undecided."""
        m = self.point(name, workload, point)
        if m.samples and not m.partial:  # a measurement counts once complete; a partial one is re-measured
            return m
        if budgets is None:
            budgets = [b for b in self.config(name).budgets_for(workload, point) if b.metric not in VARIANT_OF_METRIC]
        m = self.sampler(log_dir).measure(m, budgets, _decided)
        if workload == "sweep":
            self._roofline(name, m)
        return m

    def _roofline(self, name: str, m: Measurement) -> None:
        """Decode against the card's bandwidth bound (``measure/roofline.py``): per-sample ratios and a note."""
        if self.pool is None or self.pool.current is None or self.pool.current[0] != name or m.point is None:
            return
        running, decode = self.pool.current[1], m.values("decode_tps")
        r, ratios = decode_roofline(decode, [s.timings.prompt_n for s in m.samples], m.point,
                                    running.server.log_path.read_text(errors="replace"), running.memory.bandwidths())
        if ratios:
            m.extra["roofline_ratio"] = ratios
        note = (f"{name} sweep@{m.point}: {r.sentence(statistics.median(decode))}" if ratios
                else f"{name}: {r.sentence(0)}")
        if note not in self.notes:
            self.notes.append(note)

    def measure_pair(self, name: str, reference: str, workload: str, point: int | None, *,
                     log_dir: Path, variant: str = "ab", schedule: list[tuple[str, int]] | None = None
                     ) -> tuple[Measurement, Measurement]:
        """A/B in one run, once per session: ABBA blocks spanning every point of the workload the session
        gates (``pair_points``), so a config pair costs the same model loads whatever the number of points:
        3 for the speedup's ``pair_schedule``; one per block for a given ``schedule`` (the upgrade verdict's,
        every block on a fresh load)."""
        a, b = self.point(name, workload, point, variant), self.point(reference, workload, point, variant)
        def done(x: Measurement, y: Measurement) -> bool:
            return bool(x.samples and y.samples) and not (x.partial or y.partial)

        if done(a, b):
            return a, b
        paired = self.paired_workloads if variant == "ab" else None  # the upgrade verdict pairs the sweep only
        plan = pair_plan(self.selected.workloads, workload, point, self.quick, self.sweep_points, paired)
        pairs = [(self.point(name, w, p, variant), self.point(reference, w, p, variant)) for w, p in plan]
        pairs = [(x, y) for x, y in pairs if not done(x, y)]
        for m in (m for pair in pairs for m in pair):  # complete pairs only: a half-measured one starts over
            m.samples.clear()
            m.warmup_samples.clear()
            m.partial = True
        fresh = schedule is not None
        if schedule is None:
            schedule = pair_schedule(self.sample_counts(self.config(name), self.quick)[0])
        self.sampler(log_dir).measure_blocks(pairs, schedule, fresh=fresh)  # on an error every pair stays partial
        for m in (m for pair in pairs for m in pair):
            m.partial = False
        self.pair_schedules[(name, reference, variant)] = schedule
        return a, b

    def check_against(self, workload: str, point: int | None, *, log_dir: Path) -> list[PairedChange]:
        """The upgrade verdict at one point: the selected config against the deployed one, side by side.

        Measures (once per session, ABBA across all points) and judges with the file's thresholds; a
        FAIL (or INCONCLUSIVE under --specgate-strict) raises AssertionError naming what changed.
        """
        against, name = self.against_name(), self.selected.name
        assert against is not None
        wl = self.selected.workloads
        cand, ref = self.measure_pair(name, against, workload, point, log_dir=log_dir, variant=AGAINST,
                                      schedule=upgrade_schedule(wl.ab_samples, wl.ab_loads))
        schedule = self.pair_schedules[(name, against, AGAINST)]
        points = pair_points(wl, workload, point, self.quick, self.sweep_points)
        changes = judge_upgrade([(cand, ref)], schedule, self.file.thresholds,
                                comparisons=len(points) * len(UPGRADE_METRICS))
        if self.upgrade is None:
            self.upgrade = Upgrade(config=name, against=against, schedule=schedule,
                                   model_loads=model_loads(schedule, fresh=True), fingerprint=self._diff(against, name))
        self.upgrade.changes = [c for c in self.upgrade.changes if (c.workload, c.point) != (workload, point)] + changes
        bad = [c for c in changes
               if c.verdict is Verdict.FAIL or (c.verdict is Verdict.INCONCLUSIVE and self.options.strict)]
        if bad:
            raise AssertionError("specgate upgrade verdict:\n" + "\n".join(
                f"{c.describe()}{self.upgrade.explain()}. {c.why}" for c in bad))
        for c in changes:
            if c.verdict is Verdict.INCONCLUSIVE:
                warnings.warn(pytest.PytestWarning(f"specgate: {c.describe()}. {c.why}"), stacklevel=3)
        return changes

    def _diff(self, old: str, new: str) -> list[str]:
        try:
            return fingerprint_changes(self.fingerprint(old), self.fingerprint(new))
        except (SpecgateError, OSError) as e:
            return [f"fingerprints not comparable: {e}"]

    def probe_outputs(self, name: str, bodies: list[dict[str, Any]], *, log_dir: Path) -> list[Any]:
        """Temperature-0 outputs of ``bodies`` on config ``name``, from the reference cache in the results
        dir when this exact model, argv and body were run before (see ``lossless.probe_outputs``)."""
        r = self.resolve(name)

        def run(body: dict[str, Any]) -> Any:
            return self.server(name, log_dir).client.chat(body, workload="lossless-probe", stream=False)

        check_results_dir(self.options.results_path)  # one line with the fix, not a raw errno
        return lossless.probe_outputs(self.options.results_path / lossless.STORE_NAME, file_sha256(r.model),
                                      [r.binary_sha256, *r.args], bodies, run)

    def derive(self, name: str, workload: str, point: int | None, metric: str, values: list[float],
               variant: str = "") -> Measurement:
        """Record a figure computed from other measurements (speedup, collapse, crossover, memory)."""
        m = self.point(name, workload, point, variant)
        m.extra[metric] = [float(v) for v in values]
        return m

    # ---- verdicts (the budget verdicts judge; the session records them) ----

    def judge(self, results: list[BudgetResult]) -> None:
        """Record verdicts; raise AssertionError for failures (and inconclusive under --specgate-strict)."""
        self.verdicts.extend(results)
        bad = [r for r in results if r.verdict is Verdict.FAIL
               or (r.verdict is Verdict.INCONCLUSIVE and self.options.strict)]
        if bad:
            raise AssertionError("specgate budget broken:\n" + "\n".join(r.message for r in bad))
        for r in results:
            if r.verdict is Verdict.INCONCLUSIVE:
                warnings.warn(pytest.PytestWarning(f"specgate: {r.message}"), stacklevel=3)

    def check(self, m: Measurement, budgets: list[Budget] | None = None) -> list[BudgetResult]:
        cfg = self.config(m.config)
        if budgets is None:  # the config's budgets for this point that this kind of measurement can judge:
            # a derived figure it does not hold yet is judged by the test that derives it, not skipped here
            budgets = [b for b in cfg.budgets_for(m.workload, m.point)
                       if VARIANT_OF_METRIC.get(b.metric, "") == m.variant
                       and (b.metric in m.extra or METRICS[b.metric].per_sample)]
        if m.partial:
            raise SpecgateError(f"config {m.config!r}, {m.workload}: the measurement did not complete, so it "
                                f"cannot be judged. Fix: see the error of the test that measured it.")
        results = check_point(m, budgets)
        if not budgets:
            self.no_budget.append(NoBudget(config=m.config, workload=m.workload, point=m.point, variant=m.variant,
                                           metrics=sorted(m.extra) or ["every per-sample metric"]))
        self.judge(results)
        return results

    def unjudged(self) -> list[Unjudged]:
        """Every budget of the selected config without a PASS or FAIL in this run, and why (a silent pass
        otherwise): not collected, deselected, skipped, not a quick point, or too few samples to decide."""
        try:
            cfg = self.selected
        except SpecgateError:
            return []
        why = ["no collected test judged it"]
        if self.deselected:
            why.append(f"{self.deselected} test(s) deselected")
        if self.skipped_tests:
            shown = "; ".join(self.skipped_tests[:3]) + ("; ..." if len(self.skipped_tests) > 3 else "")
            why.append(f"skipped: {shown}")
        not_run = ", ".join(why)
        out = find_unjudged(cfg.name, cfg.budgets, self.verdicts, not_run)
        quick_points = set(cfg.workloads.quick_sweep or [max(cfg.workloads.sweep)])
        for u in out:
            if self.quick and u.budget.point is not None and u.budget.point not in quick_points and u.reason == not_run:
                u.reason = f"quick mode measures only the sweep point(s) {sorted(quick_points)}"
        return out

    # ---- the stored run (finish.py builds, compares and stores it) ----

    def fingerprint(self, name: str) -> ConfigFingerprint:
        props = (self.pool.props.get(name, {}) if self.pool is not None else {}) or {}
        return collect(self.resolved[name], props)

    def fingerprints(self) -> tuple[dict[str, ConfigFingerprint], list[str]]:
        """Fingerprints of every resolved config, and what failed (a worker must still hand its samples over)."""
        configs, errors = {}, []
        for name in self.resolved:
            try:
                configs[name] = self.fingerprint(name)
            except (SpecgateError, OSError) as e:
                errors.append(f"fingerprint of config {name!r} on an xdist worker failed: {e}")
        return configs, errors

    def memory(self) -> dict[str, dict[str, float]]:
        return dict(self.pool.memory) if self.pool is not None else {}

    def completed(self) -> list[Measurement]:
        """The measurements that count: a partial one (sampling broke) never reaches the results or a baseline."""
        return [m for m in self.measurements.values() if not m.partial]

    def build_run(self, remote: Remote | None = None) -> RunResults:
        """The run as stored, from this session's state (and what xdist workers handed over)."""
        remote = remote or Remote()
        names = {m.config for m in self.measurements.values()} | {r.config for r in self.verdicts if r.config}
        names |= {n for n in (self.selected_name(),) if n in self.resolved}
        configs = dict(remote.configs)
        configs.update({n: self.fingerprint(n) for n in sorted(names) if n in self.resolved})
        try:
            thresholds = self.file.thresholds
        except SpecgateError:
            thresholds = Thresholds()
        run = build_run(
            measurements=self.completed(), verdicts=self.verdicts, configs=configs,
            selected=self.selected_name(), quick=self.quick, started=self.started, host=host_info(),
            thresholds=thresholds, memory={**remote.memory, **self.memory()},
            load_seconds=dict(self.pool.load_seconds) if self.pool is not None else {},
        )
        run.upgrade = merge_upgrades([u for u in (self.upgrade, *remote.upgrades) if u is not None])
        run.unjudged = self.unjudged()
        run.no_budget = [*self.no_budget, *remote.no_budget]
        return run

    def run_status(self, exitstatus: int) -> tuple[RunStatus, list[str]]:
        """complete / failed / interrupted, and why: a budget FAIL is still a complete run."""
        if self.interrupted or exitstatus == pytest.ExitCode.INTERRUPTED:
            return "interrupted", ["the run was interrupted (Ctrl-C or SIGTERM) before every test ran"]
        if self.errors:
            return "failed", list(dict.fromkeys(self.errors))
        return "complete", []

    def confidence(self) -> float:
        try:
            return self.selected.workloads.confidence
        except SpecgateError:
            return 0.95


session_key = pytest.StashKey[Session]()
#: what finish() did, for the terminal summary
outcome_key = pytest.StashKey[Outcome]()
#: the xdist controller's share of its workers' fingerprints, memory figures and errors
remote_key = pytest.StashKey[Remote]()
#: the stored run as finish() saved it (the terminal summary renders its banner from it)
run_key = pytest.StashKey[RunResults]()
