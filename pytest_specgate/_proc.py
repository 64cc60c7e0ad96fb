"""Child processes: starting one in its own group, stopping the whole group, naming how it ended,
and the environment llama.cpp binaries get.

Why one module: a llama-server may hold 20 GiB of VRAM and a compile may run for minutes, so every
child runs in its own process group and is stopped the same way on every exit path. And llama.cpp
reads ``LLAMA_ARG_*`` variables before its command line (``common/arg.cpp``), so every binary we run
gets the same scrubbed environment: the flags in the config are the flags measured.

Why a launcher: the child must die with us even when we are SIGKILLed (Linux ``PR_SET_PDEATHSIG``),
and that has to be set in the child. ``preexec_fn`` would do it, but Python documents it as unsafe
while other threads run (the memory sampler's thread is alive during A/B restarts). So the child is a
tiny ``python -S`` that sets the signal and ``exec``s the real binary: the same PID, nothing left in
between, and the parent's threads are never involved between fork and exec.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

__all__ = ["SCRUB_NAMES", "SCRUB_PREFIXES", "describe_exit", "free_port", "group_members", "log_tail", "scrubbed_env",
           "spawn_group", "stop_group"]

#: sets PR_SET_PDEATHSIG (1) to SIGKILL, exits at once if the parent is already gone, then execs argv[2:]
_LAUNCHER = (
    "import ctypes,os,sys\n"
    "try:\n ctypes.CDLL(None, use_errno=True).prctl(1, 9)\n"
    "except (OSError, AttributeError):\n pass\n"
    "if os.getppid() != int(sys.argv[1]):\n os._exit(70)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def spawn_group(argv: Sequence[str], *, env: Mapping[str, str], stdout: IO[bytes] | int | None,
                die_with_parent: bool = True, **kw: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (own process group), killed by the kernel if we die (Linux).

    Thread-safe: no ``preexec_fn``. On other systems the launcher is skipped and only the exit paths
    Python sees (``stop_group`` from atexit and signal handlers) stop the child.
    """
    argv = [str(a) for a in argv]
    if die_with_parent and sys.platform.startswith("linux"):
        argv = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *argv]
    return subprocess.Popen(argv, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env),
                            start_new_session=True, **kw)


def group_members(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and every descendant still in its process group (a wrapper script's server)."""
    try:
        root = psutil.Process(pid)
        pgid = os.getpgid(pid)
        members = [root]
        for child in root.children(recursive=True):
            try:
                if os.getpgid(child.pid) == pgid:
                    members.append(child)
            except OSError:
                continue
        return members
    except (psutil.Error, OSError):
        return []


def describe_exit(code: int | None) -> str:
    """How a process ended, in words: "exit code 1", "killed by SIGSEGV (Segmentation fault)".

    A shell that ran the binary without ``exec`` reports a signal as 128+N; that is named too.
    """
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {_signal_words(-code)}"
    if code > 128 and _signal_words(code - 128, strict=True):
        return f"exit code {code} (a shell's report of {_signal_words(code - 128)})"
    return f"exit code {code}"


def _signal_words(num: int, strict: bool = False) -> str:
    try:
        sig = signal.Signals(num)
    except ValueError:
        return "" if strict else f"signal {num}"
    text = signal.strsignal(sig) or ""
    return f"{sig.name} ({text})" if text else sig.name

#: variables llama-server reads besides its CLI (``common/arg.cpp``, ``tools/server/server.cpp``)
SCRUB_PREFIXES = ("LLAMA_ARG_",)
SCRUB_NAMES = frozenset({"LLAMA_API_KEY", "HF_TOKEN", "LLAMA_SERVER_SLOTS_DEBUG", "LLAMA_TRACE", "AIP_MODE",
                         "AIP_HTTP_PORT"})


def scrubbed_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: ours) minus every llama.cpp configuration channel."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if not k.startswith(SCRUB_PREFIXES) and k not in SCRUB_NAMES}


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int:
    """Stop a child started with ``start_new_session=True``: SIGTERM to its group, ``grace`` seconds,
    then SIGKILL, then a last SIGKILL for anything left in the group, and wait until the group is gone
    (a wrapper script's server may outlive the wrapper; its memory must be free before the next load).
    Used for servers and builds. ``grace=0`` kills at once (a hung or stopped server ignores SIGTERM)."""
    members = group_members(proc.pid)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace if grace > 0 else 30)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    psutil.wait_procs([m for m in members if m.pid != proc.pid], timeout=10)
    return proc.returncode


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the child may still lose it to a race: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, n: int = 40) -> str:
    """The last ``n`` lines of a child's log, for an error message; "(no log)" when it cannot be read."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=n))
    except OSError:
        return "(no log)"
