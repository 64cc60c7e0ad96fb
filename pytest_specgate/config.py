"""The config file: named serving configs, their workloads and budgets.

A serving config is the thing under test: one llama-server binary, one GGUF, one list of flags.
The file is TOML (``specgate.toml`` or ``[tool.specgate]`` in ``pyproject.toml``) and is parsed
into pydantic models that reject unknown keys, so that a typo such as ``budjets`` fails loudly
instead of silently disabling a gate. Every error names the file, the key and the fix.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

# argv helpers live in argv.py (a leaf); re-exported here, where callers have always found them
from pytest_specgate.argv import REDACTED as REDACTED
from pytest_specgate.argv import REPEATABLE as REPEATABLE
from pytest_specgate.argv import SECRET_FLAGS as SECRET_FLAGS
from pytest_specgate.argv import expand as expand
from pytest_specgate.argv import flag_values as flag_values
from pytest_specgate.argv import group_args as group_args
from pytest_specgate.argv import merge_args as merge_args
from pytest_specgate.argv import redact_args as redact_args
from pytest_specgate.errors import SpecgateConfigError
from pytest_specgate.metrics import METRICS

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
    ab_rounds: int = Field(default=2, ge=1)
    #: samples per side for the upgrade verdict (--specgate-against), in ABBA blocks; 12 is the design the
    #: seeded simulations validate (verdict/paired.py)
    ab_samples: int = Field(default=12, ge=2)
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


# --------------------------------------------------------------------------------------------
# loading


def find_config_file(start: Path) -> Path | None:
    """``specgate.toml`` in ``start`` or a parent, else a pyproject with ``[tool.specgate]``."""
    for d in (start, *start.parents):
        if (d / "specgate.toml").is_file():
            return d / "specgate.toml"
        py = d / "pyproject.toml"
        if py.is_file() and "[tool.specgate" in py.read_text(encoding="utf-8", errors="replace"):
            return py
    return None


def _loc(err: ErrorDetails) -> str:
    return ".".join(str(p) for p in err["loc"])


def _workload_default(err: ErrorDetails) -> str | None:
    """The default of the workloads key an error is about, or None when it is about another key."""
    loc = [str(p) for p in err["loc"]]
    if len(loc) < 2 or loc[-2] != "workloads":
        return None
    field = Workloads.model_fields.get(loc[-1])
    if field is None:
        return None
    default = field.get_default(call_default_factory=True)
    return f"{loc[-1]} = {default!r}".replace("None", "unset").lower()


def _explain(path: Path, prefix: str, exc: ValidationError) -> SpecgateConfigError:
    lines = []
    for err in exc.errors():
        key = f"{prefix}.{_loc(err)}" if _loc(err) else prefix
        if err["type"] == "extra_forbidden":
            fix = "remove it or check its spelling (see the README's config reference)"
        elif err["type"] == "literal_error":
            fix = f"use one of: {(err.get('ctx') or {}).get('expected', '')}"
        elif "max_samples" in err["msg"]:
            fix = "raise max_samples to at least samples, or lower samples"
        elif (default := _workload_default(err)) is not None:
            fix = f"set it within that range (the default is {default})"
        else:
            fix = "see the README's config reference"
        lines.append(f"{path}: key {key!r}: {err['msg']}. Fix: {fix}.")
    return SpecgateConfigError("\n".join(lines))


def load(path: Path) -> SpecgateFile:
    """Read, validate and resolve ``extends`` for every config in the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecgateConfigError(f"{path}: file not found. Fix: create it, or pass --specgate-file PATH.") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecgateConfigError(f"{path}: not valid TOML: {e}. Fix the syntax at that line.") from None
    prefix = ""
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("specgate", {})
        prefix = "tool.specgate."
    unknown = set(data) - {"default", "configs", "thresholds"}
    if unknown:
        raise SpecgateConfigError(
            f"{path}: unknown top-level key(s) {sorted(unknown)}. Fix: use only default, configs, thresholds."
        )
    raws: dict[str, RawConfig] = {}
    for name, body in (data.get("configs") or {}).items():
        if not isinstance(body, dict):
            raise SpecgateConfigError(f"{path}: key '{prefix}configs.{name}' must be a table. Fix: [configs.{name}].")
        try:
            raws[name] = RawConfig.model_validate(body)
        except ValidationError as e:
            raise _explain(path, f"{prefix}configs.{name}", e) from None
    if not raws:
        raise SpecgateConfigError(f"{path}: no [configs.NAME] tables. Fix: define at least one config.")
    try:
        thresholds = Thresholds.model_validate(data.get("thresholds") or {})
    except ValidationError as e:
        raise _explain(path, f"{prefix}thresholds", e) from None
    configs = {name: _resolve(name, raws, path, prefix) for name in raws}
    for name, cfg in configs.items():
        if cfg.against and (cfg.against not in configs or cfg.against == name):
            raise SpecgateConfigError(
                f"{path}: key '{prefix}configs.{name}.against' names {cfg.against!r}, which is "
                f"{'the config itself' if cfg.against == name else 'not defined'}. "
                f"Fix: name the deployed config, one of {sorted(set(configs) - {name})}."
            )
        if cfg.reference and cfg.reference not in configs:
            raise SpecgateConfigError(
                f"{path}: key '{prefix}configs.{name}.reference' names {cfg.reference!r}, which is not defined. "
                f"Fix: one of {sorted(configs)}."
            )
    default = data.get("default", "demo" if "demo" in configs else next(iter(configs)))
    if default not in configs:
        raise SpecgateConfigError(
            f"{path}: key '{prefix}default' names {default!r}, which is not defined. Fix: one of {sorted(configs)}."
        )
    return SpecgateFile(default=default, configs=configs, thresholds=thresholds, path=str(path))


def _resolve(name: str, raws: dict[str, RawConfig], path: Path, prefix: str,
             seen: tuple[str, ...] = ()) -> ServingConfig:
    if name in seen:
        chain = " -> ".join((*seen, name))
        raise SpecgateConfigError(f"{path}: configs extend each other in a loop ({chain}). Fix: break the cycle.")
    raw = raws[name]
    merged: dict[str, Any] = {}
    if raw.extends:
        if raw.extends not in raws:
            raise SpecgateConfigError(
                f"{path}: key '{prefix}configs.{name}.extends' names {raw.extends!r}, which is not defined. "
                f"Fix: one of {sorted(raws)}."
            )
        parent = _resolve(raw.extends, raws, path, prefix, (*seen, name))
        merged = parent.model_dump(exclude={"name", "source", "workloads", "budgets", "description"})
        merged["workloads"] = parent.workloads.model_dump(exclude_unset=True)
        merged["budgets"] = list(parent.budgets) if raw.inherit_budgets is not False else []
    own = raw.model_dump(exclude_none=True, exclude={"extends", "args", "args_remove", "env", "workloads", "budgets",
                                                     "request_extras", "inherit_budgets"})
    merged.update(own)
    merged["args"] = merge_args(list(merged.get("args", [])), raw.args or [], raw.args_remove or [])
    merged["env"] = {**merged.get("env", {}), **(raw.env or {})}
    merged["request_extras"] = {**merged.get("request_extras", {}), **(raw.request_extras or {})}
    merged["workloads"] = {**merged.get("workloads", {}), **(raw.workloads or {})}
    budgets = {b.key: b for b in merged.get("budgets", [])}
    budgets.update({b.key: b for b in raw.budgets or []})
    merged["budgets"] = list(budgets.values())
    try:
        cfg = ServingConfig.model_validate({**merged, "name": name, "source": str(path)})
    except ValidationError as e:
        raise _explain(path, f"{prefix}configs.{name}", e) from None
    for budget in cfg.budgets:
        _check_budget(budget, cfg, raw, path, prefix)
    return cfg


def _check_budget(budget: Budget, cfg: ServingConfig, raw: RawConfig, path: Path, prefix: str) -> None:
    """Refuse a budget no suite would ever judge: a silent pass is worse than a failed load.

    The metric table (``metrics.METRICS``) says at which workloads each metric is recorded and
    whether a ``sweep`` budget names an output length; the config's own sweep says which lengths exist.
    """
    own = raw.budgets or []
    where = (f"key '{prefix}configs.{cfg.name}.budgets[{own.index(budget)}]'" if budget in own
             else f"configs.{cfg.name}'s budget inherited through `extends = {raw.extends!r}`")
    head = f"{path}: {where} ({budget.describe()})"
    metric = METRICS[budget.metric]
    if budget.workload not in metric.workloads:
        raise SpecgateConfigError(
            f"{head}: {budget.metric} is never recorded at workload {budget.workload!r}, so this budget would never "
            f"be judged. Fix: set workload = {' or '.join(repr(w) for w in metric.workloads)}.")
    points = sorted(set(cfg.workloads.sweep) | set(cfg.workloads.quick_sweep or []))
    if budget.workload == "sweep" and metric.per_point:
        if budget.point not in points:
            have = "has no point" if budget.point is None else f"names point {budget.point}"
            raise SpecgateConfigError(
                f"{head}: the budget {have}, but this config measures {budget.metric} at the sweep points "
                f"{points} only, so it would never be judged. Fix: set point to one of {points}, or add it to "
                f"workloads.sweep.")
    elif budget.point is not None:
        what = "the whole sweep" if budget.workload == "sweep" else f"workload {budget.workload!r}"
        raise SpecgateConfigError(
            f"{head}: {budget.metric} is recorded once for {what}, without a point, so a budget at point "
            f"{budget.point} would never be judged. Fix: remove `point`.")
