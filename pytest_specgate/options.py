"""Command-line options and their ini twins. Precedence: CLI > ini > specgate.toml > defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

#: (name, help, kind) for every option; each gets --specgate-NAME and ini key specgate_NAME
OPTIONS: list[tuple[str, str, Literal["string"]]] = [
    ("config", "name of the serving config to gate (a [configs.NAME] table); default: the file's `default`", "string"),
    ("file", "path to specgate.toml (default: specgate.toml or [tool.specgate] in pyproject.toml, searched upward)",
     "string"),
    ("samples", "override N samples per point (disables adaptive sampling)", "string"),
    ("results-dir", "directory for results, baselines and reports, e.g. on a CI runner's disk outside the checkout "
     "(default: $SPECGATE_RESULTS_DIR, else .specgate); --specgate-results is an alias", "string"),
    ("keep-runs", "stored runs kept per config in <results-dir>/runs; older ones are pruned (default 20, 0 keeps all)",
     "string"),
    ("snapshot-dir", "directory of the per-config tool-call snapshots (default: snapshots/ beside each suite file); "
     "set it when running the installed suites with --pyargs", "string"),
    ("baseline-save", "save this run's results as the named baseline", "string"),
    ("baseline-compare", "compare this run against the named baseline and fail on regressions", "string"),
    ("against", "the deployed config (old binary/GGUF/flags): measured side by side with the selected one in this "
     "session, in ABBA blocks, for the upgrade verdict (default: the config's `against` key)", "string"),
    ("lock-timeout", "seconds a run waits for another run's llama-server on the same device before giving up "
     "with the holder's PID and config (default 600; negative waits forever)", "string"),
    ("table", "terminal results table: `key` (budget rows and key metrics; the default) or `all` (every row; "
     "also with -v)", "string"),
]

#: older spellings kept working
ALIASES = {"results-dir": ("--specgate-results",)}
#: where the results go when neither the option nor the ini key says (a CI runner sets it once)
RESULTS_ENV = "SPECGATE_RESULTS_DIR"
DEFAULT_KEEP_RUNS = 20
DEFAULT_LOCK_TIMEOUT = 600.0


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("specgate", "llama-server serving-config gate (pytest-specgate)")
    for name, help_, kind in OPTIONS:
        dest = "specgate_" + name.replace("-", "_")
        group.addoption(f"--specgate-{name}", *ALIASES.get(name, ()), dest=dest, default=None, help=help_)
        parser.addini(dest, help=help_, type=kind, default="")
    group.addoption("--specgate-quick", dest="specgate_quick", action="store_true", default=False,
                    help="quick mode: the quick sweep points, quick_samples each (also on when every collected "
                         "specgate test carries the quick mark, as with -m quick)")
    group.addoption("--specgate-strict", dest="specgate_strict", action="store_true", default=False,
                    help="fail on a budget that was not judged: inconclusive at max samples, or not run at all "
                         "(deselected, skipped, not collected)")


@dataclass
class Options:
    """The options of one run, read once from pytest (CLI first, then the ini twin)."""

    config: str | None
    file: str | None
    strict: bool
    samples: int | None
    results_dir: str
    rootdir: Path
    quick: bool
    baseline_save: str | None = None
    baseline_compare: str | None = None
    #: the deployed config for the upgrade verdict (``--specgate-against``)
    against: str | None = None
    #: the terminal table: "key" rows only, or "all"
    table: str = "key"
    keep_runs: int = DEFAULT_KEEP_RUNS
    snapshot_dir: str | None = None
    #: seconds to wait for a device lock held by another run (``--specgate-lock-timeout``)
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    @classmethod
    def from_pytest(cls, config: pytest.Config) -> Options:
        def get(name: str) -> Any:
            value = config.getoption(f"specgate_{name}")
            return value if value not in (None, "") else config.getini(f"specgate_{name}") or None

        return cls(config=get("config"), file=get("file"), strict=bool(config.getoption("specgate_strict")),
                   samples=_samples(get("samples")),
                   results_dir=_results_dir(config), rootdir=Path(config.rootpath),
                   keep_runs=_keep_runs(get("keep_runs")), snapshot_dir=get("snapshot_dir"),
                   quick=bool(config.getoption("specgate_quick")),
                   baseline_save=get("baseline_save"), baseline_compare=get("baseline_compare"),
                   against=get("against"), lock_timeout=_lock_timeout(get("lock_timeout")),
                   table=_table(get("table"), config.getoption("verbose", 0) or 0))

    @property
    def results_path(self) -> Path:
        """``--specgate-results-dir`` as an absolute path (relative ones are under the rootdir)."""
        path = Path(self.results_dir).expanduser()
        return path if path.is_absolute() else self.rootdir / path

    @property
    def snapshot_root(self) -> str:
        """``--specgate-snapshot-dir`` as an absolute path, or "" for ``snapshots/`` beside each suite file."""
        if not self.snapshot_dir:
            return ""
        path = Path(self.snapshot_dir).expanduser()
        return str(path if path.is_absolute() else self.rootdir / path)


def _results_dir(config: pytest.Config) -> str:
    """CLI, then ``$SPECGATE_RESULTS_DIR`` (a runner-wide setting beats a repository default), then the ini key."""
    cli = config.getoption("specgate_results_dir")
    if cli:
        return str(cli)
    env = os.environ.get(RESULTS_ENV, "").strip()
    return env or str(config.getini("specgate_results_dir") or ".specgate")


def _keep_runs(raw: Any) -> int:
    if raw is None:
        return DEFAULT_KEEP_RUNS
    try:
        n = int(str(raw).strip())
    except ValueError:
        n = -1
    if n < 0:
        raise pytest.UsageError(f"specgate_keep_runs {raw!r} is not a whole number >= 0. "
                                f"Fix: pass e.g. --specgate-keep-runs=20 (0 keeps every run).")
    return n


def _lock_timeout(raw: Any) -> float:
    if raw is None:
        return DEFAULT_LOCK_TIMEOUT
    try:
        return float(str(raw).strip())
    except ValueError:
        raise pytest.UsageError(f"specgate_lock_timeout {raw!r} is not a number of seconds. Fix: pass e.g. "
                                "--specgate-lock-timeout=600 (negative waits forever).") from None


def _samples(raw: Any) -> int | None:
    """``--specgate-samples`` as a count; anything else is a usage error (one line), not an INTERNALERROR."""
    if raw is None:
        return None
    try:
        n = int(str(raw).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise pytest.UsageError(f"--specgate-samples {raw!r} is not a whole number of samples >= 1. "
                                "Fix: pass a count such as --specgate-samples=5, or leave it out for adaptive "
                                "sampling.")
    return n


def _table(raw: Any, verbose: int) -> str:
    """``--specgate-table``: ``key`` (default) or ``all``; ``-v`` means ``all`` unless the option says otherwise."""
    if raw is None:
        return "all" if verbose > 0 else "key"
    value = str(raw).strip().lower()
    if value not in ("key", "all"):
        raise pytest.UsageError(f"--specgate-table {raw!r} is not one of key, all. "
                                f"Fix: pass --specgate-table=all for every row, or leave it out.")
    return value
