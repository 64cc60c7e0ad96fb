"""The terminal summary at the end of a run: the results table, model loads, notes, where the files went.

It gets a small :class:`TerminalSummary` of plain data (the plugin builds it from the session and
the finish outcome), never the session itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_specgate.report.rows import HEADER, table

__all__ = ["TerminalSummary", "terminal"]


@dataclass
class TerminalSummary:
    rows: list[list[str]]
    #: config -> seconds of each model load
    load_seconds: dict[str, list[float]] = field(default_factory=dict)
    #: messages of budgets that were skipped
    skipped: list[str] = field(default_factory=list)
    #: one-line verdicts that are not budgets (e.g. tool-call snapshots)
    notes: list[str] = field(default_factory=list)
    #: what finish() did (it runs in sessionfinish, before the summary); None when it did not run
    files: list[Path] | None = None
    errors: list[str] = field(default_factory=list)
    baseline: list[str] = field(default_factory=list)


def terminal(summary: TerminalSummary, tr: pytest.TerminalReporter) -> None:
    tr.section("specgate results")
    for line in table(HEADER, summary.rows):
        tr.write_line(line)
    for name, secs in summary.load_seconds.items():
        tr.write_line(f"{name}: {len(secs)} model load(s), {', '.join(f'{s:.1f}' for s in secs)} s")
    for message in summary.skipped:
        tr.write_line(f"skipped budget: {message}")
    for note in summary.notes:
        tr.write_line(note)
    if summary.files is None:
        return
    shown = [p for p in summary.files if p.name in ("latest.json", "report.md", "report.html")]
    if shown:
        tr.write_line("specgate files: " + ", ".join(str(p) for p in shown))
    for err in summary.errors:
        tr.write_line(f"specgate error: {err}", red=True, bold=True)
    if summary.baseline:
        tr.section("specgate baseline")
        for line in summary.baseline:
            tr.write_line(line, red=": FAIL" in line or line.startswith("WARNING"), yellow=": INCONCLUSIVE" in line)
