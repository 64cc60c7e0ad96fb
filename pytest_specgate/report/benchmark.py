"""``benchmark-bigger.json`` / ``benchmark-smaller.json`` for github-action-benchmark's custom tools."""

from __future__ import annotations

from pytest_specgate.metrics import higher_is_better, where
from pytest_specgate.metrics import unit as metric_unit
from pytest_specgate.report.rows import shown_stats
from pytest_specgate.store import RunResults

__all__ = ["benchmark"]

#: suites record a crossover that never happens as 1e9 (and "always" as 0): never chart those as numbers
SENTINEL = 1e9


def benchmark(run: RunResults) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(bigger-is-better, smaller-is-better) entries for github-action-benchmark's custom tools.

    ``range`` is the half-width of the median's interval: the number the chart's error bar should
    show is the uncertainty of the plotted median, not the sample spread. No sentinel values: a
    crossover that does not exist is left out, not charted as 0 or 1e9.
    """
    bigger: list[dict[str, object]] = []
    smaller: list[dict[str, object]] = []
    for m in run.merged():
        fp = run.configs.get(m.config)
        for metric, st in shown_stats(m):
            if metric == "crossover_tokens" and not 0 < st.median < SENTINEL:
                continue  # "faster at every length" (0) or "never" (1e9): no number to chart
            unit, higher = metric_unit(metric), higher_is_better(metric)
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
