"""Which llama-servers are alive: at most one per device, reused across tests, always stopped.

A performance gate cannot pay a model load per test, and two servers measured on one GPU at once
would measure each other. So the pool keeps one live server per process, switches configs only when
asked for another one (stopping the first), and holds a machine-wide lock per device while a server is
alive, so pytest-xdist workers (or two pytest runs) take turns instead of contending. A run that has to
wait says who holds the lock, and gives up after ``lock_timeout`` seconds with that holder's name.

Every exit path stops the server and releases the lock: a failure anywhere after ``start()`` (a 401
from /props, a probe that cannot start), a server whose request hung or died (it is replaced, never
reused), session finish, ``atexit``, SIGTERM (the plugin's handler), and the parent-death signal for
the cases Python never sees (SIGKILL).
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pytest_specgate.server.client import Client
from pytest_specgate.server.gpu import visible_from_env
from pytest_specgate.server.gpu_lock import DeviceLock, pick_free_device
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


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


class ServerPool:
    """Start servers lazily by config name; ``factory`` builds an unstarted ``LlamaServer``."""

    def __init__(self, factory: Callable[[str], LlamaServer], *, device: str = "0",
                 lock_dir: Path | None = None, request_timeout: float = 600.0, lock_timeout: float = 600.0,
                 announce: Callable[[str], None] = _stderr, gpu_candidates: list[str] | None = None) -> None:
        self.factory = factory
        self.request_timeout = request_timeout
        self.lock_timeout = lock_timeout
        self.announce = announce
        self.lock_dir = lock_dir or Path(tempfile.gettempdir())
        #: the machine's lock when a server names no GPUs (CPU builds, one-GPU machines)
        self.lock = DeviceLock(device, self.lock_dir)
        #: the locks the live server holds: its CUDA_VISIBLE_DEVICES, or ``lock``
        self.locks: list[DeviceLock] = []
        #: an xdist worker's GPUs to take a free one from, its own first (None: no picking)
        self.gpu_candidates = gpu_candidates
        #: how each config's VRAM was measured, or why it was not (the report's notes)
        self.memory_notes: dict[str, str] = {}
        self.current: tuple[str, Running] | None = None
        self.loads: dict[str, int] = {}
        self.load_seconds: dict[str, list[float]] = {}
        self.memory: dict[str, dict[str, float]] = {}
        self.props: dict[str, dict[str, object]] = {}
        self._installed = False

    def get(self, name: str) -> Running:
        if self.current and self.current[0] == name:
            server = self.current[1].server
            if server.fault is None and server.alive():
                return self.current[1]
            # it hung or died; the test that met it reported why. Later tests get a fresh server.
        self.stop()
        if not self._installed:
            self._installed = True
            atexit.register(self.stop)
        server = self.factory(name)
        visible = self._take_lock(name, server)
        try:
            memory = MemoryProbe(visible=visible).before_load()  # the cards' used memory before the load
            server.start()
            memory.attach(server.pid or 0)
            memory.mark_idle()
            memory.start()
            running = Running(server, Client(server.url, timeout=self.request_timeout, fault=server.on_client_fault),
                              memory)
        except BaseException:
            server.stop(grace=2.0)
            self._release()
            raise
        self.current = (name, running)  # from here on, stop() closes it on every path
        self.loads[name] = self.loads.get(name, 0) + 1
        self.load_seconds.setdefault(name, []).append(server.load_seconds)
        try:
            running.props = running.client.props()
        except BaseException:
            self.stop()
            raise
        self.props[name] = running.props
        return running

    def _take_lock(self, name: str, server: LlamaServer) -> list[str] | None:
        """Lock the devices ``server`` uses; when another run holds one, say who and wait at most ``lock_timeout`` s.

        The devices are the server's ``CUDA_VISIBLE_DEVICES`` (a config's ``devices``, or the caller's);
        without them an xdist worker on a multi-GPU machine takes a free GPU and pins the server to it,
        and otherwise ``lock`` stands for the machine. Returns the server's visible GPUs (None: all).
        ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes CUDA's device indices NVML's.
        """
        visible = visible_from_env({**os.environ, **server.env})
        if visible is None and self.gpu_candidates:
            free = pick_free_device(self.gpu_candidates, self.lock_dir, name)
            visible = [free.device if free else self.gpu_candidates[0]]
            self.locks = [free] if free else []
            server.env = {**server.env, "CUDA_VISIBLE_DEVICES": visible[0]}  # a copy: the config's env stays
        server.env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", **server.env}
        devices = visible or [self.lock.device]
        try:
            for device in sorted(set(devices) - {lock.device for lock in self.locks}):  # fixed order: no deadlock
                lock = self.lock if device == self.lock.device else DeviceLock(device, self.lock_dir)
                if not lock.try_acquire(name):
                    self.announce(f"specgate: device {device} is held by {lock.holder()}; config {name!r} waits "
                                  f"up to {self.lock_timeout:g} s for it (specgate_lock_timeout)")
                    lock.acquire(name, self.lock_timeout)
                self.locks.append(lock)
        except BaseException:
            self._release()
            raise
        return visible

    def _release(self) -> None:
        for lock in self.locks:
            lock.release()
        self.locks = []

    def stop(self) -> None:
        if self.current is None:
            return
        name, running = self.current
        self.current = None
        try:
            running.memory.read()
            self.memory[name] = running.memory.figures()
            if running.memory.gpu_present:  # without a GPU the skipped VRAM budget already says why
                self.memory_notes[name] = running.memory.describe()
        finally:
            try:
                running.close()
            finally:
                self._release()
