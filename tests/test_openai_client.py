"""A real client against the gate's server: the official ``openai`` SDK, stream and non-stream, with tools.

The gate's tool-call check is only worth something if what it sends is what users' clients send. So
this drives the demo config's running llama-server (the ``specgate_server`` fixture's URL, as a
suite author would) with the SDK: plain OpenAI arguments, plus exactly the config's declared
``request_extras`` (``parallel_tool_calls`` is an SDK argument; the llama.cpp-specific
``chat_template_kwargs`` goes through ``extra_body``), and parses the tool call with the SDK's own
types. It also shows why the demo config declares those extras: without them the small Gemma makes
no tool call at all.

One pytest process for all cases (one model load); slow: it needs the demo model.
"""

from __future__ import annotations

import textwrap

import pytest

from conftest import REPO, servers_with

pytest.importorskip("openai")
pytestmark = pytest.mark.slow

SUITE = textwrap.dedent('''
    """A suite author's own check: the openai SDK against the gate's running server."""
    import json

    import openai
    import pytest

    from pytest_specgate import workloads


    @pytest.fixture
    def sdk(specgate_server):
        """An SDK client on the fixture's URL (the server is started once per session and reused)."""
        client = openai.OpenAI(base_url=f"{specgate_server.server.url}/v1", api_key="unused", max_retries=0,
                               timeout=120)
        yield client
        client.close()


    def call_args(specgate_config, extras):
        """The tool-call workload as SDK arguments: OpenAI fields as such, the rest as extra_body."""
        body = workloads.body("tool-call", seed=specgate_config.workloads.seed, tag=None, extras=extras)
        known = {"messages", "tools", "tool_choice", "temperature", "seed", "max_tokens", "parallel_tool_calls"}
        extra_body = {k: v for k, v in body.items() if k not in known}
        return {**{k: v for k, v in body.items() if k in known}, "extra_body": extra_body or None}


    def test_non_stream_tool_call(sdk, specgate_config):
        r = sdk.chat.completions.create(model="demo", **call_args(specgate_config, specgate_config.request_extras))
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        [call] = choice.message.tool_calls
        assert call.type == "function" and call.function.name == "get_weather"
        assert json.loads(call.function.arguments)["location"] == "Paris"
        assert call.id


    def test_stream_tool_call(sdk, specgate_config):
        stream = sdk.chat.completions.create(model="demo", stream=True,
                                             **call_args(specgate_config, specgate_config.request_extras))
        names, arguments, ids, finish = {}, {}, {}, None
        for chunk in stream:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                if delta.id:
                    ids[delta.index] = delta.id
                if delta.function and delta.function.name:
                    names[delta.index] = names.get(delta.index, "") + delta.function.name
                if delta.function and delta.function.arguments:
                    arguments[delta.index] = arguments.get(delta.index, "") + delta.function.arguments
        assert finish == "tool_calls"
        assert list(names.values()) == ["get_weather"] and ids
        assert json.loads(arguments[0])["location"] == "Paris"


    def test_plain_openai_request_gets_no_tool_call_from_the_small_demo_model(sdk, specgate_config):
        """Why the demo config declares request_extras: the plain request makes Gemma 270M call no tool."""
        r = sdk.chat.completions.create(model="demo", **call_args(specgate_config, {}))
        assert not r.choices[0].message.tool_calls and r.choices[0].finish_reason == "length"


    def test_without_parallel_tool_calls_false_the_call_repeats(sdk, specgate_config):
        extras = {k: v for k, v in specgate_config.request_extras.items() if k != "parallel_tool_calls"}
        r = sdk.chat.completions.create(model="demo", **call_args(specgate_config, extras))
        calls = r.choices[0].message.tool_calls or []
        assert len(calls) > 1 and {c.function.name for c in calls} == {"get_weather"}
        assert r.choices[0].finish_reason == "length"
''')


def test_openai_sdk_drives_the_demo_server_stream_and_non_stream_with_tools(pytester, demo_gguf, tmp_path,
                                                                          monkeypatch) -> None:
    # pytester moves HOME: keep the provisioned cache (<cache>/models/<demo>.gguf)
    monkeypatch.setenv("SPECGATE_CACHE", str(demo_gguf.parent.parent))
    alias = f"sdk-{tmp_path.name}"[-40:]
    cfg = (REPO / "specgate.toml").read_text()
    marker = 'args = ["-t", "2", "-np", "1", "-c", "4096"]'
    assert marker in cfg
    pytester.makefile(".toml", specgate=cfg.replace(marker, f'args = ["-t", "2", "-np", "1", "-c", "4096", '
                                                           f'"--alias", "{alias}"]'))
    pytester.makepyfile(test_sdk=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--specgate-config=demo",
                                           f"--specgate-results={tmp_path / 'results'}", "-q", timeout=600)
    result.assert_outcomes(passed=4)
    assert not servers_with(alias), "a llama-server outlived the run"
