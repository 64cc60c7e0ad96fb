"""Server lifecycle against the real llama-server binary and the synthetic GGUF.

The product's promise: a server is ready only when /health says so, a dead server explains itself
(exit code, command line, log tail), and no llama-server outlives the run that started it: not
after a pass, a failure, Ctrl-C, or SIGKILL of pytest itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import uuid

import httpx
import psutil
import pytest

from conftest import servers_with, toml_config, wait_for
from pytest_specgate.errors import ServerError
from pytest_specgate.server.process import LlamaServer


def _server(server_bin, model, tmp_path, args):  # type: ignore[no-untyped-def]
    return LlamaServer("t", server_bin, model, args, {}, tmp_path, startup_timeout=60)


def test_start_ready_stop(server_bin, tiny_gguf, tmp_path) -> None:
    with _server(server_bin, tiny_gguf, tmp_path, ["-t", "1", "-np", "1", "-c", "512"]) as srv:
        assert httpx.get(f"{srv.url}/health", timeout=5).status_code == 200
        pid = srv.pid
        assert srv.log_path.read_text().startswith("# specgate: ")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_crash_reports_exit_code_command_and_log_tail(server_bin, tiny_gguf, tmp_path) -> None:
    srv = _server(server_bin, tiny_gguf, tmp_path, ["-ctk", "bogus"])  # preflight would catch it; bypass
    with pytest.raises(ServerError) as info:
        srv.start()
    msg = str(info.value)
    assert "exited before it became ready (exit code 1)" in msg
    assert "command: " in msg and "-ctk bogus" in msg
    assert "Unsupported cache type" in msg  # from the last 40 log lines


def test_environment_is_scrubbed(server_bin, tiny_gguf, tmp_path, monkeypatch) -> None:
    """LLAMA_ARG_* would silently change the measured config (here: the context size)."""
    monkeypatch.setenv("LLAMA_ARG_CTX_SIZE", "256")
    with _server(server_bin, tiny_gguf, tmp_path, ["-t", "1", "-np", "1", "-c", "1024"]) as srv:
        props = httpx.get(f"{srv.url}/props", timeout=5).json()
    assert props["default_generation_settings"]["n_ctx"] == 1024


ORPHAN_TEST = """
import time

def test_hold(specgate_server):
    print("SERVER-UP", specgate_server.server.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("how", ["sigkill", "sigint", "sigterm"])
def test_no_orphan_when_pytest_dies(pytester: pytest.Pytester, server_bin, tiny_gguf, how) -> None:
    alias = f"specgate-test-{uuid.uuid4().hex[:8]}"
    pytester.makefile(".toml", specgate=toml_config("t", server_bin, tiny_gguf,
                                                    ["-t", "1", "-np", "1", "-c", "512", "--alias", alias]))
    pytester.makepyfile(ORPHAN_TEST)
    env = {**os.environ, "TMPDIR": str(pytester.path)}  # its own device lock: other runs on this machine
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider"], cwd=pytester.path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert wait_for(lambda: servers_with(alias), timeout=120), "the server never started"
        os.kill(proc.pid, {"sigkill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}[how])
        out, _ = proc.communicate(timeout=120)
        left = wait_for(lambda: not servers_with(alias), timeout=30)
        assert left, f"llama-server outlived pytest ({how}); pytest said:\n{out[-3000:]}"
    finally:
        proc.kill()
        for p in servers_with(alias):
            p.kill()


def test_no_orphan_after_failing_run(pytester: pytest.Pytester, server_bin, tiny_gguf, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(pytester.path))  # its own device lock: other runs cannot starve it
    alias = f"specgate-test-{uuid.uuid4().hex[:8]}"
    pytester.makefile(".toml", specgate=toml_config("t", server_bin, tiny_gguf,
                                                    ["-t", "1", "-np", "1", "-c", "512", "--alias", alias]))
    pytester.makepyfile(textwrap.dedent("""
        def test_fails(specgate_server):
            assert False, "deliberate"
        """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert not servers_with(alias)


def test_one_model_load_per_config_per_session(pytester: pytest.Pytester, server_bin, tiny_gguf, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(pytester.path))  # its own device lock (in-process run)
    pytester.makefile(".toml", specgate=toml_config("t", server_bin, tiny_gguf, ["-t", "1", "-np", "1", "-c", "512"]))
    pytester.makepyfile(textwrap.dedent("""
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_same_server(specgate_server, i):
            assert specgate_server.server.alive()
        """))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["t: 1 model load(s), * s"])
