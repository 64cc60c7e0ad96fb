"""The Markdown report (``report.md``, also appended to ``$GITHUB_STEP_SUMMARY`` in GitHub Actions)."""

from __future__ import annotations

from pytest_specgate.report.rows import (
    COMPARISON_HEADER,
    HEADER,
    comparison_rows,
    describe_fingerprint,
    rows_for,
    verdict_counts,
)
from pytest_specgate.store import RunResults
from pytest_specgate.verdict.budget import Verdict

__all__ = ["markdown", "md_table"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in r) + " |" for r in body)]


def markdown(run: RunResults) -> str:
    h = run.host
    gpus = ", ".join(str(g.get("name")) for g in h.gpus) or "no NVIDIA GPU"
    out = [f"# specgate: {run.selected} ({run.run_id})", "",
           f"{run.started:%Y-%m-%d %H:%M:%S} to {run.finished:%H:%M:%S} UTC on {h.hostname}: "
           f"{h.cpu_model} x{h.cpu_count}, "
           f"{gpus}{'; quick run' if run.quick else ''}. Budgets: {verdict_counts(run.verdicts)}.", ""]
    failing = [r for r in run.verdicts if r.verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE)]
    for r in failing:
        out.append(f"- **{r.verdict.value.upper()}** {r.config}: {_cell(r.message)}")
    if failing:
        out.append("")
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
