"""Results store and finish(): models, atomic writes, corrupt files, fingerprint caches, and finish() on a plain run.

No llama-server is needed: the Samples carry the numbers a CPU demo run produces (Gemma 3 270M on
2 cores: ~40 tok/s decode, ~120 ms prefill of a short prompt), built by tests/factories.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from factories import DEMO_ARGS, fake_binary, make_run, make_session, measurement, rates

from pytest_specgate._files import write_atomic
from pytest_specgate.errors import ResultsError
from pytest_specgate.fingerprint import binary_version, file_sha256, host_info
from pytest_specgate.finish import Outcome, Remote, finish, merge_worker, worker_payload
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.session import Session
from pytest_specgate.store import load, save
from pytest_specgate.verdict.budget import NoBudget, Verdict
from pytest_specgate.verdict.upgrade import PairedChange, Upgrade


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPECGATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------------------
# models and files


def test_round_trip(tmp_path: Path) -> None:
    run = make_run(with_reference=True)
    path = save(run, tmp_path / "run.json")
    back = load(path)
    assert back == run
    assert back.measurements[0].samples[0].timings.predicted_per_second == run.measurements[0].samples[0].decode_tps
    assert back.verdicts[0].verdict is Verdict.PASS
    assert json.loads(path.read_text())["schema_version"] == 1


def test_models_reject_unknown_keys(tmp_path: Path) -> None:
    data = json.loads(make_run().model_dump_json())
    data["configs"]["demo"]["binary_sha"] = "typo"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="does not match results schema 1"):
        load(tmp_path / "bad.json")


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
    write_atomic(path, "old")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
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
        load(path)
    assert str(path) in str(e.value) and why in str(e.value) and "Fix:" in str(e.value)
    with pytest.raises(ResultsError, match="will not overwrite it"):
        save(make_run(), path)
    assert path.read_text() == content


def test_newer_schema_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"schema_version": 2}')
    with pytest.raises(ResultsError, match="upgrade pytest-specgate"):
        load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such results file"):
        load(tmp_path / "nope.json")


# ------------------------------------------------------------------------------------------------
# fingerprint caches


def test_gguf_hash_is_cached_by_path_size_mtime(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"A" * 5000)
    first = file_sha256(model)
    entries = json.loads((cache / "hashes.json").read_text())["sha256"]
    assert list(entries.values()) == [first] and str(model.resolve()) in next(iter(entries))
    # same size and mtime: the cache answers without reading the file (that is the point for 16 GB)
    st = model.stat()
    model.write_bytes(b"B" * 5000)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_sha256(model) == first
    # a real rewrite changes the mtime: rehashed, and the stale entry is replaced, not kept
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = file_sha256(model)
    assert second != first
    assert list(json.loads((cache / "hashes.json").read_text())["sha256"].values()) == [second]


def test_damaged_hash_cache_is_rebuilt(tmp_path: Path, cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / "hashes.json").write_text("{oops")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x")
    assert file_sha256(model) == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_binary_version_runs_once_per_sha(tmp_path: Path, cache: Path) -> None:
    binary = fake_binary(tmp_path / "llama-server")
    sha = file_sha256(binary)
    assert binary_version(binary, sha) == "version: 11434 (0a1b2c3)\nbuilt with cc for x86_64-linux-gnu"
    binary.unlink()  # cached by sha: not run again
    assert binary_version(binary, sha).startswith("version: 11434")
    assert binary_version(binary, "other").startswith("unavailable (FileNotFoundError")


def test_host_info_describes_this_machine() -> None:
    host = host_info()
    assert host.hostname and host.cpu_count >= 1 and host.cpu_model
    assert isinstance(host.gpus, list)


# ------------------------------------------------------------------------------------------------
# finish(): a plain run and plain options, no pytest.Config


def finish_session(session: Session, save_name: str | None = None, compare_name: str | None = None) -> Outcome:
    return finish(session.build_run(), session.options.results_path, save_name=save_name, compare_name=compare_name)


def test_finish_writes_run_latest_and_reports(tmp_path: Path, cache: Path) -> None:
    outcome = finish_session(make_session(tmp_path, {64: rates(41.0), 256: rates(39.5, seed=2)}))
    assert outcome.failed is False
    out = tmp_path / "out"
    runs = list((out / "runs").glob("*-demo.json"))
    assert len(runs) == 1
    latest = load(out / "latest.json")
    assert latest == load(runs[0])
    fp = latest.configs["demo"]
    assert fp.binary_version.startswith("version: 11434") and fp.build_info == "b11434-0a1b2c3"
    assert len(fp.model_sha256) == 64 and fp.args == DEMO_ARGS
    assert latest.memory == {"demo": {"rss_peak_mib": 400.0}}
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "report.html", "benchmark-bigger.json",
                                               "benchmark-smaller.json", "latest.json", "runs"}
    assert not outcome.errors


def test_finish_on_a_stored_run_alone(tmp_path: Path) -> None:
    """finish() needs nothing but a run: no session, no pytest, no fingerprinting."""
    outcome = finish(make_run(with_reference=True), tmp_path / "out")
    assert not outcome.failed and not outcome.errors
    assert load(tmp_path / "out" / "latest.json") == make_run(with_reference=True)


def test_finish_keeps_errors_it_is_handed(tmp_path: Path) -> None:
    outcome = finish(make_run(), tmp_path / "out", outcome=Outcome(errors=["worker gw0 failed"]))
    assert outcome.failed and outcome.errors == ["worker gw0 failed"]
    assert (tmp_path / "out" / "latest.json").exists()


def test_finish_baseline_save_then_regression_fails_and_names_the_flag(tmp_path: Path, cache: Path) -> None:
    assert finish_session(make_session(tmp_path, {256: rates(40.0)}), save_name="main").failed is False
    assert load(tmp_path / "out" / "baselines" / "main.json").configs["demo"].args == DEMO_ARGS
    for seed in (2, 3):  # two more stored runs of the same config: the trend verdict needs >= 3 for its spread
        assert finish_session(make_session(tmp_path, {256: rates(40.0, seed=seed)})).failed is False

    slow = make_session(tmp_path, {256: rates(20.0, seed=5)}, args=["-t", "1", "-np", "1", "-c", "4096"])
    outcome = finish_session(slow, compare_name="main")
    assert outcome.failed is True
    fail = [line for line in outcome.baseline if ": FAIL" in line]
    assert fail and fail[0].startswith("demo: decode_tps at sweep@256: -50")
    assert "(threshold -5%): FAIL" in fail[0] and "flags changed: -t 2 -> -t 1" in fail[0]
    stored = load(tmp_path / "out" / "latest.json")
    assert stored.comparison is not None and stored.comparison.failed


def test_finish_with_a_missing_baseline_says_how_to_create_it(tmp_path: Path, cache: Path) -> None:
    """A baseline that does not exist yet is one line with the command that creates it, not a failed run
    (the first CI run has nothing to compare with); --specgate-strict turns it into a failure."""
    session = make_session(tmp_path, {256: rates(39.5)})
    outcome = finish(session.build_run(), session.options.results_path, compare_name="main")
    assert outcome.failed is False and not outcome.errors
    line = next(text for text in outcome.baseline if "no baseline named 'main'" in text)
    assert "specgate baseline promote latest --name main" in line
    assert (tmp_path / "out" / "latest.json").exists()
    strict = finish(session.build_run(), session.options.results_path, compare_name="main", strict=True)
    assert strict.failed is True and "--specgate-strict" in strict.errors[0]


def test_finish_refuses_to_overwrite_a_corrupt_latest(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "latest.json").write_text("garbage")
    outcome = finish_session(make_session(tmp_path, {256: rates(39.5)}))
    assert outcome.failed is True
    assert (tmp_path / "out" / "latest.json").read_text() == "garbage"
    assert "will not overwrite it" in outcome.errors[0]
    assert list((tmp_path / "out" / "runs").glob("*.json"))  # this run is still kept


def test_worker_payload_merges_into_the_controller(tmp_path: Path, cache: Path) -> None:
    worker = make_session(tmp_path, {64: rates(41.0), 256: rates(39.5)})
    controller = Session(worker.options)
    controller._file = worker._file
    controller.point("demo", "sweep", 256).samples += measurement("demo", 256, rates(40.0, 3)).samples
    remote = Remote()
    configs, errors = worker.fingerprints()
    assert not errors
    worker.upgrade = Upgrade(config="demo", against="old", schedule=[("A", 1)], model_loads=12, changes=[
        PairedChange(config="demo", against="old", workload="sweep", point=64, metric="decode_tps", threshold=0.05,
                     verdict=Verdict.FAIL, change=-0.2, low=-0.3, high=-0.1, coverage=0.98, n=12, loads=12)])
    worker.no_budget.append(NoBudget(config="demo", workload="latency", metrics=["ttft_ms"]))
    worker.notes.append("demo sweep@64: decode at 61% of this card's bound")
    merge_worker(worker_payload(worker.measurements, worker.verdicts, configs, worker.memory(), errors,
                                upgrade=worker.upgrade, no_budget=worker.no_budget, notes=worker.notes),
                 controller.measurements, controller.verdicts, remote)
    assert len(controller.point("demo", "sweep", 256).samples) == 10  # 3 + 7 pooled
    assert len(controller.point("demo", "sweep", 64).samples) == 7
    run = controller.build_run(remote)
    assert run.configs["demo"].build_info == "b11434-0a1b2c3" and run.memory == {"demo": {"rss_peak_mib": 400.0}}
    assert len(run.verdicts) == 1
    # a worker's upgrade FAIL, its no-budget rows and its notes reach the controller's run and banner
    assert run.upgrade is not None and run.upgrade.failed and run.upgrade.changes[0].point == 64
    assert [b.workload for b in run.no_budget] == ["latency"]
    assert remote.notes == ["demo sweep@64: decode at 61% of this card's bound"]
