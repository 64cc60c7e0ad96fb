"""pytest11 entry point: thin hooks that delegate to the ``Gate`` kept in ``config.stash``."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_specgate import options, report
from pytest_specgate.errors import SpecgateError
from pytest_specgate.fixtures import (  # noqa: F401  (registered as plugin fixtures)
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
from pytest_specgate.gate import Gate, Options
from pytest_specgate.state import gate_key

#: fixtures whose use means "this run needs a llama-server": preflight runs before the first test
SERVER_FIXTURES = {"specgate_server", "specgate_client", "specgate_measure", "specgate_measure_pair", "specgate_memory"}


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoption(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "quick: a fast check (fewer samples); select with -m quick")
    config.addinivalue_line("markers", "specgate_workload(name): the field-report workload a test measures")
    config.stash[gate_key] = Gate(Options.from_pytest(config))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "specgate_output_len" in metafunc.fixturenames:
        gate = metafunc.config.stash[gate_key]
        try:
            wl = gate.selected.workloads
        except SpecgateError as e:
            raise pytest.UsageError(str(e)) from None
        quick = set(wl.quick_sweep or [max(wl.sweep)])
        params = [pytest.param(n, id=f"out{n}", marks=[pytest.mark.quick] if n in quick else [])
                  for n in sorted(set(wl.sweep) | quick)]
        metafunc.parametrize("specgate_output_len", params)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Preflight once, before any model loads, if a collected test will need a server."""
    if config.option.collectonly or not any(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) for item in items):
        return
    try:
        config.stash[gate_key].preflight_selected()
    except SpecgateError as e:
        raise pytest.UsageError(f"specgate preflight failed:\n{e}") from None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    gate = config.stash[gate_key]
    if gate.pool is not None or gate.measurements or gate.results:
        report.terminal(gate, terminalreporter)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gate = session.config.stash[gate_key]
    gate.shutdown()  # first: the pool's memory figures are read when it stops
    if not (gate.measurements or gate.results):
        return
    from pytest_specgate import results

    if hasattr(session.config, "workerinput"):  # xdist worker: the controller stores the run
        session.config.workeroutput["specgate"] = results.worker_payload(gate)
        return
    if results.finish(gate, session.config):  # baseline FAIL or unreadable results file: fail the run
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: fold a finished worker's measurements into this process's Gate."""
    payload = getattr(node, "workeroutput", {}).get("specgate")
    if payload:
        from pytest_specgate import results

        results.merge_worker(node.config.stash[gate_key], node.config, payload)


def pytest_unconfigure(config: pytest.Config) -> None:
    if gate_key in config.stash:
        config.stash[gate_key].shutdown()
