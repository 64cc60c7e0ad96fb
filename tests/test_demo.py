"""The realistic path: the shipped suites and configs on the real demo model (Gemma 3 270M Q4_K_M),
run the way an operator runs them. Each test is a separate pytest process, like `make demo`.

Slow by design (tens of seconds each); `-m "not slow"` leaves them out during development.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def suites(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    print(proc.stdout[-6000:], proc.stderr[-3000:])  # shown when the test fails
    return proc


def config_file(tmp_path: Path, name: str, extra: str = "", replace: tuple[str, str] | None = None) -> Path:
    """The repo's specgate.toml plus a variant: the real configs, one thing changed."""
    text = (REPO / "specgate.toml").read_text()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp_path / name
    path.write_text(text + extra)
    return path


def test_quick_demo_run_reports_decode_ttft_prefill_memory_and_tool_calls(tmp_path, demo_gguf) -> None:
    proc = suites("suites/", "-m", "quick", "--specgate-config=demo", "--specgate-table=all",
                  f"--specgate-results={tmp_path}")
    assert proc.returncode == 0
    out = proc.stdout
    assert "specgate INCONCLUSIVE" in out  # quick leaves budgets unjudged: the banner never says PASS
    for text in ("sweep@256", "decode_tps (tok/s)", "client_decode_tps (tok/s)", "ttft_ms (ms)", "prefill_ms (ms)",
                 "rss_peak_mib (MiB)", "2 snapshots passed", "demo: 1 model load(s)"):
        assert text in out
    assert "vram_peak_mib <= 21504 at memory: skipped (VRAM not measurable here" in out
    run = json.loads((tmp_path / "latest.json").read_text())
    assert run["quick"] is True and run["configs"]["demo"]["binary_sha256"]
    assert all(s["exact"] for m in run["measurements"] for s in m["samples"])


def test_demo_draft_fails_its_speedup_budget_in_plain_words(tmp_path, demo_gguf) -> None:
    """Drafting with the model itself costs a second forward pass per token: slower, and the gate says so."""
    proc = suites("suites/test_speculation.py", "-k", "speedup and out256", "--specgate-config=demo-draft",
                  "--specgate-samples=3", f"--specgate-results={tmp_path}")
    assert proc.returncode == 1
    assert "speedup >= 1 at sweep@256: FAIL: median 0." in proc.stdout
    assert "a speculative config must not decode slower than plain decoding" in proc.stdout


def test_cache_reuse_passes_with_the_prompt_cache_and_fails_without(tmp_path, demo_gguf) -> None:
    cfg = config_file(tmp_path, "specgate.toml", extra='\n[configs.demo-nocache]\nextends = "demo"\n'
                                                       'args = ["--no-cache-prompt"]\n')
    common = ("suites/test_cache_reuse.py", f"--specgate-file={cfg}", "--specgate-samples=3",
              f"--specgate-results={tmp_path / 'r'}")
    assert suites(*common, "--specgate-config=demo").returncode == 0
    proc = suites(*common, "--specgate-config=demo-nocache")
    assert proc.returncode == 1
    assert "cache_reuse >= 0.99 at cache-reuse: FAIL: median 0," in proc.stdout


def test_upgrade_verdict_holds_when_unchanged_and_names_the_flag_when_decode_regresses(tmp_path, demo_gguf) -> None:
    """The upgrade verdict with the SHIPPED thresholds (decode 5%): five unchanged A/B runs never fail, and
    a `-t 1` variant of demo fails against demo, naming decode and the flag change.

    Each run measures both configs side by side (``--specgate-against``), in ABBA blocks, so this 2-core
    machine's drift (an unchanged rerun once came out 14% slower a minute after its stored baseline)
    hits both sides alike, and every block on a fresh load: loads of one config differ by ~4.6% here
    (``bench/load_spread.py``), which judged as independent samples once failed an unchanged rerun at
    -8.0%. `demo-same` is demo under another name: two servers, identical flags.
    """
    cfg = config_file(tmp_path, "specgate.toml", extra='\n[configs.demo-t1]\nextends = "demo"\nargs = ["-t", "1"]\n'
                                                       '\n[configs.demo-same]\nextends = "demo"\n')
    common = ("suites/test_upgrade.py", "-k", "out64", f"--specgate-file={cfg}", f"--specgate-results={tmp_path / 'r'}")
    verdicts = []
    for _ in range(5):
        same = suites(*common, "--specgate-config=demo-same", "--specgate-against=demo")
        assert same.returncode == 0, "an unchanged config failed against itself"
        assert ": FAIL" not in same.stdout
        assert "across 1 point(s), 12 model loads" in same.stdout  # the shipped design: ab_loads = 12
        verdicts += [x for x in same.stdout.splitlines() if x.startswith("demo-same: decode_tps at sweep@64 vs demo: ")]
    print("UNCHANGED-RERUNS", *verdicts, sep="\n")  # the note quotes these (pytest -s)
    slow = suites(*common, "--specgate-config=demo-t1", "--specgate-against=demo")
    assert slow.returncode == 1
    failed = [x for x in slow.stdout.splitlines() if "decode_tps at sweep@64 vs demo: -" in x and ": FAIL" in x]
    assert failed and all("flags changed: -t 2 -> -t 1" in x for x in failed), slow.stdout[-3000:]
    assert "(threshold -5%)" in failed[0] and "CI, N=" in failed[0]  # the drop with its interval, shipped threshold
    print("T1-VARIANT", failed[0])
