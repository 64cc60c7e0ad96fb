"""One llama-server process: argv, start, readiness, log capture, failure reports, stop.

A server may hold 20 GiB of VRAM, so it must never outlive the run that started it:
- it gets its own process group, so the whole tree is signalled together;
- it gets the Linux parent-death signal (SIGKILL when pytest dies, even by SIGKILL);
- ``stop()`` sends SIGTERM, waits, then SIGKILL, and is called on every exit path by the pool.

Readiness is ``/health == 200``: the port is bound before the model loads and answers 503 while
loading (tools/server/server-http.cpp). A dead process or a timeout becomes an error carrying the exit
code, the command line and the last 40 log lines, because that is what an operator needs first.
"""

from __future__ import annotations

import ctypes
import shlex
import signal
import socket
import subprocess
import time
from collections import deque
from pathlib import Path

import httpx
import psutil

from pytest_specgate._proc import scrubbed_env, stop_group
from pytest_specgate.errors import ServerError

_PR_SET_PDEATHSIG = 1


def hermetic_env(extra: dict[str, str], config_home: Path) -> dict[str, str]:
    """The server's environment: ours minus llama.cpp's config channels, plus the config's own env.

    ``XDG_CONFIG_HOME`` points at an empty directory so a ``~/.config/llama.cpp/config.ini`` on the
    operator's machine cannot change the flags being measured.
    """
    env = scrubbed_env()
    env["XDG_CONFIG_HOME"] = str(config_home)
    env.update(extra)
    return env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the pool's atexit and signal handlers still stop the server


def log_tail(path: Path, n: int = 40) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=n))
    except OSError:
        return "(no log)"


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
        return shlex.join(self.argv)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> None:
        """Start and wait for readiness; retry on a lost port race (bind happens before the load)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config_home = self.log_dir / "xdg-config-empty"
        config_home.mkdir(exist_ok=True)
        env = hermetic_env(self.env, config_home)
        for attempt in range(attempts):
            self.port = free_port(self.host)
            t0 = time.perf_counter()
            with self.log_path.open("wb") as log:
                log.write(f"# specgate: {self.command_line()}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                    start_new_session=True, preexec_fn=_die_with_parent,
                )
            try:
                self._wait_ready()
            except ServerError:
                lost_race = "couldn't bind HTTP server socket" in log_tail(self.log_path)
                self.stop()
                if lost_race and attempt + 1 < attempts:
                    continue
                raise
            self.load_seconds = time.perf_counter() - t0
            return

    def _failure(self, what: str) -> ServerError:
        code = self.proc.poll() if self.proc else None
        return ServerError(
            f"llama-server for config {self.name!r} {what}"
            f"{'' if code is None else f' (exit code {code})'}.\n"
            f"command: {self.command_line()}\nlog: {self.log_path}\n"
            f"--- last 40 log lines ---\n{log_tail(self.log_path)}"
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    raise self._failure("exited before it became ready")
                try:
                    if http.get(f"{self.url}/health").status_code == 200 and self._owns_port():
                        return
                except httpx.HTTPError:
                    pass  # not bound yet, or loading
                if time.monotonic() > deadline:
                    raise self._failure(f"was not ready after {self.startup_timeout:g} s")
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

    def _owns_port(self) -> bool:
        """True when our process listens on the port: a 200 from a server that won the port race
        (another run's llama-server) must not count as ours being ready."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            conns = psutil.Process(self.proc.pid).net_connections(kind="tcp")
        except psutil.Error:
            return True  # cannot tell (e.g. restricted /proc); fall back to trusting /health
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port for c in conns)

    def check_alive(self) -> None:
        """Raise with the log tail if the process died (e.g. crashed mid-request)."""
        if not self.alive():
            raise self._failure("is no longer running")

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL. Idempotent."""
        proc, self.proc = self.proc, None
        return None if proc is None else stop_group(proc, grace)

