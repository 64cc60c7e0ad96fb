"""The Markdown report (``report.md``, also appended to ``$GITHUB_STEP_SUMMARY`` in GitHub Actions)."""

from __future__ import annotations

from pytest_specgate.report.banner import Banner, banner
from pytest_specgate.report.rows import (
    COMPARISON_HEADER,
    HEADER,
    UPGRADE_HEADER,
    comparison_rows,
    describe_fingerprint,
    rows_for,
    upgrade_rows,
)
from pytest_specgate.store import RunResults

__all__ = ["banner_md", "markdown", "md_table"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in r) + " |" for r in body)]


def banner_md(b: Banner) -> list[str]:
    """The verdict banner in Markdown: the same verdict, counts, failures and build as the terminal's."""
    mark = {"PASS": "\u2705", "FAIL": "\u274c"}.get(b.status, "\u26a0\ufe0f")
    out = [f"## {mark} {b.status}: {_cell(b.counts)}", ""]
    if b.upgrade:
        out += [_cell(b.upgrade), ""]
    out += [f"- **FAIL** {_cell(x)}" for x in b.failures]
    out += [f"- **UNJUDGED** {_cell(x)}" for x in b.unjudged_lines]
    if b.failures or b.unjudged_lines:
        out.append("")
    out += [f"Build: `{x}`  " for x in b.identity]
    return [*out, ""] if b.identity else out


def markdown(run: RunResults) -> str:
    h = run.host
    gpus = ", ".join(str(g.get("name")) for g in h.gpus) or "no NVIDIA GPU"
    out = [f"# specgate: {run.selected} ({run.run_id})", "", *banner_md(banner(run)),
           f"{run.started:%Y-%m-%d %H:%M:%S} to {run.finished:%H:%M:%S} UTC on {h.hostname}: "
           f"{h.cpu_model} x{h.cpu_count}, {gpus}{'; quick run' if run.quick else ''}.", ""]
    if run.upgrade is not None:
        out += [f"## Upgrade verdict: {run.upgrade.config} against {run.upgrade.against}", ""]
        out += [f"- {_cell(line)}" for line in run.upgrade.lines()] + [""]
        out += md_table(UPGRADE_HEADER, upgrade_rows(run)) + [""]
    merged = run.merged()
    for name in sorted({m.config for m in merged} | set(run.configs)):
        out += [f"## {name}", ""]
        fp = run.configs.get(name)
        if fp is not None:
            if fp.description:
                out += [fp.description, ""]
            out += [f"- {_cell(line)}" for line in describe_fingerprint(fp)] + [""]
        body = rows_for([m for m in merged if m.config == name], [r for r in run.verdicts if r.config == name])
        out += md_table(HEADER[1:], [r[1:] for r in body]) if body else ["No measurements."]
        if name in run.memory:
            out += ["", "Memory: " + ", ".join(f"{k} {v:g}" for k, v in sorted(run.memory[name].items()))]
        out.append("")
    if run.comparison is not None:
        cmp = run.comparison
        out += [f"## Baseline comparison: {cmp.baseline}", ""] + [f"- {_cell(line)}" for line in cmp.lines()] + [""]
        body = comparison_rows(run)
        out += (md_table(COMPARISON_HEADER, body) if body else ["No metric was measured in both runs."]) + [""]
    return "\n".join(out)
