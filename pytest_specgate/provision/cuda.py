"""What a CUDA build of llama.cpp needs from this machine: the GPUs' architectures, nvcc, and why a build failed.

Why a module of its own: the CPU build never touches any of it, and a failed CUDA configure must say
which piece is missing (no nvcc, no cuBLAS, an architecture nvcc cannot compile for) instead of
leaving the user a megabyte of CMake output.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

__all__ = ["CUDA_FLAGS", "cuda_failure", "local_gpu_archs", "nvcc_path"]

try:  # nvidia-ml-py provides the `pynvml` module; without a driver every call raises NVMLError
    import pynvml
except ImportError:  # pragma: no cover - it is a declared dependency
    pynvml = None

# The CUDA backend's flags besides the architecture. FA_ALL_QUANTS stays off unless asked: it
# compiles FlashAttention for every K/V quant pair (several times the build time) while the default
# set already covers f16, q4_0 and q8_0 caches with equal K and V types.
CUDA_FLAGS = ("-DGGML_CUDA=ON",)


def local_gpu_archs(nvml: Any = None) -> tuple[str, ...]:
    """Compute capabilities of the GPUs NVML sees, as CMake architectures ("90"); empty without any.

    ``nvml`` is the ``pynvml`` module (a stand-in in the decision-logic tests).
    """
    nvml = nvml or pynvml
    if nvml is None:
        return ()
    try:
        nvml.nvmlInit()
        archs = set()
        for i in range(nvml.nvmlDeviceGetCount()):
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(nvml.nvmlDeviceGetHandleByIndex(i))
            archs.add(f"{major}{minor}")
    except Exception:  # noqa: BLE001 - any NVML failure means "no usable GPU here"
        return ()
    return tuple(sorted(archs, key=int))


def nvcc_path() -> str | None:
    """The CUDA compiler CMake would find: ``$CUDACXX``, ``nvcc`` on PATH, or the default toolkit."""
    for candidate in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


# What a failed CUDA configure/build log says, and the missing piece to name (first match wins).
_CUDA_FAILURES = (
    (r"No CMAKE_CUDA_COMPILER could be found|Could NOT find CUDAToolkit|CUDA Toolkit not found"
     r"|Failed to find nvcc|nvcc: (?:not found|No such file)",
     "no CUDA compiler (nvcc)", "install the CUDA toolkit and put nvcc on PATH, or set CUDACXX=/path/to/nvcc"),
    ("Unsupported gpu architecture|is not supported by this CUDA|nvcc fatal *: *Unsupported"
     "|CMAKE_CUDA_ARCHITECTURES.*(?:invalid|not supported)",
     "a GPU architecture this nvcc cannot compile for",
     "pass --cuda-arch with an architecture your toolkit supports (nvcc --list-gpu-arch), or upgrade the toolkit"),
    (r"Unable to find cublas_v2\.h|CUDA::cublas|cublas[_A-Za-z]*\.(?:so|a)|cannot find -lcublas"
     r"|cublas_v2\.h: No such file|CUDA_cublas_LIBRARY",
     "cuBLAS (libcublas and its headers)", "install the CUDA toolkit's cuBLAS package (e.g. libcublas-dev-13-0)"),
)


def cuda_failure(log_text: str) -> str | None:
    """The missing piece a failed CUDA configure or build log points at, with its fix; None if unknown."""
    for pattern, piece, fix in _CUDA_FAILURES:
        if m := re.search(pattern, log_text):
            line = log_text[log_text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0].strip()
            return f"missing piece: {piece} (log line: {line[:200]!r}). Fix: {fix}"
    return None
