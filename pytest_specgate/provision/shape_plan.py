"""The :class:`Shape` of a model and its tensor plan: every tensor's name, ggml shape and quant type.

Every tensor that the pinned llama.cpp loader requires (see ``src/models/qwen35.cpp`` and
``src/models/qwen3.cpp``) with the shape it checks, and the element types llama-quant.cpp would
choose for the shape's ftype, so a random-weight file costs the same bytes per token as the real one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import gguf
from pydantic import BaseModel, ConfigDict, model_validator

from pytest_specgate.provision.gguf_write import TensorSpec
from pytest_specgate.provision.vocab import MIN_VOCAB

__all__ = ["FTYPES", "Shape", "plan_nbytes", "tensor_plan"]

Q = gguf.GGMLQuantizationType

# Element types a shape's ``ftype`` may name, and the llama.cpp file-type id written for it.
FTYPES: dict[str, tuple[gguf.GGMLQuantizationType, int]] = {
    "F16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "Q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "Q6_K": (Q.Q6_K, gguf.LlamaFileType.MOSTLY_Q6_K),
    "Q4_K_M": (Q.Q4_K, gguf.LlamaFileType.MOSTLY_Q4_K_M),
}


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
