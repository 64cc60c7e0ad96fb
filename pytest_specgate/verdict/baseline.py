"""Baseline comparison: a run held against stored runs, for trends across runs.

Two runs of one config on a shared machine differ by more than their samples suggest: the machine's
speed moves between runs (an unchanged rerun came out 14% slower a minute after its baseline), so a
verdict from the samples of two runs calls drift a regression. The verdict here is the trend verdict
(``trend.judge_trend``): the new run's median against the prediction band of the last K stored runs
of the baseline's config (same binary, GGUF and flags as the baseline, from the store's ``runs/``),
whose spread measures run-to-run variance directly. FAIL = out of line and past the threshold; PASS =
in line, short of the threshold by more than that variance; INCONCLUSIVE = cannot tell, always with
fewer than 3 such runs. Under ``--specgate-strict`` "cannot tell" fails. The side-by-side upgrade
verdict (``upgrade``) is the one that beats drift; this one is for trends.

The bootstrap interval of the change of the median (both runs' samples resampled) is still shown
next to each verdict: it is what the two runs say, not what decides.

A config of this run missing from the baseline is UNJUDGED, never "nothing to compare" (a renamed
config would pass silently otherwise); ``NAME:CONFIG`` compares the selected config with CONFIG's
entries of baseline NAME. A regression is only actionable when it says what changed, so every
comparison also diffs the fingerprints (binary, GGUF, flags, env keys, chat template, host; see
fingerprint.py) and puts that diff next to the failing metric. Pure: no I/O, no pytest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pytest_specgate.config import Thresholds
from pytest_specgate.fingerprint import ConfigFingerprint, Host, fingerprint_changes, host_changes
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.metrics import higher_is_better, where
from pytest_specgate.verdict.budget import Verdict
from pytest_specgate.verdict.trend import judge_trend

__all__ = ["HISTORY_RUNS", "Change", "Comparison", "StoredRun", "bootstrap_change", "compare", "judge_change",
           "split_name"]

RESAMPLES = 2000
#: stored runs whose spread gives the run-to-run variance (T's simulations: K = 3-8 keep false FAILs under 1%)
HISTORY_RUNS = 8
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
    #: stored runs of the baseline's config the verdict rests on, and the prediction bound it used
    k: int = 0
    bound: float | None = None
    why: str = ""

    @property
    def where(self) -> str:
        return where(self.workload, self.point, self.variant)

    @property
    def signed_threshold(self) -> float:
        """The threshold as a change in the bad direction: -5% for decode_tps, +10% for ttft_ms."""
        return -self.threshold if self.higher_is_better else self.threshold

    def describe(self) -> str:
        text = (f"{self.metric} at {self.where}: {self.change:+.1%} [{self.low:+.1%}, {self.high:+.1%}] "
                f"(threshold {self.signed_threshold:+.0%}): {self.verdict.value.upper()}")
        return f"{text} ({self.why})" if self.why else text


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
    #: configs of this run the baseline cannot judge (missing from it), each with the fix
    unjudged: list[str] = Field(default_factory=list)
    #: the baseline config each config of this run was compared with, when they differ (``NAME:CONFIG``)
    mapped: dict[str, str] = Field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(c.verdict is Verdict.FAIL for c in self.changes)

    def undecided(self) -> list[str]:
        """What ``--specgate-strict`` fails on: verdicts that cannot tell, and configs left unjudged."""
        return [f"{c.config}: {c.describe()}" for c in self.changes if c.verdict is Verdict.INCONCLUSIVE] \
            + list(self.unjudged)

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
        out = [f"against baseline {self.baseline!r} (run {self.baseline_run_id}): trend verdicts against the last "
               f"stored runs of the baseline's config ({self.confidence:.0%} bootstrap intervals of the median change "
               f"shown): {c['fail']} fail, {c['inconclusive']} cannot tell, {c['pass']} pass, "
               f"{len(self.unjudged)} config(s) unjudged"]
        out += [f"UNJUDGED {u}" for u in self.unjudged]
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
    selected: str
    quick: bool
    host: Host
    configs: dict[str, ConfigFingerprint]
    thresholds: Thresholds

    def merged(self) -> list[Measurement]: ...


def _by_point(measurements: Iterable[Measurement], rename: dict[str, str] | None = None) -> dict[Key, Measurement]:
    rename = rename or {}
    return {(rename.get(m.config, m.config), m.workload, m.point, m.variant): m for m in measurements}


def _order(k: Key) -> tuple[str, str, int, str]:
    return (k[0], k[1], k[2] or 0, k[3])


def split_name(name: str) -> tuple[str, str]:
    """``main:demo`` -> ("main", "demo"): baseline NAME, compared through its config CONFIG ("" = same names)."""
    base, _, config = name.partition(":")
    return base, config


def _same_config(a: ConfigFingerprint, b: ConfigFingerprint) -> bool:
    return (a.binary_sha256, a.model_sha256, a.args) == (b.binary_sha256, b.model_sha256, b.args)


def _history(old: StoredRun, history: Sequence[StoredRun], config: str) -> list[StoredRun]:
    """The baseline and the stored runs of the same binary, GGUF and flags as its ``config``, newest last."""
    fp = old.configs.get(config)
    runs = [old]
    for run in history:
        if fp is None or (run.run_id == old.run_id and run == old):  # the baseline's own copy under runs/
            continue
        other = run.configs.get(config)
        if other is not None and _same_config(other, fp):
            runs.append(run)
    return runs[-HISTORY_RUNS:] if len(runs) > HISTORY_RUNS else runs


def compare(old: StoredRun, new: StoredRun, thresholds: Thresholds | None = None, *, confidence: float = 0.95,
            name: str = "", resamples: int = RESAMPLES, history: Sequence[StoredRun] = ()) -> Comparison:
    """Hold ``new`` against baseline ``old``: every thresholded metric at every point measured in both.

    ``history``: other stored runs, oldest first; those of the same binary, GGUF and flags as the
    baseline's config give the run-to-run spread the verdict needs. ``name`` ``NAME:CONFIG`` compares
    the new run's selected config with the baseline's CONFIG.
    """
    thresholds = thresholds or new.thresholds
    limits = thresholds.model_dump()
    host, different = host_changes(old.host, new.host)
    base, as_config = split_name(name)
    cmp = Comparison(baseline=name or old.run_id, baseline_run_id=old.run_id, confidence=confidence,
                     resamples=resamples, host=host, different_hardware=different)
    b = _by_point(new.merged())
    known = sorted(old.configs) or sorted({m.config for m in old.merged()})
    if as_config and as_config not in known:
        cmp.unjudged.append(f"{new.selected}: baseline {base!r} has no config {as_config!r} (it has: "
                            f"{', '.join(known) or 'none'}). Fix: --specgate-baseline-compare={base}:<one of those>")
        return cmp
    mapping = {new.selected: as_config} if as_config else {}  # new config -> its config in the baseline
    cmp.mapped = {k: v for k, v in mapping.items() if k != v}
    rename = {v: k for k, v in mapping.items()}  # the baseline's entries under the new config's name
    a = _by_point(old.merged(), rename)
    runs: dict[str, list[StoredRun]] = {}
    for config in sorted({k[0] for k in b}):
        source = mapping.get(config, config)
        if not any(k[0] == config for k in a):
            cmp.unjudged.append(
                f"{config}: not in baseline {base or old.run_id!r} (it has: {', '.join(known) or 'none'}), so "
                f"nothing was compared. Fix: name the baseline config to compare with, "
                f"--specgate-baseline-compare={base or 'NAME'}:<config>, or save a baseline of {config!r}")
            continue
        runs[config] = _history(old, history, source)
        if source in old.configs and config in new.configs:
            cmp.fingerprint[config] = fingerprint_changes(old.configs[source], new.configs[config])
    for key in sorted(a.keys() & b.keys(), key=_order):
        if key[0] not in runs:
            continue
        source = mapping.get(key[0], key[0])
        past = [_by_point(r.merged()).get((source, *key[1:])) for r in runs[key[0]]]
        for metric, threshold in limits.items():
            ov, nv = a[key].values(metric), b[key].values(metric)
            if not ov or not nv:
                continue
            if float(np.median(ov)) == 0.0:
                continue  # no relative change from zero
            change, low, high = bootstrap_change(ov, nv, confidence, resamples)
            higher = higher_is_better(metric)
            medians = [float(np.median(v)) for m in past if m is not None and (v := m.values(metric))]
            if any(x <= 0 for x in medians) or any(x <= 0 for x in nv):
                continue  # a trend of ratios needs positive figures
            trend = judge_trend(medians, nv, threshold, higher)
            cmp.changes.append(Change(
                config=key[0], workload=key[1], point=key[2], variant=key[3], metric=metric,
                old_median=float(np.median(ov)),
                new_median=float(np.median(nv)), change=change, low=low, high=high, threshold=threshold,
                higher_is_better=higher, n_old=len(ov), n_new=len(nv),
                verdict=Verdict(trend.verdict.value), k=trend.k,
                bound=None if np.isnan(trend.bound) else trend.bound, why=trend.why))
    missing = [k for k in sorted(a.keys() - b.keys(), key=_order) if k[0] in {kk[0] for kk in b}]
    if missing:
        cmp.notes.append("in the baseline but not measured this run: "
                         + ", ".join(f"{k[0]} {where(k[1], k[2], k[3])}" for k in missing))
    if old.quick != new.quick:
        cmp.notes.append(f"note: the baseline was a {'quick' if old.quick else 'full'} run and this one is "
                         f"{'quick' if new.quick else 'full'}: fewer samples give wider intervals")
    return cmp
