"""The end of a run: assemble the stored run, compare it with a baseline, save it, write the reports.

Why a module of its own: the store only stores, the verdicts only judge and the reports only render;
this is the one place that runs them in order. It takes a plain run and plain options (no
``pytest.Config``), so it is tested on a run object alone. Each step runs on its own: a missing
baseline must not cost the run its stored results, and every failure becomes a message with its fix
(printed in the terminal summary) instead of a traceback.

Also here: what an xdist worker hands the controller, and how the controller folds it in.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pytest_specgate._files import locked
from pytest_specgate.config import Thresholds
from pytest_specgate.errors import SpecgateError
from pytest_specgate.fingerprint import ConfigFingerprint, Host
from pytest_specgate.measure.measurement import Measurement, measurement_order
from pytest_specgate.report.write import write_all
from pytest_specgate.store import (
    RunResults,
    baseline_path,
    baseline_refusal,
    check_results_dir,
    incomplete,
    load_baseline,
    prune_runs,
    recent_runs,
    run_path,
    save,
    save_baseline,
)
from pytest_specgate.verdict.baseline import compare
from pytest_specgate.verdict.budget import BudgetResult, NoBudget
from pytest_specgate.verdict.upgrade import Upgrade

__all__ = ["Outcome", "Remote", "build_run", "finish", "merge_worker", "worker_payload"]


@dataclass
class Outcome:
    """What finish() did, for the terminal summary (which pytest runs after sessionfinish)."""

    baseline: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False


@dataclass
class Remote:
    """What the xdist controller gathered from its workers besides measurements and verdicts."""

    configs: dict[str, ConfigFingerprint] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: the workers' upgrade verdicts (each worker judged the points it ran), "measured, no budget" rows
    #: and notes (roofline, VRAM method, foreign tenants): without them the controller's banner and
    #: results would show a green run whose upgrade FAIL happened on a worker
    upgrades: list[Upgrade] = field(default_factory=list)
    no_budget: list[NoBudget] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_run(*, measurements: list[Measurement], verdicts: list[BudgetResult], configs: dict[str, ConfigFingerprint],
              selected: str, quick: bool, started: float, host: Host, thresholds: Thresholds,
              memory: dict[str, dict[str, float]], load_seconds: dict[str, list[float]]) -> RunResults:
    """The run as stored: everything the reports and a later comparison need, nothing live."""
    begun = datetime.fromtimestamp(started, UTC)
    return RunResults(
        run_id=f"{begun:%Y%m%dT%H%M%SZ}-{selected}", started=begun, finished=datetime.now(UTC),
        selected=selected, quick=quick, host=host, configs=configs,
        measurements=sorted(measurements, key=measurement_order), verdicts=list(verdicts), memory=memory,
        thresholds=thresholds, load_seconds=load_seconds,
    )


def finish(run: RunResults, directory: Path, *, save_name: str | None = None, compare_name: str | None = None,
           confidence: float = 0.95, outcome: Outcome | None = None, strict: bool = False,
           keep_runs: int = 0) -> Outcome:
    """Compare with ``compare_name``, store ``run`` (``runs/``, ``latest.json``, ``save_name``), write reports.

    ``outcome.failed`` means "fail the run": a baseline FAIL, or a results/baseline file that cannot
    be read or written. ``outcome`` may arrive with errors already (from xdist workers). A baseline
    that does not exist yet is one line naming the command that creates it, not a failure (the first
    CI run has nothing to compare with); under ``strict`` it fails. Afterwards the runs of this
    config beyond the newest ``keep_runs`` are pruned (0 keeps all), and the pruning is reported.
    """
    outcome = outcome if outcome is not None else Outcome()
    outcome.failed = outcome.failed or bool(outcome.errors)

    def step(action: Callable[[], object]) -> None:
        try:
            action()
        except (SpecgateError, OSError) as e:
            outcome.errors.append(str(e))
            outcome.failed = True

    def compare_baseline() -> None:
        assert compare_name is not None
        if not baseline_path(directory, compare_name).exists():
            line = (f"no baseline named {compare_name!r} in {directory / 'baselines'} yet, so nothing was compared. "
                    f"Create it from a run you trust: specgate baseline promote latest --name {compare_name} "
                    f"--results-dir {directory}")
            if strict:
                outcome.errors.append(line + " (this fails the run under --specgate-strict)")
                outcome.failed = True
            else:
                outcome.baseline.append(line)
            return
        old = load_baseline(directory, compare_name)
        run.comparison = compare(old, run, run.thresholds, confidence=confidence, name=compare_name,
                                 history=recent_runs(directory))
        outcome.baseline += run.comparison.lines()
        outcome.failed |= run.comparison.failed

    def store_baseline() -> None:
        assert save_name is not None
        outcome.files.append(save_baseline(run, directory, save_name))
        outcome.baseline.append(f"saved this run as baseline {save_name!r}: {outcome.files[-1]}")

    def prune() -> None:
        gone = prune_runs(directory, run.selected, keep_runs)
        if gone:
            outcome.baseline.append(f"pruned {len(gone)} old run(s) of config {run.selected!r}, keeping the newest "
                                    f"{keep_runs} (specgate_keep_runs): {', '.join(p.name for p in gone)}")

    try:
        check_results_dir(directory)
        with locked(directory), _deferred_signals():
            measured = run.measured()
            if compare_name and measured:
                step(compare_baseline)
            step(lambda: outcome.files.append(save(run, run_path(directory, run.run_id))))
            if measured:
                # reports first, latest.json last: a crash between them leaves latest naming the older
                # run, never reports of one run beside latest of another once both steps ran
                step(lambda: outcome.files.extend(write_all(run, directory)))
                step(lambda: outcome.files.append(save(run, directory / "latest.json")))
            else:
                why = "" if run.status == "complete" else f" (it {incomplete(run)})"
                outcome.errors.append(f"this run measured nothing{why}; {directory / 'latest.json'} and the reports "
                                      f"keep the previous run")
            step(prune)
            if save_name and (refused := baseline_refusal(run, baseline_path(directory, save_name))):
                outcome.errors.append(refused)
            elif save_name:
                step(store_baseline)
    except (SpecgateError, OSError) as e:
        outcome.errors.append(str(e))
        outcome.failed = True
    return outcome


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the stored files are written, then deliver them.

    A second Ctrl-C (or CI's SIGTERM after a first one) during finish would otherwise stop it between
    the reports and latest.json, leaving them about different runs. Only the main thread may install
    handlers; elsewhere (never in pytest's hooks) the writes simply run unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


# ------------------------------------------------------------------------------------------------
# xdist: workers measure, the controller stores


class _WorkerPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[list[Any]]  # session measurement keys, whatever their shape (JSON has no tuples)
    measurements: list[Measurement]
    verdicts: list[BudgetResult]
    configs: dict[str, ConfigFingerprint]
    memory: dict[str, dict[str, float]]
    errors: list[str] = Field(default_factory=list)
    upgrade: Upgrade | None = None
    no_budget: list[NoBudget] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def worker_payload(measurements: dict[Any, Measurement], verdicts: list[BudgetResult],
                   configs: dict[str, ConfigFingerprint], memory: dict[str, dict[str, float]],
                   errors: list[str], *, upgrade: Upgrade | None = None, no_budget: list[NoBudget] | None = None,
                   notes: list[str] | None = None) -> str:
    """What an xdist worker hands the controller (``config.workeroutput`` must hold plain data)."""
    keys = list(measurements)
    return _WorkerPayload(
        keys=[list(k) for k in keys], measurements=[measurements[k] for k in keys], verdicts=list(verdicts),
        configs=configs, memory=memory, errors=errors, upgrade=upgrade, no_budget=list(no_budget or []),
        notes=list(notes or []),
    ).model_dump_json()


def merge_worker(payload: str, measurements: dict[Any, Measurement], verdicts: list[BudgetResult],
                 remote: Remote) -> None:
    """Fold one worker's payload into the controller's state; same point twice -> pooled samples."""
    data = _WorkerPayload.model_validate_json(payload)
    for raw, m in zip(data.keys, data.measurements):
        key: Any = tuple(raw)
        if key in measurements:
            measurements[key].samples.extend(m.samples)
            measurements[key].extra.update(m.extra)
        else:
            measurements[key] = m
    verdicts.extend(data.verdicts)
    remote.configs.update(data.configs)
    remote.memory.update(data.memory)
    remote.errors += data.errors
    if data.upgrade is not None:
        remote.upgrades.append(data.upgrade)
    remote.no_budget += data.no_budget
    remote.notes += [n for n in data.notes if n not in remote.notes]


def merge_upgrades(upgrades: list[Upgrade]) -> Upgrade | None:
    """One upgrade verdict from the controller's and the workers' (same pair; each judged its own points)."""
    if not upgrades:
        return None
    merged = upgrades[0].model_copy(deep=True)
    for other in upgrades[1:]:
        merged.changes += [c for c in other.changes if (c.workload, c.point, c.metric) not in
                           {(m.workload, m.point, m.metric) for m in merged.changes}]
    return merged
