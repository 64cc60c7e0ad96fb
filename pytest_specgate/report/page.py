"""report.html: one self-contained file (plots inlined as base64 PNG) that can be attached to a CI run.

The page opens with the verdict banner (``banner.py``: the same verdict, counts, failures and
build identity as the terminal and report.md), then the upgrade verdict and the baseline
comparison when the run has them, then the plots (``plots.py``) and one table per config.
"""

from __future__ import annotations

import html

from pytest_specgate.report.banner import FAIL, PASS, Banner, banner
from pytest_specgate.report.plots import breakdown_plot, budgets_of, config_colors, crossover_plot, decode_plot
from pytest_specgate.report.rows import (
    COMPARISON_HEADER,
    HEADER,
    UPGRADE_HEADER,
    comparison_rows,
    describe_fingerprint,
    rows_for,
    upgrade_rows,
)
from pytest_specgate.store import RunResults

__all__ = ["banner_html", "render"]

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; }
td.fail { background: #fdd; font-weight: bold; } td.pass { background: #dfd; }
td.inconclusive { background: #ffd; } td.skipped { color: #888; } td.no-budget { color: #888; font-style: italic; }
.note { color: #666; font-style: italic; } code { font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.banner { border-radius: 6px; padding: 0.8em 1.2em; margin: 0 0 1.5em; border: 2px solid; }
.banner h1 { margin: 0 0 0.2em; font-size: 1.8em; } .banner ul { margin: 0.4em 0; padding-left: 1.2em; }
.banner .counts { font-size: 1.1em; font-weight: 600; margin: 0.2em 0 0.6em; }
.banner.pass { background: #e6f6e6; border-color: #2a8a2a; } .banner.pass h1 { color: #1d6b1d; }
.banner.fail { background: #fde8e8; border-color: #c62828; } .banner.fail h1 { color: #b71c1c; }
.banner.inconclusive { background: #fff8db; border-color: #c8a200; } .banner.inconclusive h1 { color: #8a6d00; }
.banner li.failure { color: #8b0000; } .banner li.unjudged { color: #6b5500; }
.banner .build { color: #444; font-size: 0.85em; }
"""


def _table(header: list[str], body: list[list[str]], verdict_col: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = []
    for r in body:
        cells = []
        for i, c in enumerate(r):
            cls = f' class="{html.escape(c.replace(" ", "-"))}"' if i == verdict_col and c else ""
            cells.append(f"<td{cls}>{html.escape(c)}</td>")
        trs.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(trs)}</table>"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def banner_html(b: Banner, title: str) -> str:
    """The verdict banner: PASS / FAIL / INCONCLUSIVE, counts, failures first, unjudged, build identity."""
    cls = "pass" if b.status == PASS else "fail" if b.status == FAIL else "inconclusive"
    out = [f'<div class="banner {cls}">', f"<h1>{html.escape(b.status)} &middot; {html.escape(title)}</h1>",
           f'<p class="counts">{html.escape(b.counts)}</p>']
    if b.upgrade:
        out.append(f"<p>{html.escape(b.upgrade)}</p>")
    items = [f'<li class="failure"><b>FAIL</b> {html.escape(x)}</li>' for x in b.failures]
    items += [f'<li class="unjudged"><b>UNJUDGED</b> {html.escape(x)}</li>' for x in b.unjudged_lines]
    if items:
        out.append("<ul>" + "".join(items) + "</ul>")
    if b.identity:
        out.append('<p class="build">Build: ' + "<br>".join(f"<code>{html.escape(x)}</code>" for x in b.identity)
                   + "</p>")
    out.append("</div>")
    return "\n".join(out)


def render(run: RunResults) -> str:
    merged = run.merged()
    own = [m for m in merged if not m.variant]  # the breakdown shows each point's own samples, not A/B blocks
    colors = config_colors({m.config for m in merged} | set(run.configs))
    budgets = budgets_of(run)
    h = run.host
    gpus = ", ".join(str(g.get("name")) for g in h.gpus) or "no NVIDIA GPU"
    parts = [banner_html(banner(run), f"specgate {run.selected}"),
             f"<p>Run <code>{html.escape(run.run_id)}</code>, {run.started:%Y-%m-%d %H:%M:%S} to "
             f"{run.finished:%H:%M:%S} UTC on {html.escape(h.hostname)} ({html.escape(h.cpu_model)} x{h.cpu_count}, "
             f"{html.escape(gpus)}){'; quick run' if run.quick else ''}.</p>"]
    if run.upgrade is not None:
        parts.append(f"<h2>Upgrade verdict: {html.escape(run.upgrade.config)} against "
                     f"{html.escape(run.upgrade.against)}</h2>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in run.upgrade.lines()) + "</ul>")
        parts.append(_table(UPGRADE_HEADER, upgrade_rows(run), verdict_col=len(UPGRADE_HEADER) - 1))
    if run.comparison is not None:
        parts.append(f"<h2>Baseline comparison: {html.escape(run.comparison.baseline)}</h2>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in run.comparison.lines()) + "</ul>")
        body = comparison_rows(run)
        parts.append(_table(COMPARISON_HEADER, body, verdict_col=len(COMPARISON_HEADER) - 1) if body
                     else _note("No metric was measured in both runs."))

    parts.append("<h2>Decode rate against output length</h2>")
    parts.append(decode_plot(merged, budgets, colors)
                 or _note("No sweep point measured decode_tps in this run: plot omitted."))
    parts.append("<h2>Wall-clock breakdown</h2>")
    parts.append(breakdown_plot(own, colors) or _note("No workload with samples in this run: plot omitted."))
    parts.append("<h2>Crossover against the reference</h2>")
    pairs = [(n, fp.reference) for n, fp in sorted(run.configs.items()) if fp.reference]
    plotted = [p for n, ref in pairs if ref and (p := crossover_plot(run, n, ref, colors)) is not None]
    parts += plotted or [_note("No config was measured together with its reference at a common sweep point in this "
                               "run (run a speculative config such as demo-ngram, whose tests measure both): "
                               "plot omitted.")]

    for name in sorted({m.config for m in merged} | set(run.configs)):
        parts.append(f'<h2 style="color: {colors.get(name, "#222")}">{html.escape(name)}</h2>')
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
    title = html.escape(f"specgate {run.selected} {run.run_id}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{CSS}</style></head>"
            f"<body>\n" + "\n".join(parts) + "\n</body></html>\n")
