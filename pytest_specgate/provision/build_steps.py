"""Running the llama.cpp build's CMake/ninja steps: logged, with progress, in their own process group.

Why its own module: the build is long and silent, and fails in ways that need a sentence. This runs
one step with its output appended to ``build.log`` and a progress line every ~30 s, kills the whole
process group on every exit path, says when an existing build dir cannot be configured in place, and
for a CUDA build names the missing piece (nvcc, an architecture, cuBLAS) in the failure's first line.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from pytest_specgate._proc import stop_group
from pytest_specgate.errors import PreflightError
from pytest_specgate.provision.cache import Log
from pytest_specgate.provision.cuda import cuda_failure, nvcc_path

__all__ = ["PROGRESS_EVERY_S", "last_progress_line", "run_build_step", "run_logged", "unusable_build_dir"]

PROGRESS_EVERY_S = 30.0

_PROGRESS = re.compile(rb"^\[\d+/\d+\][^\n]*", re.MULTILINE)


def last_progress_line(log_path: Path) -> str | None:
    """The latest ninja ``[N/M] ...`` line in the log's tail (the log can be megabytes of warnings)."""
    with log_path.open("rb") as f:
        f.seek(max(0, log_path.stat().st_size - 65536))
        hits = _PROGRESS.findall(f.read())
    return hits[-1].decode(errors="replace")[:160] if hits else None


def run_logged(argv: list[str], log_path: Path, log: Log, label: str, env: dict[str, str] | None = None) -> None:
    """Run ``argv`` with output appended to ``log_path``, reporting progress every ~30 s.

    A 15-minute compile that prints nothing looks hung and gets killed by impatient people or CI
    no-output timeouts; the progress line proves it is alive. The child runs in its own process
    group, which is killed on every exit path (Ctrl-C included) so no compiler outlives us.
    """
    start = time.monotonic()
    with log_path.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=None if env is None else {**os.environ, **env})
        try:
            while True:
                try:
                    rc = proc.wait(timeout=PROGRESS_EVERY_S)
                    break
                except subprocess.TimeoutExpired:
                    line = last_progress_line(log_path) or "working"
                    log(f"{label}: {line} ({time.monotonic() - start:.0f} s)")
        finally:
            if proc.poll() is None:
                stop_group(proc)
    if rc != 0:
        tail = log_path.read_bytes()[-3000:].decode(errors="replace")
        raise PreflightError(f"{label} failed (exit {rc}); full log: {log_path}\n...{tail}")


def unusable_build_dir(build: Path, generator: str) -> str | None:
    """Why an existing CMake build dir cannot be configured again in place, or None if it can.

    CMake refuses to switch generators, and refuses a cache created at another path (a cache dir
    restored elsewhere); only then is deleting the (otherwise incremental) build dir the right call.
    """
    cache = build / "CMakeCache.txt"
    if not cache.is_file():
        return None
    text = cache.read_text(errors="replace")
    entries = dict(re.findall(r"^(CMAKE_GENERATOR|CMAKE_CACHEFILE_DIR):INTERNAL=(.*)$", text, re.MULTILINE))
    if entries.get("CMAKE_GENERATOR", generator) != generator:
        return f"it was configured for {entries['CMAKE_GENERATOR']!r}, now {generator!r}"
    if Path(entries.get("CMAKE_CACHEFILE_DIR", build)).resolve() != build.resolve():
        return f"it was configured at {entries['CMAKE_CACHEFILE_DIR']}"
    return None


def run_build_step(argv: list[str], log_path: Path, log: Log, label: str, backend: str) -> None:
    """:func:`run_logged`, but a CUDA failure's first line names the missing piece and the log."""
    start = log_path.stat().st_size if log_path.exists() else 0
    env = None
    if backend == "cuda" and not os.environ.get("CUDACXX") and (nvcc := nvcc_path()):
        env = {"CUDACXX": nvcc}  # CMake looks on PATH only; /usr/local/cuda/bin often is not on it
    try:
        run_logged(argv, log_path, log, label, env)
    except PreflightError as e:
        if backend != "cuda":
            raise
        with log_path.open("rb") as f:
            f.seek(start)
            why = cuda_failure(f.read().decode(errors="replace"))
        if why is None:
            raise
        raise PreflightError(f"{label} (CUDA) failed: {why}. Full log: {log_path}\n{e}") from e

