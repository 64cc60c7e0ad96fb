"""pytest11 entry point: thin hooks that delegate to the ``Session`` kept in ``config.stash``."""

from __future__ import annotations

import functools
import signal
import tempfile
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from pytest_specgate import options
from pytest_specgate.config import find_config_file
from pytest_specgate.errors import SpecgateError
from pytest_specgate.finish import Outcome, Remote, finish, merge_worker, worker_payload
from pytest_specgate.fixtures import (  # noqa: F401  (registered as plugin fixtures)
    specgate_against,
    specgate_check,
    specgate_client,
    specgate_config,
    specgate_gate,
    specgate_log_dir,
    specgate_measure,
    specgate_measure_pair,
    specgate_memory,
    specgate_reference,
    specgate_server,
)
from pytest_specgate.measure.measurement import measurement_order
from pytest_specgate.provision.llama_cpp import existing_builds
from pytest_specgate.report.banner import banner
from pytest_specgate.report.rows import rows_for
from pytest_specgate.report.terminal import TerminalSummary, terminal
from pytest_specgate.server.gpu import gpu_indices
from pytest_specgate.server.gpu_lock import DeviceLock
from pytest_specgate.server.process import watch_parent
from pytest_specgate.session import Session, outcome_key, remote_key, run_key, session_key
from pytest_specgate.store import RunResults

#: fixtures whose use means "this run needs a llama-server": preflight runs before the first test
SERVER_FIXTURES = {"specgate_server", "specgate_client", "specgate_measure", "specgate_measure_pair", "specgate_memory",
                   "specgate_against"}


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which llama.cpp build ``provisioned:llama-server`` means on this machine (CUDA when one was built)."""
    builds = existing_builds()
    return [f"specgate: provisioned:llama-server is the {builds[0].describe()}"] if builds else []


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` on a GPU machine: one worker per GPU that is free now (each worker's pool takes its own).

    Without a GPU: None, xdist's own default (one per CPU); servers still take turns on the machine lock.
    """
    gpus = gpu_indices()
    if not gpus:
        return None
    lock_dir, free = Path(tempfile.gettempdir()), 0
    for device in gpus:
        lock = DeviceLock(device, lock_dir)
        if lock.try_acquire("xdist -n auto probe"):
            lock.release()
            free += 1
    return max(1, free)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoption(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "quick: a fast check (fewer samples); select with -m quick")
    config.addinivalue_line("markers", "specgate_workload(name): the field-report workload a test measures")
    state = config.stash[session_key] = Session(options.Options.from_pytest(config))
    state.announce = _announcer(config)
    if hasattr(config, "workerinput"):  # xdist worker: die (servers first) with the controller
        watch_parent()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.signal(sig, lambda signum, frame: state.terminate(signum))
            config.add_cleanup(functools.partial(_restore, sig, previous))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Load the config file before collection when there is one to load: a bad budget or key is then one
    ``ERROR: <file>: <key>: <cause>. Fix: ...`` line, not a traceback per collected suite module. Without
    a file (a project that has the plugin installed but gates nothing) nothing is loaded until a test asks."""
    state = session.config.stash[session_key]
    if state.options.file or state.options.config or find_config_file(state.options.rootdir) is not None:
        try:
            state.selected  # noqa: B018 (loads and validates the file and the selected config)
        except SpecgateError as e:
            raise pytest.UsageError(str(e)) from None


def _restore(sig: signal.Signals, previous: Any) -> None:
    signal.signal(sig, previous)


def _announcer(config: pytest.Config) -> Any:
    """A line on the terminal even while output is captured (a run waiting on a device lock says so)."""
    def say(text: str) -> None:
        capman = config.pluginmanager.get_plugin("capturemanager")
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        with capman.global_and_fixture_disabled() if capman is not None else nullcontext():
            if reporter is not None:
                reporter.write_line(text)
            else:
                print(text, flush=True)
    return say


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "specgate_output_len" in metafunc.fixturenames:
        session = metafunc.config.stash[session_key]
        try:
            wl = session.selected.workloads
        except SpecgateError as e:
            raise pytest.UsageError(str(e)) from None
        quick = set(wl.quick_sweep or [max(wl.sweep)])
        params = [pytest.param(n, id=f"out{n}", marks=[pytest.mark.quick] if n in quick else [])
                  for n in sorted(set(wl.sweep) | quick)]
        metafunc.parametrize("specgate_output_len", params)


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: quick mode is decided from what is left
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Decide quick mode from the collected tests; preflight once, before any model loads, if one needs a server."""
    gated = [item for item in items if SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))]
    config.stash[session_key].collected_quick = bool(gated) and all(i.get_closest_marker("quick") for i in gated)
    if config.option.collectonly or not gated:
        return
    params = [getattr(getattr(item, "callspec", None), "params", {}) for item in items]
    points = sorted({p["specgate_output_len"] for p in params if "specgate_output_len" in p})
    config.stash[session_key].sweep_points = points or None  # A/B blocks span exactly the collected points
    paired = {str(mark.args[0]) for item in gated if "specgate_measure_pair" in getattr(item, "fixturenames", ())
              for mark in item.iter_markers("specgate_workload") if mark.args}
    config.stash[session_key].paired_workloads = paired or None
    try:
        config.stash[session_key].preflight_selected()
    except SpecgateError as e:
        raise pytest.UsageError(f"specgate preflight: {e}") from None  # the cause on the first line


def summary(state: Session, outcome: Outcome | None) -> TerminalSummary:
    """The plain data the terminal summary prints."""
    measured = sorted(state.measurements.values(), key=measurement_order)
    return TerminalSummary(
        rows=rows_for(measured, state.verdicts, key_only=state.options.table != "all"),
        load_seconds=dict(state.pool.load_seconds) if state.pool is not None else {},
        skipped=[r.message for r in state.verdicts if r.verdict.value == "skipped"],
        notes=list(state.notes),
        files=list(outcome.files) if outcome is not None else None,
        errors=list(outcome.errors) if outcome is not None else [],
        baseline=list(outcome.baseline) if outcome is not None else [],
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[session_key]
    if state.pool is not None or state.measurements or state.verdicts:
        outcome = config.stash.get(outcome_key, None)
        data = summary(state, outcome)
        remote = config.stash.get(remote_key, None)  # xdist: the workers' notes (roofline, VRAM method)
        data.notes += [n for n in (remote.notes if remote else []) if n not in data.notes]
        run = config.stash.get(run_key, None)
        if run is not None:  # the stored run's verdict, the same banner as report.md and report.html
            data.banner = banner(run, strict=state.options.strict, errors=outcome.errors if outcome else [])
            data.upgrade = run.upgrade.lines() if run.upgrade is not None else []
        terminal(data, terminalreporter)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Tag a report whose test could not measure (a specgate error, not a budget FAIL): the run is then
    stored as failed. Tagged through ``user_properties`` so xdist carries it to the controller."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple):  # a budget it would have judged is unjudged: say why
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        item.config.stash[session_key].skipped_tests.append(f"{item.name} ({reason})")
    error = call.excinfo.value if call.excinfo is not None else None
    # the fixtures re-raise a SpecgateError as pytest.fail(...) from None: the error is still its __context__
    if error is not None and not isinstance(error, SpecgateError):
        error = error.__context__ if isinstance(error.__context__, SpecgateError) else None
    if error is not None:
        text = str(error).strip()
        line = f"{item.nodeid}: {text.splitlines()[0] if text else type(error).__name__}"
        report.user_properties.append(("specgate_error", line))
        item.config.stash[session_key].errors.append(line)


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Count what -m/-k/--deselect left out: the unjudged-budget list says so."""
    if items:
        items[0].config.stash[session_key].deselected += len(items)


def _worker_errors(config: pytest.Config) -> list[str]:
    """What xdist workers tagged (their reports reach the controller through the terminal reporter's stats)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(reporter, "stats", {}) or {}
    return [str(v) for reports in stats.values() for r in reports
            for k, v in getattr(r, "user_properties", ()) if k == "specgate_error"]


def _finish(state: Session, config: pytest.Config, exitstatus: int) -> Outcome:
    """Build the run (fingerprints, host) and hand it to ``finish``; a failure to build is reported, not raised."""
    remote = config.stash.get(remote_key, Remote())
    outcome = Outcome(errors=list(remote.errors))
    try:
        run = state.build_run(remote)
    except (SpecgateError, OSError) as e:
        outcome.errors.append(f"specgate could not assemble this run's results: {e}")
        outcome.failed = True
        return outcome
    state.errors += [e for e in _worker_errors(config) if e not in state.errors]
    run.status, run.status_reasons = state.run_status(exitstatus)
    if state.options.strict and run.unjudged:  # an unjudged budget is a silent pass; strict refuses it
        outcome.failed = True
        outcome.errors += [f"{u.message}: fails the run under --specgate-strict" for u in run.unjudged]
    config.stash[run_key] = run  # the terminal summary renders the stored run
    opts = state.options
    return finish(run, opts.results_path, save_name=opts.baseline_save, compare_name=opts.baseline_compare,
                  confidence=state.confidence(), outcome=outcome, strict=opts.strict, keep_runs=opts.keep_runs)


def _strict_comparison(run: RunResults, outcome: Outcome, strict: bool) -> Outcome:
    """Under --specgate-strict a baseline comparison that cannot tell, or a config it cannot judge, fails."""
    if strict and run.comparison is not None and (undecided := run.comparison.undecided()):
        outcome.failed = True
        outcome.errors += [f"baseline comparison: {u}: fails the run under --specgate-strict" for u in undecided]
    return outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash[session_key]
    state.finishing = True  # a SIGTERM from here on only marks the run interrupted
    state.shutdown()  # first: the pool's memory figures are read when it stops
    if not (state.measurements or state.verdicts or state.errors or _worker_errors(session.config)):
        return
    if hasattr(session.config, "workerinput"):  # xdist worker: the controller stores the run
        configs, errors = state.fingerprints()
        payload = worker_payload(state.measurements, state.verdicts, configs, state.memory(), errors,
                                 upgrade=state.upgrade, no_budget=state.no_budget, notes=state.notes)
        session.config.workeroutput["specgate"] = payload  # type: ignore[attr-defined]
        return
    outcome = session.config.stash[outcome_key] = _finish(state, session.config, exitstatus)
    if (run := session.config.stash.get(run_key, None)) is not None:
        _strict_comparison(run, outcome, state.options.strict)
    # a baseline FAIL or an unreadable results file fails the run (an interrupted one keeps its exit status)
    if outcome.failed and exitstatus != pytest.ExitCode.INTERRUPTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: fold a finished worker's measurements into this process's session."""
    payload = getattr(node, "workeroutput", {}).get("specgate")
    if payload:
        state = node.config.stash[session_key]
        remote = node.config.stash.setdefault(remote_key, Remote())
        merge_worker(payload, state.measurements, state.verdicts, remote)


def pytest_unconfigure(config: pytest.Config) -> None:
    if session_key in config.stash:
        config.stash[session_key].shutdown()
