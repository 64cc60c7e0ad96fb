"""Shared fixtures for the plugin's tests: real binaries and real (small) models, never mocks.

The llama-server build and the models come from `specgate provision` (cached under
~/.cache/pytest-specgate); `make test` runs it first, and these fixtures reuse its results.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

# Imported before any in-process pytester run: pytester restores sys.modules after each inline run, and
# an httpcore first imported inside one would be dropped and imported again later, with new exception
# classes that httpx's cached exception map no longer recognises (raw httpcore errors in later tests).
import httpcore  # noqa: F401
import psutil
import pytest

# A shell's background job (`make test &`) starts with SIGINT ignored, and every pytest process the tests
# start would inherit that, so the Ctrl-C tests could never interrupt them: restore the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from pytest_specgate import provision

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_real_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin appends report.md to ``$GITHUB_STEP_SUMMARY``. In CI that is the real job summary, and the
    plugin's own tests (and every pytest process they start, which inherits the environment) would fill
    it with test runs; a test that checks the summary sets its own file."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    # the pytest processes the tests start parse their own output; the caller's options (-q) must not leak in
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


@pytest.fixture(scope="session")
def server_bin() -> Path:
    return provision.llama_server()


@pytest.fixture(scope="session")
def tiny_gguf() -> Path:
    return provision.synthetic_model("tiny")


@pytest.fixture(scope="session")
def demo_gguf() -> Path:
    return provision.demo_model()


def toml_config(name: str, binary: Path | str, model: Path | str, args: list[str], extra: str = "") -> str:
    """One [configs.NAME] table with fast defaults for tests (tiny sweeps, few samples)."""
    arg_list = ", ".join(f'"{a}"' for a in args)
    return textwrap.dedent(f"""
        [configs.{name}]
        binary = "{binary}"
        model = "{model}"
        args = [{arg_list}]
        startup_timeout = 60
        workloads = {{ sweep = [16, 32], fixed_output = 16, long_context_tokens = 256, long_context_output = 8, samples = 3, warmup = 1, max_samples = 4, quick_samples = 2, request_timeout = 60 }}
        """) + textwrap.dedent(extra)


def servers_with(marker: str) -> list[psutil.Process]:
    """llama-server processes whose argv contains ``marker`` (a unique alias per test)."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
        except psutil.Error:
            continue
        if cmd and "llama-server" in os.path.basename(cmd[0]) and marker in cmd:
            found.append(p)
    return found


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
