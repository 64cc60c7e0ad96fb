"""The temperature-0 "lossless" probe: does a speculative config produce its reference's output?

The textbook says speculative decoding at temperature 0 is bit-for-bit identical to plain decoding;
the field report measured otherwise: tool calls and one-token answers survive, prose drifts by
hundreds of characters (drafter drift flips near-tied tokens). So the probe reports, per workload
and over N fixed prompts, the exact-match rate, the character-level Levenshtein distance
(rapidfuzz) and the first divergence index, and asserts what must hold: tool-call names, argument
keys and JSON shape. Reference outputs are cached in the results directory, keyed by the model's
sha256, the reference argv and the request body, so the reference server is not restarted every run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rapidfuzz.distance import Levenshtein

from pytest_specgate._files import locked, write_atomic
from pytest_specgate.errors import ResultsError
from pytest_specgate.measure.sample import Sample

STORE_NAME = "reference-outputs.json"


class Output(BaseModel):
    """What a temperature-0 request produced; the part of a Sample the probe compares."""

    model_config = ConfigDict(extra="forbid")

    content: str = ""
    reasoning_content: str = ""
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def of(cls, s: Sample) -> Output:
        return cls(content=s.content, reasoning_content=s.reasoning_content, finish_reason=s.finish_reason,
                   tool_calls=[{"name": c.name, "arguments": c.arguments} for c in s.tool_calls])

    @property
    def text(self) -> str:
        return self.reasoning_content + self.content


class Store(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    entries: dict[str, Output] = Field(default_factory=dict)


def key(model_sha256: str, argv: list[str], body: dict[str, Any]) -> str:
    blob = json.dumps({"model": model_sha256, "argv": argv, "body": body}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_store(path: Path) -> Store:
    if not path.exists():
        return Store()
    try:
        return Store.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError) as e:
        raise ResultsError(
            f"{path}: the reference-output cache cannot be read ({str(e).splitlines()[0]}). "
            f"Fix: move it aside or delete it; the reference outputs are then regenerated."
        ) from None


def first_divergence(a: str, b: str) -> int | None:
    """Index of the first differing character, or None when the strings are identical."""
    if a == b:
        return None
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def shape(value: Any) -> Any:
    """JSON shape: keys kept, leaves replaced by their type name (values may drift, shape may not)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def tool_shape(out: Output) -> list[dict[str, Any]]:
    calls = []
    for c in out.tool_calls:
        try:
            args = json.loads(c["arguments"])
        except ValueError:
            args = "<invalid json>"
        calls.append({"name": c["name"], "arguments": shape(args)})
    return calls


class ProbeResult(BaseModel):
    """The probe's figures for one workload."""

    model_config = ConfigDict(extra="forbid")

    n: int
    exact_match: list[float]
    drift_chars: list[float]
    first_divergence: list[float]
    reference_chars: list[float]
    reference_tool_calls: list[int]
    tool_shape_mismatches: list[str]

    @property
    def match_rate(self) -> float:
        return sum(self.exact_match) / self.n if self.n else 0.0


def compare(reference: list[Output], candidate: list[Output]) -> ProbeResult:
    exact, drift, first, ref_len, mismatches, ref_calls = [], [], [], [], [], []
    for i, (r, c) in enumerate(zip(reference, candidate)):
        same = r.text == c.text and r.tool_calls == c.tool_calls
        exact.append(1.0 if same else 0.0)
        drift.append(float(Levenshtein.distance(r.text, c.text)))
        d = first_divergence(r.text, c.text)
        first.append(float(len(r.text) if d is None else d))
        ref_len.append(float(len(r.text)))
        ref_calls.append(len(r.tool_calls))
        if tool_shape(r) != tool_shape(c):
            mismatches.append(f"prompt {i}: reference {tool_shape(r)} vs {tool_shape(c)}")
    return ProbeResult(n=len(exact), exact_match=exact, drift_chars=drift, first_divergence=first,
                      reference_chars=ref_len, reference_tool_calls=ref_calls, tool_shape_mismatches=mismatches)


def probe_outputs(store_path: Path, model_sha256: str, argv: list[str], bodies: list[dict[str, Any]],
                  run: Callable[[dict[str, Any]], Sample]) -> list[Output]:
    """Temperature-0 outputs of ``bodies``, served from the store at ``store_path`` when this exact
    model, argv and body were run before; ``run`` sends one body to the server (started only then)."""
    store_path.parent.mkdir(parents=True, exist_ok=True)
    keys = [key(model_sha256, argv, b) for b in bodies]
    with locked(store_path.parent):
        store = load_store(store_path)
    missing = [i for i, k in enumerate(keys) if k not in store.entries]
    if missing:
        for i in missing:
            store.entries[keys[i]] = Output.of(run(bodies[i]))
        with locked(store_path.parent):
            fresh = load_store(store_path)
            fresh.entries.update({k: store.entries[k] for k in keys})
            write_atomic(store_path, fresh.model_dump_json(indent=1))
    return [store.entries[k] for k in keys]
