"""Baseline comparison: a run held against a stored one, with a verdict that knows about noise.

Two medians on a shared machine differ every run; a gate that compares them flaps. So each metric
is compared on its samples: a bootstrap of the relative change of the median (new/old - 1) gives an
interval, and the verdict follows the interval the way budgets do (verdict/budget.py): FAIL only when the
whole interval is beyond the threshold, PASS when it is all on the good side, INCONCLUSIVE when it
straddles it. Only FAIL fails the run.

A regression is only actionable when it says what changed, so every comparison also diffs the two
runs' fingerprints (binary, GGUF, flags as flag groups, env keys, chat template, host; see
fingerprint.py) and puts that diff next to the failing metric. Pure: no I/O, no pytest; the store
loads and saves baselines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pytest_specgate.config import Thresholds
from pytest_specgate.fingerprint import ConfigFingerprint, Host, fingerprint_changes, host_changes
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.metrics import higher_is_better, where
from pytest_specgate.verdict.budget import Verdict

__all__ = ["Change", "Comparison", "StoredRun", "bootstrap_change", "compare", "judge_change"]

RESAMPLES = 2000
SEED = 20240515  # fixed: the same two runs always get the same verdict


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


def judge_change(low: float, high: float, threshold: float, higher_is_better: bool) -> Verdict:
    if higher_is_better:
        fail, ok = high < -threshold, low > -threshold
    else:
        fail, ok = low > threshold, high < threshold
    return Verdict.FAIL if fail else Verdict.PASS if ok else Verdict.INCONCLUSIVE


# ------------------------------------------------------------------------------------------------
# comparing runs


Key = tuple[str, str, int | None, str]


class StoredRun(Protocol):
    """What a comparison reads from a stored run (``store.RunResults`` is one); no I/O here."""

    run_id: str
    quick: bool
    host: Host
    configs: dict[str, ConfigFingerprint]
    thresholds: Thresholds

    def merged(self) -> list[Measurement]: ...


def _by_point(measurements: Iterable[Measurement]) -> dict[Key, Measurement]:
    return {(m.config, m.workload, m.point, m.variant): m for m in measurements}


def _order(k: Key) -> tuple[str, str, int, str]:
    return (k[0], k[1], k[2] or 0, k[3])


def compare(old: StoredRun, new: StoredRun, thresholds: Thresholds | None = None, *, confidence: float = 0.95,
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
            higher = higher_is_better(metric)
            cmp.changes.append(Change(
                config=key[0], workload=key[1], point=key[2], variant=key[3], metric=metric,
                old_median=float(np.median(ov)),
                new_median=float(np.median(nv)), change=change, low=low, high=high, threshold=threshold,
                higher_is_better=higher, n_old=len(ov), n_new=len(nv),
                verdict=judge_change(low, high, threshold, higher)))
    missing = [k for k in sorted(a.keys() - b.keys(), key=_order) if k[0] in {kk[0] for kk in b}]
    if missing:
        cmp.notes.append("in the baseline but not measured this run: "
                         + ", ".join(f"{k[0]} {where(k[1], k[2], k[3])}" for k in missing))
    if old.quick != new.quick:
        cmp.notes.append(f"note: the baseline was a {'quick' if old.quick else 'full'} run and this one is "
                         f"{'quick' if new.quick else 'full'}: fewer samples give wider intervals")
    return cmp
