"""Results store: models, atomic writes, corrupt files, fingerprint caches, and finish() on a real Gate.

No llama-server is needed: the Samples carry the numbers a CPU demo run produces (Gemma 3 270M on
2 cores: ~40 tok/s decode, ~120 ms prefill of a short prompt), built here. The factories are imported by
test_baseline.py and test_report.py.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pytest_specgate import results
from pytest_specgate.config import Budget, ServingConfig, SpecgateFile, Thresholds
from pytest_specgate.errors import ResultsError
from pytest_specgate.gate import Gate, Options
from pytest_specgate.measure import Measurement, Verdict, check_budget
from pytest_specgate.preflight import ModelFacts, Resolved
from pytest_specgate.results import ConfigFingerprint, Host, RunResults
from pytest_specgate.sample import Sample, Timings

DEMO_ARGS = ["-t", "2", "-np", "1", "-c", "4096"]

# ------------------------------------------------------------------------------------------------
# factories (shared with test_baseline.py and test_report.py)


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


# ------------------------------------------------------------------------------------------------
# a real Gate with resolved configs, as sessionfinish sees it


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPECGATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_binary(path: Path, version: str = "version: 11434 (0a1b2c3)") -> Path:
    """A real executable that answers --version like llama-server does (on stderr)."""
    path.write_text(f"#!/bin/sh\necho '{version}' >&2\necho 'built with cc for x86_64-linux-gnu' >&2\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def make_gate(tmp_path: Path, decode: dict[int, list[float]], args: list[str] = DEMO_ARGS) -> Gate:
    binary = fake_binary(tmp_path / "llama-server")
    model = tmp_path / "model.gguf"
    if not model.exists():
        model.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    cfg = ServingConfig(name="demo", binary=str(binary), model=str(model), args=args,
                        budgets=[Budget(metric="decode_tps", workload="sweep", point=256, min=8)])
    gate = Gate(Options(config="demo", file=None, strict=False, samples=None, results_dir="out", rootdir=tmp_path,
                        quick=False))
    gate._file = SpecgateFile(configs={"demo": cfg}, thresholds=Thresholds(), path=str(tmp_path / "specgate.toml"))
    gate._resolved["demo"] = Resolved(
        config=cfg, binary=binary, binary_sha256=results.file_sha256(binary), model=model, args=args,
        model_facts=ModelFacts(path=str(model), size_bytes=model.stat().st_size, architecture="gemma3", file_type=15))
    gate.pool = SimpleNamespace(props={"demo": {"build_info": "b11434-0a1b2c3"}}, memory={"demo": {"rss_peak_mib": 400.0}},
                                load_seconds={"demo": [1.2]})  # type: ignore[assignment]
    for point, values in decode.items():
        m = gate.point("demo", "sweep", point)  # the Gate's own keying, whatever shape it has
        m.samples += measurement("demo", point, values).samples
        gate.results += m.check(cfg.budgets_for("sweep", point))
    return gate


def pytest_config(save: str | None = None, compare: str | None = None, worker: bool = False) -> SimpleNamespace:
    """The three things finish() reads from a pytest.Config: options, stash, and xdist's workerinput."""
    opts = {"specgate_baseline_save": save, "specgate_baseline_compare": compare}
    cfg = SimpleNamespace(getoption=lambda name, default=None: opts.get(name, default), stash=pytest.Stash())
    if worker:
        cfg.workerinput = {"workerid": "gw0"}
    return cfg


# ------------------------------------------------------------------------------------------------
# models and files


def test_round_trip(tmp_path: Path) -> None:
    run = make_run(with_reference=True)
    path = results.save(run, tmp_path / "run.json")
    back = results.load(path)
    assert back == run
    assert back.measurements[0].samples[0].timings.predicted_per_second == run.measurements[0].samples[0].decode_tps
    assert back.verdicts[0].verdict is Verdict.PASS
    assert json.loads(path.read_text())["schema_version"] == 1


def test_models_reject_unknown_keys(tmp_path: Path) -> None:
    data = json.loads(make_run().model_dump_json())
    data["configs"]["demo"]["binary_sha"] = "typo"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="does not match results schema 1"):
        results.load(tmp_path / "bad.json")


def test_merged_joins_one_point_but_keeps_variants_apart() -> None:
    run = make_run()
    measured = measurement("demo", 256, rates(40.0, 3))
    derived = Measurement(config="demo", workload="sweep", point=256, extra={"collapse": [0.9]})
    paired = measurement("demo", 256, rates(30.0, 4)).model_copy(update={"variant": "ab", "extra": {"speedup": [1.1]}})
    run = run.model_copy(update={"measurements": [measured, paired, derived]})
    own, ab = run.merged()
    assert (own.variant, len(own.samples), own.extra) == ("", 3, {"collapse": [0.9]})
    assert (ab.variant, len(ab.samples), ab.extra) == ("ab", 4, {"speedup": [1.1]})
    assert run.measurements[0].extra == {}  # merging copies; the stored run is unchanged


def test_write_atomic_keeps_old_file_when_replace_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "latest.json"
    results.write_atomic(path, "old")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        results.write_atomic(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json"]  # no temp file left behind


@pytest.mark.parametrize("content, why", [
    ("{not json", "is not valid JSON"),
    ('{"runs": []}', "no integer `schema_version`"),
    ("", "is not valid JSON"),
])
def test_corrupt_file_is_an_error_with_path_and_fix(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "latest.json"
    path.write_text(content)
    with pytest.raises(ResultsError) as e:
        results.load(path)
    assert str(path) in str(e.value) and why in str(e.value) and "Fix:" in str(e.value)
    with pytest.raises(ResultsError, match="will not overwrite it"):
        results.save(make_run(), path)
    assert path.read_text() == content


def test_newer_schema_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"schema_version": 2}')
    with pytest.raises(ResultsError, match="upgrade pytest-specgate"):
        results.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such results file"):
        results.load(tmp_path / "nope.json")


# ------------------------------------------------------------------------------------------------
# fingerprint caches


def test_gguf_hash_is_cached_by_path_size_mtime(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"A" * 5000)
    first = results.file_sha256(model)
    entries = json.loads((cache / "hashes.json").read_text())["sha256"]
    assert list(entries.values()) == [first] and str(model.resolve()) in next(iter(entries))
    # same size and mtime: the cache answers without reading the file (that is the point for 16 GB)
    st = model.stat()
    model.write_bytes(b"B" * 5000)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert results.file_sha256(model) == first
    # a real rewrite changes the mtime: rehashed, and the stale entry is replaced, not kept
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = results.file_sha256(model)
    assert second != first
    assert list(json.loads((cache / "hashes.json").read_text())["sha256"].values()) == [second]


def test_damaged_hash_cache_is_rebuilt(tmp_path: Path, cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / "hashes.json").write_text("{oops")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x")
    assert results.file_sha256(model) == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_binary_version_runs_once_per_sha(tmp_path: Path, cache: Path) -> None:
    binary = fake_binary(tmp_path / "llama-server")
    sha = results.file_sha256(binary)
    assert results.binary_version(binary, sha) == "version: 11434 (0a1b2c3)\nbuilt with cc for x86_64-linux-gnu"
    binary.unlink()  # cached by sha: not run again
    assert results.binary_version(binary, sha).startswith("version: 11434")
    assert results.binary_version(binary, "other").startswith("unavailable (FileNotFoundError")


def test_host_info_describes_this_machine() -> None:
    host = results.host_info()
    assert host.hostname and host.cpu_count >= 1 and host.cpu_model
    assert isinstance(host.gpus, list)


# ------------------------------------------------------------------------------------------------
# finish()


def test_finish_writes_run_latest_and_reports(tmp_path: Path, cache: Path) -> None:
    gate = make_gate(tmp_path, {64: rates(41.0), 256: rates(39.5, seed=2)})
    config = pytest_config()
    assert results.finish(gate, config) is False  # type: ignore[arg-type]
    out = tmp_path / "out"
    runs = list((out / "runs").glob("*-demo.json"))
    assert len(runs) == 1
    latest = results.load(out / "latest.json")
    assert latest == results.load(runs[0])
    fp = latest.configs["demo"]
    assert fp.binary_version.startswith("version: 11434") and fp.build_info == "b11434-0a1b2c3"
    assert len(fp.model_sha256) == 64 and fp.args == DEMO_ARGS
    assert latest.memory == {"demo": {"rss_peak_mib": 400.0}}
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "report.html", "benchmark-bigger.json",
                                               "benchmark-smaller.json", "latest.json", "runs"}
    outcome = config.stash[results.outcome_key]
    assert not outcome.errors and not outcome.failed


def test_finish_on_an_xdist_worker_writes_nothing(tmp_path: Path, cache: Path) -> None:
    gate = make_gate(tmp_path, {256: rates(39.5)})
    assert results.finish(gate, pytest_config(worker=True)) is False  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_finish_baseline_save_then_regression_fails_and_names_the_flag(tmp_path: Path, cache: Path) -> None:
    assert results.finish(make_gate(tmp_path, {256: rates(40.0)}), pytest_config(save="main")) is False  # type: ignore[arg-type]
    assert results.load(tmp_path / "out" / "baselines" / "main.json").configs["demo"].args == DEMO_ARGS

    slow = make_gate(tmp_path, {256: rates(20.0, seed=5)}, args=["-t", "1", "-np", "1", "-c", "4096"])
    config = pytest_config(compare="main")
    assert results.finish(slow, config) is True  # type: ignore[arg-type]
    lines = config.stash[results.outcome_key].baseline
    fail = [line for line in lines if ": FAIL" in line]
    assert fail and fail[0].startswith("demo: decode_tps at sweep@256: -50")
    assert "(threshold -5%): FAIL" in fail[0] and "flags changed: -t 2 -> -t 1" in fail[0]
    stored = results.load(tmp_path / "out" / "latest.json")
    assert stored.comparison is not None and stored.comparison.failed


def test_finish_with_a_missing_baseline_still_stores_the_run(tmp_path: Path, cache: Path) -> None:
    gate = make_gate(tmp_path, {256: rates(39.5)})
    config = pytest_config(compare="main")
    assert results.finish(gate, config) is True  # type: ignore[arg-type]
    outcome = config.stash[results.outcome_key]
    assert "no baseline named 'main'" in outcome.errors[0] and "--specgate-baseline-save main" in outcome.errors[0]
    assert (tmp_path / "out" / "latest.json").exists()


def test_finish_refuses_to_overwrite_a_corrupt_latest(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "latest.json").write_text("garbage")
    config = pytest_config()
    assert results.finish(make_gate(tmp_path, {256: rates(39.5)}), config) is True  # type: ignore[arg-type]
    assert (tmp_path / "out" / "latest.json").read_text() == "garbage"
    assert "will not overwrite it" in config.stash[results.outcome_key].errors[0]
    assert list((tmp_path / "out" / "runs").glob("*.json"))  # this run is still kept


def test_worker_payload_merges_into_the_controller(tmp_path: Path, cache: Path) -> None:
    worker = make_gate(tmp_path, {64: rates(41.0), 256: rates(39.5)})
    controller = Gate(worker.options)
    controller._file = worker._file
    controller.point("demo", "sweep", 256).samples += measurement("demo", 256, rates(40.0, 3)).samples
    config = pytest_config()
    results.merge_worker(controller, config, results.worker_payload(worker))  # type: ignore[arg-type]
    assert len(controller.point("demo", "sweep", 256).samples) == 10  # 3 + 7 pooled
    assert len(controller.point("demo", "sweep", 64).samples) == 7
    run = results.build(controller, config)  # type: ignore[arg-type]
    assert run.configs["demo"].build_info == "b11434-0a1b2c3" and run.memory == {"demo": {"rss_peak_mib": 400.0}}
    assert len(run.verdicts) == 1
