"""report.html: one self-contained file (plots inlined as base64 PNG) that can be attached to a CI run.

Three plots answer the field report's three questions:
(a) does decode hold up as output grows (tok/s against output length, p10-p90 bars);
(b) where does a request's wall clock go (prefill / reasoning / decode / other, stacked);
(c) from what output length does a config beat its reference on wall clock (the crossover).
A plot without data is left out with a sentence saying why, rather than drawn empty.

matplotlib's object API (``Figure`` + Agg) is used instead of pyplot: no global state and no GUI
backend inside a pytest process.
"""

from __future__ import annotations

import base64
import html
import io
from statistics import median
from typing import TYPE_CHECKING

from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.stats import crossover_point
from pytest_specgate.metrics import where
from pytest_specgate.report.rows import (
    COMPARISON_HEADER,
    HEADER,
    comparison_rows,
    describe_fingerprint,
    rows_for,
    verdict_counts,
)
from pytest_specgate.store import RunResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; }
td.fail { background: #fdd; font-weight: bold; } td.pass { background: #dfd; }
td.inconclusive { background: #ffd; } td.skipped { color: #888; }
.note { color: #666; font-style: italic; } code { font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(str(fig.get_label()))}" src="data:image/png;base64,{data}">'


def _figure(label: str, width: float = 9, height: float = 4.5) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.set_label(label)
    return fig


# ------------------------------------------------------------------------------------------------
# (a) decode rate against output length


def sweep_points(merged: list[Measurement], prefer: str = "") -> dict[tuple[str, int], Measurement]:
    """{(config, output length): Measurement}; a point measured both standalone and in A/B pairs
    uses the ``prefer`` variant, and either one when only one exists."""
    out: dict[tuple[str, int], Measurement] = {}
    for m in merged:
        if m.workload != "sweep" or m.point is None or m.variant not in ("", "ab") or not m.samples:
            continue
        key = (m.config, m.point)
        if key not in out or m.variant == prefer:
            out[key] = m
    return out


def decode_plot(merged: list[Measurement]) -> str | None:
    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for m in sweep_points(merged).values():
        st = m.stats("decode_tps")
        if st is not None:
            series.setdefault(m.config, []).append((m.point, st.median, st.p10, st.p90))  # type: ignore[arg-type]
    if not series:
        return None
    fig = _figure("decode tok/s against output length")
    ax = fig.add_subplot()
    for config, pts in sorted(series.items()):
        pts.sort()
        x = [p[0] for p in pts]
        y = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=config)
    ax.set_xlabel("output tokens")
    ax.set_ylabel("decode tok/s (median, p10-p90)")
    ax.set_title("Decode rate against output length")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


# ------------------------------------------------------------------------------------------------
# (b) wall-clock breakdown


PARTS = ("prefill", "reasoning", "decode", "other")
COLORS = {"prefill": "#4c72b0", "reasoning": "#dd8452", "decode": "#55a868", "other": "#bbbbbb"}


def breakdown(m: Measurement) -> dict[str, float] | None:
    """Median seconds per part of a request. Reasoning is its share of the decode time (by characters,
    the only split the server reports); "other" is wall clock the server's timings do not cover
    (HTTP, templating, queueing), kept so each bar's length is the wall clock a user waited."""
    if not m.samples:
        return None
    parts: dict[str, list[float]] = {p: [] for p in PARTS}
    for s in m.samples:
        decode = s.timings.predicted_ms
        reasoning = decode * s.reasoning_share
        parts["prefill"].append(s.timings.prompt_ms)
        parts["reasoning"].append(reasoning)
        parts["decode"].append(decode - reasoning)
        parts["other"].append(max(0.0, s.wall_ms - s.timings.prompt_ms - decode))
    return {p: median(v) / 1000 for p, v in parts.items()}


def breakdown_plot(merged: list[Measurement]) -> str | None:
    bars = [(f"{m.config}  {where(m.workload, m.point, m.variant)}", b)
            for m in merged if (b := breakdown(m)) is not None]
    if not bars:
        return None
    fig = _figure("wall-clock breakdown per workload", height=max(2.5, 0.45 * len(bars) + 1.5))
    ax = fig.add_subplot()
    labels = [label for label, _ in bars][::-1]
    left = [0.0] * len(bars)
    for part in PARTS:
        widths = [b[part] for _, b in bars][::-1]
        if not any(widths):
            continue
        ax.barh(labels, widths, left=left, color=COLORS[part], label=part)
        left = [a + w for a, w in zip(left, widths)]
    ax.set_xlabel("seconds (median of each part)")
    ax.set_title("Where the wall clock goes, per workload")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(PARTS), frameon=False)
    return _png(fig)


# ------------------------------------------------------------------------------------------------
# (c) crossover against the reference


def crossover_inputs(run: RunResults, config: str, ref: str) -> tuple[dict[str, tuple[float, float]], str] | None:
    """{name: (ttft s, decode tok/s)} for a config and its reference, and where the figures came from.

    TTFT comes from the long-context workload when both measured it (the production prompt, where
    prefill costs most), else from the longest sweep point both measured; decode from that sweep point.
    """
    merged = run.merged()
    by = {(m.config, m.workload, m.point): m for m in merged if not m.variant and m.workload != "sweep"}
    by.update({(c, "sweep", p): m for (c, p), m in sweep_points(merged, prefer="ab").items()})
    common = sorted({p for (c, w, p) in by if c == config and w == "sweep" and p is not None}
                    & {p for (c, w, p) in by if c == ref and w == "sweep" and p is not None})
    if not common:
        return None
    point = common[-1]
    long_ctx = all((n, "long-context", None) in by and by[(n, "long-context", None)].stats("ttft_ms")
                   for n in (config, ref))
    figures = {}
    for n in (config, ref):
        ttft = (by[(n, "long-context", None)] if long_ctx else by[(n, "sweep", point)]).stats("ttft_ms")
        dec = by[(n, "sweep", point)].stats("decode_tps")
        if ttft is None or dec is None or dec.median <= 0:
            return None
        figures[n] = (ttft.median / 1000, dec.median)
    source = f"TTFT from {'long-context' if long_ctx else f'sweep@{point}'}, decode from sweep@{point}"
    return figures, source


def crossover_plot(run: RunResults, config: str, ref: str) -> str | None:
    found = crossover_inputs(run, config, ref)
    if found is None:
        return None
    figures, source = found
    (t_c, d_c), (t_r, d_r) = figures[config], figures[ref]
    crossover, verdict = crossover_point(config, ref, t_c, d_c, t_r, d_r)
    longest = max(m.point or 0 for m in run.merged() if m.workload == "sweep")
    x_max = max(longest, 1) * 1.2
    if crossover is not None:
        x_max = max(x_max, min(crossover * 1.6, longest * 20))
    fig = _figure(f"wall clock {config} vs {ref}")
    ax = fig.add_subplot()
    xs = [x_max * i / 200 for i in range(201)]
    for name, (t, d) in ((config, figures[config]), (ref, figures[ref])):
        ax.plot(xs, [t + x / d for x in xs], label=f"{name}: {t:.2f} s + N / {d:.1f} tok/s")
    if crossover is not None and crossover <= x_max:
        ax.axvline(crossover, color="#c44", linestyle="--")
        ax.annotate(f"crossover ~{crossover:.0f} tokens", (crossover, t_c + crossover / d_c),
                    xytext=(10, -30), textcoords="offset points", color="#c44")
    ax.set_xlabel("output tokens N")
    ax.set_ylabel("wall clock, s (TTFT + N / decode rate)")
    ax.set_title(f"Crossover: {config} vs reference {ref}\n{verdict}; {source}", fontsize=10)
    ax.set_xlim(0, x_max)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


# ------------------------------------------------------------------------------------------------
# page


def _table(header: list[str], body: list[list[str]], verdict_col: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = []
    for r in body:
        cells = []
        for i, c in enumerate(r):
            cls = f' class="{html.escape(c)}"' if i == verdict_col and c else ""
            cells.append(f"<td{cls}>{html.escape(c)}</td>")
        trs.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(trs)}</table>"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def render(run: RunResults) -> str:
    merged = run.merged()
    own = [m for m in merged if not m.variant]  # the breakdown shows each point's own samples, not A/B blocks
    h = run.host
    gpus = ", ".join(str(g.get("name")) for g in h.gpus) or "no NVIDIA GPU"
    parts = [f"<h1>specgate: {html.escape(run.selected)}</h1>",
             f"<p>Run <code>{html.escape(run.run_id)}</code>, {run.started:%Y-%m-%d %H:%M:%S} to "
             f"{run.finished:%H:%M:%S} UTC on {html.escape(h.hostname)} ({html.escape(h.cpu_model)} x{h.cpu_count}, "
             f"{html.escape(gpus)}){'; quick run' if run.quick else ''}. "
             f"Budgets: {html.escape(verdict_counts(run.verdicts))}.</p>"]
    for r in run.verdicts:
        if r.verdict.value in ("fail", "inconclusive"):
            parts.append(f"<p><b>{r.verdict.value.upper()}</b> {html.escape(r.config)}: {html.escape(r.message)}</p>")

    parts.append("<h2>Decode rate against output length</h2>")
    parts.append(decode_plot(merged) or _note("No sweep point measured decode_tps in this run: plot omitted."))
    parts.append("<h2>Wall-clock breakdown</h2>")
    parts.append(breakdown_plot(own) or _note("No workload with samples in this run: plot omitted."))
    parts.append("<h2>Crossover against the reference</h2>")
    pairs = [(n, fp.reference) for n, fp in sorted(run.configs.items()) if fp.reference]
    plotted = [p for n, ref in pairs if ref and (p := crossover_plot(run, n, ref)) is not None]
    parts += plotted or [_note("No config was measured together with its reference at a common sweep point in this "
                               "run (run a speculative config such as demo-ngram, whose tests measure both): "
                               "plot omitted.")]

    for name in sorted({m.config for m in merged} | set(run.configs)):
        parts.append(f"<h2>{html.escape(name)}</h2>")
        fp = run.configs.get(name)
        if fp is not None:
            if fp.description:
                parts.append(f"<p>{html.escape(fp.description)}</p>")
            items = "".join(f"<li><code>{html.escape(x)}</code></li>" for x in describe_fingerprint(fp))
            parts.append(f"<ul>{items}</ul>")
        mine = [m for m in merged if m.config == name]
        body = [r[1:] for r in rows_for(mine, [r for r in run.verdicts if r.config == name])]
        parts.append(_table(HEADER[1:], body, verdict_col=len(HEADER) - 2) if body else _note("No measurements."))
        if name in run.memory:
            figures = ", ".join(f"{k} {v:g}" for k, v in sorted(run.memory[name].items()))
            parts.append(f"<p>Memory: {html.escape(figures)}</p>")

    if run.comparison is not None:
        parts.append(f"<h2>Baseline comparison: {html.escape(run.comparison.baseline)}</h2>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in run.comparison.lines()) + "</ul>")
        body = comparison_rows(run)
        parts.append(_table(COMPARISON_HEADER, body, verdict_col=len(COMPARISON_HEADER) - 1) if body
                     else _note("No metric was measured in both runs."))
    title = html.escape(f"specgate {run.selected} {run.run_id}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{CSS}</style></head>"
            f"<body>\n" + "\n".join(parts) + "\n</body></html>\n")
