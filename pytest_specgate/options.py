"""Command-line options and their ini twins. Precedence: CLI > ini > specgate.toml > defaults."""

from __future__ import annotations

import pytest

#: (name, help, kind) for every option; each gets --specgate-NAME and ini key specgate_NAME
OPTIONS: list[tuple[str, str, str]] = [
    ("config", "name of the serving config to gate (a [configs.NAME] table); default: the file's `default`", "string"),
    ("file", "path to specgate.toml (default: specgate.toml or [tool.specgate] in pyproject.toml, searched upward)", "string"),
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
    group.addoption("--specgate-strict", dest="specgate_strict", action="store_true", default=False,
                    help="treat an inconclusive budget (interval straddles the limit at max samples) as a failure")
