"""Tool-call integrity: the report found tool calls survive every swap bit-for-bit while prose drifts.

The tool-call output (name, arguments, finish_reason, shape) is snapshot-tested with syrupy, per
config (a config with a `reference` shares its reference's snapshot: speculation must not change a
tool call); the random call ids are matched by type. Update snapshots deliberately with
`pytest suites/ --specgate-config=NAME --snapshot-update` after reviewing the diff.
"""

import json

import pytest

from pytest_specgate import tool_call_matcher, tool_call_record, workloads


@pytest.mark.quick
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_tool_call_snapshot(specgate_client, specgate_config, specgate_gate, snapshot, stream):
    caps = specgate_client.props().get("chat_template_caps", {})
    if not caps.get("supports_tool_calls"):
        if not specgate_config.expect_tool_calls:
            pytest.skip(f"config {specgate_config.name!r} sets expect_tool_calls = false")
        pytest.fail(
            f"config {specgate_config.name!r}: the server's chat template cannot emit tool calls "
            f"(/props chat_template_caps.supports_tool_calls is false). Fix: pass a tool-capable template with "
            f"chat_template_file, or set expect_tool_calls = false.", pytrace=False)
    wl = specgate_config.workloads
    body = workloads.body("tool-call", seed=wl.seed, tag=None)
    sample = specgate_client.chat(body, workload="tool-call", stream=stream)
    record = tool_call_record(sample)
    assert sample.finish_reason == "tool_calls", f"expected finish_reason 'tool_calls', got {record}"
    for call in sample.tool_calls:
        json.loads(call.arguments)  # arguments must be valid JSON
    assert "<tool_call>" not in sample.content, f"tool-call markup leaked into content: {sample.content!r}"
    # a config with a reference must produce its reference's tool call (the report: tool calls survive
    # every speculative swap), so it is compared with the reference's snapshot
    name = specgate_config.reference or specgate_config.name
    verdict = "DIFFERS"
    try:
        assert record == snapshot(name=name, matcher=tool_call_matcher)
        verdict = "matches"
    finally:
        specgate_gate.notes.append(
            f"{specgate_config.name}: tool-call snapshot [{name}] ({'stream' if stream else 'non-stream'}): {verdict}; "
            f"{', '.join(c.name for c in sample.tool_calls) or 'no call'}, finish_reason {sample.finish_reason}")
