"""File primitives every layer shares: atomic writes, announced file locks, sha256.

Why one module: a gate that writes results, baselines, reports, build manifests and hash caches
from several xdist workers and terminals at once needs each of these done one way. A crash must
never leave a half-written file that a later run would trust, and a run blocked on a lock must say
so instead of looking hung.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock

__all__ = ["announced_lock", "publish", "sha256_file", "write_atomic"]


def sha256_file(path: Path | str, block: int = 1 << 22) -> str:
    """sha256 of a file of any size, read in blocks (a GGUF can be 16 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def publish(tmp: Path | str, target: Path) -> None:
    """Atomically move a finished temp file into place, readable by others sharing the cache.

    (``mkstemp`` creates files 0600; a CI cache shared by users or containers needs 0644.)
    """
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temp file beside ``path`` then ``os.replace``: readers see old or new, never half.

    ``str`` is written as UTF-8.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def announced_lock(lock_path: Path, log: Callable[[str], None], what: str) -> Iterator[None]:
    """Hold a file lock (no timeout); say so when we have to wait, so a blocked run does not look hung."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except TimeoutError:
        log(f"{what}: another process holds {lock_path}; waiting for it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
