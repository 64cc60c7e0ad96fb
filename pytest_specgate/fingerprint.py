"""Fingerprints: everything that decides what a config measures, collected and diffed in words.

A regression is only actionable when it says what changed, so every stored run carries, per config,
the binary's sha256 and ``--version``, the server's ``build_info``, the GGUF's sha256 and header
facts, the effective argv, the env keys and the chat template's sha256, plus the host. Comparing two
runs turns the difference into sentences such as ``flags changed: -t 2 -> -t 1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field

from pytest_specgate._files import cached_sha256, read_hash_cache, sha256_file, write_hash_cache
from pytest_specgate._proc import scrubbed_env
from pytest_specgate.argv import group_args, redact_args
from pytest_specgate.preflight import ModelFacts, Resolved
from pytest_specgate.provision.cache import hash_cache_path
from pytest_specgate.server.memory import gpu_inventory

__all__ = ["ConfigFingerprint", "Host", "args_sha256", "written_args", "binary_version", "collect", "file_sha256",
           "fingerprint_changes", "flag_diff", "host_changes", "host_info"]


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
    #: the argv as written in the config: ``${VAR}`` unexpanded, secret-bearing values redacted, so a
    #: results file, report or gh-pages benchmark never carries a token
    args: list[str]
    #: sha256 of the argv as started (expanded): a changed ``${VAR}`` value still shows as a change
    args_sha256: str = ""
    env_keys: list[str] = Field(default_factory=list)
    chat_template_sha256: str | None = None
    #: what every request carried beyond the plain OpenAI body (``request_extras``)
    request_extras: dict[str, Any] = Field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# collecting


def file_sha256(path: Path) -> str:
    """sha256 of a model or binary, computed once per (path, size, mtime_ns) across runs."""
    return cached_sha256(path, hash_cache_path())


def collect(resolved: Resolved, props: dict[str, Any] | None = None) -> ConfigFingerprint:
    """The fingerprint of a preflighted config; ``props`` is the server's ``/props`` (for ``build_info``)."""
    r, props = resolved, props or {}
    tpl = r.chat_template_file
    return ConfigFingerprint(
        name=r.config.name, description=r.config.description, reference=r.config.reference,
        binary=str(r.binary), binary_sha256=r.binary_sha256, binary_version=binary_version(r.binary, r.binary_sha256),
        build_info=str(props.get("build_info", "") or ""),
        model=str(r.model), model_sha256=file_sha256(r.model), model_facts=r.model_facts,
        args=written_args(r), args_sha256=args_sha256(r.args), env_keys=sorted(r.config.env),
        chat_template_sha256=sha256_file(tpl) if tpl and tpl.is_file() else None,
        request_extras=dict(r.config.request_extras),
    )


def written_args(resolved: Resolved) -> list[str]:
    """The argv as the config writes it (``${VAR}`` and ``provisioned:NAME`` kept), secrets redacted."""
    cfg = resolved.config
    template = ["--chat-template-file", cfg.chat_template_file] if resolved.chat_template_file and \
        cfg.chat_template_file else []
    return redact_args([*cfg.args, *template])


def args_sha256(expanded: list[str]) -> str:
    """A hash of the argv as started: it tells a changed secret or ``${VAR}`` value without showing it."""
    return hashlib.sha256("\0".join(expanded).encode()).hexdigest()


def binary_version(binary: Path, sha256: str) -> str:
    """``<binary> --version`` (build number and commit), run once per binary sha256 and cached."""
    cache = hash_cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache) + ".lock", timeout=60)
    known: str | None = None
    with contextlib.suppress(Timeout), lock:  # another run hashing a big GGUF: just ask the binary
        known = read_hash_cache(cache)["version"].get(sha256)
    if known is not None:
        return known
    env = scrubbed_env()
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, env=env,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({type(e).__name__}: {e})"
    text = "\n".join(line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip())[:500]
    if proc.returncode != 0:
        return f"unavailable (exit {proc.returncode}: {text[:200]})"
    with contextlib.suppress(Timeout), lock:
        data = read_hash_cache(cache)
        data["version"][sha256] = text
        write_hash_cache(cache, data)
    return text


def host_info() -> Host:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        gpus = gpu_inventory()
    except Exception:  # noqa: BLE001 - NVML quirks must not cost the run its results
        gpus = []
    return Host(hostname=socket.gethostname(), platform=platform.platform(),
                cpu_model=cpu_model or platform.processor() or platform.machine(),
                cpu_count=os.cpu_count() or 0, gpus=gpus)


# ------------------------------------------------------------------------------------------------
# diffing


def _short(sha: str) -> str:
    return f"{sha[:8]}.." if sha else "unknown"


def _extras(extras: dict[str, Any]) -> str:
    return json.dumps(extras, sort_keys=True, separators=(",", ":")) if extras else "none"


def flag_diff(old: list[str], new: list[str]) -> list[str]:
    """Argv difference as flag groups: ["-t 2 -> -t 1", "added --spec-type ngram-mod", "removed -fa on"]."""
    def groups(args: list[str]) -> dict[str, list[list[str]]]:
        out: dict[str, list[list[str]]] = {}
        for flag, vals in group_args(args):
            out.setdefault(flag, []).append(vals)
        return out

    def show(flag: str, occurrences: list[list[str]]) -> str:
        return " ".join(" ".join([flag, *vals]) for vals in occurrences)

    a, b = groups(old), groups(new)
    changed = [f"{show(f, a[f])} -> {show(f, b[f])}" for f in a if f in b and a[f] != b[f]]
    added = [f"added {show(f, b[f])}" for f in b if f not in a]
    removed = [f"removed {show(f, a[f])}" for f in a if f not in b]
    return changed + added + removed


def fingerprint_changes(old: ConfigFingerprint, new: ConfigFingerprint) -> list[str]:
    out = []
    if old.binary_sha256 != new.binary_sha256:
        s = f"binary changed (sha256 {_short(old.binary_sha256)} -> {_short(new.binary_sha256)}"
        ov, nv = old.binary_version.splitlines()[:1], new.binary_version.splitlines()[:1]
        if ov != nv:
            s += f"; {' '.join(ov) or '?'} -> {' '.join(nv) or '?'}"
        if old.build_info != new.build_info and old.build_info and new.build_info:
            s += f"; build_info {old.build_info} -> {new.build_info}"
        out.append(s + ")")
    elif old.binary != new.binary:
        out.append(f"binary moved ({old.binary} -> {new.binary}), same sha256")
    if old.model_sha256 != new.model_sha256:
        facts = [f"{k} {getattr(old.model_facts, k)} -> {getattr(new.model_facts, k)}"
                 for k in ("architecture", "file_type", "size_bytes", "nextn_predict_layers", "block_count")
                 if getattr(old.model_facts, k) != getattr(new.model_facts, k)]
        out.append(f"GGUF changed (sha256 {_short(old.model_sha256)} -> {_short(new.model_sha256)}"
                   + (f"; {', '.join(facts)}" if facts else "") + ")")
    elif old.model != new.model:
        out.append(f"GGUF moved ({old.model} -> {new.model}), same sha256")
    if flags := flag_diff(old.args, new.args):
        out.append("flags changed: " + ", ".join(flags))
    elif old.args_sha256 and new.args_sha256 and old.args_sha256 != new.args_sha256:
        out.append(f"flags changed: same as written, but a ${{VAR}} or secret value differs "
                   f"(argv sha256 {_short(old.args_sha256)} -> {_short(new.args_sha256)})")
    if old.request_extras != new.request_extras:
        out.append(f"request extras changed: {_extras(old.request_extras)} -> {_extras(new.request_extras)}")
    if old.env_keys != new.env_keys:
        added = sorted(set(new.env_keys) - set(old.env_keys))
        removed = sorted(set(old.env_keys) - set(new.env_keys))
        out.append("env changed: " + ", ".join([*(f"added {k}" for k in added), *(f"removed {k}" for k in removed)]))
    if old.chat_template_sha256 != new.chat_template_sha256:
        out.append(f"chat template changed (sha256 {_short(old.chat_template_sha256 or '')} -> "
                   f"{_short(new.chat_template_sha256 or '')})")
    return out


def host_changes(old: Host, new: Host) -> tuple[list[str], bool]:
    """(sentences, different hardware). A new hostname alone is not a new machine (CI containers)."""
    diffs = []
    if old.hardware() != new.hardware():
        parts = []
        if old.cpu_model != new.cpu_model or old.cpu_count != new.cpu_count:
            parts.append(f"cpu {old.cpu_model} x{old.cpu_count} -> {new.cpu_model} x{new.cpu_count}")
        og = ", ".join(str(g.get("name")) for g in old.gpus) or "no GPU"
        ng = ", ".join(str(g.get("name")) for g in new.gpus) or "no GPU"
        if og != ng or old.hardware()[2] != new.hardware()[2]:
            parts.append(f"gpus {og} -> {ng}")
        diffs.append(f"host changed ({old.hostname} -> {new.hostname}: {'; '.join(parts)})")
    elif old.hostname != new.hostname:
        diffs.append(f"hostname changed ({old.hostname} -> {new.hostname}), same hardware")
    drivers = ({g.get("driver") for g in old.gpus}, {g.get("driver") for g in new.gpus})
    if old.gpus and new.gpus and drivers[0] != drivers[1]:
        diffs.append(f"GPU driver {', '.join(map(str, drivers[0]))} -> {', '.join(map(str, drivers[1]))}")
    return diffs, old.hardware() != new.hardware()
