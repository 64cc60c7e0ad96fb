"""The terminal summary at the end of a run: the verdict banner first, then a short results table,
model loads, notes and where the files went.

It gets a small :class:`TerminalSummary` of plain data (the plugin builds it from the stored run and
the finish outcome), never the session itself. The banner is the same as report.md's and
report.html's (``banner.py``), coloured with the TerminalWriter's markup. The table shows budget
rows and key metrics by default (about ten rows); ``-v`` or ``--specgate-table=all`` shows them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_specgate.report.banner import FAIL, PASS, Banner
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
    #: the run's verdict (None on an xdist worker or when the run could not be stored)
    banner: Banner | None = None
    #: the upgrade verdict's lines (``--specgate-against``)
    upgrade: list[str] = field(default_factory=list)


def _markup(status: str) -> dict[str, bool]:
    return {"green": True, "bold": True} if status == PASS else \
        {"red": True, "bold": True} if status == FAIL else {"yellow": True, "bold": True}


def write_banner(b: Banner, tr: pytest.TerminalReporter) -> None:
    tr.write_sep("=", f"specgate {b.status}", **_markup(b.status))
    tr.write_line(b.counts, **_markup(b.status))
    if b.upgrade:
        tr.write_line(b.upgrade)
    for line in b.failures:
        tr.write_line(f"FAIL {line}", red=True)
    for line in b.unjudged_lines:
        tr.write_line(f"UNJUDGED {line}" if ": UNJUDGED" not in line else line, yellow=True)
    for line in b.identity:
        tr.write_line(f"build {line}")


def terminal(summary: TerminalSummary, tr: pytest.TerminalReporter) -> None:
    if summary.banner is not None:
        write_banner(summary.banner, tr)
    tr.section("specgate results")
    for line in table(HEADER, summary.rows):
        tr.write_line(line)
    for name, secs in summary.load_seconds.items():
        tr.write_line(f"{name}: {len(secs)} model load(s), {', '.join(f'{s:.1f}' for s in secs)} s")
    for line in summary.upgrade[1:]:  # the header is in the banner already
        tr.write_line(line, red=": FAIL" in line, yellow=": INCONCLUSIVE" in line)
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
