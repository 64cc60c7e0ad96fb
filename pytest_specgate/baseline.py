"""Baselines: a stored run to hold later runs against, and a comparison that knows about noise.

Two medians on a shared machine differ every run; a gate that compares them flaps. So each metric
is compared on its samples: a bootstrap of the relative change of the median (new/old - 1) gives an
interval, and the verdict follows the interval the way budgets do (measure.py): FAIL only when the
whole interval is beyond the threshold, PASS when it is all on the good side, INCONCLUSIVE when it
straddles it. Only FAIL fails the run.

A regression is only actionable when it says what changed, so every comparison also diffs the two
runs' fingerprints (binary, GGUF, flags as flag groups, env keys, chat template, host) and puts
that diff next to the failing metric.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pytest_specgate.config import Thresholds, group_args
from pytest_specgate.errors import ResultsError
from pytest_specgate.measure import METRICS, Measurement, Verdict
from pytest_specgate.report import where

if TYPE_CHECKING:
    from pytest_specgate.results import ConfigFingerprint, Host, RunResults

RESAMPLES = 2000
SEED = 20240515  # fixed: the same two runs always get the same verdict
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Change(_Model):
    """One metric at one point: the relative change of the median and its bootstrap interval."""

    config: str
    workload: str
    point: int | None = None
    variant: str = ""
    metric: str
    old_median: float
    new_median: float
    change: float
    low: float
    high: float
    threshold: float
    higher_is_better: bool
    n_old: int
    n_new: int
    verdict: Verdict

    @property
    def where(self) -> str:
        return where(self.workload, self.point, self.variant)

    @property
    def signed_threshold(self) -> float:
        """The threshold as a change in the bad direction: -5% for decode_tps, +10% for ttft_ms."""
        return -self.threshold if self.higher_is_better else self.threshold

    def describe(self) -> str:
        return (f"{self.metric} at {self.where}: {self.change:+.1%} [{self.low:+.1%}, {self.high:+.1%}] "
                f"(threshold {self.signed_threshold:+.0%}): {self.verdict.value.upper()}")


class Comparison(_Model):
    """A run held against a baseline: per-metric changes plus what changed in between."""

    baseline: str
    baseline_run_id: str
    confidence: float
    resamples: int = RESAMPLES
    changes: list[Change] = Field(default_factory=list)
    #: config -> sentences such as "flags changed: -t 2 -> -t 1"
    fingerprint: dict[str, list[str]] = Field(default_factory=dict)
    host: list[str] = Field(default_factory=list)
    different_hardware: bool = False
    notes: list[str] = Field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.verdict is Verdict.FAIL for c in self.changes)

    def counts(self) -> dict[str, int]:
        out = {v.value: 0 for v in (Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.PASS)}
        for c in self.changes:
            out[c.verdict.value] += 1
        return out

    def explain(self, config: str) -> str:
        """Why a config's numbers might have moved, for the end of a FAIL line."""
        changed = self.fingerprint.get(config, []) + (self.host if self.different_hardware else [])
        if changed:
            return "; changed since the baseline: " + "; ".join(changed)
        return "; binary, GGUF, flags and hardware are unchanged: suspect load on the machine, or rerun"

    def lines(self, verbose: bool = False) -> list[str]:
        """Human-readable summary: header, warnings, non-passing metrics (all with ``verbose``), diffs."""
        c = self.counts()
        out = [f"against baseline {self.baseline!r} (run {self.baseline_run_id}), {self.confidence:.0%} bootstrap "
               f"intervals of the median change: {c['fail']} fail, {c['inconclusive']} inconclusive, {c['pass']} pass"]
        if self.different_hardware:
            out.append("WARNING: the baseline was measured on different hardware: a change may be the machine, "
                       "not the config (" + "; ".join(self.host) + ")")
        elif self.host:
            out.append("note: " + "; ".join(self.host))
        out += [f"{ch.config}: {ch.describe()}{self.explain(ch.config)}" for ch in self.changes
                if ch.verdict is Verdict.FAIL]
        out += [f"{ch.config}: {ch.describe()}" for ch in self.changes
                if ch.verdict is Verdict.INCONCLUSIVE or (verbose and ch.verdict is Verdict.PASS)]
        for config, changed in self.fingerprint.items():
            if changed and not any(ch.config == config and ch.verdict is Verdict.FAIL for ch in self.changes):
                out.append(f"{config}: changed since the baseline: " + "; ".join(changed))
        out += self.notes
        return out


# ------------------------------------------------------------------------------------------------
# statistics


def bootstrap_change(old: list[float], new: list[float], confidence: float = 0.95, resamples: int = RESAMPLES,
                     seed: int = SEED) -> tuple[float, float, float]:
    """(change, low, high) of median(new)/median(old) - 1, by resampling both sample sets.

    Both sides are resampled because both medians are uncertain; an interval from the new run's
    noise alone would call a noisy baseline a regression.
    """
    o, n = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    rng = np.random.default_rng(seed)
    om = np.median(rng.choice(o, size=(resamples, o.size)), axis=1)
    nm = np.median(rng.choice(n, size=(resamples, n.size)), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = nm / om - 1.0
    ratios = ratios[np.isfinite(ratios)]
    alpha = 1.0 - confidence
    low, high = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return float(np.median(n) / np.median(o) - 1.0), float(low), float(high)


def judge(low: float, high: float, threshold: float, higher_is_better: bool) -> Verdict:
    if higher_is_better:
        fail, ok = high < -threshold, low > -threshold
    else:
        fail, ok = low > threshold, high < threshold
    return Verdict.FAIL if fail else Verdict.PASS if ok else Verdict.INCONCLUSIVE


# ------------------------------------------------------------------------------------------------
# fingerprints


def _short(sha: str) -> str:
    return f"{sha[:8]}.." if sha else "unknown"


def flag_diff(old: list[str], new: list[str]) -> list[str]:
    """Argv difference as flag groups: ["-t 2 -> -t 1", "added --spec-type ngram-mod", "removed -fa on"]."""
    def groups(args: list[str]) -> dict[str, list[list[str]]]:
        out: dict[str, list[list[str]]] = {}
        for flag, vals in group_args(args):
            out.setdefault(flag, []).append(vals)
        return out

    def show(flag: str, occurrences: list[list[str]]) -> str:
        return " ".join(" ".join([flag, *vals]) for vals in occurrences)

    a, b = groups(old), groups(new)
    changed = [f"{show(f, a[f])} -> {show(f, b[f])}" for f in a if f in b and a[f] != b[f]]
    added = [f"added {show(f, b[f])}" for f in b if f not in a]
    removed = [f"removed {show(f, a[f])}" for f in a if f not in b]
    return changed + added + removed


def fingerprint_changes(old: ConfigFingerprint, new: ConfigFingerprint) -> list[str]:
    out = []
    if old.binary_sha256 != new.binary_sha256:
        s = f"binary changed (sha256 {_short(old.binary_sha256)} -> {_short(new.binary_sha256)}"
        ov, nv = old.binary_version.splitlines()[:1], new.binary_version.splitlines()[:1]
        if ov != nv:
            s += f"; {' '.join(ov) or '?'} -> {' '.join(nv) or '?'}"
        if old.build_info != new.build_info and old.build_info and new.build_info:
            s += f"; build_info {old.build_info} -> {new.build_info}"
        out.append(s + ")")
    elif old.binary != new.binary:
        out.append(f"binary moved ({old.binary} -> {new.binary}), same sha256")
    if old.model_sha256 != new.model_sha256:
        facts = [f"{k} {getattr(old.model_facts, k)} -> {getattr(new.model_facts, k)}"
                 for k in ("architecture", "file_type", "size_bytes", "nextn_predict_layers", "block_count")
                 if getattr(old.model_facts, k) != getattr(new.model_facts, k)]
        out.append(f"GGUF changed (sha256 {_short(old.model_sha256)} -> {_short(new.model_sha256)}"
                   + (f"; {', '.join(facts)}" if facts else "") + ")")
    elif old.model != new.model:
        out.append(f"GGUF moved ({old.model} -> {new.model}), same sha256")
    if flags := flag_diff(old.args, new.args):
        out.append("flags changed: " + ", ".join(flags))
    if old.env_keys != new.env_keys:
        added = sorted(set(new.env_keys) - set(old.env_keys))
        removed = sorted(set(old.env_keys) - set(new.env_keys))
        out.append("env changed: " + ", ".join([*(f"added {k}" for k in added), *(f"removed {k}" for k in removed)]))
    if old.chat_template_sha256 != new.chat_template_sha256:
        out.append(f"chat template changed (sha256 {_short(old.chat_template_sha256 or '')} -> "
                   f"{_short(new.chat_template_sha256 or '')})")
    return out


def host_changes(old: Host, new: Host) -> tuple[list[str], bool]:
    """(sentences, different hardware). A new hostname alone is not a new machine (CI containers)."""
    diffs = []
    if old.hardware() != new.hardware():
        parts = []
        if old.cpu_model != new.cpu_model or old.cpu_count != new.cpu_count:
            parts.append(f"cpu {old.cpu_model} x{old.cpu_count} -> {new.cpu_model} x{new.cpu_count}")
        og = ", ".join(str(g.get("name")) for g in old.gpus) or "no GPU"
        ng = ", ".join(str(g.get("name")) for g in new.gpus) or "no GPU"
        if og != ng or old.hardware()[2] != new.hardware()[2]:
            parts.append(f"gpus {og} -> {ng}")
        diffs.append(f"host changed ({old.hostname} -> {new.hostname}: {'; '.join(parts)})")
    elif old.hostname != new.hostname:
        diffs.append(f"hostname changed ({old.hostname} -> {new.hostname}), same hardware")
    drivers = ({g.get("driver") for g in old.gpus}, {g.get("driver") for g in new.gpus})
    if old.gpus and new.gpus and drivers[0] != drivers[1]:
        diffs.append(f"GPU driver {', '.join(map(str, drivers[0]))} -> {', '.join(map(str, drivers[1]))}")
    return diffs, old.hardware() != new.hardware()


# ------------------------------------------------------------------------------------------------
# comparing runs


Key = tuple[str, str, int | None, str]


def _by_point(measurements: Iterable[Measurement]) -> dict[Key, Measurement]:
    return {(m.config, m.workload, m.point, m.variant): m for m in measurements}


def _order(k: Key) -> tuple[str, str, int, str]:
    return (k[0], k[1], k[2] or 0, k[3])


def compare(old: RunResults, new: RunResults, thresholds: Thresholds | None = None, *, confidence: float = 0.95,
            name: str = "", resamples: int = RESAMPLES) -> Comparison:
    """Hold ``new`` against ``old``: every thresholded metric at every point measured in both."""
    thresholds = thresholds or new.thresholds
    limits = thresholds.model_dump()
    host, different = host_changes(old.host, new.host)
    cmp = Comparison(baseline=name or old.run_id, baseline_run_id=old.run_id, confidence=confidence,
                     resamples=resamples, host=host, different_hardware=different)
    a, b = _by_point(old.merged()), _by_point(new.merged())
    for config in sorted({k[0] for k in b}):
        if not any(k[0] == config for k in a):
            cmp.notes.append(f"{config}: not in the baseline, nothing to compare")
            continue
        if config in old.configs and config in new.configs:
            cmp.fingerprint[config] = fingerprint_changes(old.configs[config], new.configs[config])
    for key in sorted(a.keys() & b.keys(), key=_order):
        for metric, threshold in limits.items():
            ov, nv = a[key].values(metric), b[key].values(metric)
            if not ov or not nv:
                continue
            if float(np.median(ov)) == 0.0:
                continue  # no relative change from zero
            change, low, high = bootstrap_change(ov, nv, confidence, resamples)
            higher = METRICS.get(metric, ("", True))[1]
            cmp.changes.append(Change(
                config=key[0], workload=key[1], point=key[2], variant=key[3], metric=metric, old_median=float(np.median(ov)),
                new_median=float(np.median(nv)), change=change, low=low, high=high, threshold=threshold,
                higher_is_better=higher, n_old=len(ov), n_new=len(nv), verdict=judge(low, high, threshold, higher)))
    missing = [k for k in sorted(a.keys() - b.keys(), key=_order) if k[0] in {kk[0] for kk in b}]
    if missing:
        cmp.notes.append("in the baseline but not measured this run: "
                         + ", ".join(f"{k[0]} {where(k[1], k[2], k[3])}" for k in missing))
    if old.quick != new.quick:
        cmp.notes.append(f"note: the baseline was a {'quick' if old.quick else 'full'} run and this one is "
                         f"{'quick' if new.quick else 'full'}: fewer samples give wider intervals")
    return cmp


# ------------------------------------------------------------------------------------------------
# files


def path_for(results_dir: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise ResultsError(f"baseline name {name!r} is not usable as a file name. "
                           f"Fix: use letters, digits, '.', '_' and '-' only (e.g. main, v1.2).")
    return results_dir / "baselines" / f"{name}.json"


def save(run: RunResults, results_dir: Path, name: str) -> Path:
    """Store ``run`` as ``baselines/<name>.json``; an existing baseline of that name is replaced on purpose."""
    from pytest_specgate import results  # results imports this module's models

    return results.save(run, path_for(results_dir, name))


def load(results_dir: Path, name: str) -> RunResults:
    from pytest_specgate import results

    path = path_for(results_dir, name)
    if not path.exists():
        known = sorted(p.stem for p in (results_dir / "baselines").glob("*.json"))
        raise ResultsError(
            f"no baseline named {name!r} ({path} does not exist; known: {', '.join(known) or 'none'}). "
            f"Fix: create it with --specgate-baseline-save {name} on a run you trust."
        )
    return results.load(path)
