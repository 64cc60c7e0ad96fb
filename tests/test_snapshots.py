"""Per-config tool-call snapshots: configs side by side, a reference compared read-only, markers from the template.

The mechanics are tested with pytester on fixed records (no server: which config runs and what it
"answers" come from the environment), because what matters is syrupy's bookkeeping across runs of
different configs: unused entries, ``--snapshot-update``, ``--co``. The slow test then runs the
shipped ``suites/test_tool_calls.py`` on the real demo model under three configs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO
from pytest_specgate import tool_call_markers

DATA = REPO / "pytest_specgate" / "data"

#: a stand-in for the suite: the config and the city the "model" answers come from the environment
SUITE = '''
import os, pytest
from pytest_specgate import config_extension, reference_mismatch, tool_call_matcher

CONFIG, REFERENCE, CITY = os.environ["CFG"], os.environ.get("REF"), os.environ.get("CITY", "Paris")

@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_tool_call_snapshot(snapshot, stream):
    record = {"finish_reason": "tool_calls",
              "tool_calls": [{"id": os.urandom(8).hex(), "name": "get_weather", "arguments": {"location": CITY}}]}
    if REFERENCE:
        mismatch = reference_mismatch(snapshot, record, config=CONFIG, reference=REFERENCE, matcher=tool_call_matcher)
        if mismatch:
            pytest.fail(mismatch, pytrace=False)
        return
    assert record == snapshot.use_extension(config_extension(CONFIG))(matcher=tool_call_matcher)

def test_decode():
    pass
'''


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, config: str, *args: str, city: str = "Paris",
        reference: str | None = None) -> pytest.RunResult:
    monkeypatch.setenv("CFG", config)
    monkeypatch.setenv("CITY", city)
    if reference:
        monkeypatch.setenv("REF", reference)
    else:
        monkeypatch.delenv("REF", raising=False)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def snap(pytester: pytest.Pytester, config: str) -> Path:
    return pytester.path / "snapshots" / config / "test_tool_calls.ambr"


def test_configs_side_by_side_and_a_change_fails_only_its_config(pytester: pytest.Pytester,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_tool_calls=SUITE)
    assert run(pytester, monkeypatch, "demo", "--snapshot-update").ret == 0
    demo_bytes = snap(pytester, "demo").read_bytes()
    assert b"'location': 'Paris'" in demo_bytes and b"'id': str" in demo_bytes
    assert run(pytester, monkeypatch, "other", "--snapshot-update", city="Lyon").ret == 0
    assert snap(pytester, "demo").read_bytes() == demo_bytes  # the update touched only its own config
    for config, city in (("demo", "Paris"), ("other", "Lyon"), ("demo", "Paris")):
        result = run(pytester, monkeypatch, config, city=city)
        assert result.ret == 0, result.stdout.str()
        result.assert_outcomes(passed=3)
        assert "unused" not in result.stdout.str()
    collect = run(pytester, monkeypatch, "demo", "--co")
    assert collect.ret == 0 and "unused" not in collect.stdout.str()
    # a tool-call change under `other` fails `other` only
    changed = run(pytester, monkeypatch, "other", city="Nice")
    assert changed.ret == 1
    changed.assert_outcomes(passed=1, failed=2)
    assert "'location': 'Nice'" in changed.stdout.str()
    assert run(pytester, monkeypatch, "demo", city="Paris").ret == 0
    # a deselected snapshot test is not "unused" either
    assert run(pytester, monkeypatch, "demo", "-k", "decode").ret == 0


def test_reference_is_compared_read_only(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_tool_calls=SUITE)
    assert run(pytester, monkeypatch, "plain", "--snapshot-update").ret == 0
    plain_bytes = snap(pytester, "plain").read_bytes()
    same = run(pytester, monkeypatch, "spec", reference="plain")
    assert same.ret == 0, same.stdout.str()
    for extra in ((), ("--snapshot-update",)):
        result = run(pytester, monkeypatch, "spec", *extra, city="Nice", reference="plain")
        assert result.ret == 1, result.stdout.str()
        out = result.stdout.str()
        assert "config 'spec' makes a different tool call than its reference 'plain'" in out
        assert "--specgate-config=plain --snapshot-update" in out
        assert snap(pytester, "plain").read_bytes() == plain_bytes  # never written, not even under --snapshot-update
        assert not (pytester.path / "snapshots" / "spec").exists()
    missing = run(pytester, monkeypatch, "spec", reference="nobody")
    assert missing.ret == 1
    assert "its reference 'nobody', which has no entry" in missing.stdout.str()
    assert "Fix: record the reference's tool call first" in missing.stdout.str()


@pytest.mark.parametrize(("template", "expected"), [
    ((DATA / "tool-chat-template.jinja").read_text(), ["</tool_call>", "<tool_call>"]),
    ((DATA / "qwen35-chat-template.jinja").read_text(), ["</tool_call>", "<function=", "<tool_call>"]),
    ("{{- '<|python_tag|>' + tool_call.name }}", ["<|python_tag|>"]),
    ("{{- '[TOOL_CALLS]' + tool_calls | tojson }}", ["[TOOL_CALLS]"]),
    ("{{ '<｜tool▁calls▁begin｜>' }}{{ '<｜tool▁call▁end｜>' }}", ["<｜tool▁calls▁begin｜>", "<｜tool▁call▁end｜>"]),
    ("{{ '<tool_call' ~ suffix ~ '>' }}{{ '<tool_call>' }}", ["<tool_call"]),
    ("{{ '<start_of_turn>model\\n' }}<tool_response>", []),
], ids=["shipped-tool-template", "qwen35", "llama3", "mistral", "deepseek", "concatenated", "no-tool-calls"])
def test_leak_markers_come_from_the_template(template: str, expected: list[str]) -> None:
    assert tool_call_markers(template) == expected


@pytest.mark.slow
def test_shipped_suite_demo_then_another_config_then_demo(pytester: pytest.Pytester, demo_gguf: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The real suite on the demo model: demo, a second config recording its own entries, demo again;
    then a speculative config (demo-ngram) compared with demo's entries, read-only."""
    monkeypatch.setenv("SPECGATE_CACHE", str(demo_gguf.parent.parent))  # pytester moves HOME
    shutil.copy(REPO / "suites" / "test_tool_calls.py", pytester.path)
    shutil.copytree(REPO / "suites" / "snapshots" / "demo", pytester.path / "snapshots" / "demo")
    toml = (REPO / "specgate.toml").read_text() + '\n[configs.demo-c2048]\nextends = "demo"\nargs = ["-c", "2048"]\n'
    (pytester.path / "specgate.toml").write_text(toml)
    demo_bytes = snap(pytester, "demo").read_bytes()

    def suite(config: str, *args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-m", "quick", f"--specgate-config={config}", "-p", "no:cacheprovider",
                                             f"--specgate-results-dir={pytester.path / 'results'}", *args,
                                             timeout=900)

    assert suite("demo").ret == 0
    assert suite("demo-c2048", "--snapshot-update").ret == 0
    assert snap(pytester, "demo-c2048").is_file()
    for config in ("demo-c2048", "demo"):
        result = suite(config)
        assert result.ret == 0, result.stdout.str()
        assert "unused" not in result.stdout.str()
    assert suite("demo-ngram", "--snapshot-update").ret == 0
    assert snap(pytester, "demo").read_bytes() == demo_bytes
    # a tool-call change under demo-c2048 (its stored call edited) fails that config only
    edited = snap(pytester, "demo-c2048")
    edited.write_text(edited.read_text().replace("'Paris'", "'Lyon'"))
    changed = suite("demo-c2048")
    assert changed.ret == 1 and "2 snapshots failed" in changed.stdout.str()
    assert suite("demo").ret == 0
