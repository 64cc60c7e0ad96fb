"""Results store: one JSON file per run, with the fingerprint of exactly what was measured.

A number is only evidence together with what produced it. The field report lost weeks to "it got
slower" with no record of which binary, which GGUF, which flags or which machine; so every run
stores, next to its samples and verdicts, a fingerprint per config (binary sha256 and ``--version``,
the server's ``build_info``, the GGUF's sha256 and header facts, the effective argv, the env keys)
and the host. A baseline comparison can then say *what changed*, not only *that* something did.

Files (under ``--specgate-results``, default ``.specgate``): ``runs/<timestamp>-<config>.json`` per
run, ``latest.json``, ``baselines/<name>.json`` and the reports. Every write is atomic (temp file in
the same directory + ``os.replace``) under a file lock, and a file we cannot read is never
overwritten: it is reported with its path and the fix, because it may be someone's only baseline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pytest_specgate import baseline, report
from pytest_specgate.baseline import Comparison
from pytest_specgate.config import Thresholds
from pytest_specgate.errors import ResultsError, SpecgateError
from pytest_specgate.measure import BudgetResult, Measurement
from pytest_specgate.preflight import ModelFacts

if TYPE_CHECKING:
    from pytest_specgate.gate import Gate

__all__ = ["ConfigFingerprint", "Host", "Outcome", "RunResults", "finish", "load", "outcome_key"]

SCHEMA_VERSION = 1


# ------------------------------------------------------------------------------------------------
# models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Host(_Model):
    """The machine a run was measured on; timings from different hardware do not compare."""

    hostname: str
    platform: str = ""
    cpu_model: str = ""
    cpu_count: int = 0
    gpus: list[dict[str, Any]] = Field(default_factory=list)

    def hardware(self) -> tuple[Any, ...]:
        """What decides speed. The hostname is left out: CI containers get a new one every run."""
        return (self.cpu_model, self.cpu_count, tuple((g.get("name"), g.get("total_mib")) for g in self.gpus))


class ConfigFingerprint(_Model):
    """Everything that decides what a config measures, so a comparison can name what changed."""

    name: str
    description: str = ""
    reference: str | None = None
    binary: str
    binary_sha256: str
    binary_version: str = ""
    build_info: str = ""
    model: str
    model_sha256: str
    model_facts: ModelFacts
    args: list[str]
    env_keys: list[str] = Field(default_factory=list)
    chat_template_sha256: str | None = None


class RunResults(_Model):
    """One pytest run: fingerprints, every sample, every verdict, and the baseline comparison."""

    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: str
    started: datetime
    finished: datetime
    selected: str
    quick: bool = False
    host: Host
    configs: dict[str, ConfigFingerprint] = Field(default_factory=dict)
    measurements: list[Measurement] = Field(default_factory=list)
    verdicts: list[BudgetResult] = Field(default_factory=list)
    memory: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: seconds from process start to /health 200, per config and start (model loads are not harness time)
    load_seconds: dict[str, list[float]] = Field(default_factory=dict)
    #: the thresholds in force, so `specgate compare` judges stored runs without the config file
    thresholds: Thresholds = Field(default_factory=Thresholds)
    comparison: Comparison | None = None

    def merged(self) -> list[Measurement]:
        """One Measurement per (config, workload, point, variant).

        The gate keys measurements by more than that (quick, and whatever it adds later); a point
        measured twice (xdist workers, or quick and full) is one row for a reader. Variants stay
        apart: A/B-paired samples only mean something as pairs.
        """
        out: dict[tuple[str, str, int | None, str], Measurement] = {}
        for m in self.measurements:
            key = (m.config, m.workload, m.point, m.variant)
            if key not in out:
                out[key] = m.model_copy(deep=True)
            else:
                out[key].samples.extend(m.samples)
                out[key].extra.update(m.extra)
        return sorted(out.values(), key=lambda m: (m.config, m.workload, m.point or 0, m.variant))


# ------------------------------------------------------------------------------------------------
# files: atomic, locked, never overwriting what we cannot read


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so readers see the old file or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(directory: Path, timeout: float = 120.0) -> Iterator[None]:
    """Hold ``<directory>/.lock``: two runs (or xdist controllers) finishing together take turns."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(directory / ".lock"), timeout=timeout)
    try:
        with lock:
            yield
    except Timeout:
        raise ResultsError(
            f"{directory / '.lock'} is held by another process for over {timeout:.0f} s. "
            f"Fix: wait for the other pytest run to finish, or delete the lock file if no run is active."
        ) from None


def _unreadable(path: Path, why: str) -> ResultsError:
    return ResultsError(
        f"{path}: {why}. It is left untouched. Fix: restore it (e.g. from {path.parent}/runs/ or version control), "
        f"or move it aside if it is not needed, then run again."
    )


def load(path: Path) -> RunResults:
    """Read a stored run (results, latest, baseline or report.json) with an error that says what to do."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file. Fix: check the path (runs are under <results>/runs/).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _unreadable(path, f"cannot be read ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _unreadable(path, f"is not valid JSON ({e})") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int):
        raise _unreadable(path, "is not a specgate results file (no integer `schema_version`)")
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: written with results schema {version}, this pytest-specgate reads schema {SCHEMA_VERSION}. "
            f"Fix: upgrade pytest-specgate to read it."
        )
    try:
        return RunResults.model_validate(data)
    except ValidationError as e:
        first = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:3])
        raise _unreadable(path, f"does not match results schema {SCHEMA_VERSION} ({first})") from None


def _guard_overwrite(path: Path) -> None:
    """Refuse to replace a file that is not recognisably ours: it may be the only copy of something."""
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ok = isinstance(data, dict) and isinstance(data.get("schema_version"), int)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        ok = False
    if not ok:
        raise _unreadable(path, "exists but is not a readable specgate results file, so this run will not overwrite it")


def save(run: RunResults, path: Path) -> Path:
    """Atomically write ``run`` to ``path`` (the caller holds the directory lock)."""
    _guard_overwrite(path)
    write_atomic(path, run.model_dump_json(indent=1) + "\n")
    return path


def results_dir(gate: Gate) -> Path:
    path = Path(gate.options.results_dir).expanduser()
    return path if path.is_absolute() else gate.options.rootdir / path


# ------------------------------------------------------------------------------------------------
# fingerprints: GGUF hashes and binary versions cached across runs


def hash_cache_path() -> Path:
    """``$SPECGATE_CACHE/hashes.json`` (the provisioning cache root; ~/.cache/pytest-specgate by default)."""
    from pytest_specgate.provision import cache_dir

    return cache_dir() / "hashes.json"


def _read_cache(path: Path) -> dict[str, dict[str, str]]:
    """The cache is derivable data, so a damaged one is rebuilt rather than reported."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {"sha256": {}, "version": {}}
    if not isinstance(data, dict):
        return {"sha256": {}, "version": {}}
    return {k: dict(data.get(k) or {}) for k in ("sha256", "version")}


@contextlib.contextmanager
def _cache_lock(cache: Path, hashing: Path, timeout: float = 1800) -> Iterator[None]:
    try:
        with FileLock(str(cache) + ".lock", timeout=timeout):
            yield
    except Timeout:
        raise ResultsError(f"{cache}.lock was held for {timeout / 60:.0f} min while hashing {hashing}. Fix: look for a "
                           f"hung pytest process, or delete the lock file if none is running.") from None


def file_sha256(path: Path) -> str:
    """sha256 of a (possibly 16 GB) file, computed once per (path, size, mtime_ns) across runs.

    The lock is held while hashing so that xdist workers or parallel runs wait for one hash
    instead of each reading the whole file.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache = hash_cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    with _cache_lock(cache, path):
        data = _read_cache(cache)
        if key in data["sha256"]:
            return data["sha256"][key]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        digest = h.hexdigest()
        # one entry per path: a rewritten file replaces its stale hash instead of growing the cache
        data["sha256"] = {k: v for k, v in data["sha256"].items() if not k.startswith(f"{path}|")}
        data["sha256"][key] = digest
        write_atomic(cache, json.dumps(data, indent=1, sort_keys=True))
    return digest


def binary_version(binary: Path, sha256: str) -> str:
    """``<binary> --version`` (build number and commit), run once per binary sha256 and cached."""
    cache = hash_cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache) + ".lock", timeout=60)
    known: str | None = None
    with contextlib.suppress(Timeout), lock:  # another run hashing a big GGUF: just ask the binary
        known = _read_cache(cache)["version"].get(sha256)
    if known is not None:
        return known
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, env=env,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({type(e).__name__}: {e})"
    text = "\n".join(line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip())[:500]
    if proc.returncode != 0:
        return f"unavailable (exit {proc.returncode}: {text[:200]})"
    with contextlib.suppress(Timeout), lock:
        data = _read_cache(cache)
        data["version"][sha256] = text
        write_atomic(cache, json.dumps(data, indent=1, sort_keys=True))
    return text


def host_info() -> Host:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        from pytest_specgate.memory import gpu_inventory

        gpus = gpu_inventory()
    except Exception:  # noqa: BLE001 - NVML quirks must not cost the run its results
        gpus = []
    return Host(hostname=socket.gethostname(), platform=platform.platform(),
                cpu_model=cpu_model or platform.processor() or platform.machine(),
                cpu_count=os.cpu_count() or 0, gpus=gpus)


def fingerprint(gate: Gate, name: str) -> ConfigFingerprint:
    r = gate._resolved[name]
    props = (gate.pool.props.get(name, {}) if gate.pool is not None else {}) or {}
    tpl = r.chat_template_file
    return ConfigFingerprint(
        name=name, description=r.config.description, reference=r.config.reference,
        binary=str(r.binary), binary_sha256=r.binary_sha256, binary_version=binary_version(r.binary, r.binary_sha256),
        build_info=str(props.get("build_info", "") or ""),
        model=str(r.model), model_sha256=file_sha256(r.model), model_facts=r.model_facts,
        args=list(r.args), env_keys=sorted(r.config.env),
        chat_template_sha256=hashlib.sha256(tpl.read_bytes()).hexdigest() if tpl and tpl.is_file() else None,
    )


# ------------------------------------------------------------------------------------------------
# xdist: workers measure, the controller stores


@dataclass
class _Remote:
    configs: dict[str, ConfigFingerprint] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


remote_key = pytest.StashKey[_Remote]()


class _WorkerPayload(_Model):
    keys: list[list[Any]]  # Gate.measurements keys, whatever their shape (JSON has no tuples)
    measurements: list[Measurement]
    verdicts: list[BudgetResult]
    configs: dict[str, ConfigFingerprint]
    memory: dict[str, dict[str, float]]
    errors: list[str] = Field(default_factory=list)


def worker_payload(gate: Gate) -> str:
    """What an xdist worker hands the controller (``config.workeroutput`` must hold plain data)."""
    keys = list(gate.measurements)
    configs, errors = {}, []
    for name in gate._resolved:
        try:  # a worker must always hand its samples over; the controller reports what failed
            configs[name] = fingerprint(gate, name)
        except (SpecgateError, OSError) as e:
            errors.append(f"fingerprint of config {name!r} on an xdist worker failed: {e}")
    return _WorkerPayload(
        keys=[list(k) for k in keys], measurements=[gate.measurements[k] for k in keys], verdicts=list(gate.results),
        configs=configs, memory=dict(gate.pool.memory) if gate.pool is not None else {}, errors=errors,
    ).model_dump_json()


def merge_worker(gate: Gate, config: pytest.Config, payload: str) -> None:
    """Fold one worker's measurements into the controller's gate; same point twice -> pooled samples."""
    data = _WorkerPayload.model_validate_json(payload)
    for raw, m in zip(data.keys, data.measurements):
        key: Any = tuple(raw)
        if key in gate.measurements:
            gate.measurements[key].samples.extend(m.samples)
            gate.measurements[key].extra.update(m.extra)
        else:
            gate.measurements[key] = m
    gate.results.extend(data.verdicts)
    remote = config.stash.setdefault(remote_key, _Remote())
    remote.configs.update(data.configs)
    remote.memory.update(data.memory)
    remote.errors += data.errors


# ------------------------------------------------------------------------------------------------
# session finish


@dataclass
class Outcome:
    """What finish() did, for the terminal summary (which pytest runs after sessionfinish)."""

    baseline: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False


outcome_key = pytest.StashKey[Outcome]()


def _selected(gate: Gate) -> str:
    try:
        return gate.options.config or gate.file.default
    except SpecgateError:
        return gate.options.config or "unknown"


def measurement_order(m: Measurement) -> tuple[str, str, int, str]:
    return (m.config, m.workload, m.point or 0, m.variant)


def _option(config: pytest.Config, name: str) -> str | None:
    """CLI first, then the ini twin (``specgate_baseline_compare = main`` in CI's pytest.ini)."""
    value = config.getoption(name, None)
    if not value and hasattr(config, "getini"):
        value = config.getini(name)
    return value or None


def build(gate: Gate, config: pytest.Config | None = None) -> RunResults:
    """The run as stored: everything the reports and a later comparison need, nothing live."""
    remote = config.stash.get(remote_key, _Remote()) if config is not None else _Remote()
    items = sorted(gate.measurements.items(), key=lambda kv: measurement_order(kv[1]))
    measurements = [m for _, m in items]
    names = {m.config for m in measurements} | {r.config for r in gate.results if r.config}
    names |= {n for n in (_selected(gate),) if n in gate._resolved}
    configs = dict(remote.configs)
    configs.update({n: fingerprint(gate, n) for n in sorted(names) if n in gate._resolved})
    started = datetime.fromtimestamp(gate.started, UTC)
    selected = _selected(gate)
    try:
        thresholds = gate.file.thresholds
    except SpecgateError:
        thresholds = Thresholds()
    memory = {**remote.memory, **(gate.pool.memory if gate.pool is not None else {})}
    return RunResults(
        run_id=f"{started:%Y%m%dT%H%M%SZ}-{selected}", started=started, finished=datetime.now(UTC),
        selected=selected, quick=gate.quick, host=host_info(), configs=configs, measurements=measurements,
        verdicts=list(gate.results), memory=memory, thresholds=thresholds,
        load_seconds=dict(gate.pool.load_seconds) if gate.pool is not None else {},
    )


def _run_path(directory: Path, run_id: str) -> Path:
    path = directory / "runs" / f"{run_id}.json"
    i = 2
    while path.exists():  # two runs in the same second: keep both
        path = directory / "runs" / f"{run_id}-{i}.json"
        i += 1
    return path


def finish(gate: Gate, config: pytest.Config) -> bool:
    """Store the run, save/compare baselines, write reports. True means "fail the run".

    Called from ``pytest_sessionfinish`` on the controller. A baseline FAIL, or a results/baseline
    file that cannot be read or written, returns True: raising here would be an INTERNALERROR with a
    traceback, while the message (with its fix) is what the operator needs; it is printed in the
    terminal summary.
    """
    if hasattr(config, "workerinput"):
        return False
    outcome = config.stash[outcome_key] = Outcome()
    directory = results_dir(gate)
    save_name = _option(config, "specgate_baseline_save")
    compare_name = _option(config, "specgate_baseline_compare")

    def step(action: Callable[[], object]) -> None:
        """Each step on its own: a missing baseline must not cost the run its stored results."""
        try:
            action()
        except (SpecgateError, OSError) as e:
            outcome.errors.append(str(e))
            outcome.failed = True

    def compare() -> None:
        old = baseline.load(directory, compare_name)  # type: ignore[arg-type]
        try:
            confidence = gate.selected.workloads.confidence
        except SpecgateError:
            confidence = 0.95
        run.comparison = baseline.compare(old, run, run.thresholds, confidence=confidence, name=compare_name)
        outcome.baseline += run.comparison.lines()
        outcome.failed |= run.comparison.failed

    def save_baseline() -> None:
        outcome.files.append(baseline.save(run, directory, save_name))  # type: ignore[arg-type]
        outcome.baseline.append(f"saved this run as baseline {save_name!r}: {outcome.files[-1]}")

    outcome.errors += config.stash.get(remote_key, _Remote()).errors
    outcome.failed = bool(outcome.errors)
    try:
        run = build(gate, config)
    except (SpecgateError, OSError) as e:
        outcome.errors.append(f"specgate could not assemble this run's results: {e}")
        outcome.failed = True
        return True
    try:
        with locked(directory):
            if compare_name:
                step(compare)
            step(lambda: outcome.files.append(save(run, _run_path(directory, run.run_id))))
            step(lambda: outcome.files.append(save(run, directory / "latest.json")))
            if save_name:
                step(save_baseline)
            step(lambda: outcome.files.extend(report.write_all(run, directory)))
    except (SpecgateError, OSError) as e:
        outcome.errors.append(str(e))
        outcome.failed = True
    return outcome.failed
