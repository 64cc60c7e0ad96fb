"""Command-line options and their ini twins. Precedence: CLI > ini > specgate.toml > defaults."""

from __future__ import annotations

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
    ("results", "directory for results, baselines and reports (default .specgate)", "string"),
    ("baseline-save", "save this run's results as the named baseline", "string"),
    ("baseline-compare", "compare this run against the named baseline and fail on regressions", "string"),
]


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("specgate", "llama-server serving-config gate (pytest-specgate)")
    for name, help_, kind in OPTIONS:
        dest = "specgate_" + name.replace("-", "_")
        group.addoption(f"--specgate-{name}", dest=dest, default=None, help=help_)
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

    @classmethod
    def from_pytest(cls, config: pytest.Config) -> Options:
        def get(name: str) -> Any:
            value = config.getoption(f"specgate_{name}")
            return value if value not in (None, "") else config.getini(f"specgate_{name}") or None

        samples = get("samples")
        return cls(config=get("config"), file=get("file"), strict=bool(config.getoption("specgate_strict")),
                   samples=int(samples) if samples else None,
                   results_dir=get("results") or ".specgate", rootdir=Path(config.rootpath),
                   quick=bool(config.getoption("specgate_quick")),
                   baseline_save=get("baseline_save"), baseline_compare=get("baseline_compare"))

    @property
    def results_path(self) -> Path:
        """``--specgate-results`` as an absolute path (relative ones are under the rootdir)."""
        path = Path(self.results_dir).expanduser()
        return path if path.is_absolute() else self.rootdir / path
