"""Report files (Markdown, HTML with plots, benchmark JSON) and the terminal sections."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from factories import make_run, rates

from pytest_specgate import Budget, check_budget
from pytest_specgate.measure.measurement import Measurement, measurement_order
from pytest_specgate.measure.stats import crossover_point
from pytest_specgate.report import markdown as report_md
from pytest_specgate.report import page as html
from pytest_specgate.report import plots
from pytest_specgate.report.benchmark import benchmark
from pytest_specgate.report.rows import rows_for
from pytest_specgate.report.terminal import TerminalSummary, terminal
from pytest_specgate.report.write import write_all
from pytest_specgate.store import load
from pytest_specgate.verdict.baseline import compare

FILES = {"report.json", "report.md", "report.html", "benchmark-bigger.json", "benchmark-smaller.json"}


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)]


def test_write_all_writes_every_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    run = make_run(with_reference=True)
    written = write_all(run, tmp_path)
    assert {p.name for p in written} == FILES
    assert load(tmp_path / "report.json") == run


def test_html_embeds_three_plots(tmp_path: Path) -> None:
    page = html.render(make_run(with_reference=True))
    pngs = images(page)
    assert len(pngs) == 3  # decode vs length, wall-clock breakdown, crossover demo-ngram vs demo
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 5000 for p in pngs)
    assert "<table>" in page and "decode_tps (tok/s)" in page and "plot omitted" not in page


def test_html_omits_plots_without_data_and_says_so() -> None:
    run = make_run()
    run = run.model_copy(update={"measurements": [Measurement(config="demo", workload="memory",
                                                              extra={"rss_peak_mib": [412.5]})]})
    page = html.render(run)
    assert images(page) == []
    assert page.count("plot omitted") == 3


def test_crossover_from_measured_ttft_and_decode() -> None:
    run = make_run(with_reference=True)
    figures, source = plots.crossover_inputs(run, "demo-ngram", "demo")  # type: ignore[misc]
    assert source == "TTFT from long-context, decode from sweep@256"
    (t_c, d_c), (t_r, d_r) = figures["demo-ngram"], figures["demo"]
    assert t_c > t_r and d_c > d_r  # slower prefill, faster decode: a crossover exists
    assert plots.crossover_inputs(run, "demo", "missing") is None


@pytest.mark.parametrize("ttft_c, dec_c, ttft_r, dec_r, at, words", [
    (49.0, 46.0, 37.5, 29.0, 902, "mtp is faster above ~902 output tokens"),  # the field report's MTP
    (1.69, 49.0, 6.79, 62.6, 1150, "mtp is faster below ~1150 output tokens"),  # faster prefill, slower decode
    (30.0, 46.0, 37.5, 29.0, None, "mtp is faster at every output length"),
    (49.0, 25.0, 37.5, 29.0, None, "mtp is never faster than ar"),
])
def test_crossover_point(ttft_c: float, dec_c: float, ttft_r: float, dec_r: float, at: int | None, words: str) -> None:
    n, verdict = crossover_point("mtp", "ar", ttft_c, dec_c, ttft_r, dec_r)
    assert (None if n is None else round(n)) == at and verdict.startswith(words)


def test_breakdown_adds_up_to_the_wall_clock() -> None:
    run = make_run(with_reference=True)
    m = next(m for m in run.merged() if m.config == "demo-ngram" and m.point == 256)
    parts = plots.breakdown(m)
    assert parts is not None and parts["reasoning"] > 0 and parts["prefill"] == pytest.approx(0.123, abs=0.01)
    wall = sorted(s.wall_ms for s in m.samples)[len(m.samples) // 2] / 1000
    assert sum(parts.values()) == pytest.approx(wall, rel=0.05)


def test_markdown_has_fingerprint_and_table() -> None:
    md = report_md.markdown(make_run())
    assert md.startswith("# specgate: demo (20260101T120000Z-demo)")
    assert "| point | metric | median | p10-p90 | interval | N | budget | verdict |" in md
    row = next(line for line in md.splitlines() if line.startswith("| sweep@256 | decode_tps (tok/s) |"))
    assert row.endswith("| 7 | >= 8 | pass |")
    assert "- args: -t 2 -np 1 -c 4096" in md and "version: 11434 (0a1b2c3)" in md
    assert "Memory: rss_idle_mib 380, rss_peak_mib 412.5" in md


def test_markdown_includes_the_baseline_comparison() -> None:
    old = make_run({256: rates(40.0)})
    new = make_run({256: rates(20.0, seed=4)}, args=["-t", "1", "-np", "1", "-c", "4096"])
    past = [make_run({256: rates(40.0 * (1 + d), seed=20 + i)}).model_copy(update={"run_id": f"r{i}"})
            for i, d in enumerate((-0.01, 0.0, 0.01, 0.005))]
    new.comparison = compare(old, new, name="main", history=past)
    md = report_md.markdown(new)
    assert "## Baseline comparison: main" in md
    assert "| demo | sweep@256 | decode_tps |" in md and "| fail |" in md
    assert md.splitlines()[2].startswith("## \u274c FAIL: 1 budget(s) judged: 0 failed, 1 passed; 0 unjudged; "
                                         "baseline 'main': ")
    assert "flags changed: -t 2 -> -t 1" in md
    assert "Baseline comparison: main" in html.render(new)


def test_benchmark_json_shape() -> None:
    bigger, smaller = benchmark(make_run())
    for entries in (bigger, smaller):
        assert entries
        for e in entries:
            assert set(e) <= {"name", "unit", "value", "range", "extra"} and {"name", "unit", "value"} <= set(e)
            assert isinstance(e["name"], str) and isinstance(e["unit"], str) and isinstance(e["value"], float)
    decode = next(e for e in bigger if e["name"] == "demo decode_tps sweep@256")
    assert decode["unit"] == "tok/s" and str(decode["range"]).startswith("± ") and "N=7" in str(decode["extra"])
    assert any(e["name"] == "demo ttft_ms sweep@256" and e["unit"] == "ms" for e in smaller)
    assert not any("decode_tps" in str(e["name"]) for e in smaller)
    rss = next(e for e in smaller if e["name"] == "demo rss_peak_mib memory")
    assert "range" not in rss  # one figure has no interval


def test_step_summary_is_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_all(make_run(), tmp_path / "out")
    text = summary.read_text()
    assert text.startswith("earlier step\n# specgate: demo")


class Terminal:
    """The two TerminalReporter methods terminal() uses, recording what was written."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str, sep: str = "=", **kw: object) -> None:
        self.lines.append(f"== {title}")

    def write_line(self, line: str, **markup: bool) -> None:
        self.lines.append(line + (" <red>" if markup.get("red") else ""))


def test_terminal_prints_table_then_baseline_section() -> None:
    run = make_run()
    summary = TerminalSummary(
        rows=rows_for(sorted(run.measurements, key=measurement_order), run.verdicts), load_seconds={"demo": [1.5]},
        notes=["demo: tool-call snapshot [demo] (stream): matches"],
        baseline=["against baseline 'main'",
                  "demo: decode_tps at sweep@256: -50.0% [-52.0%, -48.0%] (threshold -5%): FAIL"],
        files=[Path("/r/latest.json"), Path("/r/report.html")], errors=[])
    tr = Terminal()
    terminal(summary, tr)  # type: ignore[arg-type]
    assert tr.lines[0] == "== specgate results"
    assert tr.lines[1].split() == ["config", "point", "metric", "median", "p10-p90", "interval", "N", "budget",
                                   "verdict"]
    assert "demo: 1 model load(s), 1.5 s" in tr.lines
    assert "demo: tool-call snapshot [demo] (stream): matches" in tr.lines
    assert "specgate files: /r/latest.json, /r/report.html" in tr.lines
    i = tr.lines.index("== specgate baseline")
    assert tr.lines[i + 2].endswith("FAIL <red>")


def test_budget_verdict_shows_on_the_variant_that_was_judged() -> None:
    own = Measurement(config="demo-ngram", workload="sweep", point=256, extra={"decode_tps": [50.0, 51.0, 52.0]})
    ab = Measurement(config="demo-ngram", workload="sweep", point=256, variant="ab",
                     extra={"decode_tps": [50.0, 51.0, 52.0], "speedup": [1.2, 1.3, 1.25]})
    budgets = [Budget(metric="speedup", workload="sweep", point=256, min=1.0),
               Budget(metric="decode_tps", workload="sweep", point=256, min=8)]
    verdicts = [check_budget(budgets[0], ab.stats("speedup")).model_copy(update={"config": "demo-ngram"}),
                check_budget(budgets[1], own.stats("decode_tps")).model_copy(update={"config": "demo-ngram"})]
    body = rows_for([own, ab], verdicts)
    judged = {(r[1], r[2]): r[-1] for r in body}
    assert judged == {("sweep@256", "decode_tps (tok/s)"): "pass",
                      ("sweep@256 [ab]", "decode_tps (tok/s)"): "no budget", ("sweep@256 [ab]", "speedup (x)"): "pass"}
