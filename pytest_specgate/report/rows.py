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
from pytest_specgate.verdict.intervals import coverage_label

__all__ = ["COMPARISON_HEADER", "HEADER", "KEY_ROWS", "NO_BUDGET", "comparison_rows", "describe_fingerprint", "fmt",
           "rows_for", "shown_stats", "table", "upgrade_rows", "verdict_counts", "UPGRADE_HEADER"]

HEADER = ["config", "point", "metric", "median", "p10-p90", "interval", "N", "budget", "verdict"]

#: (metric, workload or variant) pairs the default terminal table shows besides every budget row:
#: decode along the sweep, prefill and TTFT at the production prompt, speedup over the reference,
#: memory peaks, cache reuse and the lossless exact-match rate (-v or --specgate-table=all shows all)
KEY_ROWS: frozenset[tuple[str, str]] = frozenset({
    ("decode_tps", "sweep"), ("decode_tps", "against"), ("ttft_ms", "long-context"), ("prefill_ms", "long-context"),
    ("speedup", "ab"), ("acceptance", "sweep"), ("rss_peak_mib", "memory"), ("vram_peak_mib", "memory"),
    ("cache_reuse", "cache-reuse"), ("exact_match", "lossless"),
})
#: the verdict column of a row no budget judges: measured, not a pass of the gate
NO_BUDGET = "no budget"


def fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def shown_stats(m: Measurement, budgeted: Iterable[str] = ()) -> Iterable[tuple[str, Stats]]:
    """The metrics a reader is shown for a point: the shown metrics, plus every metric with a budget.

    A reasoning share or cache reuse that is always 0 (every cold, nonce-prefixed sample) is noise
    and left out, unless a budget judges it: a failing row is never hidden (the JSON keeps all).
    """
    budgeted = set(budgeted)
    names = [*SHOWN, *sorted(b for b in budgeted if b not in SHOWN)]
    for metric in names:
        st = m.stats(metric)
        if st is None:
            continue
        if metric not in budgeted and metric in ("reasoning_share", "cache_reuse") and st.max == 0:
            continue
        yield metric, st


def _interval(st: Stats, r: BudgetResult | None) -> str:
    """The interval a reader should trust, with the coverage it really has (never a blanket "95%")."""
    low, high, coverage = (getattr(r, "low", None), getattr(r, "high", None), getattr(r, "coverage", None)) \
        if r is not None else (None, None, None)
    if low is not None and high is not None and coverage is not None:
        return f"{coverage_label(coverage)} [{fmt(low)}, {fmt(high)}]"
    if st.n == 1:
        return ""
    return f"{coverage_label(getattr(st, 'coverage', 0.0))} [{fmt(st.ci_low)}, {fmt(st.ci_high)}]"


def rows_for(measurements: Iterable[Measurement], verdicts: Iterable[BudgetResult], *,
             key_only: bool = False) -> list[list[str]]:
    """Table rows, in the given measurement order; shared by the terminal, Markdown and HTML.

    ``key_only``: budget rows and ``KEY_ROWS`` only (the default terminal table: about ten rows).
    """
    by_key: dict[tuple[str, str, str, int | None], BudgetResult] = {
        (r.config, r.budget.metric, r.budget.workload, r.budget.point): r for r in verdicts}
    out = []
    for m in measurements:
        budgeted = [metric for (c, metric, w, p) in by_key if (c, w, p) == (m.config, m.workload, m.point)
                    and VARIANT_OF_METRIC.get(metric, "") == m.variant]
        for metric, st in shown_stats(m, budgeted):
            unit = metric_unit(metric)
            r = by_key.get((m.config, metric, m.workload, m.point))
            if VARIANT_OF_METRIC.get(metric, "") != m.variant:
                r = None  # the budget was judged on the other variant's figures
            if key_only and r is None and (metric, m.variant or m.workload) not in KEY_ROWS:
                continue
            budget, verdict = "", NO_BUDGET
            if r is not None:
                budget, verdict = f"{r.budget.op} {r.budget.limit:g}", r.verdict.value
            spread = "" if st.n == 1 else f"{fmt(st.p10)}-{fmt(st.p90)}"
            name = f"{metric} ({unit})" if unit else metric
            out.append([m.config, where(m.workload, m.point, m.variant), name, fmt(st.median), spread,
                        _interval(st, r), str(st.n), budget, verdict])
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


def upgrade_rows(run: RunResults) -> list[list[str]]:
    """The upgrade verdict per point: deployed and candidate medians, change, interval (coverage), N."""
    up = run.upgrade
    if up is None:
        return []
    return [[c.config, c.against, c.where, c.metric, "" if c.against_median is None else fmt(c.against_median),
             "" if c.candidate_median is None else fmt(c.candidate_median),
             "" if c.change is None else f"{c.change:+.1%}",
             "" if c.low is None or c.high is None else f"{coverage_label(c.coverage)} [{c.low:+.1%}, {c.high:+.1%}]",
             f"{c.signed_threshold:+.0%}", f"{c.n} on {c.loads} loads" if c.loads else str(c.n), c.verdict.value]
            for c in up.changes]


UPGRADE_HEADER = ["config", "against", "point", "metric", "deployed", "candidate", "change", "interval", "threshold",
                  "N a side", "verdict"]
