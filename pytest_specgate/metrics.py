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
    #: the workloads a budget on it can sit at: the suites record it only there, so a budget anywhere
    #: else would never be judged (config/loading.py refuses it at load)
    workloads: tuple[str, ...] = ()
    #: at the ``sweep`` workload it is recorded per output length (a budget names a sweep ``point``);
    #: False for figures of the whole sweep (collapse, crossover: ``point`` stays empty)
    per_point: bool = True
    #: a deterministic figure (a memory reading, a temperature-0 comparison): every value must meet the
    #: budget and no interval is drawn, because nothing is sampled noise
    exact: bool = False
    #: the values it can take (shares: 0..1); an interval drawn from samples is cut to them, so
    #: acceptance 0.98 at N=5 never reads as "up to 1.03"
    bounds: tuple[float, float] | None = None


#: workloads whose points the sampler measures (suites/test_decode.py, test_prefill.py)
_MEASURED = ("sweep", "latency", "chat-short", "code-long", "long-context", "natural")
#: workloads of the temperature-0 probe (suites/test_lossless.py)
_PROBED = ("latency", "tool-call", "chat-short", "code-long")

#: a share of tokens or drafts
SHARE = (0.0, 1.0)

#: in display order: the terminal, Markdown, HTML and benchmark rows follow it
_TABLE = (
    Metric("decode_tps", "tok/s", True, per_sample=True, workloads=_MEASURED),
    Metric("client_decode_tps", "tok/s", True, per_sample=True, workloads=_MEASURED),
    # decode over the card's memory-bandwidth bound (measure/roofline.py); one value per decode sample
    Metric("roofline_ratio", "", True, workloads=("sweep",)),
    Metric("ttft_ms", "ms", False, per_sample=True, workloads=_MEASURED),
    Metric("prefill_ms", "ms", False, per_sample=True, workloads=_MEASURED),
    Metric("prompt_tps", "tok/s", True, per_sample=True, workloads=_MEASURED),
    Metric("wall_ms", "ms", False, per_sample=True, workloads=_MEASURED),
    Metric("reasoning_share", "", False, per_sample=True, workloads=_MEASURED, bounds=SHARE),
    # every response must stay within --reasoning-budget, so each sample is judged as read (no median)
    Metric("reasoning_tokens", "tok", False, per_sample=True, workloads=_MEASURED, exact=True),
    Metric("cache_reuse", "", True, per_sample=True, workloads=(*_MEASURED, "cache-reuse"), bounds=SHARE),
    Metric("prefix_reuse", "", True, workloads=("cache-reuse",), bounds=SHARE),
    Metric("prefill_speedup", "x", True, workloads=("cache-reuse",)),
    Metric("prefill_slowdown", "x", False, workloads=("long-context",)),
    Metric("acceptance", "", True, per_sample=True, workloads=_MEASURED, bounds=SHARE),
    Metric("mean_accepted_run", "tok", True, per_sample=True, workloads=_MEASURED),
    Metric("speedup", "x", True, variant="ab", workloads=("sweep", "natural")),
    Metric("wall_speedup", "x", True, variant="ab", workloads=("sweep",)),
    # tokens a natural-length answer reached (it stops at EOS): the length its speedup was measured over
    Metric("output_tokens", "tok", True, budget=False, variant="ab", workloads=("natural",)),
    Metric("decode_collapse", "x", True, workloads=("sweep",), per_point=False),
    Metric("crossover_tokens", "tok", False, workloads=("sweep",), per_point=False),
    Metric("exact_match", "", True, variant="lossless", workloads=_PROBED, exact=True),
    Metric("drift_chars", "chars", False, variant="lossless", workloads=_PROBED, exact=True),
    Metric("first_divergence", "chars", True, variant="lossless", workloads=_PROBED, exact=True),
    Metric("vram_idle_mib", "MiB", False, workloads=("memory",), exact=True),
    Metric("vram_peak_mib", "MiB", False, workloads=("memory",), exact=True),
    # the fullest card's peak when a server spans several (-ts/-sm); vram_peak_mib is their total
    Metric("vram_peak_mib_per_gpu", "MiB", False, workloads=("memory",), exact=True),
    # reported by the memory probe but not budgetable; its unit and direction were never declared, so
    # reports show it without a unit and benchmark files list it as bigger-is-better (kept as it was)
    Metric("rss_idle_mib", "", True, budget=False, workloads=("memory",), exact=True),
    Metric("rss_peak_mib", "MiB", False, workloads=("memory",), exact=True),
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
