"""File primitives every layer shares: atomic writes, file locks, sha256 and its cross-run cache.

Why one module: a gate that writes results, baselines, reports, build manifests and hash caches
from several xdist workers and terminals at once needs each of these done one way. A crash must
never leave a half-written file that a later run would trust, and a run blocked on a lock must say
so instead of looking hung.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from pytest_specgate.errors import ResultsError

__all__ = ["announced_lock", "cached_sha256", "locked", "publish", "read_hash_cache", "sha256_file", "write_atomic",
           "write_hash_cache"]


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


# ------------------------------------------------------------------------------------------------
# a directory's lock, and the cross-run hash cache


@contextlib.contextmanager
def locked(directory: Path, timeout: float = 120.0) -> Iterator[None]:
    """Hold ``<directory>/.lock``: two runs (or xdist controllers) writing there together take turns."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(directory / ".lock"), timeout=timeout)
    try:
        with lock:
            yield
    except Timeout:
        raise ResultsError(
            f"{directory / '.lock'} is held by another process for over {timeout:.0f} s. "
            f"Fix: wait for the other pytest run to finish, or delete the lock file if no run is active."
        ) from None


def read_hash_cache(path: Path) -> dict[str, dict[str, str]]:
    """The cache is derivable data, so a damaged one is rebuilt rather than reported."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {"sha256": {}, "version": {}}
    if not isinstance(data, dict):
        return {"sha256": {}, "version": {}}
    return {k: dict(data.get(k) or {}) for k in ("sha256", "version")}


def write_hash_cache(path: Path, data: dict[str, dict[str, str]]) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True))


@contextlib.contextmanager
def _cache_lock(cache: Path, hashing: Path, timeout: float = 1800) -> Iterator[None]:
    try:
        with FileLock(str(cache) + ".lock", timeout=timeout):
            yield
    except Timeout:
        raise ResultsError(f"{cache}.lock was held for {timeout / 60:.0f} min while hashing {hashing}. Fix: look for "
                           f"a hung pytest process, or delete the lock file if none is running.") from None


def cached_sha256(path: Path, cache: Path) -> str:
    """sha256 of a (possibly 16 GB) file, computed once per (path, size, mtime_ns) across runs.

    ``cache`` is a JSON file shared by runs. The lock is held while hashing so that xdist workers or
    parallel runs wait for one hash instead of each reading the whole file.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache.parent.mkdir(parents=True, exist_ok=True)
    with _cache_lock(cache, path):
        data = read_hash_cache(cache)
        if key in data["sha256"]:
            return data["sha256"][key]
        digest = sha256_file(path)
        # one entry per path: a rewritten file replaces its stale hash instead of growing the cache
        data["sha256"] = {k: v for k, v in data["sha256"].items() if not k.startswith(f"{path}|")}
        data["sha256"][key] = digest
        write_hash_cache(cache, data)
    return digest
