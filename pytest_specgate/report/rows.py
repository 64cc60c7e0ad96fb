"""Table rows shared by every report: the results table, fingerprint lines, comparison rows.

One row per (config, workload point, metric): median, spread, the interval of the median, N, the
budget and its verdict. Decode, prefill and wall clock are shown side by side because the field
report's second lesson is that they decouple.

The files are rendered from a stored ``RunResults`` only (never from live session state), so
``specgate report RESULTS.json`` reproduces exactly what the run wrote: ``report.json``,
``report.md`` (also appended to ``$GITHUB_STEP_SUMMARY`` in GitHub Actions), ``report.html`` (see
page.py) and ``benchmark-bigger.json``/``benchmark-smaller.json`` for github-action-benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pytest_specgate.fingerprint import ConfigFingerprint
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.stats import Stats
from pytest_specgate.metrics import SHOWN, VARIANT_OF_METRIC, where
from pytest_specgate.metrics import unit as metric_unit
from pytest_specgate.store import RunResults
from pytest_specgate.verdict.budget import BudgetResult

__all__ = ["COMPARISON_HEADER", "HEADER", "comparison_rows", "describe_fingerprint", "fmt", "rows_for", "shown_stats",
           "table", "verdict_counts"]

HEADER = ["config", "point", "metric", "median", "p10-p90", "median CI", "N", "budget", "verdict"]


def fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


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
    by_key: dict[tuple[str, str, str, int | None], BudgetResult] = {
        (r.config, r.budget.metric, r.budget.workload, r.budget.point): r for r in verdicts}
    out = []
    for m in measurements:
        for metric, st in shown_stats(m):
            unit = metric_unit(metric)
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


def table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = ([max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)] if body
              else [len(h) for h in header])

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in body)]


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
    if fp.request_extras:  # what every request carried beyond the plain OpenAI body (request_extras)
        lines.append("request extras: " + json.dumps(fp.request_extras, sort_keys=True))
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
