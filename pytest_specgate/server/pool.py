"""Which llama-servers are alive: at most one per device, reused across tests, always stopped.

A performance gate cannot pay a model load per test, and two servers measured on one GPU at once
would measure each other. So the pool keeps one live server per process, switches configs only when
asked for another one (stopping the first), and holds a machine-wide file lock per device while a
server is alive, so pytest-xdist workers (or two pytest runs) take turns instead of contending.
Every exit path stops the server: session finish, ``atexit``, SIGTERM/SIGHUP, and the parent-death
signal set in ``server.py`` for the cases Python never sees (SIGKILL).
"""

from __future__ import annotations

import atexit
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from filelock import FileLock

from pytest_specgate.server.client import Client
from pytest_specgate.server.memory import MemoryProbe
from pytest_specgate.server.process import LlamaServer


class Running:
    """A live server with its client and memory probe."""

    def __init__(self, server: LlamaServer, client: Client, memory: MemoryProbe) -> None:
        self.server, self.client, self.memory = server, client, memory
        #: the server's /props (build_info, model_path, chat_template_caps, ...), read once after start
        self.props: dict[str, object] = {}

    def close(self) -> None:
        self.memory.stop()
        # close connections first: llama-server finishes in-flight requests before it exits on SIGTERM
        # (shutdown_handler in tools/server/server.cpp)
        self.client.close()
        self.server.stop()


class ServerPool:
    """Start servers lazily by config name; ``factory`` builds an unstarted ``LlamaServer``."""

    def __init__(self, factory: Callable[[str], LlamaServer], *, device: str = "0",
                 lock_dir: Path | None = None, request_timeout: float = 600.0) -> None:
        self.factory = factory
        self.request_timeout = request_timeout
        lock_dir = lock_dir or Path(tempfile.gettempdir())
        self.lock = FileLock(str(lock_dir / f"pytest-specgate-device-{device}.lock"))
        self.current: tuple[str, Running] | None = None
        self.loads: dict[str, int] = {}
        self.load_seconds: dict[str, list[float]] = {}
        self.memory: dict[str, dict[str, float]] = {}
        self.props: dict[str, dict[str, object]] = {}
        self._installed = False

    def get(self, name: str) -> Running:
        if self.current and self.current[0] == name:
            self.current[1].server.check_alive()
            return self.current[1]
        self.stop()
        self._install_handlers()
        server = self.factory(name)
        self.lock.acquire()
        try:
            server.start()
        except BaseException:
            server.stop()
            self.lock.release()
            raise
        memory = MemoryProbe(server.pid or 0)
        memory.mark_idle()
        memory.start()
        running = Running(server, Client(server.url, timeout=self.request_timeout), memory)
        running.props = running.client.props()
        self.props[name] = running.props
        self.current = (name, running)
        self.loads[name] = self.loads.get(name, 0) + 1
        self.load_seconds.setdefault(name, []).append(server.load_seconds)
        return running

    def stop(self) -> None:
        if self.current is None:
            return
        name, running = self.current
        self.current = None
        try:
            running.memory.read()
            self.memory[name] = running.memory.figures()
            running.close()
        finally:
            if self.lock.is_locked:
                self.lock.release()

    # ---- exit paths Python does see ----

    def _install_handlers(self) -> None:
        if self._installed:
            return
        self._installed = True
        atexit.register(self.stop)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                previous = signal.getsignal(sig)
                signal.signal(sig, self._on_signal(previous))
            except ValueError:  # not the main thread
                pass

    def _on_signal(self, previous: object) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()
            if callable(previous):
                previous(signum, frame)
            else:
                raise SystemExit(128 + signum)
        return handler
