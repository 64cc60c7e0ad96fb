"""The one table of metrics: name, unit, direction, where it lives, and whether reports show it.

Why one table: the config's budget names, the statistics, the terminal/Markdown/HTML rows, the
benchmark files and the baseline comparison all need to agree on what a metric is and which way is
better. They used to keep three lists "in step" by hand; now they all read this table (and a test
checks that ``config.MetricName`` names exactly the budgetable rows).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METRICS", "SAMPLE_METRICS", "SHOWN", "VARIANT_OF_METRIC", "BUDGET_METRICS", "Metric", "higher_is_better",
           "unit", "where"]


@dataclass(frozen=True)
class Metric:
    name: str
    #: shown after the name in tables ("" for ratios and shares)
    unit: str
    higher_is_better: bool
    #: shown in the terminal table and the reports (everything is kept in the JSON results)
    shown: bool = True
    #: a budget may name it (``config.MetricName``)
    budget: bool = True
    #: summarised from every sample of a measured point (the others are derived figures)
    per_sample: bool = False
    #: only exists on this measurement variant ("ab": A/B pairs, "lossless": the lossless probe)
    variant: str = ""


#: in display order: the terminal, Markdown, HTML and benchmark rows follow it
_TABLE = (
    Metric("decode_tps", "tok/s", True, per_sample=True),
    Metric("client_decode_tps", "tok/s", True, per_sample=True),
    Metric("ttft_ms", "ms", False, per_sample=True),
    Metric("prefill_ms", "ms", False, per_sample=True),
    Metric("prompt_tps", "tok/s", True, per_sample=True),
    Metric("wall_ms", "ms", False, per_sample=True),
    Metric("reasoning_share", "", False, per_sample=True),
    Metric("cache_reuse", "", True, per_sample=True),
    Metric("prefix_reuse", "", True),
    Metric("prefill_speedup", "x", True),
    Metric("acceptance", "", True, per_sample=True),
    Metric("mean_accepted_run", "tok", True, per_sample=True),
    Metric("speedup", "x", True, variant="ab"),
    Metric("wall_speedup", "x", True, variant="ab"),
    Metric("decode_collapse", "x", True),
    Metric("crossover_tokens", "tok", False),
    Metric("exact_match", "", True, variant="lossless"),
    Metric("drift_chars", "chars", False, variant="lossless"),
    Metric("first_divergence", "chars", True, variant="lossless"),
    Metric("vram_idle_mib", "MiB", False),
    Metric("vram_peak_mib", "MiB", False),
    # reported by the memory probe but not budgetable; its unit and direction were never declared, so
    # reports show it without a unit and benchmark files list it as bigger-is-better (kept as it was)
    Metric("rss_idle_mib", "", True, budget=False),
    Metric("rss_peak_mib", "MiB", False),
)

METRICS: dict[str, Metric] = {m.name: m for m in _TABLE}
#: metrics shown in the terminal and the reports, in this order (others stay in the JSON results)
SHOWN: tuple[str, ...] = tuple(m.name for m in _TABLE if m.shown)
#: metrics a budget may name
BUDGET_METRICS: frozenset[str] = frozenset(m.name for m in _TABLE if m.budget)
#: the per-sample metrics summarised for every measured point
SAMPLE_METRICS: tuple[str, ...] = tuple(m.name for m in _TABLE if m.per_sample)
#: metrics that only exist on one measurement variant (A/B pairs, the lossless probe)
VARIANT_OF_METRIC: dict[str, str] = {m.name: m.variant for m in _TABLE if m.variant}


def unit(metric: str) -> str:
    """The metric's unit ("" when unitless or unknown)."""
    m = METRICS.get(metric)
    return m.unit if m else ""


def higher_is_better(metric: str) -> bool:
    """Direction of good; an unknown metric (a suite's own derived figure) counts as higher-is-better."""
    m = METRICS.get(metric)
    return m.higher_is_better if m else True


def where(workload: str, point: int | None, variant: str = "") -> str:
    """``sweep@256``; a variant (A/B pairs, lossless probe) is shown so its rows are not mistaken for the
    point's own."""
    text = workload if point is None else f"{workload}@{point}"
    return f"{text} [{variant}]" if variant else text
