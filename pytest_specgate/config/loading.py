"""Reading the config file: TOML to validated models, ``extends`` resolved, every error in one line.

Every error names the file, the key and the fix; a budget that no suite would ever judge is refused
at load (a silent pass is worse than a failed load).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pytest_specgate.argv import merge_args
from pytest_specgate.config.models import Budget, RawConfig, ServingConfig, SpecgateFile, Thresholds, Workloads
from pytest_specgate.errors import SpecgateConfigError
from pytest_specgate.metrics import METRICS

__all__ = ["find_config_file", "load"]


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
