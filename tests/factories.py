"""Shared factories for the plugin's tests: samples, measurements, fingerprints, stored runs, sessions.

They build real objects (real pydantic models, a real Session with a real executable standing in
for llama-server's ``--version``); only the server pool is a stand-in, because finish() reads three
figures from it and a real pool needs a model load.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pytest_specgate.config import Budget, ServingConfig, SpecgateFile, Thresholds
from pytest_specgate.fingerprint import ConfigFingerprint, Host, file_sha256
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.sample import Sample, Timings
from pytest_specgate.options import Options
from pytest_specgate.preflight import ModelFacts, Resolved
from pytest_specgate.session import Session
from pytest_specgate.store import RunResults
from pytest_specgate.verdict.budget import check_budget, check_point

DEMO_ARGS = ["-t", "2", "-np", "1", "-c", "4096"]

def sample(point: int | None, decode_tps: float, *, workload: str = "sweep", prompt_n: int = 40,
           prompt_ms: float = 120.0, reasoning: float = 0.0, draft: tuple[int, int] = (0, 0)) -> Sample:
    """One streamed request as the client records it, consistent with the server's timings."""
    n = point or 16
    predicted_ms = 1000.0 * (n - 1) / decode_tps
    ttft = prompt_ms + 1000.0 / decode_tps + 3.0
    text = "word " * n
    cut = int(len(text) * reasoning)
    return Sample(
        workload=workload, point=point, nonce="n0", requested_tokens=n, wall_ms=prompt_ms + predicted_ms + 25.0,
        ttft_ms=ttft, last_token_ms=ttft + predicted_ms, n_events=n,
        timings=Timings(prompt_n=prompt_n, prompt_ms=prompt_ms, prompt_per_second=1000.0 * prompt_n / prompt_ms,
                        predicted_n=n, predicted_ms=predicted_ms, predicted_per_second=decode_tps,
                        draft_n=draft[0], draft_n_accepted=draft[1]),
        prompt_tokens=prompt_n, completion_tokens=n, finish_reason="length",
        content=text[cut:], reasoning_content=text[:cut],
    )


def rates(center: float, n: int = 7, spread: float = 0.02, seed: int = 1) -> list[float]:
    """``n`` decode rates around ``center`` with a relative spread, as a busy CPU gives them."""
    rng = np.random.default_rng(seed)
    return [float(v) for v in center * (1 + spread * rng.standard_normal(n))]


def measurement(config: str, point: int | None, decode: Sequence[float], *, workload: str = "sweep",
                prompt_ms: float = 120.0, reasoning: float = 0.0) -> Measurement:
    return Measurement(config=config, workload=workload, point=point, warmups=1,
                       samples=[sample(point, r, workload=workload, prompt_ms=prompt_ms + i, reasoning=reasoning)
                                for i, r in enumerate(decode)])


def fingerprint(name: str, args: Sequence[str] = DEMO_ARGS, *, binary_sha: str = "a1b2c3d4" * 8,
                model_sha: str = "5e6f7a8b" * 8, reference: str | None = None) -> ConfigFingerprint:
    return ConfigFingerprint(
        name=name, description=f"{name} config", reference=reference, binary="/opt/llama/llama-server",
        binary_sha256=binary_sha, binary_version="version: 11434 (0a1b2c3)\nbuilt with cc", build_info="b11434-0a1b2c3",
        model="/models/gemma3-270m-q4_k_m.gguf", model_sha256=model_sha,
        model_facts=ModelFacts(path="/models/gemma3-270m-q4_k_m.gguf", size_bytes=253_000_000, architecture="gemma3",
                               file_type=15, context_length=32768, block_count=18),
        args=list(args), env_keys=[],
    )


HOST = Host(hostname="ci-1", platform="Linux", cpu_model="AMD EPYC 7B13", cpu_count=2, gpus=[])


def make_run(decode: dict[int, Sequence[float]] | None = None, *, args: Sequence[str] = DEMO_ARGS,
             host: Host = HOST, binary_sha: str = "a1b2c3d4" * 8, with_reference: bool = False) -> RunResults:
    """A CPU-demo-shaped run: sweep@64 and @256, long-context, memory; optionally demo-ngram vs demo."""
    decode = decode or {64: rates(41.0), 256: rates(39.5, seed=2)}
    ms = [measurement("demo", p, r) for p, r in decode.items()]
    ms.append(measurement("demo", None, rates(44.0, 5, seed=3), workload="long-context", prompt_ms=2100.0))
    ms.append(Measurement(config="demo", workload="memory", extra={"rss_peak_mib": [412.5]}))
    budget = Budget(metric="decode_tps", workload="sweep", point=256, min=8)
    verdicts = [check_budget(budget, ms[1].stats("decode_tps")).model_copy(update={"config": "demo"})]
    configs = {"demo": fingerprint("demo", args, binary_sha=binary_sha)}
    if with_reference:
        for p in decode:
            ms.append(measurement("demo-ngram", p, rates(52.0, seed=p), reasoning=0.3))
        ms.append(measurement("demo-ngram", None, rates(50.0, 5, seed=9), workload="long-context", prompt_ms=2600.0))
        configs["demo-ngram"] = fingerprint("demo-ngram", [*args, "--spec-type", "ngram-mod"], reference="demo")
    return RunResults(
        run_id="20260101T120000Z-demo", started=datetime(2026, 1, 1, 12, tzinfo=UTC),
        finished=datetime(2026, 1, 1, 12, 1, tzinfo=UTC), selected="demo", host=host, configs=configs,
        measurements=ms, verdicts=verdicts, memory={"demo": {"rss_idle_mib": 380.0, "rss_peak_mib": 412.5}},
        thresholds=Thresholds(),
    )


def fake_binary(path: Path, version: str = "version: 11434 (0a1b2c3)") -> Path:
    """A real executable that answers --version like llama-server does (on stderr)."""
    path.write_text(f"#!/bin/sh\necho '{version}' >&2\necho 'built with cc for x86_64-linux-gnu' >&2\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def make_session(tmp_path: Path, decode: dict[int, list[float]], args: list[str] = DEMO_ARGS) -> Session:
    """A real Session with a resolved config and samples, as sessionfinish sees it (the pool is a stand-in)."""
    binary = fake_binary(tmp_path / "llama-server")
    model = tmp_path / "model.gguf"
    if not model.exists():
        model.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    cfg = ServingConfig(name="demo", binary=str(binary), model=str(model), args=args,
                        budgets=[Budget(metric="decode_tps", workload="sweep", point=256, min=8)])
    gate = Session(Options(config="demo", file=None, strict=False, samples=None, results_dir="out", rootdir=tmp_path,
                        quick=False))
    gate._file = SpecgateFile(configs={"demo": cfg}, thresholds=Thresholds(), path=str(tmp_path / "specgate.toml"))
    gate.resolved["demo"] = Resolved(
        config=cfg, binary=binary, binary_sha256=file_sha256(binary), model=model, args=args,
        model_facts=ModelFacts(path=str(model), size_bytes=model.stat().st_size, architecture="gemma3", file_type=15))
    gate.pool = SimpleNamespace(props={"demo": {"build_info": "b11434-0a1b2c3"}},
                                memory={"demo": {"rss_peak_mib": 400.0}},
                                load_seconds={"demo": [1.2]})  # type: ignore[assignment]
    for point, values in decode.items():
        m = gate.point("demo", "sweep", point)  # the session's own keying, whatever shape it has
        m.samples += measurement("demo", point, values).samples
        gate.verdicts += check_point(m, cfg.budgets_for("sweep", point))
    return gate
