"""Server lifecycle faults: each one says in its FIRST line what broke and what to do, loses nothing,
and leaves no llama-server behind.

The faults are made with the real pinned llama-server on the tiny synthetic GGUF, wrapped by small
shell scripts written to ``tmp_path`` (a signal at the right moment, a FIFO as the model so the load
blocks, a wrapper without ``exec``), or with SIGSTOP/SIGCONT to make the real server freeze or
trickle. No fake server is needed: every fault below is one a real llama-server produces on demand.

Each test prints a row ``FAULT-ROW | fault | first line | seconds`` (run with ``-s`` to collect the
table); nothing here asserts on time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import servers_with, toml_config, wait_for
from pytest_specgate import preflight
from pytest_specgate.errors import PreflightError, ServerError
from pytest_specgate.server import process
from pytest_specgate.server.diagnosis import diagnose
from pytest_specgate.server.gpu_lock import DeviceLock
from pytest_specgate.server.pool import ServerPool
from pytest_specgate.server.process import LlamaServer

FAST = ["-t", "1", "-np", "1", "-c", "512"]
BODY = {"messages": [{"role": "user", "content": "hi"}], "n_predict": 400, "ignore_eos": True}


def row(fault: str, message: str, t0: float) -> None:
    print(f"\nFAULT-ROW | {fault} | {message.splitlines()[0]} | {time.perf_counter() - t0:.2f}")


def wrapper(tmp_path: Path, real: Path, body: str, name: str = "llama-server-wrapper") -> Path:
    """A shell script standing in for the binary; ``$REAL`` is the real llama-server."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\nREAL='{real}'\n{textwrap.dedent(body).strip()}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def alias() -> str:
    return f"specgate-fault-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_server(tmp_path: Path, server_bin: Path, tiny_gguf: Path, alias: str) -> Iterator[Callable[..., LlamaServer]]:
    """LlamaServers on the tiny model, tagged with a unique alias; every one is checked gone at the end."""
    made: list[LlamaServer] = []

    def make(args: list[str] | None = None, *, binary: Path | None = None, model: Path | None = None,
             startup_timeout: float = 30.0) -> LlamaServer:
        srv = LlamaServer("t", binary or server_bin, model or tiny_gguf, [*(args or FAST), "--alias", alias], {},
                          tmp_path / "logs", startup_timeout=startup_timeout)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop(grace=0)
    assert wait_for(lambda: not servers_with(alias), timeout=20), f"a llama-server survived: {servers_with(alias)}"


def first_line(err: BaseException) -> str:
    return str(err).splitlines()[0]


# ------------------------------------------------------------------------------------------------
# 1. the server exits before it is ready: its own error line and the signal in words, first


def _bad_arch(tiny: Path, tmp_path: Path) -> Path:
    data = tiny.read_bytes()
    out = tmp_path / "bad-arch.gguf"
    # general.architecture = "llama" -> "llamx", and every "llama." key with it
    out.write_bytes(data.replace(b"\x05\x00\x00\x00\x00\x00\x00\x00llama", b"\x05\x00\x00\x00\x00\x00\x00\x00llamx", 1)
                    .replace(b"llama.", b"llamx."))
    return out


def _truncated(tiny: Path, tmp_path: Path) -> Path:
    out = tmp_path / "truncated.gguf"
    out.write_bytes(tiny.read_bytes()[: tiny.stat().st_size * 4 // 5])
    return out


@pytest.mark.parametrize("fault, expect, fix", [
    ("bad flag value", 'error while handling argument "-c"', "Fix: correct the value of -c"),
    ("unknown architecture", "unknown model architecture: 'llamx'", "use a newer build, or another GGUF"),
    ("truncated GGUF", "not within the file bounds", "download it again"),
])
def test_start_failure_names_the_servers_error_line(make_server, tiny_gguf, tmp_path, fault, expect, fix) -> None:
    args, model = FAST, None
    if fault == "bad flag value":
        args = ["-t", "1", "-c", "abc"]  # preflight checks flags, not numbers; llama-server's stoi fails
    elif fault == "unknown architecture":
        model = _bad_arch(tiny_gguf, tmp_path)
    else:
        model = _truncated(tiny_gguf, tmp_path)
    srv = make_server(args, model=model)
    t0 = time.perf_counter()
    with pytest.raises(ServerError) as info:
        srv.start()
    row(fault, str(info.value), t0)
    first = first_line(info.value)
    assert first.startswith("llama-server for config 't' exited before it became ready (exit code 1): ")
    assert expect in first and fix in first
    assert "--- last 40 log lines ---" in str(info.value)  # the tail is kept below
    assert srv.log_path.is_file() and expect.split(":")[0] in srv.log_path.read_text()  # the log is kept whole


def test_port_taken_every_attempt_names_couldnt_bind(make_server, monkeypatch) -> None:
    """The port race is retried; a port that stays taken ends in llama-server's own bind error."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        monkeypatch.setattr(process, "free_port", lambda host="127.0.0.1": held.getsockname()[1])
        srv = make_server()
        t0 = time.perf_counter()
        with pytest.raises(ServerError) as info:
            srv.start()
    row("port taken", str(info.value), t0)
    assert "couldn't bind HTTP server socket" in first_line(info.value)
    assert "Fix: another process took the port" in first_line(info.value)


@pytest.mark.parametrize("use_exec", [True, False], ids=["exec", "no-exec"])
def test_signal_while_loading_is_named_in_words(make_server, server_bin, tmp_path, use_exec) -> None:
    """A FIFO as the model blocks the real server in its load; the wrapper then sends it SIGSEGV."""
    fifo = tmp_path / "blocking.gguf"
    os.mkfifo(fifo)
    if use_exec:  # $$ is the shell, which exec turns into llama-server
        script = wrapper(tmp_path, server_bin, '(sleep 0.5; kill -SEGV $$) &\nexec "$REAL" "$@"')
        expect = "killed by SIGSEGV (Segmentation fault)"
    else:  # the shell reports its child's signal as 128+11
        script = wrapper(tmp_path, server_bin, '"$REAL" "$@" &\npid=$!\n(sleep 0.5; kill -SEGV $pid) &\nwait $pid')
        expect = "exit code 139 (a shell's report of SIGSEGV (Segmentation fault))"
    srv = make_server(binary=script, model=fifo)
    t0 = time.perf_counter()
    with pytest.raises(ServerError) as info:
        srv.start()
    row(f"SIGSEGV while loading ({'exec' if use_exec else 'no exec'})", str(info.value), t0)
    first = first_line(info.value)
    assert f"exited before it became ready ({expect})" in first
    assert "Fix: llama-server crashed" in first


def _run_pytest(path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(path)}  # its own device lock: other runs on this machine don't block it
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=path, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("binary", ["llama-server", "/bin/true"])
def test_plugin_prints_the_cause_once(pytester: pytest.Pytester, server_bin, tiny_gguf, alias, binary) -> None:
    """Through the plugin: the cause on the first line of the failure, printed once, no results written."""
    real = binary == "llama-server"
    pytester.makefile(".toml", specgate=toml_config("t", server_bin if real else binary, tiny_gguf,
                                                    ["-t", "1", "-c", "abc", "--alias", alias]))
    pytester.makepyfile("def test_measure(specgate_measure):\n    specgate_measure('chat-short')\n")
    t0 = time.perf_counter()
    out = _run_pytest(pytester.path)
    text = out.stdout + out.stderr
    cause = ("llama-server for config 't' exited before it became ready (exit code 1): error while handling "
             'argument "-c": stoi. Fix: correct the value of -c' if real else
             "ERROR: specgate preflight: /bin/true is not llama-server: `true --help` exits 0 but lists no --host")
    line = next((ln for ln in text.splitlines() if ln.startswith(cause)), "")
    row("through the plugin: " + ("bad -c value" if real else "binary /bin/true"), line or "?", t0)
    assert line, text[-3000:]
    starts = [ln for ln in text.splitlines() if ln.startswith(cause)]  # (the run summary may quote it inside a line)
    assert len(starts) == 1 and "During handling" not in text and "Traceback" not in text, text[-3000:]
    if real:
        assert " 1 failed" in text and out.returncode == pytest.ExitCode.TESTS_FAILED
    else:
        assert out.returncode == pytest.ExitCode.USAGE_ERROR and "remove" not in line
    assert not (pytester.path / ".specgate" / "latest.json").exists()  # a run with no samples writes none
    assert not servers_with(alias)


@pytest.mark.parametrize("log, code, line, fix", [
    ("ggml.c:1234: GGML_ASSERT(i01 >= 0 && i01 < ne01) failed\n", -6, "GGML_ASSERT(i01 >= 0 && i01 < ne01) failed",
     "aborted on an internal check"),
    ("0.00.01 I srv  load: x\n", -4, "", "CPU instructions this machine lacks"),
    ("0.00.01 E srv    load_model: failed to load model\n0.00.02 E ggml_cuda: out of memory\n", 1,
     "ggml_cuda: out of memory", "does not fit"),
    ("plain text\n", 2, "", "the log tail below"),
])
def test_diagnosis_of_log_lines(log, code, line, fix) -> None:
    """The parts of a first line for logs a real server writes only on hardware we may not have."""
    _, got_line, got_fix = diagnose(log, code)
    assert got_line.endswith(line) and fix in got_fix


# ------------------------------------------------------------------------------------------------
# 2. the server dies mid-request: the server's death, once, not an httpcore traceback


def _pool(make_server: Callable[..., LlamaServer], tmp_path: Path, args: list[str] | None = None,
          **kw: Any) -> ServerPool:
    return ServerPool(lambda name: make_server(args), lock_dir=tmp_path, **kw)


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
def test_death_mid_request_is_the_servers_error(make_server, tmp_path, sig) -> None:
    pool = _pool(make_server, tmp_path)
    try:
        running = pool.get("t")
        pid = running.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # the request is sent and waits; then the server dies under it
        threading.Timer(0.5, lambda: (os.kill(pid, sig), os.kill(pid, signal.SIGCONT))).start()
        t0 = time.perf_counter()
        with pytest.raises(ServerError) as info:
            running.client.chat(dict(BODY), workload="chat-short")
        row(f"{sig.name} mid-request", str(info.value), t0)
        first = first_line(info.value)
        assert first.startswith(f"llama-server for config 't' died during a request (killed by {sig.name} (")
        assert "Fix:" in first and f"log: {running.server.log_path}" in str(info.value)
        assert info.value.__suppress_context__  # raised from None: printed once, no httpcore chain
        assert "httpcore" not in str(info.value) and "RemoteProtocolError" not in str(info.value)
        with pytest.raises(ServerError) as again:  # the sampler's check_alive() re-raises the same error
            running.server.check_alive()
        assert again.value is info.value
        fresh = pool.get("t")  # a later test gets a new server, not the dead one
        assert fresh.server.pid != pid and fresh.client.props()
    finally:
        pool.stop()
    assert DeviceLock("0", tmp_path).try_acquire("check")


# ------------------------------------------------------------------------------------------------
# 3. request_timeout is one deadline per request; a hung server is stopped and never reused


def test_frozen_server_no_token_then_replaced(make_server, tmp_path) -> None:
    pool = _pool(make_server, tmp_path, request_timeout=2.0)
    try:
        running = pool.get("t")
        pid = running.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        t0 = time.perf_counter()
        with pytest.raises(ServerError) as info:
            running.client.chat(dict(BODY), workload="chat-short")
        row("frozen server (request_timeout 2 s)", str(info.value), t0)
        first = first_line(info.value)
        assert first.startswith("no token for 2 s (request_timeout, POST /v1/chat/completions (stream)) from "
                                "llama-server for config 't'; it was stopped and is not reused.")
        assert f"log: {running.server.log_path}" in first
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        fresh = pool.get("t")
        assert fresh.server.pid != pid
        assert fresh.client.chat(dict(BODY, n_predict=8), workload="chat-short").timings.predicted_n == 8
    finally:
        pool.stop()


def test_trickling_server_hits_the_overall_deadline(make_server, tmp_path) -> None:
    """httpx bounds each read; a server that sends a token every 0.3 s would never trip that."""
    pool = _pool(make_server, tmp_path, request_timeout=2.0)
    stop = threading.Event()
    try:
        running = pool.get("t")
        pid = running.server.pid
        assert pid is not None

        def trickle() -> None:
            while not stop.is_set():
                try:
                    os.kill(pid, signal.SIGSTOP)
                    time.sleep(0.3)
                    os.kill(pid, signal.SIGCONT)
                    time.sleep(0.002)
                except ProcessLookupError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        t0 = time.perf_counter()
        with pytest.raises(ServerError) as info:
            running.client.chat(dict(BODY, n_predict=400), workload="chat-short")
        row("trickling server (request_timeout 2 s)", str(info.value), t0)
        first = first_line(info.value)
        assert first.startswith("request exceeded 2 s (request_timeout, POST /v1/chat/completions (stream); ")
        assert "tokens back by then) from llama-server for config 't'; it was stopped" in first
        assert pool.get("t").server.pid != pid
    finally:
        stop.set()
        pool.stop()


def test_frozen_server_non_streaming_request(make_server, tmp_path) -> None:
    pool = _pool(make_server, tmp_path, request_timeout=1.5)
    try:
        running = pool.get("t")
        assert running.server.pid is not None
        os.kill(running.server.pid, signal.SIGSTOP)
        with pytest.raises(ServerError) as info:
            running.client.chat(dict(BODY), workload="lossless-probe", stream=False)
        assert first_line(info.value).startswith("no token for 1.5 s (request_timeout, POST /v1/chat/completions) "
                                                 "from llama-server for config 't'")
    finally:
        pool.stop()


# ------------------------------------------------------------------------------------------------
# 4. a binary that is not llama-server


@pytest.mark.parametrize("kind", ["/bin/true", "llama-bench", "script"])
def test_not_llama_server_is_named(server_bin, tmp_path, kind) -> None:
    if kind == "llama-bench":
        binary = server_bin.with_name("llama-bench")
    elif kind == "script":
        binary = wrapper(tmp_path, server_bin, 'echo "serving the model on :8080"', "serve.sh")  # ignores --help
    else:
        binary = Path(kind)
    t0 = time.perf_counter()
    with pytest.raises(PreflightError) as info:
        preflight.binary_help(binary)
    row(f"binary is {kind}", str(info.value), t0)
    first = first_line(info.value)
    assert first.startswith(f"{binary} is not llama-server: `{binary.name} --help` exits 0 but lists no --host or "
                            "--port flag")
    assert "Fix: point `binary` at llama.cpp's llama-server" in first


# ------------------------------------------------------------------------------------------------
# 5. a wrapper without exec: readiness follows the process group; stop kills the whole group


def test_wrapper_without_exec_is_ready_and_stopped_whole(make_server, server_bin, tmp_path) -> None:
    script = wrapper(tmp_path, server_bin, '"$REAL" "$@"\necho "wrapper: server ended"')
    srv = make_server(binary=script, startup_timeout=60)
    t0 = time.perf_counter()
    srv.start()
    row("wrapper without exec", "ready (listener is the wrapper's child)", t0)
    listener = srv.listener()
    assert listener is not None and listener.pid != srv.pid and listener.ppid() == srv.pid
    srv.stop()
    assert wait_for(lambda: not psutil.pid_exists(listener.pid), timeout=10)


# ------------------------------------------------------------------------------------------------
# 6. the pool: a failure after start stops the server and frees the lock; a busy lock names its holder


def test_failure_after_start_stops_server_and_releases_lock(make_server, server_bin, tmp_path, alias) -> None:
    """--api-key (preflight refuses it; bypassed here) makes /props answer 401 right after start."""
    pool = _pool(make_server, tmp_path, args=[*FAST, "--api-key", "secret"])
    t0 = time.perf_counter()
    with pytest.raises(ServerError) as info:
        pool.get("t")
    row("401 from /props after start", str(info.value), t0)
    assert first_line(info.value).startswith("llama-server answered GET http://127.0.0.1:")
    assert "/props with HTTP 401: Invalid API Key. Fix: the server wants an API key" in first_line(info.value)
    assert pool.current is None and not servers_with(alias)
    assert not (tmp_path / "pytest-specgate-device-0.holder.json").exists()
    assert DeviceLock("0", tmp_path).try_acquire("next")


def test_busy_device_lock_names_holder_and_gives_up(make_server, tmp_path) -> None:
    code = ("import sys, time; from pathlib import Path; from pytest_specgate.server.gpu_lock import DeviceLock\n"
            f"lock = DeviceLock('0', Path({str(tmp_path)!r})); lock.acquire('other-run', 10)\n"
            "print('HELD', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    said: list[str] = []
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
        pool = ServerPool(lambda name: make_server(), lock_dir=tmp_path, lock_timeout=1.0, announce=said.append)
        t0 = time.perf_counter()
        with pytest.raises(ServerError) as info:
            pool.get("t")
        row("device lock held by another run (lock_timeout 1 s)", str(info.value), t0)
    finally:
        holder.kill()
        holder.wait()
    assert said and f"is held by PID {holder.pid} (config other-run) since " in said[0]
    assert "waits up to 1 s for it (specgate_lock_timeout)" in said[0]
    first = first_line(info.value)
    assert first.startswith(f"device 0 is busy: held by PID {holder.pid} (config other-run) since ")
    assert "waited 1 s for it" in first and "Fix:" in first


# ------------------------------------------------------------------------------------------------
# 7. SIGTERM ends the session; a SIGKILLed xdist controller takes its workers' servers along


HOLD_THEN_MORE = """
import time

def test_0_measure(specgate_measure):
    specgate_measure("chat-short")

def test_1_hold(specgate_server):
    print("SERVER-UP", specgate_server.server.pid, flush=True)
    time.sleep(60)

def test_2_would_start_again(specgate_server):
    print("SECOND-TEST-RAN", flush=True)
"""


def _pytester_run(pytester: pytest.Pytester, server_bin: Path, tiny_gguf: Path, alias: str,
                  *extra: str) -> subprocess.Popen[str]:
    """pytest in a subprocess; its output goes to ``out.txt`` (read while it runs)."""
    pytester.makefile(".toml", specgate=toml_config("t", server_bin, tiny_gguf, [*FAST, "--alias", alias]))
    pytester.makepyfile(HOLD_THEN_MORE)
    env = {**os.environ, "TMPDIR": str(pytester.path)}  # its own device lock: other runs on this machine
    with (pytester.path / "out.txt").open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", *extra],
                                cwd=pytester.path, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)


def test_sigterm_ends_the_session(pytester: pytest.Pytester, server_bin, tiny_gguf, alias) -> None:
    proc = _pytester_run(pytester, server_bin, tiny_gguf, alias)
    output = pytester.path / "out.txt"
    try:
        assert wait_for(lambda: "SERVER-UP" in output.read_text(), timeout=120), output.read_text()[-3000:]
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        out = output.read_text()
        row("SIGTERM to pytest", next((ln for ln in out.splitlines() if "KeyboardInterrupt" in ln), "?"), t0)
    finally:
        proc.kill()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert "SECOND-TEST-RAN" not in out and "SystemExit" not in out, out[-3000:]
    assert "= 1 passed in " in out  # test_1_hold is not recorded as failed (nor as passed)
    assert "SIGTERM received; the run stops here" in out
    stored = json.loads((pytester.path / ".specgate" / "latest.json").read_text())  # the samples taken are kept,
    assert stored["status"] == "interrupted"  # marked so that they never become a baseline
    assert wait_for(lambda: not servers_with(alias), timeout=10), "a llama-server outlived the SIGTERM"


def test_xdist_controller_sigkill_takes_worker_servers_down(pytester: pytest.Pytester, server_bin, tiny_gguf,
                                                            alias) -> None:
    proc = _pytester_run(pytester, server_bin, tiny_gguf, alias, "-n", "1")
    try:
        servers = wait_for(lambda: servers_with(alias), timeout=120)
        assert servers, "the server never started"
        t0 = time.perf_counter()
        proc.kill()
        proc.wait()
        gone = wait_for(lambda: not servers_with(alias), timeout=30, interval=0.02)
        seconds = time.perf_counter() - t0
        row("xdist controller SIGKILLed", f"worker's llama-server gone after {seconds:.2f} s", t0)
    finally:
        proc.kill()
    assert gone, "the worker's llama-server outlived the controller"


# ------------------------------------------------------------------------------------------------
# 8. HTTP_PROXY must not capture requests to 127.0.0.1


def test_bogus_http_proxy_is_ignored(make_server, tmp_path, monkeypatch) -> None:
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    pool = _pool(make_server, tmp_path)
    try:
        running = pool.get("t")
        sample = running.client.chat(dict(BODY, n_predict=4), workload="chat-short")
        assert sample.timings.predicted_n == 4 and running.props
    finally:
        pool.stop()
