"""Fixtures for suite authors. Each is small; the work happens in the ``Session``.

Errors from specgate (preflight, server start, short samples) become plain test failures with the
message and no traceback into the plugin: the message is the useful part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_specgate.config import Budget, ServingConfig
from pytest_specgate.errors import SpecgateError
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.server.memory import MemoryProbe
from pytest_specgate.server.pool import Running
from pytest_specgate.session import Session, session_key
from pytest_specgate.verdict.budget import BudgetResult
from pytest_specgate.verdict.upgrade import PairedChange


@contextmanager
def specgate_errors() -> Iterator[None]:
    try:
        yield
    except SpecgateError as e:  # from None: the message once, not again under "During handling of..."
        raise pytest.fail.Exception(str(e), pytrace=False) from None


@pytest.fixture(scope="session")
def specgate_gate(pytestconfig: pytest.Config) -> Session:
    """The run's ``Session`` (configs, pool, measurements, verdicts); the name predates the class."""
    return pytestconfig.stash[session_key]


@pytest.fixture(scope="session")
def specgate_config(specgate_gate: Session) -> ServingConfig:
    """The selected serving config (``--specgate-config``), resolved through ``extends``."""
    with specgate_errors():
        return specgate_gate.selected


@pytest.fixture(scope="session")
def specgate_reference(specgate_gate: Session, specgate_config: ServingConfig) -> ServingConfig:
    """The selected config's ``reference`` config; skips tests that need one when there is none."""
    if not specgate_config.reference:
        pytest.skip(f"config {specgate_config.name!r} has no `reference` to compare with")
    return specgate_gate.config(specgate_config.reference)


@pytest.fixture(scope="session")
def specgate_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("specgate-logs")


@pytest.fixture
def specgate_server(specgate_gate: Session, specgate_config: ServingConfig, specgate_log_dir: Any) -> Running:
    """The running llama-server for the selected config: ``.server`` (url, pid, log_path, argv),
    ``.client`` and ``.memory``. Started once per session and reused; restarted only if another
    config was measured in between."""
    with specgate_errors():
        return specgate_gate.server(specgate_config.name, specgate_log_dir)


@pytest.fixture
def specgate_client(specgate_server: Running) -> Any:
    """An httpx-based client bound to the running server (``chat(body, workload=...) -> Sample``)."""
    return specgate_server.client


@pytest.fixture
def specgate_memory(specgate_server: Running) -> MemoryProbe:
    """The memory probe of the running server (VRAM via NVML, RSS via psutil)."""
    return specgate_server.memory


@pytest.fixture
def specgate_measure(specgate_gate: Session, specgate_config: ServingConfig, specgate_log_dir: Any,
                     request: pytest.FixtureRequest) -> Callable[..., Measurement]:
    """``measure(workload, point=None, config=None) -> Measurement``: warm-ups, N samples, adaptive.

    Under ``-m quick`` every point uses the config's ``quick_samples``. Results are memoised per session, so
    a derived check can ask for a point another test already measured.
    """

    def measure(workload: str, point: int | None = None, config: str | None = None) -> Measurement:
        with specgate_errors():
            return specgate_gate.measure(config or specgate_config.name, workload, point, log_dir=specgate_log_dir)

    return measure


@pytest.fixture
def specgate_measure_pair(specgate_gate: Session, specgate_config: ServingConfig, specgate_reference: ServingConfig,
                          specgate_log_dir: Any) -> Callable[..., tuple[Measurement, Measurement]]:
    """``measure_pair(workload, point=None) -> (config, reference)``: A/B blocks alternated in one run."""

    def measure_pair(workload: str, point: int | None = None) -> tuple[Measurement, Measurement]:
        with specgate_errors():
            return specgate_gate.measure_pair(specgate_config.name, specgate_reference.name, workload, point,
                                              log_dir=specgate_log_dir)

    return measure_pair


@pytest.fixture
def specgate_check(specgate_gate: Session) -> Callable[..., list[BudgetResult]]:
    """``check(measurement, budgets=None)``: judge the config's budgets for that point; a failure
    fails the test with budget, median, interval, N and samples."""

    def check(m: Measurement, budgets: list[Budget] | None = None) -> list[BudgetResult]:
        with specgate_errors():  # a partial measurement: one line, not a traceback
            return specgate_gate.check(m, budgets)

    return check


@pytest.fixture
def specgate_against(specgate_gate: Session, specgate_config: ServingConfig,
                     specgate_log_dir: Any) -> Callable[..., list[PairedChange]]:
    """``against(workload, point=None) -> [PairedChange]``: the upgrade verdict at one point.

    The selected config and the deployed one (``--specgate-against`` or the config's ``against``) are
    measured side by side, in ABBA blocks spanning every point the session gates, each on a fresh
    model load (``ab_loads``), and judged on the blocks' means with the file's thresholds. A FAIL fails
    the test naming the change and what differs between the two configs. Skips the test when there is
    no deployed config.
    """
    with specgate_errors():
        against = specgate_gate.against_name()
    if not against:
        pytest.skip(f"no deployed config to hold {specgate_config.name!r} against: pass --specgate-against=NAME "
                    f"or set `against` in its config")

    def check(workload: str, point: int | None = None) -> list[PairedChange]:
        with specgate_errors():
            return specgate_gate.check_against(workload, point, log_dir=specgate_log_dir)

    return check
