"""What people read: the terminal table at the end of a run.

One row per (config, workload point, metric): median, spread, the interval of the median, N, the
budget and its verdict. Decode, prefill and wall clock are shown side by side because the field
report's second lesson is that they decouple.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_specgate.measure import METRICS, Stats

if TYPE_CHECKING:
    import pytest

    from pytest_specgate.gate import Gate

#: metrics shown in the terminal, in this order (others stay in the JSON results)
SHOWN = ("decode_tps", "client_decode_tps", "ttft_ms", "prefill_ms", "prompt_tps", "wall_ms", "reasoning_share",
         "cache_reuse", "prefix_reuse", "prefill_speedup", "acceptance", "speedup", "wall_speedup", "decode_collapse",
         "crossover_tokens", "vram_idle_mib", "vram_peak_mib", "rss_idle_mib", "rss_peak_mib")


def fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def rows(gate: Gate) -> list[list[str]]:
    verdicts = {(r.config, r.budget.metric, r.budget.workload, r.budget.point): r for r in gate.results}
    out = []
    for (cfg, workload, point, quick), m in sorted(gate.measurements.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        where = workload if point is None else f"{workload}@{point}"
        for metric in SHOWN:
            st: Stats | None = m.stats(metric)
            if st is None or (metric == "reasoning_share" and st.max == 0):
                continue
            unit = METRICS.get(metric, ("", True))[0]
            r = verdicts.get((cfg, metric, workload, point))
            budget = verdict = ""
            if r is not None:
                budget, verdict = f"{r.budget.op} {r.budget.limit:g}", r.verdict.value
            spread = "" if st.n == 1 else f"{fmt(st.p10)}-{fmt(st.p90)}"
            ci = "" if st.n == 1 else f"[{fmt(st.ci_low)}, {fmt(st.ci_high)}]"
            out.append([cfg, where, f"{metric} ({unit})" if unit else metric, fmt(st.median), spread, ci,
                        str(st.n), budget, verdict])
    return out


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
