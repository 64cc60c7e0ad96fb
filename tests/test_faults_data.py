"""Faults against the gate's data: nothing trusted is lost, no secret is written, every bad input is one line.

Each test injects one fault and checks three things: the first line the user reads (the cause and
the fix), that no stored file was lost or half-written, and that no llama-server survives. The real
pinned llama-server runs on the tiny synthetic GGUF; a fault a real server cannot produce on demand
(a second Ctrl-C exactly while the reports are written) is injected by a conftest in the test's own
pytest process, and the test says so.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import textwrap
from pathlib import Path

import pytest
from factories import make_run
from gguf import GGUF_MAGIC

from conftest import servers_with, toml_config
from pytest_specgate import preflight
from pytest_specgate.config import SpecgateConfigError, load, merge_args, redact_args
from pytest_specgate.errors import PreflightError, ResultsError
from pytest_specgate.fingerprint import fingerprint_changes
from pytest_specgate.finish import finish
from pytest_specgate.gguf_header import NotGGUF, read_header
from pytest_specgate.provision.smoke import SMOKE_TOKENS, smoke_decode
from pytest_specgate.store import load as load_run
from pytest_specgate.store import load_baseline

REPORTS = ["report.md", "report.html", "report.json", "benchmark-bigger.json", "benchmark-smaller.json"]
MEASURE_ONE = "def test_decode(specgate_measure):\n    specgate_measure('sweep', 16)\n"


def trusted_store(results: Path) -> dict[Path, bytes]:
    """A results dir holding a good earlier run: baseline ``prev``, latest.json and the reports."""
    good = make_run()
    good.run_id = "20260101T120000Z-trusted"
    out = finish(good, results, save_name="prev")
    assert not out.errors, out.errors
    files = [results / "baselines" / "prev.json", results / "latest.json", *(results / n for n in REPORTS)]
    return {p: p.read_bytes() for p in files}


def unchanged(before: dict[Path, bytes]) -> list[str]:
    return [str(p) for p, data in before.items() if not p.exists() or p.read_bytes() != data]


def lines_with(text: str, needle: str) -> list[str]:
    """The distinct lines holding ``needle``, from ``needle`` on (the summary may prefix or repeat them)."""
    return list(dict.fromkeys(needle + line.split(needle, 1)[1] for line in text.splitlines() if needle in line))


@pytest.fixture
def cache_env(monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path) -> None:
    """pytester moves HOME; the hash cache and provisioned files stay where `specgate provision` put them."""
    monkeypatch.setenv("SPECGATE_CACHE", str(tiny_gguf.parent.parent))


# ------------------------------------------------------------------------------------------------
# 1. failed and interrupted runs never replace what is trusted


def test_server_that_never_starts_keeps_baseline_latest_and_reports(pytester, server_bin, tiny_gguf, tmp_path,
                                                                    cache_env) -> None:
    results = tmp_path / "results"
    before = trusted_store(results)
    alias = f"faildata-{tmp_path.name}"[-40:]
    # a real fault: llama-server exits at argument parsing ("error while handling argument "-c": stoi")
    pytester.makefile(".toml", specgate=toml_config("broken", server_bin, tiny_gguf, ["-c", "abc", "--alias", alias]))
    pytester.makepyfile(test_x=MEASURE_ONE)
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--specgate-config=broken",
                                      f"--specgate-results={results}", "--specgate-baseline-save=prev")
    out = r.stdout.str()
    assert r.ret == 1
    [refusal] = lines_with(out, "baseline 'prev' not saved")
    assert refusal == (f"baseline 'prev' not saved: this run failed (1 test(s) could not measure, first "
                       f"test_x.py::test_decode); {results / 'baselines' / 'prev.json'} keeps its previous content. "
                       f"Fix: deal with the cause above and rerun; a baseline is saved only from a complete run.")
    assert lines_with(out, "this run measured nothing (it failed")
    assert unchanged(before) == []
    [run] = (results / "runs").glob("*-broken.json")
    stored = load_run(run)
    assert stored.status == "failed" and "test_decode" in stored.status_reasons[0]
    assert not servers_with(alias)


def test_failed_start_under_xdist_is_stored_failed(pytester, server_bin, tiny_gguf, tmp_path, cache_env) -> None:
    """The workers' errors reach the controller, which stores the run: it must know the run failed."""
    results = tmp_path / "results"
    alias = f"xdfail-{tmp_path.name}"[-40:]
    pytester.makefile(".toml", specgate=toml_config("broken", server_bin, tiny_gguf, ["-c", "abc", "--alias", alias]))
    other = "\n\ndef test_other(specgate_measure):\n    specgate_measure('sweep', 32)\n"
    pytester.makepyfile(test_x=MEASURE_ONE + other)
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--specgate-config=broken",
                                      f"--specgate-results={results}", "--specgate-baseline-save=prev")
    assert r.ret == 1
    assert lines_with(r.stdout.str(), "baseline 'prev' not saved: this run failed (2 test(s) could not measure")
    [run] = (results / "runs").glob("*-broken.json")
    assert load_run(run).status == "failed" and not (results / "baselines").exists()
    assert not servers_with(alias)


def test_ctrl_c_marks_the_run_interrupted_and_keeps_the_baseline(pytester, server_bin, tiny_gguf, tmp_path,
                                                                 cache_env) -> None:
    results = tmp_path / "results"
    before = trusted_store(results)
    alias = f"intr-{tmp_path.name}"[-40:]
    pytester.makefile(".toml", specgate=toml_config("tiny", server_bin, tiny_gguf, ["-c", "1024", "--alias", alias]))
    # Ctrl-C arrives as SIGINT to pytest after one point was measured (the test sends it to its own process)
    pytester.makepyfile(test_x=MEASURE_ONE + textwrap.dedent("""
        import os, signal

        def test_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)

        def test_never_runs(specgate_measure):
            specgate_measure('sweep', 32)
        """))
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--specgate-config=tiny",
                                      f"--specgate-results={results}", "--specgate-baseline-save=prev")
    out = r.stdout.str()
    assert r.ret == pytest.ExitCode.INTERRUPTED
    [refusal] = lines_with(out, "baseline 'prev' not saved")
    assert refusal.startswith("baseline 'prev' not saved: this run was interrupted (Ctrl-C or SIGTERM)")
    assert unchanged({p: d for p, d in before.items() if p.parent.name == "baselines"}) == []
    latest = load_run(results / "latest.json")
    assert latest.status == "interrupted" and latest.measured()
    assert {m.point for m in latest.measurements if m.samples} == {16}  # test_never_runs started nothing
    assert json.loads((results / "report.json").read_text())["run_id"] == latest.run_id
    assert not servers_with(alias)


def test_second_ctrl_c_while_reports_are_written_leaves_reports_and_latest_in_agreement(
        pytester, server_bin, tiny_gguf, tmp_path, cache_env) -> None:
    """Fault injected in the test's pytest process: a real server cannot time a SIGINT to land while
    report.html is being written, so a conftest sends it from inside that write."""
    results = tmp_path / "results"
    before = trusted_store(results)
    alias = f"dbl-{tmp_path.name}"[-40:]
    pytester.makefile(".toml", specgate=toml_config("tiny", server_bin, tiny_gguf, ["-c", "1024", "--alias", alias]))
    pytester.makeconftest("""
        import os, signal
        from pytest_specgate.report import write

        _real = write.write_atomic

        def _interrupting(path, data):
            if path.name == "report.html":
                os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, mid-way through the reports
            return _real(path, data)

        write.write_atomic = _interrupting
        """)
    pytester.makepyfile(test_x=MEASURE_ONE + textwrap.dedent("""
        import os, signal

        def test_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
        """))
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--specgate-config=tiny",
                                      f"--specgate-results={results}", "--specgate-baseline-save=prev")
    assert r.ret != 0
    latest = load_run(results / "latest.json")
    assert latest.status == "interrupted"
    for name in ("report.json", "benchmark-bigger.json"):
        assert (results / name).read_bytes() != before[results / name], f"{name} was not rewritten"
    assert json.loads((results / "report.json").read_text())["run_id"] == latest.run_id
    assert (results / "report.md").read_text().splitlines()[0].endswith(f"({latest.run_id})")
    assert latest.run_id in (results / "report.html").read_text()
    assert (results / "baselines" / "prev.json").read_bytes() == before[results / "baselines" / "prev.json"]
    assert not list(results.glob(".*.tmp")) and not list(results.glob("**/.*.tmp")), "a half-written temp file"
    assert not servers_with(alias)


def test_store_status_rules_on_finish(tmp_path) -> None:
    """finish() alone: an empty failed run writes runs/ only; a complete run with a budget FAIL is a baseline."""
    results = tmp_path / "results"
    before = trusted_store(results)
    empty = make_run()
    empty.measurements, empty.run_id, empty.status = [], "20260101T130000Z-demo", "failed"
    empty.status_reasons = ["test_decode: llama-server exited before it became ready"]
    out = finish(empty, results, save_name="prev")
    assert out.errors[0].startswith("this run measured nothing (it failed (1 test(s) could not measure, first "
                                    "test_decode)); ")
    assert out.errors[1].startswith("baseline 'prev' not saved: this run failed (1 test(s) could not measure")
    assert unchanged(before) == [] and (results / "runs" / "20260101T130000Z-demo.json").is_file()

    failing = make_run({256: [5.0, 5.1, 4.9, 5.0, 5.2, 5.0, 4.8]})  # decode_tps >= 8 FAILs: still complete
    failing.run_id = "20260101T140000Z-demo"
    out = finish(failing, results, save_name="prev")
    assert out.errors == [] and load_baseline(results, "prev").run_id == failing.run_id


# ------------------------------------------------------------------------------------------------
# 2. secrets: as written, redacted, hashed


def test_secret_flag_values_are_never_written(pytester, server_bin, tiny_gguf, tmp_path, cache_env,
                                              monkeypatch) -> None:
    secret = "hf_SECRETtoken" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
    alias = f"sec-{tmp_path.name}"[-40:]
    monkeypatch.setenv("SPECGATE_TEST_HF_TOKEN", secret)
    monkeypatch.setenv("SPECGATE_TEST_ALIAS", alias)
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    results = tmp_path / "results"
    pytester.makefile(".toml", specgate=toml_config(
        "tiny", server_bin, tiny_gguf, ["-c", "1024", "--hf-token", "${SPECGATE_TEST_HF_TOKEN}",
                                         "--alias", "${SPECGATE_TEST_ALIAS}"]))
    pytester.makepyfile(test_x=MEASURE_ONE)
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--specgate-config=tiny",
                                      f"--specgate-results={results}", "--specgate-samples=2",
                                      f"--basetemp={tmp_path / 'base'}")
    assert r.ret == 0, r.stdout.str()[-3000:]
    leaks = [str(p) for root in (results, tmp_path / "base", summary.parent) for p in root.rglob("*")
             if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == [] and secret not in r.stdout.str() + r.stderr.str()
    logs = list((tmp_path / "base").rglob("llama-server-tiny*.log"))
    assert logs and "--hf-token '<redacted>'" in logs[0].read_text().splitlines()[0]
    args = load_run(results / "latest.json").configs["tiny"].args
    assert args[args.index("--hf-token") + 1] == "<redacted>"
    assert args[args.index("--alias") + 1] == "${SPECGATE_TEST_ALIAS}"  # as written, not expanded
    assert "<redacted>" in (results / "report.md").read_text() and "<redacted>" in summary.read_text()
    assert not servers_with(alias)


def test_redaction_forms_and_hash_only_fingerprint(tmp_path) -> None:
    assert redact_args(["--hf-token", "x", "-hft", "y", "--api-key=z", "--api-key-file", "/k", "-c", "1"]) == [
        "--hf-token", "<redacted>", "-hft", "<redacted>", "--api-key=<redacted>", "--api-key-file", "<redacted>",
        "-c", "1"]
    old, new = make_run().configs["demo"], make_run().configs["demo"]
    old.args_sha256, new.args_sha256 = "a" * 64, "b" * 64
    [line] = fingerprint_changes(old, new)
    assert line.startswith("flags changed: same as written, but a ${VAR} or secret value differs")


def test_api_key_refusal_says_what_really_happens(server_bin, tmp_path) -> None:
    path = tmp_path / "specgate.toml"
    path.write_text(f'[configs.k]\nbinary = "{server_bin}"\nmodel = "m.gguf"\nargs = ["--api-key", "k"]\n')
    cfg = load(path).configs["k"]
    [problem] = preflight.check_args(cfg, preflight.binary_help(server_bin), server_bin)
    assert "set by specgate" not in problem
    assert "--api-key makes llama-server answer 401" in problem and "Fix: remove --api-key from args" in problem


# ------------------------------------------------------------------------------------------------
# 3. config: extends with repeatable flags, workload values


def test_extends_child_repeatable_flags_replace_every_parent_occurrence() -> None:
    parent = ["-ot", "a", "-c", "4096", "--override-tensor", "b", "--lora", "p1", "--lora", "p2",
              "--override-kv", "k=int:1", "-t", "2"]
    child = ["-ot", "c", "-ot", "d", "--lora", "p3", "--override-kv", "k=int:2", "--override-kv", "j=int:3"]
    assert merge_args(parent, child, []) == ["-ot", "c", "-ot", "d", "-c", "4096", "--lora", "p3",
                                             "--override-kv", "k=int:2", "--override-kv", "j=int:3", "-t", "2"]
    assert merge_args(parent, ["-c", "8192"], ["--lora", "--override-tensor"]) == [
        "-c", "8192", "--override-kv", "k=int:1", "-t", "2"]


@pytest.mark.parametrize(("key", "value", "first"), [
    ("samples", "0", "key 'configs.k.workloads.samples': Input should be greater than or equal to 1. "
                     "Fix: set it within that range (the default is samples = 5)."),
    ("confidence", "1.5", "key 'configs.k.workloads.confidence': Input should be less than 1. "
                          "Fix: set it within that range (the default is confidence = 0.95)."),
    ("warmup", "-3", "key 'configs.k.workloads.warmup': Input should be greater than or equal to 0."),
    ("ab_loads", "2", "key 'configs.k.workloads.ab_loads': Input should be greater than or equal to 4."),
    ("ab_loads", "6", "key 'configs.k.workloads': Value error, ab_loads (6) is not a multiple of 4; the upgrade"),
    ("ab_loads", "28", "key 'configs.k.workloads': Value error, ab_samples (12) cannot fill 14 blocks a side"),
    ("request_timeout", "0", "key 'configs.k.workloads.request_timeout': Input should be greater than 0."),
])
def test_workload_values_are_validated(tmp_path, key, value, first) -> None:
    path = tmp_path / "specgate.toml"
    path.write_text(f'[configs.k]\nbinary = "b"\nmodel = "m"\nworkloads = {{ {key} = {value} }}\n')
    with pytest.raises(SpecgateConfigError) as e:
        load(path)
    assert str(e.value).splitlines()[0].startswith(f"{path}: {first}")


def test_request_extras_may_not_override_what_a_workload_sets(tmp_path) -> None:
    path = tmp_path / "specgate.toml"
    path.write_text('[configs.k]\nbinary = "b"\nmodel = "m"\nrequest_extras = { max_tokens = 5 }\n')
    with pytest.raises(SpecgateConfigError, match=r"key 'configs.k.request_extras': .*max_tokens is set by each"):
        load(path)


# ------------------------------------------------------------------------------------------------
# 4. inputs that crashed with INTERNALERROR or a raw errno


@pytest.mark.parametrize("value", ["abc", "0", "-2"])
def test_samples_option_that_is_not_a_count_is_a_usage_error(pytester, value) -> None:
    pytester.makepyfile(test_x="def test_nothing():\n    pass\n")
    r = pytester.runpytest_subprocess(f"--specgate-samples={value}")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    err = [line for line in r.stderr.lines if line.strip()]
    assert err[0] == (f"ERROR: --specgate-samples {value!r} is not a whole number of samples >= 1. Fix: pass a "
                      f"count such as --specgate-samples=5, or leave it out for adaptive sampling.")
    assert "INTERNALERROR" not in r.stdout.str() + r.stderr.str()


def gguf_with_string_length(path: Path, length: int) -> Path:
    header = struct.pack("<IIQQ", GGUF_MAGIC, 3, 0, 1) + struct.pack("<Q", length) + b"general.architecture"
    path.write_bytes(header + b"\0" * 64)
    return path


def test_gguf_with_an_absurd_string_length_is_not_a_readable_gguf(tmp_path) -> None:
    path = gguf_with_string_length(tmp_path / "damaged.gguf", 1 << 62)
    with pytest.raises(NotGGUF, match="runs past the end of the file"):
        read_header(path)
    with pytest.raises(PreflightError) as e:
        preflight.model_facts(path)
    assert str(e.value).splitlines()[0] == (
        f"{path} is not a readable GGUF file (the header ends early: a string length of {1 << 62} bytes at offset "
        f"24 runs past the end of the file). Fix: point `model` at a .gguf file, or re-download / re-assemble it.")


def test_results_dir_that_is_a_file_is_one_line_and_left_alone(tmp_path) -> None:
    blocker = tmp_path / ".specgate"
    blocker.write_text("not a directory\n")
    out = finish(make_run(), blocker)
    assert out.failed and out.errors == [
        f"{blocker} exists but is a file, not a directory, so results cannot be stored there. "
        f"Fix: move it aside (mv {blocker} {blocker}.bak) or pass --specgate-results DIR."]
    assert blocker.read_text() == "not a directory\n"


def test_unreadable_baseline_fix_points_at_a_directory_that_exists(tmp_path) -> None:
    results = tmp_path / "results"
    (results / "baselines").mkdir(parents=True)
    (results / "baselines" / "prev.json").write_text("{garbage")
    with pytest.raises(ResultsError) as e:
        load_baseline(results, "prev")
    first = str(e.value).splitlines()[0]
    assert "Fix: restore it from version control or a backup (or re-create baseline 'prev' with " \
           "--specgate-baseline-save prev on a run you trust)" in first
    (results / "runs").mkdir()
    with pytest.raises(ResultsError) as e:
        load_baseline(results, "prev")
    assert f"Fix: restore it from a copy in {results / 'runs'}/ or version control" in str(e.value)
    assert (results / "baselines" / "prev.json").read_text() == "{garbage"


# ------------------------------------------------------------------------------------------------
# 5. provisioning: the build's smoke test is a real decode


def test_smoke_test_decodes_with_the_pinned_build(server_bin, tiny_gguf, tmp_path) -> None:
    seen: list[str] = []
    seconds = smoke_decode(server_bin, tiny_gguf, tmp_path / "smoke.log", seen.append)
    assert seconds > 0 and seen == [f"llama.cpp: smoke test decoded {SMOKE_TOKENS} tokens of synthetic-tiny.gguf "
                                    f"in {seconds:.1f} s"]
    assert "smoke test" not in (tmp_path / "smoke.log").read_text()  # the server's own log, kept for a failure


def test_smoke_test_refuses_a_build_that_dies_on_its_first_decode(tiny_gguf, tmp_path) -> None:
    """Fake server: a real llama-server cannot be made to SIGSEGV on its first decode on demand (the AMX
    bug needs an AMX CPU and a native build), so a stand-in answers /health and dies with SIGSEGV on a decode."""
    fake = tmp_path / "llama-server"
    fake.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import http.server, os, signal, sys
        port = int(sys.argv[sys.argv.index("--port") + 1])
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b'{{"status":"ok"}}')
            def do_POST(self):
                os.kill(os.getpid(), signal.SIGSEGV)
        http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
        """))
    fake.chmod(0o755)
    with pytest.raises(PreflightError) as e:
        smoke_decode(fake, tiny_gguf, tmp_path / "smoke.log", lambda _: None)
    first = str(e.value).splitlines()[0]
    assert first.startswith("llama.cpp build: the smoke test (a 4-token decode of synthetic-tiny.gguf) failed: "
                            "llama-server died while decoding (killed by SIGSEGV")
    assert "This build gets no manifest. Fix: " in first
    assert f"log: {tmp_path / 'smoke.log'}" in str(e.value)
