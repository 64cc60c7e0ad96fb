"""The build's smoke test: a real decode, before the build gets its manifest.

``--version`` only proves the binary links. The failure that made the first CI runs fail every test
was a build that printed its version, loaded a model and then died with SIGSEGV on the first decode
(ggml's AMX path in ``ggml/src/ggml-cpu/amx/``, picked by a native build on a CPU that has AMX). So
the just-built ``llama-server`` is started on the tiny synthetic GGUF (and on the demo model when it
is already in the cache), asked for a few tokens, and stopped; only a build that decodes gets a
manifest. It costs seconds: the synthetic model loads in well under one.

Standalone on purpose (no ``server/`` imports: provisioning sits below the server layer): a plain
``subprocess`` + ``httpx`` start, the scrubbed environment every llama.cpp binary gets, and
``stop_group`` on every path.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from pytest_specgate._proc import describe_exit, free_port, log_tail, scrubbed_env, stop_group
from pytest_specgate.errors import PreflightError
from pytest_specgate.provision.cache import Log

__all__ = ["SMOKE_TOKENS", "smoke_decode"]

#: tokens asked for (``ignore_eos``: a model that ends at once still has to decode them)
SMOKE_TOKENS = 4


def smoke_decode(server: Path, model: Path, log_path: Path, log: Log = print, *, timeout: float = 120.0) -> float:
    """Start ``server`` on ``model``, decode ``SMOKE_TOKENS`` tokens, stop it; seconds taken.

    Raises PreflightError whose first line says how it failed (the signal, the HTTP error) and the fix.
    """
    started = time.monotonic()
    port = free_port()
    argv = [str(server), "-m", str(model), "-c", "512", "-np", "1", "-t", "2", "--host", "127.0.0.1",
            "--port", str(port)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=scrubbed_env(), start_new_session=True)

    def fail(what: str) -> PreflightError:
        code = proc.poll()
        return PreflightError(
            f"llama.cpp build: the smoke test (a {SMOKE_TOKENS}-token decode of {model.name}) failed: {what}"
            f"{'' if code is None else f' ({describe_exit(code)})'}. This build gets no manifest. Fix: check the build "
            f"flags for this CPU/GPU (a native build on an AMX CPU dies in the AMX matmul), then run "
            f"`specgate provision` again.\nlog: {log_path}\n--- last lines ---\n{log_tail(log_path, 15)}")

    try:
        deadline = started + timeout
        with httpx.Client(timeout=timeout, trust_env=False) as http:
            while True:
                if proc.poll() is not None:
                    raise fail("llama-server exited while loading the model")
                try:
                    if http.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise fail(f"llama-server was not ready after {timeout:g} s")
                time.sleep(0.05)
            try:
                r = http.post(f"http://127.0.0.1:{port}/completion",
                              json={"prompt": "Hello", "n_predict": SMOKE_TOKENS, "ignore_eos": True,
                                    "temperature": 0.0, "cache_prompt": False})
            except httpx.HTTPError as e:
                try:  # a server that crashed mid-decode: wait for its exit status, the real cause
                    proc.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    raise fail(f"the request broke ({type(e).__name__}: {e})") from None
                raise fail("llama-server died while decoding") from None
            if r.status_code != 200:
                raise fail(f"HTTP {r.status_code}: {r.text[:200]}")
            predicted = int(r.json().get("tokens_predicted") or 0)
            if predicted != SMOKE_TOKENS:
                raise fail(f"{predicted} token(s) came back, not {SMOKE_TOKENS}")
    finally:
        stop_group(proc, grace=5.0)
    seconds = time.monotonic() - started
    log(f"llama.cpp: smoke test decoded {SMOKE_TOKENS} tokens of {model.name} in {seconds:.1f} s")
    return seconds
