"""Every report file of a stored run, written atomically into one directory.

The files are rendered from a stored ``RunResults`` only (never from live session state), so
``specgate report RESULTS.json`` reproduces exactly what the run wrote.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pytest_specgate._files import write_atomic
from pytest_specgate.report.benchmark import benchmark
from pytest_specgate.report.markdown import markdown
from pytest_specgate.report.page import render
from pytest_specgate.store import RunResults

__all__ = ["write_all"]


def write_all(run: RunResults, out: Path, *, step_summary: bool = True) -> list[Path]:
    """Write every report for ``run`` into ``out``; append the Markdown to ``$GITHUB_STEP_SUMMARY``."""
    md = markdown(run)
    bigger, smaller = benchmark(run)
    files = {
        "report.json": run.model_dump_json(indent=1) + "\n",
        "report.md": md,
        "report.html": render(run),
        "benchmark-bigger.json": json.dumps(bigger, indent=1) + "\n",
        "benchmark-smaller.json": json.dumps(smaller, indent=1) + "\n",
    }
    written = []
    for name, text in files.items():
        write_atomic(out / name, text)
        written.append(out / name)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary and summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(md + "\n")
    return written
