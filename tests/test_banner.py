"""The verdict at a glance: one banner in the terminal, report.md and report.html; the short table;
plots with budgets and one colour per config; benchmark files without sentinel values.

Built from stored runs (``factories.make_run``), the way every report is rendered; the terminal
writer is a recorder of what the TerminalReporter would print, with its markup.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from factories import make_run, measurement, rates

from pytest_specgate.config import Budget
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.report import markdown as report_md
from pytest_specgate.report import page
from pytest_specgate.report.banner import banner
from pytest_specgate.report.benchmark import benchmark
from pytest_specgate.report.plots import config_colors, sweep_points
from pytest_specgate.report.rows import rows_for
from pytest_specgate.report.terminal import TerminalSummary, terminal
from pytest_specgate.store import RunResults
from pytest_specgate.verdict.baseline import compare
from pytest_specgate.verdict.budget import Unjudged, Verdict, check_budget
from pytest_specgate.verdict.upgrade import PairedChange, Upgrade, pair_schedule

SLOW = Budget(metric="decode_tps", workload="sweep", point=256, min=100)


def failing_run() -> RunResults:
    """decode_tps >= 100 at sweep@256 on a ~40 tok/s run, held against the deployed config with -t 1."""
    run = make_run(args=["-t", "1", "-np", "1", "-c", "4096"])
    m = next(m for m in run.measurements if m.point == 256)
    run.verdicts.append(check_budget(SLOW, m.stats("decode_tps"), values=m.values("decode_tps")).model_copy(
        update={"config": "demo"}))
    run.upgrade = Upgrade(config="demo", against="demo-deployed", schedule=pair_schedule(12), model_loads=3,
                          fingerprint=["flags changed: -t 2 -> -t 1"], changes=[PairedChange(
                              config="demo", against="demo-deployed", workload="sweep", point=64,
                              metric="decode_tps", change=-0.21, low=-0.25, high=-0.17, coverage=0.98, n=12,
                              threshold=0.05, verdict=Verdict.FAIL, why="")])
    return run


class Recorder:
    """What terminal() writes through the TerminalReporter, with the markup of each line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, bool]]] = []

    def section(self, title: str, sep: str = "=", **kw: bool) -> None:
        self.lines.append((f"== {title}", kw))

    def write_sep(self, sep: str, title: str, **kw: bool) -> None:
        self.lines.append((f"{sep * 3} {title}", kw))

    def write_line(self, line: str, **kw: bool) -> None:
        self.lines.append((line, kw))

    def text(self) -> list[str]:
        return [line for line, _ in self.lines]


def test_pass_needs_every_budget_judged() -> None:
    b = banner(make_run())
    assert b.status == "PASS" and b.counts == "1 budget(s) judged: 0 failed, 1 passed; 0 unjudged"
    assert b.failures == [] and b.unjudged_lines == []
    assert b.identity == ["demo: llama-server sha256 a1b2c3d4a1b2 (build_info b11434-0a1b2c3); "
                          "gemma3-270m-q4_k_m.gguf sha256 5e6f7a8b5e6f"]


def test_an_unjudged_budget_is_inconclusive_and_fails_under_strict() -> None:
    run = make_run()
    run.unjudged.append(Unjudged(config="demo", budget=Budget(metric="rss_peak_mib", workload="memory", max=2048),
                                 reason="deselected by -m/-k"))
    assert banner(run).status == "INCONCLUSIVE"
    assert banner(run).unjudged_lines == ["demo: rss_peak_mib <= 2048 at memory: UNJUDGED (deselected by -m/-k)"]
    assert banner(run, strict=True).status == "FAIL"


def test_nothing_judged_is_not_a_pass() -> None:
    run = make_run()
    run.verdicts = []
    b = banner(run)
    assert b.status == "INCONCLUSIVE" and b.counts.startswith("0 budget(s) judged")
    assert b.unjudged_lines[-1].startswith("nothing was judged")


def test_failures_come_first_with_budget_median_interval_coverage_n_and_what_changed() -> None:
    b = banner(failing_run())
    assert b.status == "FAIL"
    assert b.counts == ("2 budget(s) judged: 1 failed, 1 passed; 0 unjudged; "
                        "upgrade vs demo-deployed: 1 point(s), 1 failed")
    budget, upgrade = b.failures
    assert re.fullmatch(r"demo: decode_tps >= 100 at sweep@256: FAIL: median 3\d\.\d+ tok/s, "
                        r"9\d(\.\d)?% CI \[3\d\.\d+, 4\d\.\d+\], N=7; changed vs demo-deployed: "
                        r"flags changed: -t 2 -> -t 1", budget), budget
    assert upgrade == ("demo: decode_tps at sweep@64 vs demo-deployed: -21.0% [-25.0%, -17.0%] (98% CI, N=12 pairs) "
                       "(threshold -5%): FAIL; changed vs demo-deployed: flags changed: -t 2 -> -t 1")
    assert b.upgrade == ("demo against the deployed 'demo-deployed': side by side in ABBA blocks across "
                         "1 point(s), 3 model loads")


def test_a_config_missing_from_the_baseline_is_unjudged_in_the_banner() -> None:
    new = make_run(with_reference=True)
    new.comparison = compare(make_run(), new, name="main")
    b = banner(new)
    assert b.status == "INCONCLUSIVE"
    assert any(line.startswith("demo-ngram: not in baseline 'main'") for line in b.unjudged_lines)
    assert "baseline 'main': 0 failed" in b.counts


def test_terminal_banner_is_coloured_and_on_top(tmp_path: Path) -> None:
    run = failing_run()
    summary = TerminalSummary(rows=rows_for(run.merged(), run.verdicts, key_only=True), banner=banner(run),
                              upgrade=run.upgrade.lines() if run.upgrade else [])
    tr = Recorder()
    terminal(summary, tr)  # type: ignore[arg-type]
    (first, markup), (counts, _) = tr.lines[0], tr.lines[1]
    assert first == "=== specgate FAIL" and markup == {"red": True, "bold": True}
    assert counts.startswith("2 budget(s) judged: 1 failed")
    fails = [(line, kw) for line, kw in tr.lines if line.startswith("FAIL ")]
    assert len(fails) == 2 and all(kw == {"red": True} for _, kw in fails)
    assert tr.text().index("== specgate results") > tr.text().index(fails[-1][0])  # failures before the table
    assert any(line.startswith("build demo: llama-server sha256 a1b2c3d4a1b2") for line in tr.text())
    green = Recorder()
    terminal(TerminalSummary(rows=[], banner=banner(make_run())), green)  # type: ignore[arg-type]
    assert green.lines[0] == ("=== specgate PASS", {"green": True, "bold": True})


def test_markdown_and_html_open_with_the_same_banner() -> None:
    run = failing_run()
    b = banner(run)
    md = report_md.markdown(run).splitlines()
    assert md[2] == f"## \u274c FAIL: {b.counts}"
    assert f"- **FAIL** {b.failures[0]}" in md
    html = page.render(run)
    body = html[html.index("<body>"):]
    assert body.index('<div class="banner fail">') < body.index("<h2>")
    assert "<h1>FAIL &middot; specgate demo</h1>" in html and b.counts in html
    assert "a1b2c3d4a1b2 (build_info b11434-0a1b2c3)" in html
    assert "Upgrade verdict: demo against demo-deployed" in html


def test_default_table_is_budget_rows_and_key_metrics() -> None:
    run = make_run(with_reference=True)
    full = rows_for(run.merged(), run.verdicts)
    short = rows_for(run.merged(), run.verdicts, key_only=True)
    assert len(short) < len(full) and len(short) <= 12
    assert {(r[1], r[2]) for r in short} >= {("sweep@256", "decode_tps (tok/s)"), ("memory", "rss_peak_mib (MiB)"),
                                             ("long-context", "ttft_ms (ms)")}
    assert all(r[-1] == "no budget" for r in short if r[7] == "")  # measured, not a pass


def test_a_budgeted_metric_is_shown_even_when_all_zero() -> None:
    """--no-cache-prompt gives cache_reuse = 0 on every sample: the FAIL row must be there."""
    m = Measurement(config="demo", workload="cache-reuse", extra={"cache_reuse": [0.0, 0.0, 0.0]})
    budget = Budget(metric="cache_reuse", workload="cache-reuse", min=0.99)
    verdict = check_budget(budget, m.stats("cache_reuse")).model_copy(update={"config": "demo"})
    assert rows_for([m], []) == []  # all-zero reuse without a budget is noise, left out
    (row,) = rows_for([m], [verdict], key_only=True)
    assert row[2] == "cache_reuse" and row[-2:] == [">= 0.99", "fail"]


def test_intervals_print_their_achieved_coverage() -> None:
    m = measurement("demo", 256, [40.0, 41.0, 39.0])
    (row,) = [r for r in rows_for([m], []) if r[2] == "decode_tps (tok/s)"]
    assert row[5].startswith("75% CI [")  # N=3: the order-statistic interval covers 75%, never "95%"


def test_decode_plot_takes_the_ab_samples_like_the_speedup_row() -> None:
    own = measurement("demo-ngram", 256, rates(50.0))
    ab = measurement("demo-ngram", 256, rates(60.0, seed=5)).model_copy(update={"variant": "ab"})
    assert sweep_points([own, ab])[("demo-ngram", 256)].variant == "ab"
    assert sweep_points([own])[("demo-ngram", 256)].variant == ""


def test_one_colour_per_config_in_every_plot() -> None:
    colors = config_colors({"demo-ngram", "demo"})
    assert colors == config_colors(["demo", "demo-ngram"]) and colors["demo"] != colors["demo-ngram"]
    html = page.render(make_run(with_reference=True))
    assert f'<h2 style="color: {colors["demo"]}">demo</h2>' in html


def test_benchmark_json_has_no_sentinels() -> None:
    run = make_run()
    for value in (0.0, 1e9, 850.0):
        run.measurements.append(Measurement(config="demo", workload="sweep", point=None,
                                            extra={"crossover_tokens": [value]}))
        _, smaller = benchmark(run)
        charted = [e["value"] for e in smaller if "crossover_tokens" in str(e["name"])]
        assert charted == ([] if value in (0.0, 1e9) else [850.0])
        run.measurements.pop()


def test_table_and_against_options_refuse_bad_values_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--specgate-table=some", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--specgate-table 'some' is not one of key, all. Fix: *"])
