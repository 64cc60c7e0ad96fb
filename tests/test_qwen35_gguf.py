"""Synthetic GGUFs of the production architecture: what is written, and that the pinned server serves it.

The fast tests read the files back with ``gguf.GGUFReader``. The slow ones start the real pinned
llama-server (skipped with the reason when it is not built) on the tiny ``qwen35`` target, plain, with
its MTP head and with the DFlash drafter, using the production flag set of the field report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import httpx
import numpy as np
import pytest

from pytest_specgate.errors import PreflightError, ServerError
from pytest_specgate.provision.llama_cpp import manifest_path, reusable_build
from pytest_specgate.provision.qwen35 import (
    DFLASH_TARGET_LAYERS,
    TINY_QWEN35,
    chat_template,
    dflash_pair_problem,
    dflash_plan,
    write_dflash_drafter,
    write_qwen35_mtp,
)
from pytest_specgate.provision.shapes import (
    SHAPES,
    Shape,
    byte_level_vocab,
    load_shapes,
    plan_nbytes,
    tensor_plan,
    write_shaped,
)
from pytest_specgate.server.process import LlamaServer

# The field report's MTP flag set, run as written (plus CPU-sized context and threads).
MTP_ARGS = ["--spec-type", "draft-mtp", "--spec-draft-n-max", "6", "--spec-draft-p-min", "0.75"]
COMMON_ARGS = [
    "--reasoning-budget",
    "256",
    "-fa",
    "on",
    "-ctk",
    "q4_0",
    "-ctv",
    "q4_0",
    "--jinja",
    "-c",
    "4096",
    "-t",
    "2",
    "-np",
    "1",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen35")
    return {
        "target": write_qwen35_mtp(root / "target.gguf"),
        "drafter": write_dflash_drafter(root / "drafter.gguf"),
        "drafter_bad_vocab": write_dflash_drafter(root / "drafter-bad.gguf", n_vocab=TINY_QWEN35.n_vocab + 512),
    }


def _tensors(path: Path) -> dict[str, tuple[tuple[int, ...], gguf.GGMLQuantizationType]]:
    reader = gguf.GGUFReader(path)
    return {t.name: (tuple(int(x) for x in t.shape), t.tensor_type) for t in reader.tensors}


def _field(path: Path, key: str) -> object:
    field = gguf.GGUFReader(path).get_field(key)
    assert field is not None, key
    return field.contents()


def test_target_has_every_tensor_of_the_hybrid_trunk_and_the_mtp_block(models: dict[str, Path]) -> None:
    got = _tensors(models["target"])
    assert got == {t.name: (t.ne, t.dtype) for t in tensor_plan(TINY_QWEN35)}
    # layers 0-2: Gated DeltaNet; layer 3: gated full attention; layer 4: the NextN block
    for il in (0, 1, 2):
        for name in (
            "attn_qkv.weight",
            "attn_gate.weight",
            "ssm_conv1d.weight",
            "ssm_dt.bias",
            "ssm_a",
            "ssm_beta.weight",
            "ssm_alpha.weight",
            "ssm_norm.weight",
            "ssm_out.weight",
        ):
            assert f"blk.{il}.{name}" in got
        assert f"blk.{il}.attn_q.weight" not in got
    e, hd = TINY_QWEN35.n_embd, TINY_QWEN35.head_dim
    assert got["blk.3.attn_q.weight"][0] == (e, 2 * hd * TINY_QWEN35.n_head)  # query + output gate
    assert got["blk.4.nextn.eh_proj.weight"][0] == (2 * e, e)
    for name in ("enorm", "hnorm", "shared_head_norm"):
        assert f"blk.4.nextn.{name}.weight" in got
    assert _field(models["target"], "general.architecture") == "qwen35"
    assert _field(models["target"], "qwen35.block_count") == 5
    assert _field(models["target"], "qwen35.nextn_predict_layers") == 1
    assert _field(models["target"], "qwen35.rope.dimension_sections") == [3, 3, 2, 0]


def test_weights_are_finite_and_norms_are_one(models: dict[str, Path]) -> None:
    for t in gguf.GGUFReader(models["target"]).tensors:
        data = np.asarray(t.data, dtype=np.float32)
        assert np.isfinite(data).all(), t.name
        if "norm" in t.name:
            assert (data == 1).all(), t.name
        if t.name.endswith("ssm_a"):
            assert (data < 0).all(), t.name


def test_vocabulary_is_byte_level_with_qwen_specials_and_the_qwen36_template(models: dict[str, Path]) -> None:
    path = models["target"]
    tokens = _field(path, "tokenizer.ggml.tokens")
    assert isinstance(tokens, list) and len(tokens) == TINY_QWEN35.n_vocab
    assert _field(path, "tokenizer.ggml.model") == "gpt2"
    assert _field(path, "tokenizer.ggml.pre") == "qwen35"
    for special in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>"):
        assert special in tokens
    eos = _field(path, "tokenizer.ggml.eos_token_id")
    assert isinstance(eos, int) and tokens[eos] == "<|im_end|>"
    template = _field(path, "tokenizer.chat_template")
    assert template == chat_template()
    # what common/chat.cpp looks for to pick the Qwen3-Coder XML tool-call parser
    for marker in ("<tool_call>", "<function=", "<parameter=", "<think>"):
        assert marker in chat_template()


def test_drafter_matches_the_target_and_borrows_its_embeddings(models: dict[str, Path]) -> None:
    path = models["drafter"]
    got = _tensors(path)
    assert got == {t.name: (t.ne, t.dtype) for t in dflash_plan()}
    assert "token_embd.weight" not in got and "output.weight" not in got
    assert got["fc.weight"][0] == (len(DFLASH_TARGET_LAYERS) * TINY_QWEN35.n_embd, TINY_QWEN35.n_embd)
    assert _field(path, "general.architecture") == "dflash"
    assert _field(path, "dflash.target_layers") == list(DFLASH_TARGET_LAYERS)
    assert _field(path, "dflash.block_size") == 16
    tokens = _field(path, "tokenizer.ggml.tokens")
    assert tokens == _field(models["target"], "tokenizer.ggml.tokens")
    assert tokens[_field(path, "tokenizer.ggml.mask_token_id")] == "<|mask|>"  # type: ignore[index]
    assert len(_field(models["drafter_bad_vocab"], "tokenizer.ggml.tokens")) != len(tokens)  # type: ignore[arg-type]


def test_writes_are_idempotent_and_leave_no_temp_files(tmp_path: Path) -> None:
    path = write_qwen35_mtp(tmp_path / "t.gguf")
    before = path.stat().st_mtime_ns
    assert write_qwen35_mtp(tmp_path / "t.gguf") == path
    assert path.stat().st_mtime_ns == before  # current file kept
    data = path.read_bytes()
    write_qwen35_mtp(tmp_path / "t.gguf", seed=7)  # another recipe: rewritten
    assert path.read_bytes() != data
    write_qwen35_mtp(tmp_path / "u.gguf")
    assert (tmp_path / "u.gguf").read_bytes() == data  # deterministic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.gguf", "u.gguf"]


def test_quantized_blocks_dequantize_to_finite_small_weights(tmp_path: Path) -> None:
    """Q4_K_M mix (Q4_K + Q6_K) and Q8_0: the random blocks' fp16 scales are valid numbers."""
    q4km = Shape(
        name="q4km-toy",
        arch="qwen35",
        n_layer=4,
        n_embd=256,
        n_ff=512,
        n_head=2,
        n_head_kv=1,
        head_dim=128,
        n_vocab=512,
        ftype="Q4_K_M",
        rope_fraction=0.25,
        nextn_layers=1,
        linear_head_dim=64,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
    )
    seen: set[str] = set()
    for shape in (q4km, SHAPES["tiny-qwen3"]):
        path = write_shaped(tmp_path / f"{shape.name}.gguf", shape)
        for t in gguf.GGUFReader(path).tensors:
            seen.add(t.tensor_type.name)
            values = gguf.quants.dequantize(t.data, t.tensor_type)
            assert np.isfinite(values).all(), t.name
            assert np.abs(values).max() < 8, t.name
    assert {"Q4_K", "Q6_K", "Q8_0", "F32"} <= seen


def test_production_plan_has_the_27b_shape_and_size_without_writing_it() -> None:
    """Qwen3.6-27B Q4_K_M: 64 layers (48 DeltaNet + 16 attention) + 1 MTP, ~16.8 GB like the real file."""
    shape = SHAPES["qwen3.6-27b-q4_k_m"]
    plan = tensor_plan(shape)
    names = {t.name: t for t in plan}
    assert sum(1 for n in names if n.endswith("ssm_out.weight")) == 48
    assert sum(1 for n in names if n.endswith("attn_q.weight")) == 17  # 16 trunk + the MTP block
    assert names["blk.64.nextn.eh_proj.weight"].ne == (10240, 5120)
    assert names["blk.0.attn_qkv.weight"].ne == (5120, 2 * 16 * 128 + 48 * 128)
    assert names["blk.3.attn_q.weight"].ne == (5120, 2 * 24 * 256)
    assert names["output.weight"].dtype == gguf.GGMLQuantizationType.Q6_K
    assert names["token_embd.weight"].ne == (5120, 248320)
    n_params = sum(int(np.prod(t.ne)) for t in plan)
    assert 27.0e9 < n_params < 27.6e9
    size = plan_nbytes(plan)
    assert size == 16_799_719_424  # exact: a change in the plan must be deliberate
    assert 4.8 < size * 8 / n_params < 5.0  # Q4_K_M's usual bits per weight


def test_user_shapes_load_from_json_and_toml_and_bad_ones_fail_in_one_line(tmp_path: Path) -> None:
    entry = SHAPES["tiny-qwen3"].model_dump()
    entry["name"] = "mine"
    (tmp_path / "s.json").write_text(json.dumps([entry]))
    assert load_shapes(tmp_path / "s.json")["mine"].n_embd == 256
    toml = "[[shape]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
    (tmp_path / "s.toml").write_text(toml)
    assert load_shapes(tmp_path / "s.toml")["mine"] == load_shapes(tmp_path / "s.json")["mine"]
    entry["n_heads"] = 4
    (tmp_path / "bad.json").write_text(json.dumps([entry]))
    with pytest.raises(PreflightError) as exc:
        load_shapes(tmp_path / "bad.json")
    assert "n_heads" in str(exc.value) and "\n" not in str(exc.value)


def test_vocab_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="n_vocab"):
        byte_level_vocab(100)


# ---------------------------------------------------------------------------------------------
# the real server


@pytest.fixture(scope="module")
def server_binary() -> Path:
    build = reusable_build(manifest_path())
    if build is None:
        pytest.skip("the pinned llama-server is not built; run `specgate provision` (make setup) first")
    return build.binaries["llama-server"]


def _chat(server: LlamaServer, **extra: object) -> dict[str, object]:
    body = {
        "messages": [{"role": "user", "content": "Write a linked list class in Python."}],
        "max_tokens": 96,
        "temperature": 0,
        "seed": 42,
        **extra,
    }
    r = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=600)  # a shared 2-core box can crawl
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _serve(tmp_path: Path, binary: Path, model: Path, name: str, args: list[str],
           env: dict[str, str] | None = None) -> LlamaServer:
    return LlamaServer(name, binary, model, args + COMMON_ARGS, {**os.environ, **(env or {})}, tmp_path,
                       startup_timeout=120)


def _dflash_args(drafter: Path) -> list[str]:
    return ["--spec-type", "draft-dflash", "-md", str(drafter), "--spec-draft-n-max", "6", "--spec-draft-p-min", "0.75"]


def _n_tokens(server: LlamaServer, text: str) -> int:
    r = httpx.post(f"{server.url}/tokenize", json={"content": text}, timeout=30)
    r.raise_for_status()
    return len(r.json()["tokens"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "mtp", "dflash"])
def test_server_serves_each_mode_with_the_production_flags(
    mode: str, models: dict[str, Path], server_binary: Path, tmp_path: Path
) -> None:
    """Drafts > 0 under draft-mtp and draft-dflash, none without; the reasoning budget closes <think>."""
    spec = {"plain": [], "mtp": MTP_ARGS, "dflash": _dflash_args(models["drafter"])}[mode]
    with _serve(tmp_path, server_binary, models["target"], f"qwen35-{mode}", spec) as server:
        out = _chat(server, max_tokens=320)
        timings = out["timings"]
        assert isinstance(timings, dict)
        assert timings["predicted_n"] == 320  # the random head never picks an end-of-generation token
        if mode == "plain":
            assert "draft_n" not in timings
        else:
            assert timings["draft_n"] > 0, f"no drafts under {mode}: {timings}"
        message = out["choices"][0]["message"]  # type: ignore[index]
        # the template opens <think>; the random model never closes it, --reasoning-budget 256 does
        assert _n_tokens(server, message["reasoning_content"]) == 256
        assert message["content"]
        server.check_alive()


@pytest.mark.slow
def test_server_accepts_tools_with_the_qwen36_template(
    models: dict[str, Path], server_binary: Path, tmp_path: Path
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    with _serve(tmp_path, server_binary, models["target"], "qwen35-tools", MTP_ARGS) as server:
        out = _chat(server, tools=[tool], max_tokens=32)
        assert out["choices"]


@pytest.mark.slow
def test_drafter_with_another_vocabulary_is_refused(
    models: dict[str, Path], server_binary: Path, tmp_path: Path
) -> None:
    """llama.cpp does not compare a DFlash drafter's vocabulary with the target's: the server loads,
    reports healthy, then aborts on the first draft (the bigger vocabulary's mask token indexes past
    the target's embedding rows: a bare GGML_ASSERT in get_rows). :func:`dflash_pair_problem` says why
    in one line before any server starts, for preflight to report."""
    bad = models["drafter_bad_vocab"]
    problem = dflash_pair_problem(models["target"], bad)
    assert problem is not None and "vocabulary has 1536 tokens, target has 1024" in problem and "\n" not in problem
    assert dflash_pair_problem(models["target"], models["drafter"]) is None
    # GGML_NO_BACKTRACE: when both decode threads (-t 2) hit the assert at once, ggml_print_backtrace
    # (ggml/src/ggml.c) forks twice; each child inherits the other's pipe write end, waits for EOF that
    # never comes, and the server hangs in waitpid instead of exiting (seen once in a fresh-clone run).
    with _serve(tmp_path, server_binary, models["target"], "qwen35-badvocab", _dflash_args(bad),
                env={"GGML_NO_BACKTRACE": "1"}) as server:
        with pytest.raises(httpx.HTTPError):
            _chat(server)
        assert server.proc is not None
        server.proc.wait(timeout=60)
        with pytest.raises(ServerError, match="no longer running"):
            server.check_alive()
        assert "GGML_ASSERT(i01 >= 0 && i01 < ne01) failed" in server.log_path.read_text(errors="replace")


@pytest.mark.slow
def test_draft_mtp_on_a_target_without_nextn_layers_exits_at_load(server_binary: Path, tmp_path: Path) -> None:
    """What preflight must say first: the server itself only logs a warning and an error, then exits."""
    no_mtp = TINY_QWEN35.model_copy(update={"name": "tiny-qwen35-no-mtp", "nextn_layers": 0})
    model = write_shaped(tmp_path / "no-mtp.gguf", no_mtp, chat_template=chat_template())
    server = _serve(tmp_path, server_binary, model, "qwen35-no-mtp", MTP_ARGS)
    with pytest.raises(ServerError, match="exited before it became ready") as exc:
        server.start(attempts=1)
    server.stop()
    assert "context type MTP requested but model doesn't contain MTP layers" in str(exc.value)


@pytest.mark.slow
def test_draft_dflash_without_a_drafter_silently_serves_without_drafts(
    models: dict[str, Path], server_binary: Path, tmp_path: Path
) -> None:
    """Why preflight must refuse ``draft-dflash`` without ``-md``: the server does not."""
    with _serve(tmp_path, server_binary, models["target"], "qwen35-dflash-no-md", ["--spec-type", "draft-dflash"]) as s:
        timings = _chat(s, max_tokens=16)["timings"]
        assert isinstance(timings, dict) and "draft_n" not in timings
