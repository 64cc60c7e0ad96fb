"""Random-weight GGUFs with the architecture and tensor shapes of a named model, streamed to disk.

Why: gating a llama.cpp upgrade on a GPU should not need a 16 GB download on every runner. Decode
speed and memory depend on the tensor shapes and quant types, not on the values, so a file with the
production model's shapes and random weights costs the same bytes per token on the same binary and
card as the real one, while its text is noise.

What "valid" means here: every tensor that the pinned llama.cpp loader requires (see
``src/models/qwen35.cpp`` and ``src/models/qwen3.cpp``) with the shape it checks, and quantized
blocks whose fp16 scales are small finite numbers, so no NaN/Inf reaches the KV cache or the
recurrent state. Tensors are written one at a time, in chunks, so memory stays flat even for the
1 GB output matrix of a 27B model.

A user can add shapes: :func:`load_shapes` reads a JSON or TOML file of :class:`Shape` entries.

The pieces: :mod:`~pytest_specgate.provision.shape_plan` (the :class:`Shape` model and its tensor
plan), :mod:`~pytest_specgate.provision.vocab` (the byte-level vocabulary),
:mod:`~pytest_specgate.provision.gguf_write` (random values and the streamed writer). This module
holds the shape table, the shape's metadata and :func:`write_shaped`, and re-exports the rest.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import gguf
from pydantic import ValidationError

from pytest_specgate.errors import PreflightError
from pytest_specgate.provision.gguf_write import RECIPE_KEY, TensorSpec, is_current, write_gguf
from pytest_specgate.provision.shape_plan import FTYPES, Shape, plan_nbytes, tensor_plan
from pytest_specgate.provision.vocab import Vocab, add_vocab, byte_level_vocab

__all__ = [
    "RECIPE_KEY",
    "RECIPE_VERSION",
    "SHAPES",
    "Shape",
    "TensorSpec",
    "Vocab",
    "add_vocab",
    "byte_level_vocab",
    "is_current",
    "load_shapes",
    "plan_nbytes",
    "shape_recipe",
    "shaped_recipe",
    "tensor_plan",
    "write_gguf",
    "write_shaped",
]

# Bump when anything written changes (tensor set, vocabulary, template, value recipe): a cached file
# carries the recipe in ``specgate.synthetic.recipe`` and is regenerated when it differs.
RECIPE_VERSION = 5

DEFAULT_SEED = 20260101


def shape_metadata(shape: Shape) -> Callable[[gguf.GGUFWriter], None]:
    """The key/values llama.cpp's converter writes for the shape's architecture."""

    def add(w: gguf.GGUFWriter) -> None:
        a = shape.arch
        w.add_name(f"specgate-shaped-{shape.name}")
        w.add_file_type(int(FTYPES[shape.ftype][1]))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_uint32(f"{a}.context_length", shape.n_ctx_train)
        w.add_uint32(f"{a}.embedding_length", shape.n_embd)
        w.add_uint32(f"{a}.block_count", shape.block_count)
        w.add_uint32(f"{a}.feed_forward_length", shape.n_ff)
        w.add_uint32(f"{a}.attention.head_count", shape.n_head)
        w.add_uint32(f"{a}.attention.head_count_kv", shape.n_head_kv)
        w.add_uint32(f"{a}.attention.key_length", shape.head_dim)
        w.add_uint32(f"{a}.attention.value_length", shape.head_dim)
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", shape.rms_eps)
        w.add_float32(f"{a}.rope.freq_base", shape.rope_theta)
        w.add_uint32(f"{a}.rope.dimension_count", shape.n_rot)
        if a == "qwen35":
            # interleaved M-RoPE sections over n_rot/2 rotary pairs, in Qwen's 11:11:10 proportion
            half = shape.n_rot // 2
            s0 = round(half * 11 / 32)
            sections = [s0, s0, half - 2 * s0, 0]
            w.add_array(f"{a}.rope.dimension_sections", sections)
            w.add_uint32(f"{a}.ssm.conv_kernel", shape.linear_conv_kernel)
            w.add_uint32(f"{a}.ssm.state_size", shape.linear_head_dim)
            w.add_uint32(f"{a}.ssm.group_count", shape.linear_num_key_heads)
            w.add_uint32(f"{a}.ssm.time_step_rank", shape.linear_num_value_heads)
            w.add_uint32(f"{a}.ssm.inner_size", shape.linear_head_dim * shape.linear_num_value_heads)
            w.add_uint32(f"{a}.full_attention_interval", shape.full_attention_interval)
            if shape.nextn_layers:
                w.add_uint32(f"{a}.nextn_predict_layers", shape.nextn_layers)

    return add


def shape_recipe(shape: Shape, extra: str = "") -> str:
    return f"v{RECIPE_VERSION}-{shape.model_dump_json()}{extra}"


def write_shaped(
    path: Path,
    shape: Shape,
    *,
    chat_template: str | None = None,
    seed: int = DEFAULT_SEED,
) -> Path:
    """A random-weight GGUF with ``shape``'s architecture, tensor shapes and quant types.

    Idempotent: an existing file written from the same shape, template and recipe version is kept.
    """
    vocab = byte_level_vocab(shape.n_vocab)
    meta = shape_metadata(shape)

    def metadata(w: gguf.GGUFWriter) -> None:
        meta(w)
        add_vocab(w, vocab, chat_template)

    recipe = shaped_recipe(shape, chat_template=chat_template, seed=seed)
    return write_gguf(path, shape.arch, tensor_plan(shape), recipe=recipe, seed=seed, metadata=metadata)


def shaped_recipe(shape: Shape, *, chat_template: str | None = None, seed: int = DEFAULT_SEED) -> str:
    """The ``specgate.synthetic.recipe`` that :func:`write_shaped` stamps: compare it to skip a rewrite."""
    extra = "" if chat_template is None else f"-tmpl{hash_text(chat_template)}"
    return shape_recipe(shape, extra + f"-s{seed}")


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# the shape table


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape(
            name="qwen3.6-27b-q4_k_m",
            arch="qwen35",
            source=(
                "Qwen/Qwen3.6-27B config.json (text_config): hidden 5120, 64 layers (3 Gated DeltaNet : 1 full "
                "attention), FFN 17408, 24 query / 4 KV heads of 256, linear attention 16 key / 48 value heads "
                "of 128, conv kernel 4, vocab 248320, rope theta 1e7 on 25% of each head, 1 MTP layer, "
                "untied embeddings; quant mix: llama-quant.cpp's Q4_K_M rules"
            ),
            n_layer=64,
            n_embd=5120,
            n_ff=17408,
            n_head=24,
            n_head_kv=4,
            head_dim=256,
            n_vocab=248320,
            ftype="Q4_K_M",
            rope_fraction=0.25,
            nextn_layers=1,
        ),
        Shape(
            name="qwen3-0.6b-q8_0",
            arch="qwen3",
            source="Qwen/Qwen3-0.6B config.json: hidden 1024, 28 layers, FFN 3072, 16/8 heads of 128, tied",
            n_layer=28,
            n_embd=1024,
            n_ff=3072,
            n_head=16,
            n_head_kv=8,
            head_dim=128,
            n_vocab=151936,
            ftype="Q8_0",
            n_ctx_train=40960,
            rope_theta=1_000_000.0,
            tied_embeddings=True,
        ),
        Shape(
            name="tiny-qwen3",
            arch="qwen3",
            source="synthetic: a small dense model that CPU tests can write and serve in seconds",
            n_layer=2,
            n_embd=256,
            n_ff=512,
            n_head=4,
            n_head_kv=2,
            head_dim=64,
            n_vocab=1024,
            ftype="Q8_0",
            n_ctx_train=32768,
            rope_theta=1_000_000.0,
            tied_embeddings=True,
        ),
    )
}


def load_shapes(path: Path) -> dict[str, Shape]:
    """User shapes from a JSON (list of objects) or TOML (``[[shape]]`` tables) file, by name."""
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text).get("shape", []) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise PreflightError(
            f"cannot read shapes from {path}: {exc}; give a JSON list or TOML [[shape]] tables"
        ) from exc
    try:
        shapes = [Shape.model_validate(item) for item in data]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise PreflightError(f"{path}: shape field {loc!r}: {first['msg']}; fix that entry") from exc
    return {s.name: s for s in shapes}
