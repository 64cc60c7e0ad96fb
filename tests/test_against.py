"""The upgrade verdict (--specgate-against) and A/B blocks that span every point.

The statistics (``verdict.paired``) have their own seeded simulations in test_simulation.py; here:
how the gate uses them (points, schedule, the verdict's data and words), and on a real llama-server
with the synthetic GGUF that a config pair costs the same loads whatever the number of points: one per
block for the upgrade verdict (every block on a fresh load), 3 for the speedup's ABBA.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from factories import make_session, measurement

from conftest import toml_config
from pytest_specgate.config import Thresholds, Workloads
from pytest_specgate.errors import SpecgateConfigError
from pytest_specgate.verdict.budget import Verdict
from pytest_specgate.verdict.paired import judge_paired, model_loads
from pytest_specgate.verdict.sequential import Outcome
from pytest_specgate.verdict.upgrade import (
    PairedChange,
    Upgrade,
    judge_upgrade,
    pair_plan,
    pair_points,
    pair_schedule,
    upgrade_schedule,
)


def drifting(center: float, schedule: list[tuple[str, int]], side: str, drift: float, seed: int) -> list[float]:
    """Samples of one side in block order, on a machine that slows down linearly over the session."""
    rng = np.random.default_rng(seed)
    total = sum(n for _, n in schedule)
    out, t = [], 0
    for s, n in schedule:
        for _ in range(n):
            if s == side:
                out.append(center * (1 + drift * t / total) * (1 + 0.03 * rng.standard_normal()))
            t += 1
    return out


def test_blocks_span_every_point_and_cost_three_loads() -> None:
    wl = Workloads(sweep=[64, 256], quick_sweep=[256])
    assert pair_points(wl, "sweep", 64, quick=False) == [64, 256]
    assert pair_points(wl, "sweep", 256, quick=True) == [256]
    assert pair_points(wl, "sweep", 64, quick=False, collected=[64]) == [64]  # -k out64 measures 64 only
    assert pair_points(wl, "long-context", None, quick=False) == [None]
    schedule = pair_schedule(12)
    assert schedule == [("A", 6), ("B", 6), ("B", 6), ("A", 6)]  # the candidate first, then twice the other
    assert model_loads(schedule) == 3
    assert pair_schedule(1) == [("A", 1), ("B", 1)]


def test_one_set_of_blocks_spans_every_paired_workload() -> None:
    """The speedup sweep and the natural-output pairs share one ABBA: 3 loads, not 3 per workload."""
    wl = Workloads(sweep=[64, 256])
    both = [("natural", None), ("sweep", 64), ("sweep", 256)]
    assert pair_plan(wl, "sweep", 64, False, None, {"sweep", "natural"}) == both
    assert pair_plan(wl, "natural", None, False, None, {"sweep", "natural"}) == both
    assert pair_plan(wl, "natural", None, False, [64], {"sweep", "natural"}) == [("natural", None), ("sweep", 64)]
    assert pair_plan(wl, "sweep", 256, True, None, None) == [("sweep", 256)]


@pytest.mark.parametrize(("slowdown", "expected"), [(0.0, Verdict.PASS), (0.15, Verdict.FAIL)])
def test_drift_cancels_and_a_real_regression_fails(slowdown: float, expected: Verdict) -> None:
    """A -14% drift over the session is not a regression; a 15% slower candidate is one."""
    schedule = upgrade_schedule(12)
    cand = drifting(40.0 * (1 - slowdown), schedule, "A", -0.14, seed=3)
    ref = drifting(40.0, schedule, "B", -0.14, seed=4)
    pairs = [(measurement("new", 64, cand), measurement("old", 64, ref))]
    (change,) = judge_upgrade(pairs, schedule, Thresholds())
    assert change.verdict is expected, change.why
    assert change.n == 12 and change.alpha == pytest.approx(0.01) and change.coverage == pytest.approx(0.98)
    text = change.describe()
    assert text.startswith("decode_tps at sweep@64 vs old: ") and "98% CI, N=12 a side on 12 loads" in text
    assert "(threshold -5%)" in text


def test_alpha_is_split_over_the_sessions_comparisons() -> None:
    schedule = upgrade_schedule(4, 4)
    pairs = [(measurement("new", p, [40.0, 41, 39, 40]), measurement("old", p, [40.0, 40, 41, 39])) for p in (8, 16)]
    changes = judge_upgrade(pairs, schedule, Thresholds(), comparisons=2)
    assert [c.alpha for c in changes] == [0.005, 0.005]
    assert all(c.loads == 4 and "1 degree" not in c.why for c in changes)


def test_one_unlucky_load_is_not_a_regression() -> None:
    """Loads of one unchanged config differ (4.6% on the 2-core machine, bench/load_spread.py). One
    candidate load 9% slow used to be judged as 6 independent samples; per load it is one draw of 12."""
    schedule = upgrade_schedule(12)
    ref = [40.0, 40.4, 39.6, 40.2, 39.8, 40.0] * 2
    cand = list(ref)
    cand[0:2] = [v * 0.91 for v in cand[0:2]]
    cand[6:8] = [v * 0.93 for v in cand[6:8]]
    (c,) = judge_upgrade([(measurement("new", 64, cand), measurement("old", 64, ref))], schedule, Thresholds())
    assert c.verdict is not Verdict.FAIL, c.why


def test_loads_that_differ_widen_the_interval_instead_of_failing() -> None:
    """Three of the candidate's six loads run 12% slow, the others not at all: that is load spread, not a
    steady regression. Judged sample by sample (the old design) it FAILs at -6.2%; judged per load the
    spread is in the interval and the verdict cannot tell."""
    schedule = upgrade_schedule(12)
    ref = [40.0, 40.4, 39.6, 40.2, 39.8, 40.0] * 2
    cand = list(ref)
    for block in (0, 2, 4):  # the candidate's blocks, 2 samples each
        cand[2 * block:2 * block + 2] = [v * 0.88 for v in cand[2 * block:2 * block + 2]]
    assert judge_paired(cand, ref, 0.05, True).verdict is Outcome.FAIL
    (c,) = judge_upgrade([(measurement("new", 64, cand), measurement("old", 64, ref))], schedule, Thresholds())
    assert c.verdict is Verdict.INCONCLUSIVE and c.change == pytest.approx(-0.062, abs=0.002), c.why
    assert c.low is not None and c.high is not None and c.low < -0.05 < 0 < c.high


def test_mismatched_pairs_are_skipped_with_the_reason() -> None:
    schedule = upgrade_schedule(2, 4)
    (c,) = judge_upgrade([(measurement("new", 8, [40.0, 41, 39]), measurement("old", 8, [40.0, 40, 41, 39]))],
                         schedule, Thresholds())
    assert c.verdict is Verdict.SKIPPED and "do not fill the schedule's 2 and 2" in c.why


def test_upgrade_lines_name_the_change_and_what_differs() -> None:
    change = PairedChange(config="demo-t1", against="demo", workload="sweep", point=64, metric="decode_tps",
                          change=-0.2, low=-0.25, high=-0.15, coverage=0.98, n=12, threshold=0.05,
                          verdict=Verdict.FAIL, why="")
    up = Upgrade(config="demo-t1", against="demo", schedule=upgrade_schedule(12, 4), model_loads=4,
                 changes=[change.model_copy(update={"loads": 4})], fingerprint=["flags changed: -t 2 -> -t 1"])
    lines = up.lines()
    assert lines[0] == ("demo-t1 against the deployed 'demo': side by side in ABBA blocks across 1 point(s), "
                        "4 model loads")
    assert lines[1] == ("demo-t1: decode_tps at sweep@64 vs demo: -20.0% [-25.0%, -15.0%] (98% CI, N=12 a side on "
                        "4 loads) (threshold -5%): FAIL; changed vs demo: flags changed: -t 2 -> -t 1")
    assert up.failed


def test_against_measures_both_configs_in_abba_blocks_each_on_a_fresh_load(pytester: pytest.Pytester, server_bin,
                                                                            tiny_gguf) -> None:
    """Real llama-server, synthetic GGUF: two points, a candidate and the deployed config.

    One model load per block (candidate, deployed, deployed, candidate with ``ab_loads = 4``), not one
    per point; the stored run carries the verdict per point with its schedule and the flag that differs.
    """
    old = toml_config("deployed", server_bin, tiny_gguf, ["-t", "1", "-np", "1", "-c", "1024"])
    new = toml_config("candidate", server_bin, tiny_gguf, ["-t", "1", "-np", "1", "-c", "1024", "-b", "512"])
    new = new.replace("request_timeout = 60 }", "request_timeout = 60, ab_samples = 4, ab_loads = 4 }")
    pytester.makefile(".toml", specgate=old + new)
    pytester.makepyfile(textwrap.dedent("""
        def test_upgrade(specgate_against, specgate_output_len):
            specgate_against("sweep", specgate_output_len)
        """))
    result = pytester.runpytest("-p", "no:cacheprovider", "--specgate-config=candidate",
                                "--specgate-against=deployed", f"--specgate-results={pytester.path / 'r'}")
    out = result.stdout.str()
    assert "candidate: 2 model load(s)" in out and "deployed: 2 model load(s)" in out, out
    run = json.loads((pytester.path / "r" / "latest.json").read_text())
    up = run["upgrade"]
    assert up["config"] == "candidate" and up["against"] == "deployed" and up["model_loads"] == 4
    assert [s for s, _ in up["schedule"]] == ["A", "B", "B", "A"]
    assert sorted(c["point"] for c in up["changes"]) == [16, 32]
    assert all(c["n"] == 4 and c["loads"] == 4 and c["alpha"] == pytest.approx(0.005) for c in up["changes"])
    assert "flags changed: added -b 512" in " ".join(up["fingerprint"]) or up["fingerprint"], up["fingerprint"]
    points = {(m["config"], m["point"]): len(m["samples"]) for m in run["measurements"] if m["variant"] == "against"}
    assert points == {("candidate", 16): 4, ("candidate", 32): 4, ("deployed", 16): 4, ("deployed", 32): 4}


def test_reference_pairs_span_every_point_too(pytester: pytest.Pytester, server_bin, tiny_gguf) -> None:
    """The speedup A/B (config vs its reference) used to restart servers for every point and workload."""
    ref = toml_config("plain", server_bin, tiny_gguf, ["-t", "1", "-np", "1", "-c", "1024"])
    cfg = toml_config("spec", server_bin, tiny_gguf, ["-t", "1", "-np", "1", "-c", "1024", "-b", "512"],
                      extra='reference = "plain"\n')
    pytester.makefile(".toml", specgate=ref + cfg)
    pytester.makepyfile(textwrap.dedent("""
        import pytest

        @pytest.mark.specgate_workload("sweep")
        def test_pair(specgate_measure_pair, specgate_output_len):
            cur, ref = specgate_measure_pair("sweep", specgate_output_len)
            assert len(cur.samples) == len(ref.samples) == 3

        @pytest.mark.specgate_workload("natural")
        def test_natural(specgate_measure_pair):
            cur, ref = specgate_measure_pair("natural")
            assert len(cur.samples) == len(ref.samples) == 3
        """))
    result = pytester.runpytest("-p", "no:cacheprovider", "--specgate-config=spec",
                                f"--specgate-results={pytester.path / 'r'}")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert "spec: 2 model load(s)" in out and "plain: 1 model load(s)" in out, out  # two workloads, one ABBA


def test_against_itself_is_refused_in_one_line(tmp_path) -> None:
    gate = make_session(tmp_path, {})
    gate.options.against = "demo"
    with pytest.raises(SpecgateConfigError, match=r"^--specgate-against 'demo' is the selected config itself: .*Fix: "):
        gate.against_name()
    gate.options.against = "nope"
    with pytest.raises(SpecgateConfigError, match="'nope' is not defined"):
        gate.against_name()
