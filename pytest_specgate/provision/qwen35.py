"""Tiny synthetic models of the production architecture: a ``qwen35`` target with an MTP block and
a ``dflash`` drafter for it.

Why: the field report serves Qwen3.6-27B three ways (plain, DFlash drafter, MTP heads). Running
those exact serving flags on every commit needs models of the same architecture that load in a
second and decode at hundreds of tokens per second on two CPU cores. The weights are random, so
the text is noise and acceptance is whatever it is; what is exercised is the serving path: the
hybrid Gated DeltaNet + gated-attention trunk (``src/models/qwen35.cpp``), the NextN draft graph
behind ``--spec-type draft-mtp``, the DFlash feature injection behind ``--spec-type draft-dflash``
(``src/models/dflash.cpp``, ``common/speculative.cpp``), the reasoning budget and the Qwen3-Coder
tool-call parser that ``common/chat.cpp`` picks for the Qwen3.5/3.6 template.

Both files share one byte-level vocabulary (the drafter reads the target's token embeddings and
output matrix through the draft context's ``ctx_other``, as real DFlash drafters do), and are
written deterministically, atomically and only when missing or stale.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import gguf

from pytest_specgate.provision.shapes import (
    RECIPE_VERSION,
    Shape,
    TensorSpec,
    add_vocab,
    byte_level_vocab,
    shape_recipe,
    write_gguf,
    write_shaped,
)

__all__ = [
    "DFLASH_BLOCK_SIZE",
    "DFLASH_TARGET_LAYERS",
    "RECIPE_VERSION",
    "TINY_QWEN35",
    "chat_template",
    "dflash_pair_problem",
    "dflash_plan",
    "write_dflash_drafter",
    "write_qwen35_mtp",
]

# A 4-layer qwen35: layers 0-2 Gated DeltaNet, layer 3 full (gated) attention, plus one MTP block.
# Head sizes are multiples of 32 so ``-ctk q4_0 -ctv q4_0`` applies as in production.
TINY_QWEN35 = Shape(
    name="tiny-qwen35-mtp",
    arch="qwen35",
    source="synthetic: Qwen3.6's architecture at toy size, for CPU CI",
    n_layer=4,
    n_embd=128,
    n_ff=256,
    n_head=2,
    n_head_kv=1,
    head_dim=64,
    n_vocab=1024,
    ftype="F16",
    rope_fraction=0.25,
    nextn_layers=1,
    linear_head_dim=32,
    linear_num_key_heads=2,
    linear_num_value_heads=4,
)

# DFlash reads the inputs of these target layers (llama.cpp's converter writes HF's
# ``target_layer_ids`` + 1); block size 16 allows up to 15 drafted tokens per step.
DFLASH_TARGET_LAYERS = (1, 3)
DFLASH_BLOCK_SIZE = 16
DFLASH_LAYERS = 2


def chat_template() -> str:
    """The Qwen3.5/3.6 chat template shipped with the plugin (``data/qwen35-chat-template.jinja``)."""
    return resources.files("pytest_specgate").joinpath("data/qwen35-chat-template.jinja").read_text()


def write_qwen35_mtp(path: Path, shape: Shape = TINY_QWEN35, *, seed: int = 20260101) -> Path:
    """The ``qwen35`` target with its NextN (MTP) block, the Qwen3.6 template and vocabulary.

    Served with ``--spec-type draft-mtp`` it drafts from its own MTP head; without it, it is the
    plain autoregressive twin. Returns ``path``; an up-to-date file is kept as is.
    """
    if shape.arch != "qwen35" or shape.nextn_layers < 1:
        raise ValueError(f"shape {shape.name!r} is not a qwen35 shape with an MTP block")
    return write_shaped(path, shape, chat_template=chat_template(), seed=seed)


def dflash_plan(target: Shape = TINY_QWEN35, n_layers: int = DFLASH_LAYERS) -> list[TensorSpec]:
    """A DFlash drafter's tensors (``load_arch_tensors`` in ``src/models/dflash.cpp``), in f16.

    No ``token_embd`` / ``output``: the drafter borrows the target's, so its hidden size must be
    the target's. ``fc`` fuses the extracted target layers' hidden states into one vector.
    """
    e, hd = target.n_embd, target.head_dim
    f16, f32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    plan = [
        TensorSpec("fc.weight", (len(DFLASH_TARGET_LAYERS) * e, e), f16),
        TensorSpec("enc.output_norm.weight", (e,), f32),
    ]
    for il in range(n_layers):
        p = f"blk.{il}."
        plan += [
            TensorSpec(p + "attn_norm.weight", (e,), f32),
            TensorSpec(p + "attn_q.weight", (e, hd * target.n_head), f16),
            TensorSpec(p + "attn_k.weight", (e, hd * target.n_head_kv), f16),
            TensorSpec(p + "attn_v.weight", (e, hd * target.n_head_kv), f16),
            TensorSpec(p + "attn_output.weight", (hd * target.n_head, e), f16),
            TensorSpec(p + "attn_q_norm.weight", (hd,), f32),
            TensorSpec(p + "attn_k_norm.weight", (hd,), f32),
            TensorSpec(p + "ffn_norm.weight", (e,), f32),
            TensorSpec(p + "ffn_gate.weight", (e, target.n_ff), f16),
            TensorSpec(p + "ffn_down.weight", (target.n_ff, e), f16),
            TensorSpec(p + "ffn_up.weight", (e, target.n_ff), f16),
        ]
    plan.append(TensorSpec("output_norm.weight", (e,), f32))
    return plan


def write_dflash_drafter(
    path: Path,
    target: Shape = TINY_QWEN35,
    *,
    n_vocab: int | None = None,
    seed: int = 20260102,
) -> Path:
    """A ``dflash`` drafter for ``target``: same hidden size and vocabulary, its own 2 layers.

    ``n_vocab`` other than the target's writes a drafter whose vocabulary does not match (for the
    bad-input tests). Returns ``path``; an up-to-date file is kept as is.
    """
    vocab = byte_level_vocab(n_vocab or target.n_vocab)
    hd = target.head_dim

    def metadata(w: gguf.GGUFWriter) -> None:
        a = "dflash"
        w.add_name(f"specgate-dflash-for-{target.name}")
        w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
        w.add_uint32(f"{a}.context_length", target.n_ctx_train)
        w.add_uint32(f"{a}.embedding_length", target.n_embd)
        w.add_uint32(f"{a}.block_count", DFLASH_LAYERS)
        w.add_uint32(f"{a}.feed_forward_length", target.n_ff)
        w.add_uint32(f"{a}.attention.head_count", target.n_head)
        w.add_uint32(f"{a}.attention.head_count_kv", target.n_head_kv)
        w.add_uint32(f"{a}.attention.key_length", hd)
        w.add_uint32(f"{a}.attention.value_length", hd)
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", target.rms_eps)
        w.add_float32(f"{a}.rope.freq_base", target.rope_theta)
        # an M-RoPE target's drafter ropes the temporal section only (DFlashModel in conversion/qwen.py)
        w.add_array(f"{a}.rope.dimension_sections", [hd // 2, 0, 0, 0])
        w.add_uint32(f"{a}.block_size", DFLASH_BLOCK_SIZE)
        w.add_array(f"{a}.target_layers", list(DFLASH_TARGET_LAYERS))
        add_vocab(w, vocab, None)

    recipe = shape_recipe(target, f"-dflash{DFLASH_LAYERS}-v{len(vocab.tokens)}-s{seed}")
    return write_gguf(path, "dflash", dflash_plan(target), recipe=recipe, seed=seed, metadata=metadata)


def _header(path: Path) -> dict[str, object]:
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def dflash_pair_problem(target: Path, drafter: Path) -> str | None:
    """Why ``drafter`` cannot serve ``target`` under ``--spec-type draft-dflash``, in one line; None if it can.

    The pinned llama.cpp checks none of this at load: ``common/speculative.cpp`` runs
    ``common_speculative_are_compatible`` only for ``draft-simple``, and a DFlash drafter without its
    own ``token_embd``/``output`` borrows the target's, so a mismatch surfaces as a crash or garbage on
    the first draft instead of a refusal. Reading both headers up front turns it into a clear line.
    """
    try:
        tgt, dft = _header(target), _header(drafter)
    except (OSError, ValueError) as exc:
        return f"cannot read GGUF header ({exc}); check the model paths"
    arch = dft.get("general.architecture")
    if arch != "dflash":
        return f"draft-dflash: {drafter} is a {arch!r} model, not a dflash drafter; pass a DFlash drafter GGUF with -md"
    t_arch = tgt.get("general.architecture")
    layers = dft.get("dflash.target_layers")
    if not isinstance(layers, list) or not layers:
        return (
            f"draft-dflash: {drafter} has no dflash.target_layers; reconvert it with llama.cpp's convert_hf_to_gguf.py"
        )
    n_trunk = int(tgt.get(f"{t_arch}.block_count", 0)) - int(tgt.get(f"{t_arch}.nextn_predict_layers", 0))  # type: ignore[call-overload]
    if max(layers) > n_trunk:
        return (
            f"draft-dflash: {drafter} reads target layer {max(layers)} but {target} has {n_trunk} layers; "
            "use the drafter trained for this target"
        )
    e_tgt, e_dft = tgt.get(f"{t_arch}.embedding_length"), dft.get("dflash.embedding_length")
    if e_tgt != e_dft:
        return (
            f"draft-dflash: drafter hidden size {e_dft} != target hidden size {e_tgt} ({drafter} vs {target}); "
            "use the drafter trained for this target"
        )
    t_tok, d_tok = tgt.get("tokenizer.ggml.tokens"), dft.get("tokenizer.ggml.tokens")
    if not isinstance(t_tok, list) or not isinstance(d_tok, list):
        return f"draft-dflash: {target} or {drafter} has no tokenizer.ggml.tokens; reconvert it"
    if len(t_tok) != len(d_tok):
        return (
            f"draft-dflash: drafter vocabulary has {len(d_tok)} tokens, target has {len(t_tok)} "
            f"({drafter} vs {target}); use a drafter converted with --target-model-dir for this target"
        )
    diff = next((i for i, (a, b) in enumerate(zip(t_tok, d_tok, strict=True)) if a != b), None)
    if diff is not None:
        return (
            f"draft-dflash: token {diff} is {d_tok[diff]!r} in the drafter but {t_tok[diff]!r} in the target "
            f"({drafter} vs {target}); use a drafter converted with --target-model-dir for this target"
        )
    return None
