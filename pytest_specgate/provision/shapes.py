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
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from pytest_specgate.errors import PreflightError

__all__ = [
    "RECIPE_VERSION",
    "SHAPES",
    "Shape",
    "TensorSpec",
    "Vocab",
    "byte_level_vocab",
    "is_current",
    "load_shapes",
    "plan_nbytes",
    "shaped_recipe",
    "tensor_plan",
    "write_gguf",
    "write_shaped",
]

# Bump when anything written changes (tensor set, vocabulary, template, value recipe): a cached file
# carries the recipe in ``specgate.synthetic.recipe`` and is regenerated when it differs.
RECIPE_VERSION = 5

RECIPE_KEY = "specgate.synthetic.recipe"
DEFAULT_SEED = 20260101

Q = gguf.GGMLQuantizationType

# Element types a shape's ``ftype`` may name, and the llama.cpp file-type id written for it.
FTYPES: dict[str, tuple[gguf.GGMLQuantizationType, int]] = {
    "F16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "Q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "Q6_K": (Q.Q6_K, gguf.LlamaFileType.MOSTLY_Q6_K),
    "Q4_K_M": (Q.Q4_K, gguf.LlamaFileType.MOSTLY_Q4_K_M),
}

# Byte offsets of the fp16 scale fields inside one block of each quantized type (ggml-common.h):
# these are overwritten with small finite values, the rest of the block stays random bytes.
_SCALE_OFFSETS: dict[gguf.GGMLQuantizationType, tuple[int, ...]] = {
    Q.Q4_0: (0,),
    Q.Q8_0: (0,),
    Q.Q4_K: (0, 2),  # d, dmin
    Q.Q5_K: (0, 2),  # d, dmin
    Q.Q6_K: (208,),  # d comes last
}

_CHUNK_BYTES = 64 << 20

# Standard deviation of the logits of a float LM head (the output matrix is scaled to give it). With
# the usual 0.02 init, random logits are nearly flat, so no drafted token ever reaches a
# ``--spec-draft-p-min 0.75`` and speculation would never run; peaked logits make the MTP head and
# the DFlash drafter (which share this matrix) confident, as trained ones are.
HEAD_LOGIT_STD = 16.0


def _speakable(ids: np.ndarray) -> np.ndarray:
    """Token ids whose LM-head rows are peaked: newline, printable ASCII bytes and merged words.

    The other rows (bytes >= 0x80, fillers, specials) keep tiny logits and are never the argmax, so
    a random model writes valid ASCII (no invalid UTF-8 that re-tokenizes into more tokens), never
    ends early on an end-of-generation token and never closes ``<think>`` itself: output length is
    ``max_tokens`` and reasoning runs until ``--reasoning-budget`` closes it.
    """
    speakable: np.ndarray = (ids == 10) | ((ids >= 32) & (ids < 127)) | ((ids >= 256) & (ids < 256 + N_MERGES))
    return speakable


class Shape(BaseModel):
    """The architecture numbers of one model: enough to reproduce every tensor shape and type.

    ``n_layer`` counts the trunk only; ``nextn_layers`` MTP blocks follow it (``block_count`` in the
    file is their sum, as llama.cpp's converter writes it). The ``linear_*`` fields describe the
    Gated DeltaNet layers of the hybrid ``qwen35`` architecture; llama.cpp derives the value head
    size from ``ssm.state_size`` when it creates the tensors, so key and value head sizes must be
    equal.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    arch: Literal["qwen35", "qwen3"]
    source: str = ""
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    ftype: Literal["F16", "Q8_0", "Q6_K", "Q4_K_M"]
    n_ctx_train: int = 262144
    rope_theta: float = 10_000_000.0
    rope_fraction: float = 1.0
    rms_eps: float = 1e-6
    tied_embeddings: bool = False
    nextn_layers: int = 0
    full_attention_interval: int = 4
    linear_conv_kernel: int = 4
    linear_head_dim: int = 128
    linear_num_key_heads: int = 16
    linear_num_value_heads: int = 48

    @model_validator(mode="after")
    def _consistent(self) -> Shape:
        if self.n_head % self.n_head_kv:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_head_kv {self.n_head_kv}")
        if self.arch == "qwen35" and self.linear_num_value_heads % self.linear_num_key_heads:
            raise ValueError("linear_num_value_heads must be a multiple of linear_num_key_heads")
        if self.n_rot % 2 or self.n_rot > self.head_dim:
            raise ValueError(f"rope dimension {self.n_rot} (head_dim x rope_fraction) must be even and <= head_dim")
        if self.arch == "qwen3" and self.nextn_layers:
            raise ValueError("nextn_layers (MTP) is only wired for arch qwen35")
        if self.n_vocab < MIN_VOCAB:
            raise ValueError(f"n_vocab {self.n_vocab} is below the {MIN_VOCAB} tokens of the byte-level vocabulary")
        return self

    @property
    def n_rot(self) -> int:
        return int(self.head_dim * self.rope_fraction)

    @property
    def block_count(self) -> int:
        return self.n_layer + self.nextn_layers

    def is_recurrent(self, il: int) -> bool:
        """Gated DeltaNet layer? Mirrors ``load_arch_hparams`` in ``src/models/qwen35.cpp``."""
        return self.arch == "qwen35" and il < self.n_layer and (il + 1) % self.full_attention_interval != 0


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: GGUF name, ggml shape (``ne``, fastest dimension first), element type."""

    name: str
    ne: tuple[int, ...]
    dtype: gguf.GGMLQuantizationType
    std: float = 0.02  # of float weights; quantized blocks ignore it
    head: bool = False  # the LM head: rows of "speakable" tokens get HEAD_LOGIT_STD logits

    @property
    def nbytes(self) -> int:
        block, type_size = gguf.GGML_QUANT_SIZES[self.dtype]
        n = int(np.prod(self.ne))
        return n // block * type_size


# ---------------------------------------------------------------------------------------------
# vocabulary


@dataclass(frozen=True)
class Vocab:
    """A gpt2-style byte-level BPE vocabulary: all 256 byte tokens, so any text encodes."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    specials: dict[str, int]


# Qwen3.6's special tokens: control tokens and the added (user-defined) tags its template emits.
CONTROL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>")
ADDED_TOKENS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
_MERGE_TEXT = (
    "the of and to in is that for it as with was on be at by this have from or an are not but "
    "hello world weather function parameter name value call tool think answer question"
)


def _byte_chars() -> list[str]:
    """GPT-2's reversible byte -> printable character map, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _merges() -> list[tuple[str, str]]:
    """Left-to-right merges that build " word" tokens for a few common words (Ġ is a space)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for word in _MERGE_TEXT.split():
        left = "Ġ"
        for ch in word:
            pair = (left, ch)
            if left + ch not in seen:
                seen.add(left + ch)
                out.append(pair)
            left += ch
    return out


N_MERGES = len(_merges())
MIN_VOCAB = 256 + N_MERGES + len(CONTROL_TOKENS) + len(ADDED_TOKENS)


def byte_level_vocab(n_vocab: int) -> Vocab:
    """``n_vocab`` tokens: 256 bytes, the merges' products, filler tokens, then the specials.

    The specials sit at the end, as in Qwen's own vocabulary; fillers are never produced by the
    tokenizer but give the embedding and output matrices the requested number of rows.
    """
    if n_vocab < MIN_VOCAB:
        raise ValueError(f"n_vocab {n_vocab} < {MIN_VOCAB}")
    tokens = _byte_chars()
    merges = _merges()
    tokens += [a + b for a, b in merges]
    n_fill = n_vocab - len(tokens) - len(CONTROL_TOKENS) - len(ADDED_TOKENS)
    tokens += [f"[fill{i}]" for i in range(n_fill)]
    types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    specials: dict[str, int] = {}
    for tok in CONTROL_TOKENS:
        specials[tok] = len(tokens)
        tokens.append(tok)
        types.append(int(gguf.TokenType.CONTROL))
    for tok in ADDED_TOKENS:
        specials[tok] = len(tokens)
        tokens.append(tok)
        types.append(int(gguf.TokenType.USER_DEFINED))
    return Vocab(tokens=tokens, types=types, merges=[f"{a} {b}" for a, b in merges], specials=specials)


def add_vocab(writer: gguf.GGUFWriter, vocab: Vocab, chat_template: str | None) -> None:
    """Tokenizer metadata as llama.cpp's converter writes it for Qwen3.5 (``pre`` = qwen35)."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen35")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    writer.add_eos_token_id(vocab.specials["<|im_end|>"])
    writer.add_pad_token_id(vocab.specials["<|endoftext|>"])
    writer.add_bos_token_id(vocab.specials["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_uint32("tokenizer.ggml.mask_token_id", vocab.specials["<|mask|>"])
    if chat_template is not None:
        writer.add_chat_template(chat_template)


# ---------------------------------------------------------------------------------------------
# tensor plans


def _use_more_bits(i: int, n: int) -> bool:
    """llama-quant.cpp's rule for which layers' attn_v / ffn_down get Q6_K under Q4_K_M."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _fit(dtype: gguf.GGMLQuantizationType, ne0: int) -> gguf.GGMLQuantizationType:
    """The type llama-quant falls back to when a row does not fill whole blocks."""
    block = gguf.GGML_QUANT_SIZES[dtype][0]
    if ne0 % block == 0:
        return dtype
    return Q.Q8_0 if ne0 % 32 == 0 and dtype != Q.F16 else Q.F16


def _assign_types(shape: Shape, raw: list[tuple[str, tuple[int, ...]]]) -> list[TensorSpec]:
    """Element types per tensor, following llama-quant.cpp's choices for the shape's ftype.

    Not quantized (f32): 1-D tensors, norms, ``ssm_conv1d``, ``ssm_a``, biases. Under Q4_K_M: the
    output matrix is Q6_K; attn_v and the fused linear-attention attn_qkv share one counter and get
    Q6_K on the ``use_more_bits`` layers; ffn_down likewise; everything else Q4_K.
    """
    base = FTYPES[shape.ftype][0]
    n_wv = sum(1 for n, _ in raw if n.endswith(("attn_v.weight", "attn_qkv.weight")))
    n_down = sum(1 for n, _ in raw if n.endswith("ffn_down.weight"))
    i_wv = i_down = 0
    out: list[TensorSpec] = []
    for name, ne in raw:
        quantize = len(ne) >= 2 and name.endswith("weight") and "_norm.weight" not in name and "ssm_conv1d" not in name
        if not quantize:
            out.append(TensorSpec(name, ne, Q.F32))
            continue
        dtype = base
        if shape.ftype == "Q4_K_M":
            if name == "output.weight" or (shape.tied_embeddings and name == "token_embd.weight"):
                dtype = Q.Q6_K
            elif name.endswith(("attn_v.weight", "attn_qkv.weight")):
                dtype = Q.Q6_K if _use_more_bits(i_wv, n_wv) else Q.Q4_K
            elif name.endswith("ffn_down.weight"):
                dtype = Q.Q6_K if _use_more_bits(i_down, n_down) else Q.Q4_K
        if name.endswith(("attn_v.weight", "attn_qkv.weight")):
            i_wv += 1
        if name.endswith("ffn_down.weight"):
            i_down += 1
        out.append(TensorSpec(name, ne, _fit(dtype, ne[0])))
    return out


def _qwen35_layer(shape: Shape, il: int) -> list[tuple[str, tuple[int, ...]]]:
    """One block as ``load_arch_tensors`` in ``src/models/qwen35.cpp`` creates it."""
    e, p = shape.n_embd, f"blk.{il}."
    hd, nh, nkv = shape.head_dim, shape.n_head, shape.n_head_kv
    t: list[tuple[str, tuple[int, ...]]] = [(p + "attn_norm.weight", (e,)), (p + "post_attention_norm.weight", (e,))]
    if shape.is_recurrent(il):
        k_dim = shape.linear_head_dim * shape.linear_num_key_heads
        v_dim = shape.linear_head_dim * shape.linear_num_value_heads
        nv = shape.linear_num_value_heads
        t += [
            (p + "attn_qkv.weight", (e, 2 * k_dim + v_dim)),
            (p + "attn_gate.weight", (e, v_dim)),
            (p + "ssm_conv1d.weight", (shape.linear_conv_kernel, 2 * k_dim + v_dim)),
            (p + "ssm_dt.bias", (nv,)),
            (p + "ssm_a", (nv,)),
            (p + "ssm_beta.weight", (e, nv)),
            (p + "ssm_alpha.weight", (e, nv)),
            (p + "ssm_norm.weight", (shape.linear_head_dim,)),
            (p + "ssm_out.weight", (v_dim, e)),
        ]
    else:
        # gated attention: attn_q holds query and gate, hence 2x
        t += [
            (p + "attn_q.weight", (e, hd * nh * 2)),
            (p + "attn_k.weight", (e, hd * nkv)),
            (p + "attn_v.weight", (e, hd * nkv)),
            (p + "attn_output.weight", (hd * nh, e)),
            (p + "attn_q_norm.weight", (hd,)),
            (p + "attn_k_norm.weight", (hd,)),
        ]
    t += [
        (p + "ffn_gate.weight", (e, shape.n_ff)),
        (p + "ffn_down.weight", (shape.n_ff, e)),
        (p + "ffn_up.weight", (e, shape.n_ff)),
    ]
    if il >= shape.n_layer:  # the MTP (NextN) block
        t += [
            (p + "nextn.eh_proj.weight", (2 * e, e)),
            (p + "nextn.enorm.weight", (e,)),
            (p + "nextn.hnorm.weight", (e,)),
            (p + "nextn.shared_head_norm.weight", (e,)),
        ]
    return t


def _qwen3_layer(shape: Shape, il: int) -> list[tuple[str, tuple[int, ...]]]:
    """One block as ``src/models/qwen3.cpp`` creates it."""
    e, p, hd = shape.n_embd, f"blk.{il}.", shape.head_dim
    return [
        (p + "attn_norm.weight", (e,)),
        (p + "attn_q.weight", (e, hd * shape.n_head)),
        (p + "attn_k.weight", (e, hd * shape.n_head_kv)),
        (p + "attn_v.weight", (e, hd * shape.n_head_kv)),
        (p + "attn_output.weight", (hd * shape.n_head, e)),
        (p + "attn_k_norm.weight", (hd,)),
        (p + "attn_q_norm.weight", (hd,)),
        (p + "ffn_norm.weight", (e,)),
        (p + "ffn_gate.weight", (e, shape.n_ff)),
        (p + "ffn_down.weight", (shape.n_ff, e)),
        (p + "ffn_up.weight", (e, shape.n_ff)),
    ]


def tensor_plan(shape: Shape) -> list[TensorSpec]:
    """Every tensor of the file, in file order, with its ggml shape and element type."""
    e = shape.n_embd
    raw: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (e, shape.n_vocab))]
    layer = _qwen35_layer if shape.arch == "qwen35" else _qwen3_layer
    for il in range(shape.block_count):
        raw += layer(shape, il)
    raw.append(("output_norm.weight", (e,)))
    if not shape.tied_embeddings:
        raw.append(("output.weight", (e, shape.n_vocab)))
    head = "token_embd.weight" if shape.tied_embeddings else "output.weight"
    return [replace(t, head=True) if t.name == head else t for t in _assign_types(shape, raw)]


def plan_nbytes(plan: list[TensorSpec]) -> int:
    """Bytes of tensor data (without the header and alignment padding)."""
    return sum(t.nbytes for t in plan)


# ---------------------------------------------------------------------------------------------
# values


def _values(spec: TensorSpec, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The tensor's bytes in chunks of at most ``_CHUNK_BYTES``, never the whole tensor at once.

    Norm weights are 1 (a random norm scale is how random models blow up), ``ssm_a`` is negative
    (it is ``-exp(A_log)``), other floats are N(0, ``spec.std``). Quantized blocks are random bytes with
    their fp16 scales overwritten by values in [1e-4, 1e-3): finite, and small enough that the
    dequantized weights stay well inside fp16 range.
    """
    block, type_size = gguf.GGML_QUANT_SIZES[spec.dtype]
    n = int(np.prod(spec.ne))
    if spec.dtype in (Q.F32, Q.F16):
        np_type = np.float32 if spec.dtype == Q.F32 else np.float16
        row = spec.ne[0]
        step = max(row, _CHUNK_BYTES // np.dtype(np_type).itemsize // row * row)  # whole rows per chunk
        loud = HEAD_LOGIT_STD / row**0.5
        for start in range(0, n, step):
            count = min(step, n - start)
            if "norm" in spec.name:
                yield np.ones(count, dtype=np_type)
            elif spec.name.endswith("ssm_a"):
                yield (-rng.uniform(0.5, 4.0, count)).astype(np_type)
            elif spec.name.endswith("nextn.eh_proj.weight"):
                # the MTP block's input projection passes the trunk's hidden state through (identity on
                # the hidden half of [token embedding, hidden]): the random MTP head then predicts what
                # the trunk just predicted, so drafts are accepted whenever the model repeats a token
                values = rng.standard_normal((row // 2, row), dtype=np.float32) * spec.std
                values[:, row // 2 :] += np.eye(row // 2, dtype=np.float32)
                yield values.reshape(-1).astype(np_type)
                return
            elif spec.head:
                values = rng.standard_normal((count // row, row), dtype=np.float32) * spec.std
                ids = np.arange(start // row, (start + count) // row)
                values[_speakable(ids)] *= loud / spec.std
                yield values.reshape(-1).astype(np_type)
            else:
                yield (rng.standard_normal(count, dtype=np.float32) * spec.std).astype(np_type)
        return
    offsets = _SCALE_OFFSETS.get(spec.dtype)
    if offsets is None:
        raise ValueError(f"no block layout for {spec.dtype.name}")
    n_blocks = n // block
    step = max(1, _CHUNK_BYTES // type_size)
    for start in range(0, n_blocks, step):
        count = min(step, n_blocks - start)
        blocks = np.frombuffer(rng.bytes(count * type_size), dtype=np.uint8).reshape(count, type_size).copy()
        for off in offsets:
            scales = rng.uniform(1e-4, 1e-3, count).astype(np.float16)
            blocks[:, off : off + 2] = scales.view(np.uint8).reshape(count, 2)
        if spec.dtype == Q.Q8_0:
            # int8 quants: keep them away from -128 so |q| <= 127 like real Q8_0
            q = blocks[:, 2:].view(np.int8)
            np.clip(q, -127, 127, out=q)
        yield blocks.reshape(-1)


# ---------------------------------------------------------------------------------------------
# writing


KV = tuple[str, Any, gguf.GGUFValueType]


def _add_kv(writer: gguf.GGUFWriter, kvs: list[KV]) -> None:
    for key, value, vtype in kvs:
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_array(key, value)
        else:
            writer.add_key_value(key, value, vtype)


def is_current(path: Path, recipe: str) -> bool:
    """Whether ``path`` is a GGUF this module wrote with ``recipe`` (a cheap header read)."""
    try:
        field = gguf.GGUFReader(path).get_field(RECIPE_KEY)
    except (OSError, ValueError, IndexError):
        return False
    return field is not None and field.contents() == recipe


def write_gguf(
    path: Path,
    arch: str,
    plan: list[TensorSpec],
    *,
    recipe: str,
    seed: int,
    metadata: Callable[[gguf.GGUFWriter], None],
) -> Path:
    """Write a GGUF atomically (temp file beside ``path``, then ``os.replace``); skip if current.

    ``metadata`` adds the key/values; tensor data is streamed chunk by chunk in plan order. The
    seed makes the bytes identical on every machine, so two runners gate the same file.
    """
    path = Path(path)
    if path.is_file() and is_current(path, recipe):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_string(RECIPE_KEY, recipe)
        metadata(writer)
        for spec in plan:
            # shapes are given as ggml ``ne``; GGUFWriter wants numpy order (slowest first)
            writer.add_tensor_info(spec.name, tuple(reversed(spec.ne)), np.dtype(np.float32), spec.nbytes, spec.dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        assert writer.fout is not None
        fout = writer.fout[0]
        rng = np.random.default_rng(seed)
        for spec in plan:
            writer.write_padding(fout, fout.tell())
            written = 0
            for chunk in _values(spec, rng):
                chunk.tofile(fout)
                written += chunk.nbytes
            if written != spec.nbytes:
                raise AssertionError(f"{spec.name}: wrote {written} bytes, planned {spec.nbytes}")
        writer.write_padding(fout, fout.tell())
        writer.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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
