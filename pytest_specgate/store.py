"""Results store: one JSON file per run, with the fingerprint of exactly what was measured.

A number is only evidence together with what produced it. The field report lost weeks to "it got
slower" with no record of which binary, which GGUF, which flags or which machine; so every run
stores, next to its samples and verdicts, a fingerprint per config (binary sha256 and ``--version``,
the server's ``build_info``, the GGUF's sha256 and header facts, the effective argv, the env keys)
and the host. A baseline comparison can then say *what changed*, not only *that* something did.

Files (under ``--specgate-results-dir`` or ``$SPECGATE_RESULTS_DIR``, default ``.specgate``):
``runs/<timestamp>-<config>.json`` per run (the last ``specgate_keep_runs`` per config are kept),
``latest.json``, ``baselines/<name>.json`` and the reports. Every write is atomic (temp file in
the same directory + ``os.replace``) under a file lock, and a file we cannot read is never
overwritten: it is reported with its path and the fix, because it may be someone's only baseline.
Nothing here compares, renders or knows about pytest: finish.py runs the session's finish.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pytest_specgate._files import write_atomic
from pytest_specgate.config import Thresholds
from pytest_specgate.errors import ResultsError
from pytest_specgate.fingerprint import ConfigFingerprint, Host
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.verdict.baseline import Comparison
from pytest_specgate.verdict.budget import BudgetResult, NoBudget, Unjudged
from pytest_specgate.verdict.upgrade import Upgrade

__all__ = ["SCHEMA_VERSION", "BaselineInfo", "RunResults", "RunStatus", "baseline_path", "baseline_refusal",
           "check_results_dir", "incomplete", "list_baselines", "load", "load_baseline", "promote", "prune_runs",
           "resolve_run", "run_path", "save", "save_baseline"]

SCHEMA_VERSION: Literal[1] = 1
#: complete: every test ran (budget FAILs included); failed: errors (a server that never started, a
#: request that broke) kept something from being measured; interrupted: Ctrl-C or SIGTERM ended it
RunStatus = Literal["complete", "failed", "interrupted"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunResults(_Model):
    """One pytest run: fingerprints, every sample, every verdict, and the baseline comparison."""

    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: str
    started: datetime
    finished: datetime
    selected: str
    quick: bool = False
    #: only a complete run may become a baseline (a partial one would move the bar silently)
    status: RunStatus = "complete"
    #: why the run is not complete: the first line of each error, or the signal that ended it
    status_reasons: list[str] = Field(default_factory=list)
    host: Host
    configs: dict[str, ConfigFingerprint] = Field(default_factory=dict)
    measurements: list[Measurement] = Field(default_factory=list)
    verdicts: list[BudgetResult] = Field(default_factory=list)
    memory: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: seconds from process start to /health 200, per config and start (model loads are not harness time)
    load_seconds: dict[str, list[float]] = Field(default_factory=dict)
    #: the thresholds in force, so `specgate compare` judges stored runs without the config file
    thresholds: Thresholds = Field(default_factory=Thresholds)
    comparison: Comparison | None = None
    #: the upgrade verdict: this config against the deployed one, side by side (``--specgate-against``)
    upgrade: Upgrade | None = None
    #: budgets of the selected config this run did not judge, with why (``--specgate-strict`` fails on them)
    unjudged: list[Unjudged] = Field(default_factory=list)
    #: points measured and checked with no budget: "measured, no budget", never a pass of the gate
    no_budget: list[NoBudget] = Field(default_factory=list)

    def measured(self) -> bool:
        """Whether the run holds any figure at all (a run with none never replaces latest or the reports)."""
        return any(m.samples or m.extra for m in self.measurements)

    def merged(self) -> list[Measurement]:
        """One Measurement per (config, workload, point, variant).

        The gate keys measurements by more than that (quick, and whatever it adds later); a point
        measured twice (xdist workers, or quick and full) is one row for a reader. Variants stay
        apart: A/B-paired samples only mean something as pairs.
        """
        out: dict[tuple[str, str, int | None, str], Measurement] = {}
        for m in self.measurements:
            key = (m.config, m.workload, m.point, m.variant)
            if key not in out:
                out[key] = m.model_copy(deep=True)
            else:
                out[key].samples.extend(m.samples)
                out[key].extra.update(m.extra)
        return sorted(out.values(), key=lambda m: (m.config, m.workload, m.point or 0, m.variant))


# ------------------------------------------------------------------------------------------------
# files: never overwriting what we cannot read


def _results_root(path: Path) -> Path:
    """The results directory a stored file belongs to (``baselines/x.json`` and ``runs/x.json`` sit one below)."""
    return path.parent.parent if path.parent.name in ("baselines", "runs") else path.parent


def _unreadable(path: Path, why: str) -> ResultsError:
    runs = _results_root(path) / "runs"
    source = f"a copy in {runs}/ or version control" if runs.is_dir() else "version control or a backup"
    remake = (f" (or re-create baseline {path.stem!r} with --specgate-baseline-save {path.stem} on a run you trust)"
              if path.parent.name == "baselines" else "")
    return ResultsError(
        f"{path}: {why}. It is left untouched. Fix: restore it from {source}{remake}, "
        f"or move it aside if it is not needed, then run again."
    )


def check_results_dir(directory: Path) -> None:
    """One line with the fix when the results directory cannot be one (``.specgate`` is a file, say).

    Without it the first write fails with a bare ``[Errno 17] File exists`` or ``[Errno 20] Not a directory``.
    """
    for d in (directory, *directory.parents):
        if d.exists():
            if not d.is_dir():
                where = "" if d == directory else f" (a parent of {directory})"
                raise ResultsError(
                    f"{d} exists but is a file, not a directory{where}, so results cannot be stored there. "
                    f"Fix: move it aside (mv {d} {d}.bak) or pass --specgate-results DIR."
                )
            return


def load(path: Path) -> RunResults:
    """Read a stored run (results, latest, baseline or report.json) with an error that says what to do."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file. "
                           "Fix: check the path (runs are under <results>/runs/).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _unreadable(path, f"cannot be read ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _unreadable(path, f"is not valid JSON ({e})") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int):
        raise _unreadable(path, "is not a specgate results file (no integer `schema_version`)")
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: written with results schema {version}, this pytest-specgate reads schema {SCHEMA_VERSION}. "
            f"Fix: upgrade pytest-specgate to read it."
        )
    try:
        return RunResults.model_validate(data)
    except ValidationError as e:
        first = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:3])
        raise _unreadable(path, f"does not match results schema {SCHEMA_VERSION} ({first})") from None


def _guard_overwrite(path: Path) -> None:
    """Refuse to replace a file that is not recognisably ours: it may be the only copy of something."""
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ok = isinstance(data, dict) and isinstance(data.get("schema_version"), int)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        ok = False
    if not ok:
        raise _unreadable(path, "exists but is not a readable specgate results file, so this run will not overwrite it")


def save(run: RunResults, path: Path) -> Path:
    """Atomically write ``run`` to ``path`` (the caller holds the directory lock)."""
    _guard_overwrite(path)
    write_atomic(path, run.model_dump_json(indent=1) + "\n")
    return path


def run_path(directory: Path, run_id: str) -> Path:
    """``runs/<run_id>.json``, with a suffix when two runs started in the same second: keep both."""
    path = directory / "runs" / f"{run_id}.json"
    i = 2
    while path.exists():
        path = directory / "runs" / f"{run_id}-{i}.json"
        i += 1
    return path


# ------------------------------------------------------------------------------------------------
# baselines: named stored runs


def baseline_path(results_dir: Path, name: str) -> Path:
    name = name.partition(":")[0]  # NAME:CONFIG compares through the baseline's CONFIG (verdict/baseline.py)
    if not _NAME.match(name):
        raise ResultsError(f"baseline name {name!r} is not usable as a file name. "
                           f"Fix: use letters, digits, '.', '_' and '-' only (e.g. main, v1.2).")
    return results_dir / "baselines" / f"{name}.json"


def save_baseline(run: RunResults, results_dir: Path, name: str) -> Path:
    """Store ``run`` as ``baselines/<name>.json``; an existing baseline of that name is replaced on purpose.

    Only a complete run: a run that failed to start a server or was interrupted holds fewer samples
    (or none), and would replace a trusted baseline with a partial one.
    """
    path = baseline_path(results_dir, name)
    if (refused := baseline_refusal(run, path)) is not None:
        raise ResultsError(refused)
    return save(run, path)


def baseline_refusal(run: RunResults, path: Path) -> str | None:
    """Why ``run`` may not become the baseline at ``path`` (one line), or None when it may."""
    if run.status == "complete" and run.measured():
        return None
    return (f"baseline {path.stem!r} not saved: this run {incomplete(run)}; {path} keeps its previous content. "
            f"Fix: deal with the cause above and rerun; a baseline is saved only from a complete run.")


def incomplete(run: RunResults) -> str:
    """What keeps ``run`` from being complete, as the end of "this run ...": short, the details are above."""
    if run.status == "interrupted":
        return "was interrupted (Ctrl-C or SIGTERM) before every test ran"
    if run.status == "failed":
        tests = [r.split(": ", 1)[0] for r in run.status_reasons]
        first = f", first {tests[0]}" if tests else ""
        return f"failed ({len(tests)} test(s) could not measure{first})"
    return "measured nothing"


def load_baseline(results_dir: Path, name: str) -> RunResults:
    path = baseline_path(results_dir, name)
    if not path.exists():
        known = sorted(p.stem for p in (results_dir / "baselines").glob("*.json"))
        raise ResultsError(
            f"no baseline named {name!r} ({path} does not exist; known: {', '.join(known) or 'none'}). "
            f"Fix: create it with --specgate-baseline-save {name} on a run you trust."
        )
    return load(path)


class BaselineInfo(_Model):
    """One named baseline as ``specgate baseline list`` shows it."""

    name: str
    path: Path
    run_id: str
    selected: str
    started: datetime
    quick: bool


def list_baselines(results_dir: Path) -> list[BaselineInfo]:
    """Every ``baselines/<name>.json``, by name; an unreadable one raises with its path and the fix."""
    out = []
    for path in sorted((results_dir / "baselines").glob("*.json")):
        run = load(path)
        out.append(BaselineInfo(name=path.stem, path=path, run_id=run.run_id, selected=run.selected,
                                started=run.started, quick=run.quick))
    return out


def resolve_run(results_dir: Path, ref: str) -> Path:
    """A stored run named by ``latest``, a run id (``runs/<id>.json``) or a path to a results file."""
    if ref == "latest":
        path = results_dir / "latest.json"
    elif (results_dir / "runs" / f"{ref}.json").is_file():
        path = results_dir / "runs" / f"{ref}.json"
    else:
        path = Path(ref).expanduser()
    if not path.is_file() and ref == "latest":
        raise ResultsError(f"no latest.json in {results_dir}: no run was stored there yet. Fix: run the suites with "
                           f"--specgate-results-dir {results_dir} first, or pass a run id or a results file.")
    if not path.is_file():
        ids = sorted(p.stem for p in (results_dir / "runs").glob("*.json"))[-5:]
        known = f"newest: {', '.join(ids)}" if ids else "none stored yet: run the suites first"
        raise ResultsError(f"no stored run {ref!r} in {results_dir} (not 'latest', a run id or a file). "
                           f"Fix: pass latest, a path, or one of the run ids in {results_dir / 'runs'} ({known}).")
    return path


def promote(results_dir: Path, ref: str, name: str) -> tuple[RunResults, Path]:
    """Store the run ``ref`` as the named baseline (after a deploy): a copy, so pruning never touches it."""
    run = load(resolve_run(results_dir, ref))
    path = baseline_path(results_dir, name)
    status = str(getattr(run, "status", "complete"))  # runs stored before run status existed were complete
    measured = any(m.samples or m.extra for m in run.measurements)
    if status != "complete" or not measured:
        why = "; ".join(getattr(run, "status_reasons", [])[:1]) or ("it measured nothing" if not measured else status)
        raise ResultsError(f"baseline {name!r} not promoted: run {run.run_id} is {status if measured else 'empty'} "
                           f"({why}); {path} keeps its previous content. Fix: promote a complete run "
                           f"(see {results_dir / 'runs'}).")
    return run, save_baseline(run, results_dir, name)


# ------------------------------------------------------------------------------------------------
# pruning: the last K runs per config

_RUN_FILE = re.compile(r"^\d{8}T\d{6}Z-(?P<rest>.+)$")


def _run_config(stem: str, config: str) -> bool:
    """Whether ``runs/<stem>.json`` is a run of ``config`` (``<timestamp>-<config>`` or ``...-<config>-<n>``)."""
    m = _RUN_FILE.match(stem)
    if m is None:
        return False
    rest = m.group("rest")
    return rest == config or re.fullmatch(re.escape(config) + r"-\d+", rest) is not None


def prune_runs(results_dir: Path, config: str, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` runs of ``config`` (``keep`` 0: keep all); returns what went.

    Why: a CI runner stores a run per push, and the store lives outside the workspace so nothing
    else ever cleans it. Named baselines are copies and are never pruned. The caller holds the lock.
    """
    if keep <= 0:
        return []
    runs = sorted((p for p in (results_dir / "runs").glob("*.json") if _run_config(p.stem, config)),
                  key=lambda p: (p.stem[:16], p.stat().st_mtime))
    doomed = runs[:-keep]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def recent_runs(results_dir: Path, limit: int = 50) -> list[RunResults]:
    """The newest ``limit`` stored runs (any config), oldest first, for the baseline comparison's trend.

    A run that cannot be read is left out (it is reported when someone loads it by name): a trend
    needs the spread of the readable ones, and one damaged file must not stop the comparison.
    """
    paths = sorted((results_dir / "runs").glob("*.json"), key=lambda p: p.stem)[-limit:] if limit > 0 else []
    out = []
    for path in paths:
        try:
            out.append(load(path))
        except ResultsError:
            continue
    return out
