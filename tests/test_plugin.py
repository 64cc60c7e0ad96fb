"""The plugin seen from pytest: options, config errors, markers, preflight, verdict output.

These run pytest sessions with `pytester` against real config files. Preflight failures need no
model load, so they are fast; the verdict tests use the synthetic GGUF (loads in under a second).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, toml_config
from pytest_specgate.config import Budget
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.options import Options
from pytest_specgate.session import Session
from pytest_specgate.store import load
from pytest_specgate.verdict.budget import check_point

USES_SERVER = """
def test_uses_server(specgate_server):
    assert specgate_server.server.alive()
"""


def test_plugin_is_inert_without_its_fixtures(pytester: pytest.Pytester) -> None:
    """No specgate.toml, no specgate fixtures: the plugin must not get in the way."""
    pytester.makepyfile("def test_plain():\n    assert True\n")
    pytester.runpytest().assert_outcomes(passed=1)


def test_markers_and_options_are_registered(pytester: pytest.Pytester) -> None:
    out = pytester.runpytest("--markers").stdout.str()
    assert "quick: a fast check" in out
    help_ = pytester.runpytest("--help").stdout.str()
    for opt in ("--specgate-config", "--specgate-file", "--specgate-strict", "--specgate-samples",
                "--specgate-baseline-save", "--specgate-baseline-compare"):
        assert opt in help_


def test_unknown_config_name_lists_known_ones(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", specgate=toml_config("alpha", "/x/llama-server", "/x/m.gguf", [])
                      + toml_config("beta", "/x/llama-server", "/x/m.gguf", []))
    pytester.makepyfile(USES_SERVER)
    result = pytester.runpytest("--specgate-config=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--specgate-config 'nope' is not defined in*Known configs: alpha, beta*"])


def test_config_typo_names_file_key_and_fix(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", specgate=toml_config("alpha", "/x/llama-server", "/x/m.gguf", [],
                                                    extra="budjets = []\n"))
    pytester.makepyfile(USES_SERVER)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*specgate.toml: key 'configs.alpha.budjets': Extra inputs are not permitted*Fix*"])


def test_ini_option_selects_config(pytester: pytest.Pytester) -> None:
    """CLI > ini > file default: the ini key picks a config when the option is absent."""
    pytester.makefile(".toml", specgate='default = "alpha"\n' + toml_config("alpha", "/x/a", "/x/m.gguf", [])
                      + toml_config("beta", "/x/b", "/x/m.gguf", []))
    pytester.makeini("[pytest]\nspecgate_config = beta\n")
    pytester.makepyfile(USES_SERVER)
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["*[[]configs.beta[]] binary*/x/b does not exist*"])
    result = pytester.runpytest("--specgate-config=alpha")
    result.stderr.fnmatch_lines(["*[[]configs.alpha[]] binary*/x/a does not exist*"])


def test_old_spec_type_value_fails_in_preflight(pytester: pytest.Pytester, server_bin, tiny_gguf) -> None:
    """A config written for an older build (`--spec-type mtp`) fails before any model load."""
    pytester.makefile(".toml", specgate=toml_config("old", server_bin, tiny_gguf,
                                                    ["--spec-type", "mtp", "--draft-max", "4"]))
    pytester.makepyfile(USES_SERVER)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "--spec-type mtp: 'mtp' is not a valid value for this binary" in err
    assert "draft-mtp" in err and "ngram-mod" in err
    assert "--draft-max was removed from this binary: use --spec-draft-n-max" in err


def test_mtp_config_without_model_fails_fast_naming_path_and_variable(tmp_path) -> None:
    """The README's GPU command on a machine without the model: a one-paragraph error, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECGATE_")}
    env["HOME"] = str(tmp_path)  # so ~/models/... certainly does not exist
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites/", "--specgate-config=mtp",
                           "-p", "no:cacheprovider"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert f"model file {tmp_path}/models/Qwen3.6-27B-Q4_K_M-mtp.gguf does not exist" in proc.stderr
    assert "set SPECGATE_MTP_MODEL=" in proc.stderr
    assert "set SPECGATE_LLAMA_SERVER=" in proc.stderr or shutil.which("llama-server")
    assert "Traceback" not in proc.stderr


def test_quick_marker_selects_a_subset_of_the_suites(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(str(REPO / "suites"), f"--specgate-file={REPO / 'specgate.toml'}",
                                "--specgate-config=demo", "--collect-only", "-q", "-m", "quick")
    out = result.stdout.str()
    assert "test_decode_at_output_length[out256]" in out
    assert "test_decode_at_output_length[out64]" not in out
    assert "test_tool_call_snapshot" in out and "test_memory_budget" in out
    assert "test_cache_reuse" not in out


def test_budget_failure_reads_like_a_sentence(pytester: pytest.Pytester, server_bin, tiny_gguf) -> None:
    """A broken budget fails the test with the budget, median, interval, N and the samples."""
    cfg = toml_config("tiny", server_bin, tiny_gguf, ["-t", "1", "-np", "1", "-c", "1024"], extra="""
        [[configs.tiny.budgets]]
        metric = "decode_tps"
        workload = "sweep"
        point = 16
        min = 1e9

        [[configs.tiny.budgets]]
        metric = "prefill_ms"
        workload = "sweep"
        point = 32
        max = 60000
        """)
    pytester.makefile(".toml", specgate=cfg)
    pytester.makepyfile(textwrap.dedent("""
        def test_fast(specgate_measure, specgate_check):
            specgate_check(specgate_measure("sweep", 16))

        def test_prefill(specgate_measure, specgate_check):
            specgate_check(specgate_measure("sweep", 32))
        """))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*decode_tps >= 1e+09 at sweep@16: FAIL: median * tok/s, 97.5% CI [[]*] (t interval of the log mean) at N=3, "
        "samples [[]*]*",
    ])
    # the results table shows both points, with the passing budget's verdict
    result.stdout.fnmatch_lines(["*specgate results*", "*tiny*sweep@32*prefill_ms (ms)*<= 60000*pass*"])
    assert "1 model load(s)" in result.stdout.str()


@pytest.mark.parametrize("strict", [False, True])
def test_inconclusive_warns_and_fails_only_under_strict(strict: bool, tmp_path) -> None:
    """--specgate-strict turns an interval that straddles the budget into a failure."""
    gate = Session(Options(config=None, file=None, strict=strict, samples=None, results_dir=".specgate",
                        rootdir=tmp_path, quick=False))
    m = Measurement(config="demo", workload="sweep", point=64)
    m.extra["decode_tps"] = [40.0, 44.0, 46.0, 50.0, 52.0]  # interval [40, 52] straddles 45
    results = check_point(m, [Budget(metric="decode_tps", point=64, min=45)])
    if strict:
        with pytest.raises(AssertionError, match="INCONCLUSIVE"):
            gate.judge(results)
    else:
        with pytest.warns(pytest.PytestWarning, match="INCONCLUSIVE"):
            gate.judge(results)
    assert gate.verdicts == results


def test_xdist_workers_hand_their_measurements_to_the_controller(pytester: pytest.Pytester, server_bin,
                                                                 tiny_gguf) -> None:
    """Under -n 2 each worker measures its own test; the controller alone writes one results file
    holding both points and the config's fingerprint."""
    args = ["-t", "1", "-np", "1", "-c", "1024"]
    pytester.makefile(".toml", specgate=toml_config("tiny", server_bin, tiny_gguf, args))
    pytester.makepyfile(textwrap.dedent("""
        def test_short(specgate_measure):
            assert specgate_measure("sweep", 16).samples

        def test_long(specgate_measure):
            assert specgate_measure("sweep", 32).samples
        """))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--specgate-results=out")
    assert result.ret == 0, result.stdout.str()
    runs = list((pytester.path / "out" / "runs").glob("*.json"))
    assert len(runs) == 1
    stored = load(runs[0])
    assert {(m.workload, m.point) for m in stored.measurements} == {("sweep", 16), ("sweep", 32)}
    assert stored.configs["tiny"].binary_sha256 and stored.configs["tiny"].model_sha256
