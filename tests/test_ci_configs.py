"""The field report's three serving modes, end to end on every commit: the CPU twins of the production configs.

`ci-autoregressive`, `ci-mtp` and `ci-dflash` extend `autoregressive`, `mtp` and `dflash` and change only the
model paths, context size and threads (plus CPU-sized workloads and budgets), so the production flag set
(`--spec-type draft-mtp --spec-draft-n-max 6 --spec-draft-p-min 0.75 --reasoning-budget 256 -fa on -ctk q4_0
-ctv q4_0 --jinja`, and the DFlash one) starts a real pinned llama-server on tiny random-weight GGUFs of the
production architecture. What these tests hold:

- the twins differ from their production configs only where a CPU needs it (checked flag by flag);
- bad speculative input fails in preflight, before any model loads, with one line naming cause and fix:
  draft-mtp on a GGUF without NextN layers, draft-dflash without `-md`, a drafter with another vocabulary;
- `pytest suites/ --specgate-config=ci-mtp` and `=ci-dflash` pass end to end (a subprocess, as CI runs it),
  their stored results show the production flags in the argv, drafts > 0 on every sweep sample, and every
  response's reasoning within --reasoning-budget 256; the plain twin drafts nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_specgate import preflight
from pytest_specgate.config import ServingConfig, group_args, load
from pytest_specgate.errors import PreflightError
from pytest_specgate.measure.sampler import mean_accepted_run
from pytest_specgate.provision.catalog import provisioned_path
from pytest_specgate.provision.qwen35 import write_dflash_drafter

ROOT = Path(__file__).resolve().parents[1]
TWINS = {"ci-autoregressive": "autoregressive", "ci-mtp": "mtp", "ci-dflash": "dflash"}
#: flags a CPU twin may change: context size, threads, offload, and the drafter's path
CPU_FLAGS = {"-c", "-t", "-ngl", "-md"}
PRODUCTION_MTP = ["--spec-type", "draft-mtp", "--spec-draft-n-max", "6", "--spec-draft-p-min", "0.75",
                  "--reasoning-budget", "256", "-fa", "on", "-ctk", "q4_0", "-ctv", "q4_0", "--jinja"]


def _flags(cfg: ServingConfig) -> dict[str, list[str]]:
    return {flag: values for flag, values in group_args(cfg.args)}


@pytest.mark.parametrize("twin", TWINS)
def test_twin_changes_only_what_the_cpu_needs(twin: str) -> None:
    file = load(ROOT / "specgate.toml")
    ci, prod = _flags(file.get(twin)), _flags(file.get(TWINS[twin]))
    changed = {f for f in ci.keys() | prod.keys() if ci.get(f) != prod.get(f)}
    assert changed <= CPU_FLAGS, f"{twin} changes {sorted(changed - CPU_FLAGS)} of {TWINS[twin]}'s flags"
    assert set(prod) <= set(ci), f"{twin} drops {sorted(set(prod) - set(ci))}"
    assert file.get(twin).speculative == file.get(TWINS[twin]).speculative
    # inherit_budgets = false: the production tok/s, VRAM and prefill budgets stay with the production config
    assert [b.describe() for b in file.get(twin).budgets] == ["reasoning_tokens <= 257 at sweep@384"]
    assert file.get(TWINS[twin]).budgets, TWINS[twin]


def test_ci_mtp_runs_the_production_mtp_flags_as_written() -> None:
    args = load(ROOT / "specgate.toml").get("ci-mtp").args
    pairs = list(zip(PRODUCTION_MTP, PRODUCTION_MTP[1:], strict=False))
    missing = [p for p in pairs if p[0].startswith("-") and not p[1].startswith("-")
               and p not in set(zip(args, args[1:], strict=False))]
    assert not missing and "--jinja" in args, missing


@pytest.mark.parametrize("twin", TWINS)
def test_twins_pass_preflight(twin: str) -> None:
    resolved = preflight.run(load(ROOT / "specgate.toml").get(twin))
    assert resolved.model_facts.architecture == "qwen35"
    assert resolved.model_facts.nextn_predict_layers == 1


def _config(tmp_path: Path, model: str, args: list[str]) -> ServingConfig:
    toml = tmp_path / "specgate.toml"
    toml.write_text(
        'default = "x"\n[configs.x]\nbinary = "provisioned:llama-server"\n'
        f"model = {json.dumps(model)}\nargs = {json.dumps(['-c', '4096', *args])}\n")
    return load(toml).get("x")


def _first_line(cfg: ServingConfig) -> str:
    with pytest.raises(PreflightError) as info:
        preflight.run(cfg)
    return str(info.value).splitlines()[0]


def test_draft_mtp_on_a_gguf_without_nextn_layers_fails_in_preflight(tmp_path: Path) -> None:
    line = _first_line(_config(tmp_path, "provisioned:qwen35-no-mtp", ["--spec-type", "draft-mtp"]))
    assert "uses --spec-type draft-mtp, but" in line and "has no MTP layers" in line
    assert "qwen35.nextn_predict_layers is 0" in line and "Fix: use the MTP variant" in line


def test_draft_dflash_without_a_drafter_fails_in_preflight(tmp_path: Path) -> None:
    line = _first_line(_config(tmp_path, "provisioned:qwen35-mtp", ["--spec-type", "draft-dflash"]))
    assert "uses --spec-type draft-dflash without a drafter model (-md)" in line
    assert "serves without drafting" in line and 'Fix: add "-md"' in line


def test_a_drafter_with_another_vocabulary_fails_in_preflight(tmp_path: Path) -> None:
    """The pinned server would pass /health with it and abort on the first request (GGML_ASSERT)."""
    drafter = write_dflash_drafter(tmp_path / "drafter-2048.gguf", n_vocab=2048)
    line = _first_line(_config(tmp_path, "provisioned:qwen35-mtp",
                               ["--spec-type", "draft-dflash", "-md", str(drafter)]))
    assert "drafter vocabulary has 2048 tokens, target has 1024" in line
    assert "use a drafter converted with --target-model-dir for this target" in line


def test_the_shipped_drafter_matches_its_target(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "provisioned:qwen35-mtp",
                  ["--spec-type", "draft-dflash", "-md", str(provisioned_path("dflash-drafter", where="test"))])
    assert preflight.run(cfg).model_facts.architecture == "qwen35"


# ------------------------------------------------------------------------------------------------
# end to end: the suites, as CI runs them


def _suites(config: str, results: Path, *select: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY", "PYTEST_ADDOPTS")}
    cmd = [sys.executable, "-m", "pytest", *(select or ("suites/",)), f"--specgate-config={config}",
           f"--specgate-results-dir={results}", "-p", "no:cacheprovider", "-q", "-rs"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _run(results: Path) -> dict[str, object]:
    return json.loads((results / "latest.json").read_text())


def _sweep_samples(run: dict, config: str) -> list[dict]:  # type: ignore[type-arg]
    return [s for m in run["measurements"] if m["config"] == config and m["workload"] == "sweep"
            for s in m["samples"]]


@pytest.mark.slow
@pytest.mark.parametrize("twin", ["ci-mtp", "ci-dflash"])
def test_suites_pass_end_to_end_with_the_production_flags_and_drafts(twin: str, tmp_path: Path) -> None:
    proc = _suites(twin, tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    run = _run(tmp_path)
    args = run["configs"][twin]["args"]  # type: ignore[index]
    spec = ["--spec-type", "draft-mtp" if twin == "ci-mtp" else "draft-dflash"]
    for flag in (spec, ["--reasoning-budget", "256"], ["-fa", "on"], ["-ctk", "q4_0"], ["-ctv", "q4_0"]):
        assert any(args[i:i + 2] == flag for i in range(len(args))), (flag, args)
    assert "--jinja" in args
    samples = _sweep_samples(run, twin)
    assert samples and all(s["timings"]["draft_n"] > 0 for s in samples), [s["timings"] for s in samples]
    reasoning = [s["reasoning_chunks"] for s in samples if s["point"] == 384]
    assert reasoning and max(reasoning) <= 257, reasoning
    # the reference ran in the same session (A/B, lossless probe) without drafting
    ref = _sweep_samples(run, "ci-autoregressive")
    assert ref and all(s["timings"]["draft_n"] == 0 for s in ref)
    assert "tool-call schema check: ci-autoregressive made 0 tool call(s)" in proc.stdout


@pytest.mark.slow
def test_the_plain_twin_drafts_nothing(tmp_path: Path) -> None:
    proc = _suites("ci-autoregressive", tmp_path, "suites/test_speculation.py::test_speculation_is_active",
                   "suites/test_decode.py")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    samples = _sweep_samples(_run(tmp_path), "ci-autoregressive")
    assert samples and all(s["timings"]["draft_n"] == 0 for s in samples)
    # the random-weight model never closes <think>, so every response runs into --reasoning-budget 256;
    # counted as streamed chunks, where the server may now and then send two tokens in one chunk
    chunks = [s["reasoning_chunks"] for s in samples if s["point"] == 384]
    assert chunks and all(250 <= c <= 257 for c in chunks), chunks


def test_mean_accepted_run_reads_the_pinned_builds_log_line() -> None:
    """``print_timings`` (tools/server/server-context.cpp) pads the mean with %5.2f: "mean len =  1.86"."""
    line = ("0.01.682.075 I slot print_timing: id  0 | task 0 | draft acceptance = 0.52505 (  262 accepted /   499 "
            "generated), mean len =  1.86\n")
    assert mean_accepted_run("noise\n" + line) == 1.86
    assert mean_accepted_run("no statistics here") is None


@pytest.mark.slow
def test_a_server_that_ignores_the_reasoning_budget_fails_the_gate(tmp_path: Path) -> None:
    """The same twin with the budget switched off (``--reasoning-budget -1``, what a build that stopped honouring
    the flag would do): the random-weight model never closes its ``<think>``, so every response reasons to the
    output length and ``reasoning_tokens <= 257`` fails, by name."""
    cfg = tmp_path / "specgate.toml"
    cfg.write_text((ROOT / "specgate.toml").read_text() + '\n[configs.ci-no-budget]\nextends = "ci-autoregressive"\n'
                   'args = ["--reasoning-budget", "-1"]\n')
    proc = _suites("ci-no-budget", tmp_path / "r", "suites/test_decode.py", "-k", "out384",
                   f"--specgate-file={cfg}")
    assert proc.returncode == 1, proc.stdout[-4000:]
    assert "reasoning_tokens <= 257 at sweep@384: FAIL" in proc.stdout, proc.stdout[-4000:]
