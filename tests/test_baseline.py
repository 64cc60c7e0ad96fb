"""Baseline comparison: trend verdicts against the stored runs' spread, and what-changed sentences from fingerprints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from factories import HOST, fingerprint, make_run, measurement, rates

from pytest_specgate import fingerprint as fp
from pytest_specgate import store
from pytest_specgate.errors import ResultsError
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.verdict import baseline
from pytest_specgate.verdict.budget import Verdict


def decode_change(cmp: baseline.Comparison, point: int = 256, metric: str = "decode_tps") -> baseline.Change:
    (found,) = [c for c in cmp.changes
                if c.metric == metric and c.point == point and c.config == "demo" and not c.variant]
    return found


OFFSETS = (-0.01, 0.005, 0.0, 0.01, -0.005, 0.003, -0.002, 0.004)  # run-to-run drift of the stored runs


def history(center: float = 40.0, k: int = 5, **kw: object) -> list[store.RunResults]:
    """``k`` stored runs of the baseline's config, each with its own run-to-run offset."""
    return [make_run({256: rates(center * (1 + OFFSETS[i]), seed=20 + i)}, **kw).model_copy(  # type: ignore[arg-type]
        update={"run_id": f"2025121{i}T120000Z-demo"}) for i in range(k)]


def test_identical_distribution_is_not_a_failure() -> None:
    old, past = make_run({256: rates(40.0, 7, seed=1)}), history(k=7)
    verdicts = []
    for seed in range(2, 12):  # ten independent reruns of the same config on the same machine
        new = make_run({256: rates(40.0, 7, seed=seed)})
        cmp = baseline.compare(old, new, name="main", history=past)
        assert not cmp.failed, cmp.lines(verbose=True)
        c = decode_change(cmp)
        assert c.k == 8
        verdicts.append(c.verdict)
    # in line with 8 runs whose spread is ~1.5%: PASS, or "cannot tell" when a rerun lands near the band
    assert verdicts.count(Verdict.PASS) >= 5 and Verdict.FAIL not in verdicts, verdicts


def test_one_stored_run_cannot_tell() -> None:
    """Run-to-run variance is unknown from one run: a 6% drop is 'cannot tell', never a silent PASS or a FAIL."""
    old = make_run({256: rates(40.0)})
    new = make_run({256: [v * 0.94 for v in rates(40.0)]})
    c = decode_change(baseline.compare(old, new))
    assert c.change == pytest.approx(-0.06, abs=0.01)
    assert c.verdict is Verdict.INCONCLUSIVE and c.k == 1
    assert "cannot tell: 1 stored run(s), the run-to-run spread needs at least 3" in c.describe()


def test_halved_decode_fails_and_says_which_flag_changed() -> None:
    old = make_run({256: rates(40.0)})
    new = make_run({256: rates(20.0, seed=4)}, args=["-t", "1", "-np", "1", "-c", "4096"])
    cmp = baseline.compare(old, new, name="main", history=history())
    assert cmp.failed
    c = decode_change(cmp)
    assert c.verdict is Verdict.FAIL and c.high < -0.4 and c.k == 6
    line = next(line for line in cmp.lines() if ": FAIL" in line and "decode_tps" in line)
    assert line.startswith(f"demo: decode_tps at sweep@256: {c.change:+.1%} [{c.low:+.1%}, {c.high:+.1%}] "
                           f"(threshold -5%): FAIL (regression: ")
    assert "flags changed: -t 2 -> -t 1" in line


def test_history_is_only_runs_of_the_baselines_binary_gguf_and_flags() -> None:
    old = make_run({256: rates(40.0)})
    other = history(k=4, args=["-t", "1", "-np", "1", "-c", "4096"])  # runs of another config: not its spread
    c = decode_change(baseline.compare(old, make_run({256: rates(40.0, seed=3)}), history=[*history(k=2), *other]))
    assert c.k == 3


def test_fail_with_nothing_changed_points_at_the_machine() -> None:
    cmp = baseline.compare(make_run({256: rates(40.0)}), make_run({256: rates(20.0, seed=4)}), history=history())
    line = next(line for line in cmp.lines() if ": FAIL" in line)
    assert "unchanged: suspect load on the machine" in line


def test_lower_is_better_metrics_mirror() -> None:
    old = make_run({256: rates(40.0)})
    slow_prefill = make_run({256: rates(40.0)})
    fast_prefill = make_run({256: rates(40.0)})
    for m in slow_prefill.measurements:
        for s in m.samples:
            s.timings.prompt_ms *= 2
    for m in fast_prefill.measurements:
        for s in m.samples:
            s.timings.prompt_ms *= 0.5
    past = history(k=7)
    worse = decode_change(baseline.compare(old, slow_prefill, history=past), metric="prefill_ms")
    better = decode_change(baseline.compare(old, fast_prefill, history=past), metric="prefill_ms")
    assert worse.verdict is Verdict.FAIL and "(threshold +10%): FAIL" in worse.describe()
    assert better.verdict is Verdict.PASS and better.change == pytest.approx(-0.5, abs=0.01)


def test_only_thresholded_metrics_at_common_points_are_compared() -> None:
    old = make_run({64: rates(41.0), 256: rates(40.0)})
    new = make_run({256: rates(40.0)})
    cmp = baseline.compare(old, new)
    assert {c.metric for c in cmp.changes} <= set(new.thresholds.model_dump())
    assert {c.point for c in cmp.changes if c.workload == "sweep"} == {256}
    assert "rss_peak_mib" in {c.metric for c in cmp.changes}  # single-figure memory metrics too
    assert any("demo sweep@64" in note for note in cmp.notes)


def test_bootstrap_is_deterministic_and_covers_the_true_change() -> None:
    old, new = rates(40.0, 9, seed=1), rates(30.0, 9, seed=2)
    first = baseline.bootstrap_change(old, new)
    assert first == baseline.bootstrap_change(old, new)
    change, low, high = first
    assert low < -0.25 < high and low < change < high
    assert change == pytest.approx(float(np.median(new) / np.median(old) - 1))


def test_judge_directions() -> None:
    assert baseline.judge_change(-0.5, -0.4, 0.05, True) is Verdict.FAIL
    assert baseline.judge_change(-0.02, 0.03, 0.05, True) is Verdict.PASS
    assert baseline.judge_change(-0.08, 0.01, 0.05, True) is Verdict.INCONCLUSIVE
    assert baseline.judge_change(0.2, 0.4, 0.10, False) is Verdict.FAIL
    assert baseline.judge_change(-0.3, 0.05, 0.10, False) is Verdict.PASS


def test_flag_diff_as_groups() -> None:
    old = ["-t", "2", "-c", "4096", "-fa", "on", "--jinja"]
    new = ["-t", "1", "-c", "4096", "--jinja", "--spec-type", "ngram-mod"]
    assert fp.flag_diff(old, new) == ["-t 2 -> -t 1", "added --spec-type ngram-mod", "removed -fa on"]
    assert fp.flag_diff(old, list(old)) == []


def test_fingerprint_sentences() -> None:

    old = fingerprint("demo")
    new = fingerprint("demo", binary_sha="c3d4e5f6" * 8, model_sha="99" * 32).model_copy(
        update={"binary_version": "version: 11500 (ffeeddc)", "env_keys": ["CUDA_VISIBLE_DEVICES"]})
    new.model_facts.file_type = 7
    got = fp.fingerprint_changes(old, new)
    assert got[0] == ("binary changed (sha256 a1b2c3d4.. -> c3d4e5f6..; version: 11434 (0a1b2c3) -> "
                      "version: 11500 (ffeeddc))")
    assert got[1] == "GGUF changed (sha256 5e6f7a8b.. -> 99999999..; file_type 15 -> 7)"
    assert got[2] == "env changed: added CUDA_VISIBLE_DEVICES"
    assert fp.fingerprint_changes(old, old) == []


def test_different_hardware_warns_but_a_new_hostname_does_not() -> None:
    gpu = HOST.model_copy(update={"hostname": "gpu-box", "gpus": [{"name": "NVIDIA H200", "total_mib": 143771}]})
    cmp = baseline.compare(make_run(), make_run(host=gpu))
    assert cmp.different_hardware
    assert cmp.lines()[1].startswith("WARNING: the baseline was measured on different hardware")
    assert "gpus no GPU -> NVIDIA H200" in cmp.lines()[1]
    renamed = baseline.compare(make_run(), make_run(host=HOST.model_copy(update={"hostname": "ci-2"})))
    assert not renamed.different_hardware
    assert renamed.lines()[1] == "note: hostname changed (ci-1 -> ci-2), same hardware"


def test_new_config_without_baseline_is_unjudged_not_passed() -> None:
    cmp = baseline.compare(make_run(), make_run(with_reference=True), name="main")
    (line,) = cmp.unjudged
    assert line.startswith("demo-ngram: not in baseline 'main' (it has: demo), so nothing was compared. Fix: ")
    assert "--specgate-baseline-compare=main:<config>" in line
    assert not any(c.config == "demo-ngram" for c in cmp.changes)
    assert cmp.undecided()[-1] == line  # --specgate-strict fails on it


def test_a_renamed_config_is_compared_through_name_colon_config() -> None:
    old = make_run({256: rates(40.0)})
    new = make_run({256: rates(20.0, seed=4)}, args=["-t", "1", "-np", "1", "-c", "4096"])
    for m in new.measurements:
        m.config = "demo-t1"
    new.configs = {"demo-t1": new.configs["demo"].model_copy(update={"name": "demo-t1"})}
    new.selected = "demo-t1"
    assert not baseline.compare(old, new, name="main").changes  # different names: unjudged
    cmp = baseline.compare(old, new, name="main:demo", history=history())
    assert cmp.mapped == {"demo-t1": "demo"} and not cmp.unjudged
    (c,) = [c for c in cmp.changes if c.metric == "decode_tps" and c.point == 256]
    assert c.config == "demo-t1" and c.verdict is Verdict.FAIL
    assert cmp.fingerprint["demo-t1"] == ["flags changed: -t 2 -> -t 1"]
    bad = baseline.compare(old, new, name="main:nope")
    assert bad.unjudged == ["demo-t1: baseline 'main' has no config 'nope' (it has: demo). "
                            "Fix: --specgate-baseline-compare=main:<one of those>"]
    assert store.baseline_path(Path("/r"), "main:demo") == Path("/r/baselines/main.json")


def test_zero_median_is_skipped_not_divided() -> None:
    old = make_run()
    old.measurements.append(Measurement(config="demo", workload="sweep", point=512, extra={"decode_tps": [0.0, 0.0]}))
    new = make_run()
    new.measurements.append(measurement("demo", 512, rates(40.0, 3)))
    assert not [c for c in baseline.compare(old, new).changes if c.point == 512 and c.metric == "decode_tps"]


def test_save_and_load_baselines(tmp_path: Path) -> None:
    run = make_run()
    path = store.save_baseline(run, tmp_path, "v1.2_main")
    assert path == tmp_path / "baselines" / "v1.2_main.json"
    assert store.load_baseline(tmp_path, "v1.2_main") == run
    with pytest.raises(ResultsError,
                       match=r"no baseline named 'nope'.*known: v1.2_main.*--specgate-baseline-save nope"):
        store.load_baseline(tmp_path, "nope")
    with pytest.raises(ResultsError, match="not usable as a file name"):
        store.save_baseline(run, tmp_path, "../escape")


def test_corrupt_baseline_is_reported_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "baselines" / "main.json"
    path.parent.mkdir()
    path.write_text('{"schema_version": 1, "truncated')
    with pytest.raises(ResultsError, match="main.json: is not valid JSON"):
        store.load_baseline(tmp_path, "main")
    with pytest.raises(ResultsError, match="will not overwrite it"):
        store.save_baseline(make_run(), tmp_path, "main")


def test_variants_are_compared_with_their_own_kind() -> None:
    """A/B-paired samples of a point are held against the baseline's A/B samples, not its own samples."""
    old, new = make_run({256: rates(40.0)}), make_run({256: rates(40.0)})
    old.measurements.append(measurement("demo", 256, rates(60.0, seed=7)).model_copy(update={"variant": "ab"}))
    new.measurements.append(measurement("demo", 256, rates(30.0, seed=8)).model_copy(update={"variant": "ab"}))
    past = [r.model_copy(update={"measurements": [*r.measurements, measurement("demo", 256, rates(
        60.0 * (1 + OFFSETS[i]), seed=30 + i)).model_copy(update={"variant": "ab"})]}) for i, r in enumerate(history())]
    cmp = baseline.compare(old, new, history=past)
    (ab,) = [c for c in cmp.changes if c.metric == "decode_tps" and c.variant == "ab"]
    assert ab.verdict is Verdict.FAIL and ab.where == "sweep@256 [ab]"
    assert decode_change(cmp).verdict is Verdict.PASS  # the point's own samples did not move
