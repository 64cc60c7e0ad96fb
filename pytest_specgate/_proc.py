"""Child processes: stopping a whole process group, and the environment llama.cpp binaries get.

Why one module: a llama-server may hold 20 GiB of VRAM and a compile may run for minutes, so every
child runs in its own process group and is stopped the same way on every exit path. And llama.cpp
reads ``LLAMA_ARG_*`` variables before its command line (``common/arg.cpp``), so every binary we run
gets the same scrubbed environment: the flags in the config are the flags measured.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping

__all__ = ["SCRUB_NAMES", "SCRUB_PREFIXES", "scrubbed_env", "stop_group"]

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
    then SIGKILL, then a last SIGKILL for anything left in the group. Used for servers and builds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
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
    return proc.returncode
