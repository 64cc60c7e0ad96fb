"""The plots of report.html, as inlined PNGs: decode against output length, the wall-clock breakdown,
and the crossover against the reference.

Three plots answer the field report's three questions:
(a) does decode hold up as output grows (tok/s against output length, p10-p90 bars);
(b) where does a request's wall clock go (prefill / reasoning / decode / other, stacked);
(c) from what output length does a config beat its reference on wall clock (the crossover).

Every plot gives a config the same colour (``config_colors``), and draws the budgets that apply to
it: a line where the gate's verdict is decided is what makes a plot readable at a glance. The
decode plot takes A/B points first, so it shows the same samples as the speedup row and the two
never contradict each other. A plot without data is left out (None) and the page says why.

matplotlib's object API (``Figure`` + Agg) is used instead of pyplot: no global state and no GUI
backend inside a pytest process.
"""

from __future__ import annotations

import base64
import html
import io
from statistics import median
from typing import TYPE_CHECKING

from pytest_specgate.config import Budget
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.stats import crossover_point
from pytest_specgate.metrics import where
from pytest_specgate.store import RunResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["breakdown", "breakdown_plot", "budgets_of", "config_colors", "crossover_inputs", "crossover_plot",
           "decode_plot", "sweep_points"]

#: matplotlib's tab10, in order: config i (sorted by name) gets colour i in every plot
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def config_colors(names: list[str] | set[str]) -> dict[str, str]:
    """One colour per config, the same in every plot of the page."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(names))}


def budgets_of(run: RunResults) -> list[tuple[str, Budget]]:
    """Every budget the run judged or left unjudged, with its config (the plots draw them)."""
    out = [(r.config, r.budget) for r in run.verdicts]
    out += [(u.config, u.budget) for u in getattr(run, "unjudged", None) or []]
    seen, unique = set(), []
    for config, b in out:
        if (config, repr(b)) not in seen:
            seen.add((config, repr(b)))
            unique.append((config, b))
    return unique


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


def sweep_points(merged: list[Measurement], prefer: tuple[str, ...] = ("ab", "against", "")
                 ) -> dict[tuple[str, int], Measurement]:
    """{(config, output length): Measurement}. A point measured more than once (standalone, in A/B pairs
    with the reference, side by side with the deployed config) uses the first variant of ``prefer``
    that it has: by default the A/B pairs, the samples the speedup row is computed from."""
    out: dict[tuple[str, int], Measurement] = {}
    for m in merged:
        if m.workload != "sweep" or m.point is None or m.variant not in prefer or not m.samples:
            continue
        key = (m.config, m.point)
        if key not in out or prefer.index(m.variant) < prefer.index(out[key].variant):
            out[key] = m
    return out


def decode_plot(merged: list[Measurement], budgets: list[tuple[str, Budget]] | None = None,
                colors: dict[str, str] | None = None) -> str | None:
    """Decode tok/s against output length, one line per config, with its decode_tps budgets drawn."""
    series: dict[str, list[tuple[int, float, float, float]]] = {}
    variants: dict[str, set[str]] = {}
    for m in sweep_points(merged).values():
        st = m.stats("decode_tps")
        if st is not None and m.point is not None:
            series.setdefault(m.config, []).append((m.point, st.median, st.p10, st.p90))
            variants.setdefault(m.config, set()).add(m.variant)
    if not series:
        return None
    colors = colors or config_colors(set(series))
    fig = _figure("decode tok/s against output length")
    ax = fig.add_subplot()
    for config, pts in sorted(series.items()):
        pts.sort()
        x = [p[0] for p in pts]
        y = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        tag = ", ".join(sorted(f"[{v}]" for v in variants[config] if v))
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=f"{config} {tag}".strip(),
                    color=colors.get(config))
    span = max(p[0] for pts in series.values() for p in pts) * 0.06 + 1
    for config, b in budgets or []:
        if b.metric != "decode_tps" or b.workload != "sweep" or b.point is None or config not in series:
            continue
        ax.hlines(b.limit, b.point - span, b.point + span, colors=colors.get(config), linestyles="--", linewidth=2)
        ax.annotate(f"{config} budget {b.op} {b.limit:g}", (b.point, b.limit), xytext=(4, 4),
                    textcoords="offset points", color=colors.get(config), fontsize=8)
    ax.set_xlabel("output tokens")
    ax.set_ylabel("decode tok/s (median, p10-p90)")
    ax.set_title("Decode rate against output length (dashes: budgets)")
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


def breakdown_plot(merged: list[Measurement], colors: dict[str, str] | None = None) -> str | None:
    bars = [(f"{m.config}  {where(m.workload, m.point, m.variant)}", b)
            for m in merged if (b := breakdown(m)) is not None]
    owners = [m.config for m in merged if breakdown(m) is not None][::-1]
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
    colors = colors or config_colors(set(owners))
    for tick, owner in zip(ax.get_yticklabels(), owners):
        tick.set_color(colors.get(owner, "#222"))
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
    by.update({(c, "sweep", p): m for (c, p), m in sweep_points(merged).items()})
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


def crossover_plot(run: RunResults, config: str, ref: str, colors: dict[str, str] | None = None) -> str | None:
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
    colors = colors or config_colors({config, ref})
    for name, (t, d) in ((config, figures[config]), (ref, figures[ref])):
        ax.plot(xs, [t + x / d for x in xs], label=f"{name}: {t:.2f} s + N / {d:.1f} tok/s", color=colors.get(name))
    for owner, b in budgets_of(run):
        if owner == config and b.metric == "crossover_tokens":
            ax.axvline(b.limit, color=colors.get(config), linestyle=":", linewidth=2)
            ax.annotate(f"budget: crossover {b.op} {b.limit:g} tokens", (b.limit, 0), xytext=(4, 10),
                        textcoords="offset points", color=colors.get(config), fontsize=8)
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


