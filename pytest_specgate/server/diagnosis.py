"""What went wrong with a llama-server, in one line: its own error line, how it ended, and the fix.

Why: "exited before it became ready (exit code 1)" sends the operator to a 40-line log tail; the
cause is nearly always one line in it (``error while handling argument "-c"`` from common/arg.cpp,
``unknown model architecture`` and ``data is not within the file bounds`` from
src/llama-model-loader.cpp, ``couldn't bind HTTP server socket`` from tools/server/server.cpp). So the
first line a user reads names that line, the signal in words, and what to do; the tail stays below.
"""

from __future__ import annotations

import re
import signal

from pytest_specgate._proc import describe_exit

__all__ = ["diagnose", "error_line"]

#: (pattern in the log, fix); the first pattern that matches any line wins, so specific ones come first
_KNOWN: list[tuple[re.Pattern[str], str]] = [(re.compile(p, re.IGNORECASE), fix) for p, fix in [
    (r'error while handling argument "([^"]+)"',
     "Fix: correct the value of {0} in the config's args (`llama-server --help` shows the form it takes)."),
    (r"(?:invalid|unknown) argument: (\S+)", "Fix: remove or rename {0} in the config's args."),
    (r"unknown model architecture: '([^']+)'",
     "Fix: this llama-server build does not know architecture '{0}': use a newer build, or another GGUF."),
    (r"not within the file bounds|corrupted or incomplete|unexpectedly reached end of file|failed to read magic",
     "Fix: the GGUF is truncated or corrupt: download it again and compare its sha256."),
    (r"couldn't bind HTTP server socket",
     "Fix: another process took the port each time specgate retried; look for a port-grabbing process or a "
     "sandbox that forbids listening on 127.0.0.1."),
    (r"failed to create MTP context|nextn",
     "Fix: draft-mtp needs a GGUF with MTP layers (or an MTP head via -md)."),
    (r"GGML_ASSERT\(.*\) failed",
     "Fix: llama-server aborted on an internal check (a llama.cpp bug, or inputs it does not validate, such as "
     "a drafter with another vocabulary); the log tail below has the backtrace."),
    (r"out of memory|failed to allocate|cudaMalloc failed|unable to allocate|failed to create context",
     "Fix: the model, context or batch does not fit: lower -c, -b/-ub or -ngl, or free memory on the device."),
]]

_SIGNAL_FIX = {
    signal.SIGSEGV: "Fix: llama-server crashed: try the same flags on another build, and report the log tail "
                    "below upstream. A CPU build made with GGML_NATIVE on an AMX CPU crashes like this "
                    "(ggml_backend_amx_mul_mat); `specgate provision` builds a portable one.",
    signal.SIGABRT: "Fix: llama-server aborted on an internal check (GGML_ASSERT); the log tail below names it.",
    signal.SIGILL: "Fix: the binary uses CPU instructions this machine lacks (built for another CPU): rebuild it "
                   "here; `specgate provision` builds a portable x86-64-v3 binary.",
    signal.SIGKILL: "Fix: something outside killed it, most often the kernel's OOM killer (see `dmesg`): lower -c, "
                    "use a smaller model, or free memory.",
    signal.SIGBUS: "Fix: the model file changed or vanished while mapped; do not rewrite a GGUF a server is using.",
    signal.SIGTERM: "Fix: something outside stopped it (a CI cancel, a `timeout`, another run's cleanup).",
}

_STAMP = re.compile(r"^\s*\d+\.\d+\.\d+\.\d+\s+[EWIDT]\s+")          # 0.00.006.577 E ...
_ERROR_LEVEL = re.compile(r"^\s*\d+\.\d+\.\d+\.\d+\s+E\s+")
_TAG = re.compile(r"^(?:[a-z]{2,5}\s+)?[\w:~<>]+:\s+(?=\S)")           # srv    load_model: ...
_GENERIC = re.compile(r"failed to load model|exiting due to|cleaning up|common_fit_params|^\s*$", re.IGNORECASE)


def _clean(line: str) -> str:
    line = _STAMP.sub("", line.rstrip())
    if _TAG.match(line) and not line.lower().startswith("error"):
        line = _TAG.sub("", line, count=1)
    return line.strip()


def error_line(log: str) -> tuple[str, str]:
    """(the server's most telling error line, its fix) from a log text; ("", "") when none stands out."""
    lines = log.splitlines()
    for pattern, fix in _KNOWN:
        for line in lines:
            if m := pattern.search(line):
                return _clean(line), fix.format(*m.groups())
    errors = [ln for ln in lines if _ERROR_LEVEL.match(ln)]
    specific = [ln for ln in errors if not _GENERIC.search(_clean(ln))]
    for line in specific or errors:
        return _clean(line), ""
    for line in lines:
        if line.lower().startswith(("error", "terminate called", "ggml_abort", "libc++abi")):
            return _clean(line), ""
    return "", ""


def diagnose(log: str, code: int | None) -> tuple[str, str, str]:
    """(how it ended, e.g. "killed by SIGSEGV (Segmentation fault)"; the server's error line or ""; the fix)."""
    line, fix = error_line(log)
    sig = -code if code is not None and code < 0 else (code - 128 if code is not None and code > 128 else 0)
    try:
        sig_fix = _SIGNAL_FIX.get(signal.Signals(sig), "") if sig else ""
    except ValueError:
        sig_fix = ""
    return describe_exit(code), line, fix or sig_fix or "Fix: the log tail below shows what it did last."
