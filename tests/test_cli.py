"""The ``specgate`` command: re-rendering reports and comparing stored runs, in-process and as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from factories import make_run, rates

from pytest_specgate import cli
from pytest_specgate.store import save

FILES = {"report.json", "report.md", "report.html", "benchmark-bigger.json", "benchmark-smaller.json"}


def test_cli_report_rerenders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stored = save(make_run(with_reference=True), tmp_path / "runs" / "r.json")
    assert cli.main(["report", str(stored), "--out", str(tmp_path / "html")]) == 0
    assert {p.name for p in (tmp_path / "html").iterdir()} == FILES
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert cli.main(["report", str(stored)]) == 0
    assert (tmp_path / "runs" / "report.html").exists()


def stored_history(results: Path) -> None:
    """Three earlier runs of the baseline's config in <results>/runs: the trend's run-to-run spread."""
    for i, d in enumerate((-0.01, 0.0, 0.01)):
        run = make_run({256: rates(40.0 * (1 + d), seed=20 + i)}).model_copy(update={"run_id": f"r{i}"})
        save(run, results / "runs" / f"r{i}.json")


def test_cli_compare_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = save(make_run({256: rates(40.0)}), tmp_path / "baselines" / "old.json")
    same = save(make_run({256: rates(40.0, seed=3)}), tmp_path / "same.json")
    slow = save(make_run({256: rates(20.0, seed=4)}, args=["-t", "1", "-np", "1", "-c", "4096"]),
                        tmp_path / "slow.json")
    assert cli.main(["compare", str(old), str(slow)]) == 0  # one stored run: cannot tell, never a FAIL
    assert "cannot tell: 1 stored run(s)" in capsys.readouterr().out
    stored_history(tmp_path)
    assert cli.main(["compare", str(old), str(same)]) == 0
    assert ": FAIL" not in capsys.readouterr().out
    assert cli.main(["compare", str(old), str(slow)]) == 1
    out = capsys.readouterr().out
    assert "decode_tps at sweep@256: -50" in out and "flags changed: -t 2 -> -t 1" in out
    (tmp_path / "broken.json").write_text("{")
    assert cli.main(["compare", str(old), str(tmp_path / "broken.json")]) == 2
    assert "broken.json: is not valid JSON" in capsys.readouterr().err


def test_cli_compare_as_a_process(tmp_path: Path) -> None:
    stored_history(tmp_path)
    old = save(make_run({256: rates(40.0)}), tmp_path / "baselines" / "old.json")
    slow = save(make_run({256: rates(20.0, seed=4)}), tmp_path / "slow.json")
    proc = subprocess.run([sys.executable, "-m", "pytest_specgate.cli", "compare", str(old), str(slow)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "FAIL" in proc.stdout and json.loads(old.read_text())["schema_version"] == 1
