"""Unit tests of preflight: --help parsing, flag checks, model checks and path resolution (no server)."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import pytest

from pytest_specgate.config import ServingConfig
from pytest_specgate.errors import PreflightError
from pytest_specgate.preflight import (
    ModelFacts,
    check_args,
    check_model,
    model_facts,
    parse_help,
    resolve_binary,
    resolve_model,
)

#: excerpts of `llama-server --help` from a current build, verbatim except for trailing whitespace
HELP_TEXT = """\
----- common params -----

-h,    --help, --usage                  print usage and exit
--version                               show version and build info
-cl,   --cache-list                     show list of models in cache
--completion-bash                       print source-able bash completion script for llama.cpp
-t,    --threads N                      number of CPU threads to use during generation (default: -1)
                                        (env: LLAMA_ARG_THREADS)
-c,    --ctx-size N                     size of the prompt context (default: 0, 0 = loaded from model)
                                        (env: LLAMA_ARG_CTX_SIZE)
-n,    --predict, --n-predict N         number of tokens to predict (default: -1, -1 = infinity)
                                        (env: LLAMA_ARG_N_PREDICT)
-fa,   --flash-attn [on|off|auto]       set Flash Attention use ('on', 'off', or 'auto', default: 'auto')
                                        (env: LLAMA_ARG_FLASH_ATTN)
-ctk,  --cache-type-k TYPE              KV cache data type for K
                                        allowed values: f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1
                                        (default: f16)
                                        (env: LLAMA_ARG_CACHE_TYPE_K)
-ctv,  --cache-type-v TYPE              KV cache data type for V
                                        allowed values: f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1
                                        (default: f16)
                                        (env: LLAMA_ARG_CACHE_TYPE_V)
-ngl,  --gpu-layers, --n-gpu-layers N   max. number of layers to store in VRAM, either an exact number,
                                        'auto', or 'all' (default: auto)
                                        (env: LLAMA_ARG_N_GPU_LAYERS)
-fit,  --fit [on|off]                   whether to adjust unset arguments to fit in device memory ('on' or
                                        'off', default: 'on')
                                        (env: LLAMA_ARG_FIT)
-m,    --model FNAME                    model path to load
                                        (env: LLAMA_ARG_MODEL)
-mu,   --model-url MODEL_URL            model download url (default: unused)
                                        (env: LLAMA_ARG_MODEL_URL)
--spec-draft-n-max N                    number of tokens to draft for speculative decoding (default: 3)
                                        (env: LLAMA_ARG_SPEC_DRAFT_N_MAX)
--spec-draft-p-min, --draft-p-min P     minimum speculative decoding probability (greedy) (default: 0.00)
                                        (env: LLAMA_ARG_SPEC_DRAFT_P_MIN)
--spec-draft-model, -md, --model-draft FNAME
                                        draft model for speculative decoding (default: unused)
                                        (env: LLAMA_ARG_SPEC_DRAFT_MODEL)
--spec-type none,draft-simple,draft-eagle3,draft-mtp,draft-dflash,draft-dspark,ngram-simple,ngram-map-k,ngram-map-k4v,ngram-mod,ngram-cache
                                        comma-separated list of types of speculative decoding to use (default:
                                        none)

--draft, --draft-n, --draft-max N       the argument has been removed. use --spec-draft-n-max or
                                        --spec-ngram-mod-n-max
                                        (env: LLAMA_ARG_DRAFT_MAX)
--draft-min, --draft-n-min N            the argument has been removed. use --spec-draft-n-min or
                                        --spec-ngram-mod-n-min
                                        (env: LLAMA_ARG_DRAFT_MIN)
-np,   --parallel N                     number of server slots (default: -1, -1 = auto)
                                        (env: LLAMA_ARG_N_PARALLEL)
-a,    --alias STRING                   set model name aliases, comma-separated (to be used by API)
                                        (env: LLAMA_ARG_ALIAS)
--host HOST                             IP addresses to listen on, comma-separated, or UNIX socket paths
                                        ending in .sock; with multiple TCP addresses, :: binds IPv6 only;
                                        overlapping addresses result in undefined behavior (default:
                                        127.0.0.1)
                                        (env: LLAMA_ARG_HOST)
--port PORT                             port to listen (default: 8080)
                                        (env: LLAMA_ARG_PORT)
--jinja, --no-jinja                     whether to use jinja template engine for chat (default: enabled)
                                        (env: LLAMA_ARG_JINJA)
--reasoning-budget N                    token budget for thinking: -1 for unrestricted, 0 for immediate end,
                                        N>0 for token budget (default: -1)
                                        (env: LLAMA_ARG_THINK_BUDGET)
--spec-default                          enable default speculative decoding config
"""

SPEC_TYPES = ["none", "draft-simple", "draft-eagle3", "draft-mtp", "draft-dflash", "draft-dspark", "ngram-simple",
              "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache"]
BINARY = Path("/opt/llama/bin/llama-server")
HELP = parse_help(HELP_TEXT)


def cfg(args=(), model="/models/m.gguf", binary="/opt/llama/bin/llama-server") -> ServingConfig:
    return ServingConfig(name="t", binary=binary, model=model, args=list(args), source="/w/specgate.toml")


def problems(*args: str) -> list[str]:
    return check_args(cfg(args), HELP, BINARY)


def test_parse_help_flags_and_aliases():
    for flag in ("-fa", "--flash-attn", "-c", "--ctx-size", "-n", "--predict", "--n-predict", "-ngl", "--gpu-layers",
                 "--n-gpu-layers", "--spec-draft-p-min", "--draft-p-min", "-md", "--spec-draft-model", "--model-draft",
                 "--jinja", "--no-jinja", "--spec-default", "-m", "--port"):
        assert flag in HELP.flags, flag
    # words inside descriptions and choice lists are not flags
    assert not {"-simple", "-1", "--spec-ngram-mod-n-max", "-mod"} & HELP.flags
    assert "-tb" not in HELP.flags  # not in the excerpt


def test_parse_help_choices():
    assert HELP.choices["-fa"] == HELP.choices["--flash-attn"] == ["on", "off", "auto"]
    assert HELP.choices["-fit"] == ["on", "off"]
    assert HELP.choices["--spec-type"] == SPEC_TYPES
    assert HELP.choices["-ctk"] == HELP.choices["--cache-type-v"] == [
        "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
    for free in ("-c", "-ngl", "-a", "--host", "--spec-draft-n-max"):
        assert free not in HELP.choices, free


def test_check_args_accepts_a_good_config():
    assert problems("-c", "131072", "-fa", "on", "-ctk", "q4_0", "-ctv", "q4_0", "--jinja", "-ngl", "all",
                    "-np", "1", "--reasoning-budget", "-1", "--alias", "qwen3.6-27b-q4_k_m", "-fit", "off",
                    "--spec-type", "draft-mtp", "--spec-draft-n-max", "6", "--spec-draft-p-min", "0.75") == []


def test_check_args_unknown_flag():
    [p] = problems("-c", "4096", "--flash-atn", "on")
    assert "[configs.t] args" in p and "--flash-atn is not accepted by /opt/llama/bin/llama-server" in p
    assert "Fix" in p and "removed" not in p


def test_check_args_removed_flag_hint_when_absent_from_help():
    help_ = parse_help(HELP_TEXT.replace("--draft, --draft-n, --draft-max N", "--spec-ngram-size-n N"))
    [p] = check_args(cfg(["--draft-max", "6"]), help_, BINARY)
    assert "--draft-max" in p and "it was removed; use --spec-draft-n-max" in p


def test_check_args_removed_flag_listed_in_help():
    """Current builds still list removed flags in --help, only to reject them at startup."""
    assert any("--draft-max was removed from this binary: use --spec-draft-n-max" in p
               for p in problems("--draft-max", "6"))


@pytest.mark.parametrize("flag", ["--port", "-m", "--model", "--host"])
def test_check_args_reserved(flag):
    [p] = problems("-c", "4096", flag, "x")
    assert f"{flag} is set by specgate itself" in p and "Fix: remove it" in p


def test_check_args_invalid_spec_type_lists_valid_values():
    [p] = problems("--spec-type", "mtp")
    assert "--spec-type mtp" in p and "'mtp' is not a valid value" in p
    assert "Valid values: " + ", ".join(SPEC_TYPES) in p


def test_check_args_comma_list_flags_only_the_bad_item():
    [p] = problems("--spec-type", "ngram-mod,bogus")
    assert "'bogus'" in p and "ngram-mod" not in p.split("Valid values")[0]
    assert problems("--spec-type", "ngram-mod,draft-simple") == []


def test_check_args_bad_choice_via_allowed_values_and_brackets():
    assert len(problems("-ctk", "q3_0", "-fa", "maybe", "-fa", "on")) == 2


def test_check_args_value_before_any_flag():
    [p] = problems("4096", "-c", "1")
    assert "'4096' is not a flag" in p


def facts(nextn: int) -> ModelFacts:
    return ModelFacts(path="/models/q.gguf", size_bytes=1, architecture="qwen35", nextn_predict_layers=nextn)


def test_check_model_draft_mtp_needs_mtp_layers():
    mtp = cfg(["--spec-type", "draft-mtp"])
    [p] = check_model(mtp, facts(0))
    assert "/models/q.gguf has no MTP layers" in p and "qwen35.nextn_predict_layers is 0" in p and "Fix" in p
    assert check_model(mtp, facts(1)) == []
    assert check_model(cfg(["--spec-type", "draft-mtp", "-md", "/m/head.gguf"]), facts(0)) == []
    assert check_model(cfg(["--spec-type", "ngram-mod"]), facts(0)) == []


def test_resolve_model_missing_names_path_and_variable(monkeypatch):
    monkeypatch.delenv("SPECGATE_MTP_MODEL", raising=False)
    with pytest.raises(PreflightError) as exc:
        resolve_model(cfg(model="${SPECGATE_MTP_MODEL:-/nonexistent/x.gguf}"))
    msg = str(exc.value)
    assert "/nonexistent/x.gguf does not exist" in msg and "set SPECGATE_MTP_MODEL=" in msg
    assert "[configs.t] model" in msg


def test_resolve_model_existing(tmp_path, monkeypatch):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("SPECGATE_T_DIR", str(tmp_path))
    assert resolve_model(cfg(model="${SPECGATE_T_DIR}/m.gguf")) == tmp_path / "m.gguf"


def write_gguf(path: Path, nextn: int | None) -> Path:
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny")
    w.add_context_length(2048)
    w.add_block_count(2)
    w.add_file_type(15)
    if nextn is not None:
        w.add_uint32("llama.nextn_predict_layers", nextn)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_model_facts_reads_the_header(tmp_path):
    path = write_gguf(tmp_path / "tiny.gguf", nextn=1)
    f = model_facts(path)
    assert f == ModelFacts(path=str(path), size_bytes=path.stat().st_size, architecture="llama", name="tiny",
                           file_type=15, context_length=2048, block_count=2, nextn_predict_layers=1,
                           has_chat_template=False)
    assert model_facts(write_gguf(tmp_path / "plain.gguf", nextn=None)).nextn_predict_layers == 0


def test_model_facts_not_gguf(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(PreflightError, match=r"is not a readable GGUF file \(no GGUF magic\)"):
        model_facts(path)


def test_model_facts_damaged_gguf(tmp_path):
    path = tmp_path / "cut.gguf"
    path.write_bytes(write_gguf(tmp_path / "whole.gguf", nextn=1).read_bytes()[:40])
    with pytest.raises(PreflightError, match=r"not a readable GGUF file \(the header ends early"):
        model_facts(path)


@pytest.mark.parametrize("which", ["written-here", "synthetic-with-vocab-arrays"])
def test_header_reader_agrees_with_gguf_reader(tmp_path, which, request):
    """The fast header walk returns what gguf.GGUFReader returns for every scalar key, and skips
    string/float/int arrays (the tokenizer's) correctly."""
    from gguf import GGUFReader

    from pytest_specgate.gguf_header import read_header

    path = write_gguf(tmp_path / "m.gguf", nextn=2) if which == "written-here" else request.getfixturevalue("tiny_gguf")
    fast = read_header(path)
    reader = GGUFReader(path, "r")
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        assert fast[key] == (None if isinstance(value, list) else value), key


def test_resolve_binary_missing_path():
    with pytest.raises(PreflightError) as exc:
        resolve_binary(cfg(binary="/nonexistent/bin/llama-server"))
    assert "/nonexistent/bin/llama-server does not exist" in str(exc.value) and "Fix" in str(exc.value)


def test_resolve_binary_bare_name(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PreflightError) as exc:
        resolve_binary(cfg(binary="llama-server"))
    assert "no executable named 'llama-server' on PATH" in str(exc.value) and "Fix" in str(exc.value)
    exe = tmp_path / "llama-server"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert resolve_binary(cfg(binary="llama-server")) == exe


def test_resolve_binary_not_executable(tmp_path):
    exe = tmp_path / "llama-server"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o644)
    if os.access(exe, os.X_OK):
        pytest.skip("running as a user who may execute anything")
    with pytest.raises(PreflightError, match="chmod \\+x"):
        resolve_binary(cfg(binary=str(exe)))
