"""What people read: the terminal table at the end of a run, and the report files.

One row per (config, workload point, metric): median, spread, the interval of the median, N, the
budget and its verdict. Decode, prefill and wall clock are shown side by side because the field
report's second lesson is that they decouple.

The files are rendered from a stored ``RunResults`` only (never from live session state), so
``specgate report RESULTS.json`` reproduces exactly what the run wrote: ``report.json``,
``report.md`` (also appended to ``$GITHUB_STEP_SUMMARY`` in GitHub Actions), ``report.html`` (see
html.py) and ``benchmark-bigger.json``/``benchmark-smaller.json`` for github-action-benchmark.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_specgate.measure import METRICS, VARIANT_OF_METRIC, BudgetResult, Measurement, Stats, Verdict

if TYPE_CHECKING:
    import pytest

    from pytest_specgate.gate import Gate
    from pytest_specgate.results import ConfigFingerprint, RunResults

#: metrics shown in the terminal, in this order (others stay in the JSON results)
SHOWN = ("decode_tps", "client_decode_tps", "ttft_ms", "prefill_ms", "prompt_tps", "wall_ms", "reasoning_share",
         "cache_reuse", "prefix_reuse", "prefill_speedup", "acceptance", "mean_accepted_run", "speedup", "wall_speedup",
         "decode_collapse", "crossover_tokens", "exact_match", "drift_chars", "first_divergence", "vram_idle_mib",
         "vram_peak_mib", "rss_idle_mib", "rss_peak_mib")


def fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def where(workload: str, point: int | None, variant: str = "") -> str:
    """``sweep@256``; a variant (A/B pairs, lossless probe) is shown so its rows are not mistaken for the point's own."""
    text = workload if point is None else f"{workload}@{point}"
    return f"{text} [{variant}]" if variant else text


def shown_stats(m: Measurement) -> Iterable[tuple[str, Stats]]:
    """The metrics a reader is shown for a point. A reasoning share or cache reuse that is always 0
    (every cold, nonce-prefixed sample) is noise here; the JSON results keep it."""
    for metric in SHOWN:
        st = m.stats(metric)
        if st is None or (metric in ("reasoning_share", "cache_reuse") and st.max == 0):
            continue
        yield metric, st


def rows_for(measurements: Iterable[Measurement], verdicts: Iterable[BudgetResult]) -> list[list[str]]:
    """Table rows, in the given measurement order; shared by the terminal, Markdown and HTML."""
    by_key = {(r.config, r.budget.metric, r.budget.workload, r.budget.point): r for r in verdicts}
    out = []
    for m in measurements:
        for metric, st in shown_stats(m):
            unit = METRICS.get(metric, ("", True))[0]
            r = by_key.get((m.config, metric, m.workload, m.point))
            if VARIANT_OF_METRIC.get(metric, "") != m.variant:
                r = None  # the budget was judged on the other variant's figures
            budget = verdict = ""
            if r is not None:
                budget, verdict = f"{r.budget.op} {r.budget.limit:g}", r.verdict.value
            spread = "" if st.n == 1 else f"{fmt(st.p10)}-{fmt(st.p90)}"
            ci = "" if st.n == 1 else f"[{fmt(st.ci_low)}, {fmt(st.ci_high)}]"
            name = f"{metric} ({unit})" if unit else metric
            out.append([m.config, where(m.workload, m.point, m.variant), name, fmt(st.median), spread, ci, str(st.n),
                         budget, verdict])
    return out


def rows(gate: Gate) -> list[list[str]]:
    ms = sorted(gate.measurements.values(), key=lambda m: (m.config, m.workload, m.point or 0, m.variant))
    return rows_for(ms, gate.results)


def table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)] if body else [len(h) for h in header]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in body)]


HEADER = ["config", "point", "metric", "median", "p10-p90", "median CI", "N", "budget", "verdict"]


def terminal(gate: Gate, tr: pytest.TerminalReporter) -> None:
    tr.section("specgate results")
    for line in table(HEADER, rows(gate)):
        tr.write_line(line)
    if gate.pool is not None:
        for name, secs in gate.pool.load_seconds.items():
            tr.write_line(f"{name}: {len(secs)} model load(s), {', '.join(f'{s:.1f}' for s in secs)} s")
    skipped = [r for r in gate.results if r.verdict.value == "skipped"]
    for r in skipped:
        tr.write_line(f"skipped budget: {r.message}")
    for note in gate.notes:
        tr.write_line(note)
    _terminal_outcome(tr)


def _terminal_outcome(tr: pytest.TerminalReporter) -> None:
    """Where the results went and the baseline comparison; finish() ran before this (sessionfinish)."""
    from pytest_specgate.results import outcome_key

    outcome = tr.config.stash.get(outcome_key, None)
    if outcome is None:
        return
    shown = [p for p in outcome.files if p.name in ("latest.json", "report.md", "report.html")]
    if shown:
        tr.write_line("specgate files: " + ", ".join(str(p) for p in shown))
    for err in outcome.errors:
        tr.write_line(f"specgate error: {err}", red=True, bold=True)
    if outcome.baseline:
        tr.section("specgate baseline")
        for line in outcome.baseline:
            tr.write_line(line, red=": FAIL" in line or line.startswith("WARNING"), yellow=": INCONCLUSIVE" in line)


# ------------------------------------------------------------------------------------------------
# Markdown


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in r) + " |" for r in body)]


def describe_fingerprint(fp: ConfigFingerprint) -> list[str]:
    """Key facts of a config, one per line, in words (shared by Markdown and HTML)."""
    f = fp.model_facts
    version = fp.binary_version.splitlines()[0] if fp.binary_version else "version unknown"
    model = f"{f.architecture}, file_type {f.file_type}, {f.size_bytes / 2**20:.0f} MiB"
    if f.nextn_predict_layers:
        model += f", {f.nextn_predict_layers} MTP layer(s)"
    lines = [
        f"binary: {fp.binary} ({version}; sha256 {fp.binary_sha256[:12]}"
        + (f"; build_info {fp.build_info}" if fp.build_info else "") + ")",
        f"model: {fp.model} ({model}; sha256 {fp.model_sha256[:12]})",
        "args: " + " ".join(fp.args),
    ]
    if fp.reference:
        lines.append(f"reference: {fp.reference}")
    if fp.env_keys:
        lines.append("env: " + ", ".join(fp.env_keys))
    return lines


def verdict_counts(verdicts: Iterable[BudgetResult]) -> str:
    counts: dict[str, int] = {}
    for r in verdicts:
        counts[r.verdict.value] = counts.get(r.verdict.value, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no budgets judged"


def comparison_rows(run: RunResults) -> list[list[str]]:
    cmp = run.comparison
    if cmp is None:
        return []
    return [[c.config, c.where, c.metric, fmt(c.old_median), fmt(c.new_median), f"{c.change:+.1%}",
             f"[{c.low:+.1%}, {c.high:+.1%}]", f"{c.signed_threshold:+.0%}", f"{c.n_old}/{c.n_new}", c.verdict.value]
            for c in cmp.changes]


COMPARISON_HEADER = ["config", "point", "metric", "baseline", "now", "change", "interval", "threshold", "N old/new",
                     "verdict"]


def markdown(run: RunResults) -> str:
    h = run.host
    gpus = ", ".join(str(g.get("name")) for g in h.gpus) or "no NVIDIA GPU"
    out = [f"# specgate: {run.selected} ({run.run_id})", "",
           f"{run.started:%Y-%m-%d %H:%M:%S} to {run.finished:%H:%M:%S} UTC on {h.hostname}: {h.cpu_model} x{h.cpu_count}, "
           f"{gpus}{'; quick run' if run.quick else ''}. Budgets: {verdict_counts(run.verdicts)}.", ""]
    failing = [r for r in run.verdicts if r.verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE)]
    for r in failing:
        out.append(f"- **{r.verdict.value.upper()}** {r.config}: {_cell(r.message)}")
    if failing:
        out.append("")
    merged = run.merged()
    for name in sorted({m.config for m in merged} | set(run.configs)):
        out += [f"## {name}", ""]
        fp = run.configs.get(name)
        if fp is not None:
            if fp.description:
                out += [fp.description, ""]
            out += [f"- {_cell(line)}" for line in describe_fingerprint(fp)] + [""]
        body = rows_for([m for m in merged if m.config == name], [r for r in run.verdicts if r.config == name])
        out += md_table(HEADER[1:], [r[1:] for r in body]) if body else ["No measurements."]
        if name in run.memory:
            out += ["", "Memory: " + ", ".join(f"{k} {v:g}" for k, v in sorted(run.memory[name].items()))]
        out.append("")
    if run.comparison is not None:
        cmp = run.comparison
        out += [f"## Baseline comparison: {cmp.baseline}", ""] + [f"- {_cell(line)}" for line in cmp.lines()] + [""]
        body = comparison_rows(run)
        out += (md_table(COMPARISON_HEADER, body) if body else ["No metric was measured in both runs."]) + [""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# github-action-benchmark


def benchmark(run: RunResults) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(bigger-is-better, smaller-is-better) entries for github-action-benchmark's custom tools.

    ``range`` is the half-width of the median's interval: the number the chart's error bar should
    show is the uncertainty of the plotted median, not the sample spread.
    """
    bigger: list[dict[str, object]] = []
    smaller: list[dict[str, object]] = []
    for m in run.merged():
        fp = run.configs.get(m.config)
        for metric, st in shown_stats(m):
            unit, higher = METRICS.get(metric, ("", True))
            entry: dict[str, object] = {"name": f"{m.config} {metric} {where(m.workload, m.point, m.variant)}",
                                        "unit": unit or "ratio", "value": round(st.median, 4)}
            extra = f"N={st.n}"
            if st.n > 1:
                entry["range"] = f"± {max(st.median - st.ci_low, st.ci_high - st.median):.4g}"
                extra += (f"; p10-p90 {st.p10:.4g}-{st.p90:.4g}; {st.confidence:.0%} CI of the median "
                          f"[{st.ci_low:.4g}, {st.ci_high:.4g}]")
            if fp is not None:
                extra += f"; binary {fp.binary_sha256[:12]}; model {fp.model_sha256[:12]}; args {' '.join(fp.args)}"
            entry["extra"] = extra
            (bigger if higher else smaller).append(entry)
    return bigger, smaller


# ------------------------------------------------------------------------------------------------
# all files


def write_all(run: RunResults, out: Path, *, step_summary: bool = True) -> list[Path]:
    """Write every report for ``run`` into ``out``; append the Markdown to ``$GITHUB_STEP_SUMMARY``."""
    from pytest_specgate import html
    from pytest_specgate.results import write_atomic

    md = markdown(run)
    bigger, smaller = benchmark(run)
    files = {
        "report.json": run.model_dump_json(indent=1) + "\n",
        "report.md": md,
        "report.html": html.render(run),
        "benchmark-bigger.json": json.dumps(bigger, indent=1) + "\n",
        "benchmark-smaller.json": json.dumps(smaller, indent=1) + "\n",
    }
    written = []
    for name, text in files.items():
        write_atomic(out / name, text)
        written.append(out / name)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary and summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(md + "\n")
    return written
