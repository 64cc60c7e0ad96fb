"""What ``provisioned:NAME`` in a config means, and provisioning everything at once.

Preflight resolves ``provisioned:NAME`` here without building anything; ``specgate provision`` (and
``python -m pytest_specgate.provision``) calls :func:`provision_all`.
"""

from __future__ import annotations

import time
from pathlib import Path

from pytest_specgate.errors import PreflightError
from pytest_specgate.provision.cache import Log, cache_dir
from pytest_specgate.provision.llama_cpp import BUILD_TARGETS, ensure_llama_cpp, manifest_path, reusable_build
from pytest_specgate.provision.models import (
    DEMO_MODEL_NAME,
    DEMO_MODEL_SHA256,
    demo_model,
    synthetic_is_current,
    synthetic_model,
    verified,
)

__all__ = ["provision_all", "provisioned_path"]


def provision_all(log: Log = print) -> dict[str, dict[str, object]]:
    """Provision the build, demo model and default synthetic model; return paths and timings.

    ``reused`` says whether the artefact was already complete before this call, so the summary
    tells a cold CI cache from a warm one at a glance.
    """
    models = cache_dir() / "models"
    tiny = models / "synthetic-tiny.gguf"
    result: dict[str, dict[str, object]] = {}

    reused = reusable_build(manifest_path()) is not None
    start = time.monotonic()
    build = ensure_llama_cpp(log)
    result["llama_cpp"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3),
                           **{name: str(path) for name, path in build.binaries.items()}}

    reused = verified(models / DEMO_MODEL_NAME, DEMO_MODEL_SHA256)
    start = time.monotonic()
    demo = demo_model(log)
    result["demo_model"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3), "path": str(demo)}

    reused = tiny.is_file() and synthetic_is_current(tiny)
    start = time.monotonic()
    synth = synthetic_model(log=log)
    result["synthetic_model"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3), "path": str(synth)}

    for key, facts in result.items():
        log(f"{key}: {'reused' if facts['reused'] else 'created'} in {facts['seconds']:.2f} s")
    return result



def provisioned_path(name: str, *, where: str) -> Path:
    """Resolve a config's ``provisioned:NAME`` without building anything.

    Preflight must stay fast, so a missing build or demo model is an error that says how to make
    it (``specgate provision``); only the synthetic models, which take well under a second, are
    generated on demand.
    """
    fix = "Fix: run `specgate provision` (or `make setup`) once; it is cached under " + str(cache_dir())
    if name in BUILD_TARGETS:
        info = reusable_build(manifest_path())
        if info is None or name not in info.binaries:
            raise PreflightError(f"{where} = 'provisioned:{name}': the pinned llama.cpp build is not there yet. {fix}.")
        return Path(info.binaries[name])
    if name == "gemma3-270m":
        path = cache_dir() / "models" / DEMO_MODEL_NAME
        if not verified(path, DEMO_MODEL_SHA256):
            raise PreflightError(f"{where} = 'provisioned:{name}': the demo model {path} is missing or damaged. {fix}.")
        return path
    if name.startswith("synthetic-"):
        return synthetic_model(name.removeprefix("synthetic-"), log=lambda *_: None)
    known = ", ".join([*BUILD_TARGETS, "gemma3-270m", "synthetic-tiny"])
    raise PreflightError(f"{where} = 'provisioned:{name}': unknown name. Fix: use one of {known}.")

