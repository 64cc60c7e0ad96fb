"""A measurement: N samples of one config at one workload point, plus point-level derived figures.

It holds data and answers "what are the values / statistics of metric X here"; judging them against
budgets is :mod:`pytest_specgate.verdict.budget`'s job.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pytest_specgate.measure.sample import Sample
from pytest_specgate.measure.stats import Stats, summarize
from pytest_specgate.metrics import SAMPLE_METRICS

__all__ = ["Measurement", "measurement_order"]


class Measurement(BaseModel):
    """N samples of one config at one workload point, plus any point-level extra figures."""

    model_config = ConfigDict(extra="forbid")

    config: str
    workload: str
    point: int | None = None
    #: "" for a point's own samples, "ab" for samples taken in A/B alternation with the reference
    variant: str = ""
    samples: list[Sample] = Field(default_factory=list)
    warmups: int = 0
    #: the discarded warm-up requests, kept so harness overhead can be accounted for
    warmup_samples: list[Sample] = Field(default_factory=list)
    extra: dict[str, list[float]] = Field(default_factory=dict)
    confidence: float = 0.95
    #: the sample counts the sampler judged budgets at (``verdict.sequential.Plan`` looks, e.g. [5, 10]);
    #: empty for figures derived from other measurements, which are judged once at the N they have
    looks: list[int] = Field(default_factory=list)
    #: True while samples are being taken, and left True when sampling failed: a partial measurement
    #: is never reused, judged, stored or saved as a baseline (the next test re-measures the point)
    partial: bool = False

    def values(self, metric: str) -> list[float]:
        if metric in self.extra:
            return list(self.extra[metric])
        out = []
        for s in self.samples:
            v = s.metric(metric)
            if v is not None:
                out.append(v)
        return out

    def stats(self, metric: str) -> Stats | None:
        vals = self.values(metric)
        return summarize(vals, self.confidence) if vals else None

    def all_stats(self) -> dict[str, Stats]:
        names = list(SAMPLE_METRICS) + [m for m in self.extra if m not in SAMPLE_METRICS]
        return {m: s for m in names if (s := self.stats(m)) is not None}


def measurement_order(m: Measurement) -> tuple[str, str, int, str]:
    """The order rows and stored runs list measurements in."""
    return (m.config, m.workload, m.point or 0, m.variant)
