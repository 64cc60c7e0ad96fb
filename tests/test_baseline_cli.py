"""Results that survive CI: a results dir outside the checkout, baselines promoted after a deploy, pruning.

Everything here works on a results directory under ``tmp_path``, outside the repository, the way a
self-hosted runner keeps it on its own disk while the checkout is wiped every job.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import make_run

from pytest_specgate import cli
from pytest_specgate.finish import finish
from pytest_specgate.options import Options
from pytest_specgate.store import RunResults, list_baselines, prune_runs, save

REPO = Path(__file__).resolve().parents[1]


def run_at(minute: int, config: str = "demo") -> RunResults:
    run = make_run()
    return run.model_copy(update={"run_id": f"20260101T12{minute:02d}00Z-{config}", "selected": config})


def store_runs(results: Path, minutes: range, config: str = "demo") -> list[Path]:
    return [save(run_at(m, config), results / "runs" / f"{run_at(m, config).run_id}.json") for m in minutes]


def test_results_dir_is_outside_the_checkout(tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(REPO)


def test_results_dir_option_alias_env_and_ini(pytester: pytest.Pytester, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI (either spelling) beats $SPECGATE_RESULTS_DIR, which beats the ini key; relative paths: under the rootdir."""
    pytester.makeini("[pytest]\nspecgate_results_dir = from-ini\nspecgate_keep_runs = 3\n")
    monkeypatch.delenv("SPECGATE_RESULTS_DIR", raising=False)
    opts = Options.from_pytest(pytester.parseconfig())
    assert opts.results_path == pytester.path / "from-ini" and opts.keep_runs == 3
    monkeypatch.setenv("SPECGATE_RESULTS_DIR", str(tmp_path / "runner"))
    assert Options.from_pytest(pytester.parseconfig()).results_path == tmp_path / "runner"
    for flag in ("--specgate-results-dir", "--specgate-results"):
        opts = Options.from_pytest(pytester.parseconfig(f"{flag}={tmp_path / 'cli'}"))
        assert opts.results_path == tmp_path / "cli"
    with pytest.raises(pytest.UsageError, match="specgate_keep_runs 'many' is not a whole number"):
        Options.from_pytest(pytester.parseconfig("--specgate-keep-runs=many"))


def test_prune_keeps_the_newest_runs_of_each_config(tmp_path: Path) -> None:
    demo = store_runs(tmp_path, range(5))
    other = store_runs(tmp_path, range(2), config="demo-ngram")
    gone = prune_runs(tmp_path, "demo", 3)
    assert gone == demo[:2]
    assert sorted(p for p in (tmp_path / "runs").iterdir()) == sorted(demo[2:] + other)
    assert prune_runs(tmp_path, "demo", 0) == []  # 0 keeps everything


def test_finish_prunes_and_logs_it_and_never_touches_baselines(tmp_path: Path) -> None:
    store_runs(tmp_path, range(3))
    assert cli.main(["baseline", "promote", "20260101T120000Z-demo", "--name", "prod",
                     "--results-dir", str(tmp_path)]) == 0
    outcome = finish(run_at(30), tmp_path, keep_runs=2)
    assert not outcome.failed, outcome.errors
    pruned = [line for line in outcome.baseline if line.startswith("pruned 2 old run(s) of config 'demo'")]
    assert pruned and "20260101T120000Z-demo.json" in pruned[0]
    assert sorted(p.stem for p in (tmp_path / "runs").iterdir()) == ["20260101T120200Z-demo", "20260101T123000Z-demo"]
    assert [b.name for b in list_baselines(tmp_path)] == ["prod"]  # a copy: pruning its run left it alone


def test_missing_baseline_is_one_line_with_the_command_and_fails_only_under_strict(tmp_path: Path) -> None:
    outcome = finish(run_at(1), tmp_path, compare_name="prod")
    assert not outcome.failed and not outcome.errors
    line = next(x for x in outcome.baseline if "no baseline named 'prod'" in x)
    assert f"specgate baseline promote latest --name prod --results-dir {tmp_path}" in line
    strict = finish(run_at(2), tmp_path, compare_name="prod", strict=True)
    assert strict.failed and any("no baseline named 'prod'" in e for e in strict.errors)


def test_promote_latest_id_and_path_then_list(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    results = str(tmp_path)
    assert cli.main(["baseline", "list", "--results-dir", results]) == 0
    assert "no baselines in" in capsys.readouterr().out
    finish(run_at(5), tmp_path)  # writes runs/ and latest.json
    store_runs(tmp_path, range(2))
    assert cli.main(["baseline", "promote", "latest", "--name", "prod", "--results-dir", results]) == 0
    assert "baseline 'prod' <- run 20260101T120500Z-demo" in capsys.readouterr().out
    assert cli.main(["baseline", "promote", "20260101T120100Z-demo", "--name", "v1", "--results-dir", results]) == 0
    path = tmp_path / "runs" / "20260101T120000Z-demo.json"
    assert cli.main(["baseline", "promote", str(path), "--name", "v0", "--results-dir", results]) == 0
    capsys.readouterr()
    monkeypatch.setenv("SPECGATE_RESULTS_DIR", results)  # the runner-wide setting, no flag
    assert cli.main(["baseline", "list"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(r[0], r[2]) for r in rows] == [("prod", "20260101T120500Z-demo"), ("v0", "20260101T120000Z-demo"),
                                            ("v1", "20260101T120100Z-demo")]


def test_promote_refuses_unknown_and_incomplete_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = str(tmp_path)
    assert cli.main(["baseline", "promote", "nope", "--name", "prod", "--results-dir", results]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no stored run 'nope'" in err[0] and "none stored yet" in err[0]
    broken = run_at(1).model_copy(update={"status": "failed", "status_reasons": ["server died"]})
    save(broken, tmp_path / "runs" / f"{broken.run_id}.json")
    assert cli.main(["baseline", "promote", broken.run_id, "--name", "prod", "--results-dir", results]) == 2
    err = capsys.readouterr().err
    assert "is failed (server died)" in err and not (tmp_path / "baselines" / "prod.json").exists()
    store_runs(tmp_path, range(2, 3))
    assert cli.main(["baseline", "promote", "20260101T120200Z-demo", "--name", "../evil",
                     "--results-dir", results]) == 2
    assert "baseline name '../evil' is not usable" in capsys.readouterr().err
