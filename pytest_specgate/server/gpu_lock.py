"""One machine-wide lock per device, taken with a timeout, that says who holds it.

Why: two servers on one GPU measure each other (memory and speed), so a server holds the lock of
every device it uses while it is alive: pytest-xdist workers and two terminals take turns. A
bare "timed out" after ten minutes is useless, so the holder records its PID, config and start time
beside the lock (not inside it: filelock truncates the lock file when a waiter opens it), and the
timeout message names them. The OS releases a lock whose holder died (fcntl), and the next holder
overwrites the stale record, so a crash never wedges the machine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from pytest_specgate._files import write_atomic
from pytest_specgate.errors import ServerError

__all__ = ["DeviceLock", "acquire_devices", "pick_free_device"]


class DeviceLock:
    """The lock of one device ("0", "1", or "cpu") under ``lock_dir``."""

    def __init__(self, device: str, lock_dir: Path) -> None:
        self.device = device
        self.path = Path(lock_dir) / f"pytest-specgate-device-{device}.lock"
        self.holder_path = self.path.with_suffix(".holder.json")
        self._lock = FileLock(str(self.path))

    @property
    def is_locked(self) -> bool:
        return self._lock.is_locked

    def holder(self) -> str:
        """"PID 123 (config mtp) since 09:12:03 UTC, 41 s ago", or why it is unknown."""
        try:
            rec = json.loads(self.holder_path.read_text())
            since = datetime.fromisoformat(rec["since"])
            age = (datetime.now(UTC) - since).total_seconds()
            return f"PID {rec['pid']} (config {rec['config']}) since {since:%H:%M:%S} UTC, {age:.0f} s ago"
        except (OSError, ValueError, KeyError):
            return "a process that left no holder record (an older specgate, or one starting right now)"

    def try_acquire(self, config: str) -> bool:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        self._record(config)
        return True

    def acquire(self, config: str, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (negative: forever); on timeout, one line naming the holder."""
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise ServerError(
                f"device {self.device} is busy: held by {self.holder()}; waited {timeout:.0f} s for it "
                f"(lock {self.path}). Fix: wait for that run to finish or stop it, or give this config other "
                "devices (devices = [...] in the config)."
            ) from None
        self._record(config)

    def _record(self, config: str) -> None:
        rec = {"pid": os.getpid(), "config": config, "since": datetime.now(UTC).isoformat()}
        write_atomic(self.holder_path, json.dumps(rec).encode())

    def release(self) -> None:
        if self._lock.is_locked:
            self.holder_path.unlink(missing_ok=True)
            self._lock.release()


def acquire_devices(devices: Iterable[str], lock_dir: Path, config: str, timeout: float) -> list[DeviceLock]:
    """Lock every device a server will use, in a fixed order (no deadlock between two multi-GPU runs)."""
    deadline = time.monotonic() + timeout if timeout >= 0 else None
    held: list[DeviceLock] = []
    try:
        for device in sorted(set(devices), key=lambda d: (not d.isdigit(), int(d) if d.isdigit() else 0, d)):
            lock = DeviceLock(device, lock_dir)
            left = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            lock.acquire(config, left)
            held.append(lock)
    except BaseException:
        for lock in held:
            lock.release()
        raise
    return held


def pick_free_device(candidates: Iterable[str], lock_dir: Path, config: str) -> DeviceLock | None:
    """The first candidate whose lock is free right now (taken); None when all are busy.

    How an xdist worker on a multi-GPU machine lands on its own GPU without being told which.
    """
    for device in candidates:
        lock = DeviceLock(device, lock_dir)
        if lock.try_acquire(config):
            return lock
    return None
