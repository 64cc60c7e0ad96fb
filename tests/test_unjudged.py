"""No silent pass: budgets that would never be judged fail at load; budgets a run did not judge are listed.

The load-time checks need no server. The run-time checks run real pytest sessions (``pytester``) on
the real pinned llama-server with the synthetic GGUF (loads in under a second).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, toml_config
from pytest_specgate.config import Budget, load
from pytest_specgate.errors import SpecgateConfigError
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.verdict.budget import BudgetResult, Verdict, check_budget, check_point, find_unjudged


def write(tmp_path: Path, budgets: str, sweep: str = "[100, 500, 1000, 2000]") -> Path:
    path = tmp_path / "specgate.toml"
    path.write_text(textwrap.dedent(f"""
        [configs.c]
        binary = "/x/llama-server"
        model = "/x/m.gguf"
        workloads = {{ sweep = {sweep} }}
        """) + textwrap.dedent(budgets))
    return path


def first_line(path: Path) -> str:
    with pytest.raises(SpecgateConfigError) as e:
        load(path)
    return str(e.value).splitlines()[0]


def test_a_budget_at_a_point_the_sweep_lacks_fails_at_load(tmp_path: Path):
    line = first_line(write(tmp_path, """
        [[configs.c.budgets]]
        metric = "decode_tps"
        point = 2048
        min = 44
        """))
    assert line.startswith(f"{tmp_path / 'specgate.toml'}: key 'configs.c.budgets[0]' (decode_tps >= 44 at sweep@2048)")
    assert "names point 2048" in line and "[100, 500, 1000, 2000]" in line
    assert "Fix: set point to one of [100, 500, 1000, 2000], or add it to workloads.sweep." in line


def planted_typo(path: Path) -> Path:
    """The shipped file with the closing note's typo: mtp's decode floor at 2048 instead of 2000."""
    text = (REPO / "specgate.toml").read_text()
    planted = text.replace("point = 2000\nmin = 44", "point = 2048\nmin = 44", 1)
    assert planted != text
    path.write_text(planted)
    return path


def test_the_shipped_file_with_a_planted_typo_fails_at_load(tmp_path: Path):
    line = first_line(planted_typo(tmp_path / "specgate.toml"))
    assert "configs.mtp.budgets[0]' (decode_tps >= 44 at sweep@2048)" in line and "Fix: set point to one of" in line


def test_the_planted_typo_stops_pytest_in_one_line_before_collection(tmp_path: Path, pytester: pytest.Pytester):
    """Through pytest the same typo is one ``ERROR:`` line and exit code 4, not a traceback per suite module."""
    typo = planted_typo(tmp_path / "typo.toml")
    pytester.makepyfile("def test_decode(specgate_output_len):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--specgate-file={typo}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [x for x in result.stderr.lines if x.startswith("ERROR:")]
    assert len(errors) == 1 and "configs.mtp.budgets[0]' (decode_tps >= 44 at sweep@2048)" in errors[0], result.stderr
    assert "Fix: set point to one of [100, 500, 1000, 2000]" in errors[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(("budget", "expected"), [
    ('metric = "vram_peak_mib"\nmax = 21504', "vram_peak_mib is never recorded at workload 'sweep'"
                                              "*Fix: set workload = 'memory'."),
    ('metric = "decode_tps"\nmin = 27', "the budget has no point*Fix: set point to one of [100, 500, 1000, 2000]"),
    ('metric = "decode_collapse"\npoint = 2000\nmin = 0.8', "recorded once for the whole sweep*Fix: remove `point`."),
    ('metric = "prefill_slowdown"\nworkload = "long-context"\npoint = 43000\nmax = 1.2', "Fix: remove `point`."),
    ('metric = "speedup"\nworkload = "memory"\nmin = 1', "Fix: set workload = 'sweep' or 'natural'."),
])
def test_budgets_no_suite_records_fail_at_load(tmp_path: Path, budget: str, expected: str):
    line = first_line(write(tmp_path, "[[configs.c.budgets]]\n" + budget + "\n"))
    assert all(part in line for part in expected.split("*")), line


def test_inherited_budgets_are_checked_against_the_child_sweep(tmp_path: Path):
    path = write(tmp_path, """
        [[configs.c.budgets]]
        metric = "decode_tps"
        point = 2000
        min = 27

        [configs.small]
        extends = "c"
        workloads = { sweep = [100, 500] }
        """)
    line = first_line(path)
    assert "configs.small's budget inherited through `extends = 'c'` (decode_tps >= 27 at sweep@2000)" in line


def test_a_floor_and_a_ceiling_on_one_metric_are_both_kept(tmp_path: Path):
    cfg = load(write(tmp_path, """
        [[configs.c.budgets]]
        metric = "acceptance"
        point = 500
        min = 0.5

        [[configs.c.budgets]]
        metric = "acceptance"
        point = 500
        max = 0.99
        note = "1.0 means the drafts are copies: a broken drafter"
        """)).get("c")
    assert [b.describe() for b in cfg.budgets] == ["acceptance >= 0.5 at sweep@500", "acceptance <= 0.99 at sweep@500"]


def test_the_production_budgets_are_shipped():
    shipped = load(REPO / "specgate.toml")
    mtp = {b.describe() for b in shipped.get("mtp").budgets}
    assert {"decode_collapse >= 0.8 at sweep", "prefill_slowdown <= 1.2 at long-context",
            "crossover_tokens <= 1000 at sweep", "exact_match >= 1 at tool-call"} <= mtp
    assert "decode_collapse >= 0.9 at sweep" in {b.describe() for b in shipped.get("autoregressive").budgets}


SUITE = """
def test_decode(specgate_measure, specgate_check, specgate_output_len):
    specgate_check(specgate_measure("sweep", specgate_output_len))

def test_latency_without_budget(specgate_measure, specgate_check):
    specgate_check(specgate_measure("latency"))
"""

BUDGETS = """
[[configs.tiny.budgets]]
metric = "decode_tps"
workload = "sweep"
point = 16
min = 0.001

[[configs.tiny.budgets]]
metric = "decode_tps"
workload = "sweep"
point = 32
min = 0.001

[[configs.tiny.budgets]]
metric = "wall_ms"
workload = "code-long"
max = 1e9
"""


def test_unjudged_budgets_are_listed_with_why_and_strict_fails_on_them(pytester: pytest.Pytester, server_bin,
                                                                         tiny_gguf) -> None:
    """``-m "not quick"`` leaves out sweep@32 (the quick point): a full run, not quick mode. The budget at 32
    and the code-long budget no test measures are unjudged, with why; the latency test has no budget."""
    args = ["-t", "1", "-np", "1", "-c", "1024"]
    pytester.makefile(".toml", specgate=toml_config("tiny", server_bin, tiny_gguf, args, extra=BUDGETS))
    pytester.makepyfile(SUITE)
    results = pytester.path / "out"
    result = pytester.runpytest("-p", "no:cacheprovider", "-m", "not quick", f"--specgate-results={results}")
    result.assert_outcomes(passed=2, deselected=1)
    run = json.loads((results / "latest.json").read_text())
    assert run["quick"] is False  # -m "not quick" is a full run
    sweep16 = next(m for m in run["measurements"] if m["workload"] == "sweep")
    assert len(sweep16["samples"]) == 3 and sweep16["looks"] == [3, 4]  # the config's samples, not quick_samples
    unjudged = {u["budget"]["point"] or u["budget"]["workload"]: u["reason"] for u in run["unjudged"]}
    assert set(unjudged) == {32, "code-long"}
    assert unjudged[32] == "no collected test judged it, 1 test(s) deselected"
    assert [(n["workload"], n["point"]) for n in run["no_budget"]] == [("latency", None)]
    verdicts = [v for v in run["verdicts"] if v["verdict"] == "pass"]
    assert [v["budget"]["point"] for v in verdicts] == [16] and verdicts[0]["coverage"] is not None

    strict = pytester.runpytest("-p", "no:cacheprovider", "-m", "not quick", "--specgate-strict",
                                f"--specgate-results={results}")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*tiny: decode_tps >= 0.001 at sweep@32: UNJUDGED (no collected test judged it, "
                                 "1 test(s) deselected): fails the run under --specgate-strict*"])


def test_quick_mode_comes_from_what_was_collected(pytester: pytest.Pytester) -> None:
    """Every collected gated test carries the quick mark (-m quick) -> quick; -m "not quick" or a mixed
    selection -> full; --specgate-quick forces it. Read back from the session after collection."""
    pytester.makefile(".toml", specgate=toml_config("tiny", "/x/llama-server", "/x/m.gguf", []))
    pytester.makepyfile(SUITE)
    pytester.makeconftest("""
        import pytest
        from pytest_specgate.session import session_key

        @pytest.hookimpl(trylast=True)
        def pytest_collection_finish(session):
            print("QUICK=" + str(session.config.stash[session_key].quick))
        """)
    for args, quick in ((["-m", "quick"], True), (["-m", "not quick"], False), ([], False),
                        (["--specgate-quick"], True), (["-k", "out32"], True)):
        out = pytester.runpytest("--collect-only", "-q", *args).stdout.str()
        assert f"QUICK={quick}" in out, (args, out)


def test_checking_a_partial_measurement_fails_in_one_line(pytester: pytest.Pytester) -> None:
    """A measurement whose sampling broke is never judged; the test says so in one line, no traceback.
    The partial Measurement is built by hand: a real server cannot be made to break on demand here."""
    pytester.makefile(".toml", specgate=toml_config("tiny", "/x/llama-server", "/x/m.gguf", []))
    pytester.makepyfile("""
        from pytest_specgate.measure.measurement import Measurement

        def test_partial(specgate_check):
            specgate_check(Measurement(config="tiny", workload="sweep", point=32, partial=True))
        """)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--specgate-results={pytester.path / 'r'}")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*config 'tiny', sweep: the measurement did not complete, so it cannot be judged. "
                                 "Fix: *"])
    assert "raise SpecgateError" not in out and "Traceback" not in out, out


# ---- the verdict layer's share: coverage on every verdict, exact figures, the unjudged list ----

def judged(budget: Budget, values: list[float], looks: list[int] | None = None, workload: str = "sweep",
           point: int | None = 256) -> BudgetResult:
    m = Measurement(config="c", workload=workload, point=point, looks=looks or [], extra={budget.metric: values})
    return check_point(m, [budget])[0]


def test_a_verdict_says_the_coverage_it_had_and_too_few_samples_decide_nothing():
    floor = Budget(metric="decode_tps", point=256, min=27)
    r = judged(floor, [30.0, 30.5, 29.8, 30.2, 30.1], looks=[5, 10])
    assert r.verdict is Verdict.PASS and r.coverage == pytest.approx(0.975) and r.n == 5
    assert "97.5% CI [" in r.message and r.coverage_label == "97.5% CI"
    r = judged(floor, [30.0, 30.5, 29.8], looks=[5, 10])  # a measurement short of its first look
    assert r.verdict is Verdict.INCONCLUSIVE and "too few samples" in r.why and r.coverage is None
    r = judged(floor, [900.0])  # one figure: no interval reaches 95%, so no verdict either way
    assert r.verdict is Verdict.INCONCLUSIVE and "cannot reach" in r.why


def test_exact_figures_are_judged_as_read():
    ceiling = Budget(metric="rss_peak_mib", workload="memory", max=2048)
    assert judged(ceiling, [412.5], workload="memory", point=None).verdict is Verdict.PASS
    same = Budget(metric="exact_match", workload="tool-call", min=1.0)
    r = judged(same, [1.0, 0.0, 1.0], workload="tool-call", point=None)
    assert r.verdict is Verdict.FAIL and "worst of 3 values 0 judged as read" in r.message
    assert r.coverage_label == "exact"


def test_find_unjudged_names_why_for_each_budget():
    a, b, c, d = (Budget(metric="decode_tps", point=p, min=1) for p in (100, 500, 1000, 2000))
    verdicts = [judged(a, [5.0, 5.1, 5.2, 5.0, 5.1], looks=[5, 10]),
                judged(b, [0.5, 1.5, 3.0, 0.2, 2.0, 1.1, 0.4, 2.2, 0.9, 1.6], looks=[5, 10]),
                check_budget(c, None, "acceptance not reported by this config").model_copy(update={"config": "c"})]
    assert [v.verdict for v in verdicts] == [Verdict.PASS, Verdict.INCONCLUSIVE, Verdict.SKIPPED]
    out = {u.budget.point: u.reason for u in find_unjudged("c", [a, b, c, d], verdicts, "no collected test judged it")}
    assert set(out) == {500, 1000, 2000}
    assert out[500].startswith("inconclusive: ") and "straddles" in out[500]
    assert out[1000] == "skipped: acceptance not reported by this config"
    assert out[2000] == "no collected test judged it"
    assert find_unjudged("other", [a], verdicts, "x")[0].message == "other: decode_tps >= 1 at sweep@100: UNJUDGED (x)"


def test_a_share_interval_stays_within_0_and_1_and_names_its_scale():
    """Acceptance near 1 at N=5: a t interval on logs reaches past 1, which a share cannot."""
    r = judged(Budget(metric="acceptance", point=256, min=0.5), [0.99, 0.97, 1.0, 0.9, 0.995])
    assert r.verdict is Verdict.PASS and r.high == 1.0 and 0.5 < r.low < 0.99
    assert "t interval of the log mean" in r.message and ", 1]" in r.message
    r = judged(Budget(metric="cache_reuse", workload="cache-reuse", point=None, min=0.5), [0.0, 0.1, 0.0, 0.05, 0.0])
    assert r.verdict is Verdict.FAIL and r.low == 0.0 and "t interval of the mean" in r.message
