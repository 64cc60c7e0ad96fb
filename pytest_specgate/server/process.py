"""One llama-server process: argv, start, readiness, log capture, failure reports, stop.

A server may hold 20 GiB of VRAM, so it must never outlive the run that started it:
- it gets its own process group, so the whole tree is signalled together;
- it gets the Linux parent-death signal (SIGKILL when pytest dies, even by SIGKILL), set by a launcher
  that execs it (``_proc.spawn_group``), not by ``preexec_fn``, which is unsafe while threads run;
- ``stop()`` sends SIGTERM, waits, then SIGKILL, and is called on every exit path by the pool;
- in an xdist worker, ``watch_parent()`` kills every server within 0.2 s of the controller's death.

Readiness is ``/health == 200`` from a process of *our* group listening on the port: the port is bound
before the model loads and answers 503 while loading (tools/server/server-http.cpp), and a wrapper
script that runs llama-server without ``exec`` makes the listener a grandchild. A dead process or a
timeout becomes an error whose first line is the server's own error line, the exit status in words
and the fix (``diagnosis.py``); the command line and the last 40 log lines follow.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil

from pytest_specgate._proc import free_port, group_members, log_tail, scrubbed_env, spawn_group, stop_group
from pytest_specgate.config import redact_args
from pytest_specgate.errors import ServerError
from pytest_specgate.server.diagnosis import diagnose

#: process groups of the servers alive in this process (what the parent watchdog kills)
_LIVE: set[int] = set()
_refused: list[str] = []


def hermetic_env(extra: dict[str, str], config_home: Path) -> dict[str, str]:
    """The server's environment: ours minus llama.cpp's config channels, plus the config's own env.

    ``XDG_CONFIG_HOME`` points at an empty directory so a ``~/.config/llama.cpp/config.ini`` on the
    operator's machine cannot change the flags being measured.
    """
    env = scrubbed_env()
    env["XDG_CONFIG_HOME"] = str(config_home)
    env.update(extra)
    return env


def refuse_new_servers(reason: str) -> None:
    """No server starts in this process from now on (SIGTERM, or the xdist controller died)."""
    if not _refused:
        _refused.append(reason)


def kill_all() -> None:
    """SIGKILL every server group started here; for paths that have no time for a graceful stop."""
    for pgid in list(_LIVE):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _LIVE.discard(pgid)


def watch_parent(interval: float = 0.2) -> threading.Thread:
    """Kill this process's servers, then exit, within ``interval`` s of our parent's death.

    For pytest-xdist workers: when the controller is SIGKILLed a worker notices only when execnet's
    pipe breaks, seconds later, and meanwhile its server holds the GPU. The servers' own parent-death
    signal fires only when the worker dies, so the worker polls its parent and dies first.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        refuse_new_servers("the pytest-xdist controller died")
        kill_all()
        os._exit(3)

    thread = threading.Thread(target=watch, name="specgate-parent-watch", daemon=True)
    thread.start()
    return thread


class LlamaServer:
    """A llama-server started for one config. Use ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, name: str, binary: Path, model: Path, args: list[str], env: dict[str, str],
                 log_dir: Path, *, startup_timeout: float = 300.0, host: str = "127.0.0.1") -> None:
        self.name = name
        self.binary = binary
        self.model = model
        self.args = list(args)
        self.env = env
        self.host = host
        self.startup_timeout = startup_timeout
        self.log_dir = log_dir
        self.log_path = log_dir / f"llama-server-{name}.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.load_seconds = 0.0
        self._log_offset = 0
        #: the first fault a request hit (hung, died); a server with a fault is never reused
        self.fault: ServerError | None = None

    @property
    def argv(self) -> list[str]:
        return [str(self.binary), "-m", str(self.model), *self.args, "--host", self.host, "--port", str(self.port)]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command_line(self) -> str:
        """The argv for the log header and error messages, secret-bearing values redacted."""
        return shlex.join(redact_args(self.argv))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> None:
        """Start and wait for readiness; retry on a lost port race (bind happens before the load)."""
        if _refused:
            raise ServerError(f"llama-server for config {self.name!r} was not started: {_refused[0]}; the run is "
                              "ending. Fix: nothing to fix here; rerun when the cause above is dealt with.")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config_home = self.log_dir / "xdg-config-empty"
        config_home.mkdir(exist_ok=True)
        env = hermetic_env(self.env, config_home)
        self.fault = None
        for attempt in range(attempts):
            self.port = free_port(self.host)
            t0 = time.perf_counter()
            with self.log_path.open("wb") as log:
                log.write(f"# specgate: {self.command_line()}\n".encode())
                log.flush()
                self.proc = spawn_group(self.argv, env=env, stdout=log)
            _LIVE.add(self.proc.pid)
            try:
                self._wait_ready()
            except ServerError:
                lost_race = "couldn't bind HTTP server socket" in log_tail(self.log_path)
                self.stop(grace=2.0)
                if lost_race and attempt + 1 < attempts:
                    continue
                raise
            except BaseException:  # Ctrl-C or SIGTERM while loading: never leave it behind
                self.stop(grace=2.0)
                raise
            self.load_seconds = time.perf_counter() - t0
            return

    def report(self, what: str, *, code: int | None = None, tail: bool = True) -> ServerError:
        """The error for ``what`` happened to this server; first line: cause (its own error line) and fix."""
        text = log_tail(self.log_path, 200)
        status, line, fix = diagnose(text, code)
        first = f"llama-server for config {self.name!r} {what}" + (f" ({status})" if code is not None else "")
        first += f": {line.rstrip('.')}. {fix}" if line else f". {fix}"
        rest = f"log: {self.log_path}\ncommand: {self.command_line()}"
        if tail:
            rest += f"\n--- last 40 log lines ---\n{''.join(text.splitlines(True)[-40:])}"
        return ServerError(f"{first}\n{rest}")

    def _failure(self, what: str) -> ServerError:
        return self.report(what, code=self.proc.poll() if self.proc else None)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    raise self._failure("exited before it became ready")
                try:
                    if http.get(f"{self.url}/health").status_code == 200 and self._owns_port():
                        return
                except httpx.HTTPError:
                    pass  # not bound yet, or loading
                if time.monotonic() > deadline:
                    raise self._failure(f"was not ready after {self.startup_timeout:g} s (startup_timeout)")
                time.sleep(0.05)

    def new_log_text(self) -> str:
        """Log text written since the previous call (per-request lines such as draft acceptance)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                data = f.read()
        except OSError:
            return ""
        self._log_offset += len(data)
        return data.decode("utf-8", "replace")

    def listener(self) -> psutil.Process | None:
        """The process of our group listening on our port (the server itself, or a wrapper's child)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        for member in group_members(self.proc.pid):
            try:
                conns = member.net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port for c in conns):
                return member
        return None

    def _owns_port(self) -> bool:
        """True when a process of our group listens on the port: a 200 from a server that won the port
        race (another run's llama-server) must not count as ours being ready."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            psutil.Process(self.proc.pid).net_connections(kind="tcp")
        except psutil.AccessDenied:
            return True  # cannot tell (restricted /proc); fall back to trusting /health
        except psutil.Error:
            return False
        return self.listener() is not None

    def check_alive(self) -> None:
        """Raise the recorded fault (a hung request), or the death report if the process died."""
        if self.fault is not None:
            raise self.fault
        if not self.alive():
            raise self._failure("is no longer running")

    def on_client_fault(self, what: str, hung: bool) -> ServerError:
        """The error the client raises for a failed request: the server's death when it died (its error
        line, exit status, log path), else ``what`` the client saw. A hung server is stopped at once and
        marked so the pool never hands it out again."""
        if hung:
            self.fault = ServerError(
                f"{what} from llama-server for config {self.name!r}; it was stopped and is not reused. "
                f"log: {self.log_path}. Fix: raise workloads.request_timeout if the server is only slow; "
                f"otherwise the log shows where it stalled.")
            self.stop(grace=0)
            return self.fault
        if self.proc is not None:
            try:  # a crashing server closes its sockets a moment before it can be reaped
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None and self.proc.poll() is not None:
            self.fault = self.report("died during a request", code=self.proc.poll())
        else:
            self.fault = ServerError(f"{what} (llama-server for config {self.name!r} is still running). "
                                     f"Fix: the log may say why: {self.log_path}")
        return self.fault

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        try:
            return stop_group(proc, grace)
        finally:
            _LIVE.discard(proc.pid)
