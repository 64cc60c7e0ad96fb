"""Tool-call integrity: the report found tool calls survive every swap bit-for-bit while prose drifts.

The tool-call output (name, arguments, finish_reason, shape) is snapshot-tested with syrupy in one
file per config, ``snapshots/<config>/test_tool_calls.ambr`` (or under ``--specgate-snapshot-dir``), so
configs keep their entries side by side and a run of one config never touches another's. A config
with a ``reference`` must produce its reference's tool call (speculation must not change one), so it
is compared, read-only, with the reference's entries. The random call ids are matched by type.
Record or update a config's entries deliberately, after reviewing the diff:
``pytest suites/ -m quick --specgate-config=NAME --snapshot-update``.
"""

import json

import pytest

from pytest_specgate import (
    config_extension,
    reference_mismatch,
    tool_call_markers,
    tool_call_matcher,
    tool_call_record,
    workloads,
)


@pytest.mark.quick
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_tool_call_snapshot(specgate_client, specgate_config, specgate_gate, snapshot, stream):
    if not specgate_config.expect_tool_calls:
        pytest.skip(f"config {specgate_config.name!r} sets expect_tool_calls = false (its model does not call "
                    f"tools on demand, e.g. random weights)")
    props = specgate_client.props()
    if not props.get("chat_template_caps", {}).get("supports_tool_calls"):
        pytest.fail(
            f"config {specgate_config.name!r}: the server's chat template cannot emit tool calls "
            f"(/props chat_template_caps.supports_tool_calls is false). Fix: pass a tool-capable template with "
            f"chat_template_file, or set expect_tool_calls = false.", pytrace=False)
    wl = specgate_config.workloads
    body = workloads.body("tool-call", seed=wl.seed, tag=None, extras=specgate_config.request_extras)
    sample = specgate_client.chat(body, workload="tool-call", stream=stream)
    record = tool_call_record(sample)
    assert sample.finish_reason == "tool_calls", f"expected finish_reason 'tool_calls', got {record}"
    for call in sample.tool_calls:
        json.loads(call.arguments)  # arguments must be valid JSON
    # the markup the server should have parsed into tool_calls, as the template in use writes it
    template = props.get("chat_template_tool_use") or props.get("chat_template") or ""
    leaked = [m for m in tool_call_markers(template) if m in sample.content]
    assert not leaked, f"tool-call markup {leaked} leaked into content: {sample.content!r}"
    root = specgate_gate.options.snapshot_root
    kind = "stream" if stream else "non-stream"
    calls = f"{', '.join(c.name for c in sample.tool_calls) or 'no call'}, finish_reason {sample.finish_reason}"
    if specgate_config.reference:
        # read-only: --snapshot-update under a candidate never writes into its reference's entries
        mismatch = reference_mismatch(snapshot, record, config=specgate_config.name,
                                      reference=specgate_config.reference, root=root, matcher=tool_call_matcher)
        specgate_gate.notes.append(f"{specgate_config.name}: tool-call snapshot [{specgate_config.reference}] ({kind}):"
                                   f" {'DIFFERS' if mismatch else 'matches'}; {calls}")
        if mismatch:
            pytest.fail(mismatch, pytrace=False)
        return
    verdict = "DIFFERS"
    try:
        assert record == snapshot.use_extension(config_extension(specgate_config.name, root))(matcher=tool_call_matcher)
        verdict = "matches"
    finally:
        specgate_gate.notes.append(f"{specgate_config.name}: tool-call snapshot [{specgate_config.name}] ({kind}): "
                                   f"{verdict}; {calls}")
