"""What ``provisioned:NAME`` in a config means, and provisioning everything at once.

Preflight resolves ``provisioned:NAME`` here without building anything; ``specgate provision`` (and
``python -m pytest_specgate.provision``) calls :func:`provision_all`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pytest_specgate.errors import PreflightError
from pytest_specgate.gguf_header import NotGGUF, read_header
from pytest_specgate.provision.cache import Log, cache_dir
from pytest_specgate.provision.llama_cpp import (
    BUILD_TARGETS,
    Backend,
    build_spec,
    default_backend,
    ensure_llama_cpp,
    existing_builds,
    manifest_path,
    reusable_build,
)
from pytest_specgate.provision.models import (
    DEMO_MODEL_NAME,
    DEMO_MODEL_SHA256,
    SPECULATIVE_MODELS,
    demo_model,
    speculative_model,
    synthetic_is_current,
    synthetic_model,
    verified,
)
from pytest_specgate.provision.qwen35 import chat_template as qwen35_chat_template
from pytest_specgate.provision.shapes import (
    RECIPE_KEY,
    SHAPES,
    Shape,
    load_shapes,
    plan_nbytes,
    shaped_recipe,
    tensor_plan,
    write_shaped,
)

__all__ = ["add_provision_arguments", "provision_all", "provision_from_args", "provisioned_path", "shape_model",
           "shape_model_path"]

# Shapes whose file is at most this big are written on demand when a config names them (seconds);
# bigger ones (a 27B model is 16 GB) only by `specgate provision --shape NAME`, so preflight stays fast.
ON_DEMAND_SHAPE_BYTES = 256 << 20
SHAPE_SEED = 20260101


def shape_model_path(name: str) -> Path:
    return cache_dir() / "models" / f"shape-{name}.gguf"


def _shape_template(shape: Shape) -> str | None:
    """Qwen3.5/3.6 shapes carry the real chat template (tool calls, thinking); others the writer's default."""
    return qwen35_chat_template() if shape.arch == "qwen35" else None


def _shape_recipe(shape: Shape) -> str:
    """The recipe string :func:`write_shaped` stamps for this shape, template and seed (checked cheaply)."""
    return shaped_recipe(shape, chat_template=_shape_template(shape), seed=SHAPE_SEED)


def _shape_is_current(path: Path, shape: Shape) -> bool:
    try:
        return read_header(path).get(RECIPE_KEY) == _shape_recipe(shape)
    except (OSError, NotGGUF):
        return False


def shape_model(name: str, log: Log = print, shapes: dict[str, Shape] | None = None) -> Path:
    """Write (or reuse) the production-shaped random-weight GGUF for the shape ``name``."""
    table = {**SHAPES, **(shapes or {})}
    if name not in table:
        raise PreflightError(f"unknown shape {name!r}. Fix: use one of {', '.join(sorted(table))}, "
                             "or add it to a shapes file (--shapes-file, JSON list or TOML [[shape]] tables).")
    shape, path = table[name], shape_model_path(name)
    if _shape_is_current(path, shape):
        return path
    size = plan_nbytes(tensor_plan(shape))
    log(f"shape {name}: writing {size / 2**30:.2f} GiB of random weights with its tensor shapes to {path}")
    start = time.monotonic()
    write_shaped(path, shape, chat_template=_shape_template(shape), seed=SHAPE_SEED)
    log(f"shape {name}: written in {time.monotonic() - start:.0f} s")
    return path


def provision_all(
    log: Log = print,
    *,
    backend: Backend | None = None,
    cuda_arch: str | None = None,
    fa_all_quants: bool = False,
    shapes: tuple[str, ...] = (),
    shape_table: dict[str, Shape] | None = None,
) -> dict[str, dict[str, object]]:
    """Provision the build, demo model, default synthetic model and asked-for shapes; return paths and timings.

    ``backend`` None picks CUDA when nvcc is installed and NVML sees a GPU, else the CPU.
    ``reused`` says whether the artefact was already complete before this call, so the summary
    tells a cold CI cache from a warm one at a glance.
    """
    models = cache_dir() / "models"
    tiny = models / "synthetic-tiny.gguf"
    result: dict[str, dict[str, object]] = {}

    table = {**SHAPES, **(shape_table or {})}
    if unknown := [name for name in shapes if name not in table]:
        raise PreflightError(f"unknown shape {unknown[0]!r}. Fix: use one of {', '.join(sorted(table))}, "
                             "or add it to a shapes file (--shapes-file, JSON list or TOML [[shape]] tables).")
    spec = build_spec(backend or default_backend(), cuda_arch=cuda_arch, fa_all_quants=fa_all_quants)
    reused = reusable_build(manifest_path(spec)) is not None
    start = time.monotonic()
    build = ensure_llama_cpp(log, spec)
    result["llama_cpp"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3),
                           "backend": spec.variant, **{name: str(path) for name, path in build.binaries.items()}}

    reused = verified(models / DEMO_MODEL_NAME, DEMO_MODEL_SHA256)
    start = time.monotonic()
    demo = demo_model(log)
    result["demo_model"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3), "path": str(demo)}

    reused = tiny.is_file() and synthetic_is_current(tiny)
    start = time.monotonic()
    synth = synthetic_model(log=log)
    result["synthetic_model"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3), "path": str(synth)}

    for name in SPECULATIVE_MODELS:
        # the writers keep a current file untouched, so an unchanged mtime means it was reused
        path = models / f"synthetic-{name}.gguf"
        before = path.stat().st_mtime_ns if path.is_file() else None
        start = time.monotonic()
        path = speculative_model(name, log)
        result[f"synthetic:{name}"] = {"reused": before == path.stat().st_mtime_ns,
                                       "seconds": round(time.monotonic() - start, 3), "path": str(path)}

    for name in shapes:
        reused = _shape_is_current(shape_model_path(name), table[name])
        start = time.monotonic()
        path = shape_model(name, log, shape_table)
        result[f"shape:{name}"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3), "path": str(path)}

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
        # The CUDA build when one exists: a GPU machine gates the GPU path (the run header names the build).
        builds = existing_builds()
        if not builds:
            raise PreflightError(f"{where} = 'provisioned:{name}': the pinned llama.cpp build is not there yet. {fix}.")
        return Path(builds[0].binaries[name])
    if name.startswith("shape:"):
        shape_name = name.removeprefix("shape:")
        if shape_name not in SHAPES:
            raise PreflightError(f"{where} = 'provisioned:{name}': unknown shape. Fix: use one of "
                                 f"{', '.join('shape:' + s for s in sorted(SHAPES))}.")
        shape, path = SHAPES[shape_name], shape_model_path(shape_name)
        if _shape_is_current(path, shape):
            return path
        if plan_nbytes(tensor_plan(shape)) <= ON_DEMAND_SHAPE_BYTES:
            return shape_model(shape_name, log=lambda *_: None)
        raise PreflightError(f"{where} = 'provisioned:{name}': the shaped model {path} is not written yet. "
                             f"Fix: run `specgate provision --shape {shape_name}` once (it writes "
                             f"{plan_nbytes(tensor_plan(shape)) / 2**30:.1f} GiB locally, no download).")
    if name == "gemma3-270m":
        path = cache_dir() / "models" / DEMO_MODEL_NAME
        if not verified(path, DEMO_MODEL_SHA256):
            raise PreflightError(f"{where} = 'provisioned:{name}': the demo model {path} is missing or damaged. {fix}.")
        return path
    if name in SPECULATIVE_MODELS:
        return speculative_model(name, log=lambda *_: None)
    if name.startswith("synthetic-"):
        return synthetic_model(name.removeprefix("synthetic-"), log=lambda *_: None)
    known = ", ".join([*BUILD_TARGETS, "gemma3-270m", "synthetic-tiny", *SPECULATIVE_MODELS, "shape:<name>"])
    raise PreflightError(f"{where} = 'provisioned:{name}': unknown name. Fix: use one of {known}.")



def add_provision_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``specgate provision`` (also ``python -m pytest_specgate.provision``)."""
    parser.add_argument("--backend", choices=("cpu", "cuda"), default=None,
                        help="llama.cpp backend to build (default: cuda when nvcc is installed and NVML sees a GPU)")
    parser.add_argument("--cuda-arch", default=None, metavar="CC",
                        help="CUDA compute capabilities to build for, e.g. 90 or 86,90 (default: the local GPUs')")
    parser.add_argument("--fa-all-quants", action="store_true",
                        help="compile FlashAttention for every K/V quant pair (GGML_CUDA_FA_ALL_QUANTS; much slower)")
    parser.add_argument("--shape", action="append", default=[], metavar="NAME",
                        help=f"also write a production-shaped random-weight GGUF ({', '.join(SHAPES)}); repeatable")
    parser.add_argument("--shapes-file", type=Path, default=None,
                        help="extra shapes: a JSON list or TOML [[shape]] tables of Shape fields")


def provision_from_args(args: argparse.Namespace, log: Log = print) -> dict[str, dict[str, object]]:
    table = load_shapes(args.shapes_file) if args.shapes_file else None
    return provision_all(log, backend=args.backend, cuda_arch=args.cuda_arch, fa_all_quants=args.fa_all_quants,
                         shapes=tuple(args.shape), shape_table=table)
