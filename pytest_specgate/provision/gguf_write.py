"""Random tensor values and the atomic, streamed GGUF writer behind every synthetic model.

What "valid" means here: quantized blocks whose fp16 scales are small finite numbers, so no NaN/Inf
reaches the KV cache or the recurrent state, and float weights drawn so a random model behaves like
a trained one where speed depends on it (a peaked LM head, so speculation runs). Tensors are written
one at a time, in chunks, so memory stays flat even for the 1 GB output matrix of a 27B model.

A file carries its recipe in ``specgate.synthetic.recipe``; :func:`is_current` reads it back so a
cached file is kept only while its recipe matches.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from pytest_specgate.provision.vocab import N_MERGES

__all__ = ["HEAD_LOGIT_STD", "RECIPE_KEY", "TensorSpec", "is_current", "write_gguf"]

RECIPE_KEY = "specgate.synthetic.recipe"

Q = gguf.GGMLQuantizationType

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
