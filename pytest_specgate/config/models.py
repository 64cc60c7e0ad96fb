"""The models of the config file: serving configs, their workloads, budgets and thresholds.

They reject unknown keys, so that a typo such as ``budjets`` fails loudly instead of silently
disabling a gate. Reading the file and resolving ``extends`` is :mod:`pytest_specgate.config.loading`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pytest_specgate.argv import flag_values
from pytest_specgate.errors import SpecgateConfigError

__all__ = ["GATE_FIELDS", "Budget", "MetricName", "RawConfig", "ServingConfig", "SpecgateFile", "Thresholds",
           "WorkloadName", "Workloads"]

#: Metrics a budget may name: the budgetable rows of ``metrics.METRICS`` (a test checks they agree).
MetricName = Literal[
    "decode_tps",
    "client_decode_tps",
    "roofline_ratio",
    "ttft_ms",
    "prefill_ms",
    "prompt_tps",
    "wall_ms",
    "reasoning_share",
    "reasoning_tokens",
    "cache_reuse",
    "prefix_reuse",
    "prefill_speedup",
    "prefill_slowdown",
    "acceptance",
    "mean_accepted_run",
    "speedup",
    "wall_speedup",
    "decode_collapse",
    "crossover_tokens",
    "exact_match",
    "drift_chars",
    "first_divergence",
    "vram_peak_mib",
    "vram_peak_mib_per_gpu",
    "vram_idle_mib",
    "rss_peak_mib",
]

#: request fields each workload sets itself; ``request_extras`` may not override them
GATE_FIELDS = frozenset({"messages", "tools", "tool_choice", "stream", "stream_options", "n_predict", "max_tokens",
                         "max_completion_tokens", "ignore_eos", "seed", "temperature", "top_k"})

WorkloadName = Literal[
    "latency", "tool-call", "chat-short", "code-long", "long-context", "sweep", "natural", "cache-reuse", "memory",
    "derived"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """One limit on one metric at one workload point.

    ``min`` is a floor (the metric must be at least this), ``max`` a ceiling. ``point`` is the
    output length for the ``sweep`` workload and is empty for the others.
    """

    metric: MetricName
    workload: WorkloadName = "sweep"
    point: int | None = None
    min: float | None = None
    max: float | None = None
    note: str = ""

    @model_validator(mode="after")
    def _one_direction(self) -> Budget:
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of `min` (a floor: metric >= min) or `max` (a ceiling: metric <= max)")
        return self

    @property
    def key(self) -> tuple[str, str, int | None, str]:
        """What ``extends`` overrides by: a floor and a ceiling on one metric and point are two budgets."""
        return (self.metric, self.workload, self.point, self.op)

    @property
    def limit(self) -> float:
        return self.min if self.min is not None else self.max  # type: ignore[return-value]

    @property
    def op(self) -> str:
        return ">=" if self.min is not None else "<="

    def describe(self) -> str:
        where = self.workload if self.point is None else f"{self.workload}@{self.point}"
        return f"{self.metric} {self.op} {self.limit:g} at {where}"


class Workloads(_Strict):
    """How each config is exercised: sizes and sample counts (the report's "N=1 misleads").

    Every count has its lower bound here: ``samples = 0`` or ``confidence = 1.5`` would otherwise
    be accepted and surface later as an empty table or an interval that means nothing.
    """

    sweep: list[int] = Field(default_factory=lambda: [100, 500, 1000, 2000])
    fixed_output: int = Field(default=256, ge=1)
    long_context_tokens: int = Field(default=43000, ge=1)
    long_context_output: int = Field(default=100, ge=1)
    samples: int = Field(default=5, ge=1)
    warmup: int = Field(default=1, ge=0)
    max_samples: int = Field(default=10, ge=1)
    quick_samples: int = Field(default=3, ge=1)
    quick_sweep: list[int] | None = None
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    #: samples per side for the upgrade verdict (--specgate-against), in ABBA blocks; 12 is the design the
    #: seeded simulations validate (verdict/paired.py)
    ab_samples: int = Field(default=12, ge=2)
    #: model loads (= blocks, ABBA repeated) the upgrade verdict spreads those samples over; the load is
    #: the unit of its interval, which has ab_loads - 3 degrees of freedom (verdict/paired.py)
    ab_loads: int = Field(default=12, ge=4)
    probe_prompts: int = Field(default=3, ge=0)
    probe_max_tokens: int = Field(default=0, ge=0)
    seed: int = 42
    request_timeout: float = Field(default=600.0, gt=0.0)

    @field_validator("sweep")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(n <= 1 for n in v):
            raise ValueError("sweep must list output lengths greater than 1")
        return sorted(set(v))

    @model_validator(mode="after")
    def _max_covers_samples(self) -> Workloads:
        if self.max_samples < self.samples:
            raise ValueError(f"max_samples ({self.max_samples}) is below samples ({self.samples}); "
                             f"adaptive sampling only adds samples")
        if self.ab_loads % 4:
            raise ValueError(f"ab_loads ({self.ab_loads}) is not a multiple of 4; the upgrade verdict's blocks run "
                             f"ABBA, ABBA, ... Fix: use 4, 8 or 12")
        if self.ab_samples < self.ab_loads // 2:
            raise ValueError(f"ab_samples ({self.ab_samples}) cannot fill {self.ab_loads // 2} blocks a side "
                             f"(ab_loads = {self.ab_loads}). Fix: raise ab_samples or lower ab_loads")
        return self


class Thresholds(_Strict):
    """Relative change against a baseline that counts as a regression (direction-aware)."""

    decode_tps: float = 0.05
    client_decode_tps: float = 0.05
    ttft_ms: float = 0.10
    prefill_ms: float = 0.10
    prompt_tps: float = 0.10
    wall_ms: float = 0.10
    vram_peak_mib: float = 0.02
    vram_idle_mib: float = 0.02
    rss_peak_mib: float = 0.05


class RawConfig(_Strict):
    """A config as written, before ``extends`` is applied: every field optional."""

    description: str | None = None
    extends: str | None = None
    reference: str | None = None
    against: str | None = None
    binary: str | None = None
    model: str | None = None
    args: list[str] | None = None
    args_remove: list[str] | None = None
    env: dict[str, str] | None = None
    chat_template_file: str | None = None
    startup_timeout: float | None = None
    workloads: dict[str, object] | None = None
    budgets: list[Budget] | None = None
    #: false: start from no budgets instead of the parent's (a CPU twin of a GPU config runs its flags exactly,
    #: but its tok/s and VRAM budgets describe another machine and model)
    inherit_budgets: bool | None = None
    expect_speculative: bool | None = None
    expect_acceptance: bool | None = None
    expect_tool_calls: bool | None = None
    request_extras: dict[str, Any] | None = None
    devices: list[int] | None = None


class ServingConfig(_Strict):
    """A resolved config: what one llama-server process is started with, and its budgets."""

    name: str
    description: str = ""
    reference: str | None = None
    #: the deployed config the upgrade verdict measures this one against, side by side (--specgate-against)
    against: str | None = None
    binary: str
    model: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    chat_template_file: str | None = None
    startup_timeout: float = 300.0
    workloads: Workloads = Field(default_factory=Workloads)
    budgets: list[Budget] = Field(default_factory=list)
    expect_speculative: bool | None = None
    #: false: drafts are not expected to be accepted (a random-weight drafter), so suites/test_speculation.py
    #: gives acceptance no default floor; it is still read and reported ("measured, no budget")
    expect_acceptance: bool = True
    expect_tool_calls: bool = True
    #: fields added to every request body, beyond the plain OpenAI shape the gate sends (e.g.
    #: ``parallel_tool_calls = false``): declared here because the user's clients must send them too
    request_extras: dict[str, Any] = Field(default_factory=dict)
    #: GPU indices (NVML/PCI order) the server may use, passed as CUDA_VISIBLE_DEVICES; each is locked
    #: while the server runs. None: every GPU (or, for an xdist worker on several GPUs, a free one)
    devices: list[int] | None = None
    source: str = ""

    @field_validator("devices")
    @classmethod
    def _distinct_devices(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(d < 0 for d in v) or len(set(v)) != len(v)):
            raise ValueError(f"devices {v} must be distinct GPU indices >= 0, e.g. [0] or [0, 1]")
        return v

    @model_validator(mode="after")
    def _one_way_to_name_gpus(self) -> ServingConfig:
        if self.devices is not None and "CUDA_VISIBLE_DEVICES" in self.env:
            raise ValueError("give the GPUs once: `devices` sets CUDA_VISIBLE_DEVICES; drop it from `env`")
        return self

    @property
    def device_env(self) -> dict[str, str]:
        """``env`` plus ``CUDA_VISIBLE_DEVICES`` from ``devices``: what the server is started with."""
        if self.devices is None:
            return dict(self.env)
        return {**self.env, "CUDA_VISIBLE_DEVICES": ",".join(map(str, self.devices))}

    @field_validator("request_extras")
    @classmethod
    def _extras_leave_the_workload_alone(cls, v: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(v) & GATE_FIELDS)
        if taken:
            raise ValueError(f"{', '.join(taken)} {'is' if len(taken) == 1 else 'are'} set by each workload "
                             f"(the measurement depends on it), so it cannot be a request extra")
        return v

    @property
    def speculative(self) -> bool:
        """Whether the flags ask for speculative decoding (so a silent fallback must fail)."""
        if self.expect_speculative is not None:
            return self.expect_speculative
        types = flag_values(self.args, "--spec-type")
        spec = [t for v in types for t in v.split(",") if t and t != "none"]
        return bool(spec) or "--spec-default" in self.args

    def budgets_for(self, workload: str, point: int | None) -> list[Budget]:
        return [b for b in self.budgets if b.workload == workload and b.point == point]


class SpecgateFile(_Strict):
    """The whole file: named configs plus the default config name and baseline thresholds."""

    default: str = "demo"
    configs: dict[str, ServingConfig]
    thresholds: Thresholds = Field(default_factory=Thresholds)
    path: str = ""

    def get(self, name: str) -> ServingConfig:
        try:
            return self.configs[name]
        except KeyError:
            known = ", ".join(sorted(self.configs))
            raise SpecgateConfigError(
                f"--specgate-config {name!r} is not defined in {self.path}. Known configs: {known}. "
                f"Fix: pick one of those, or add a [configs.{name}] table."
            ) from None
