"""The scalar key/value pairs of a GGUF header, read without touching the arrays.

Preflight needs a handful of facts (architecture, context length, MTP layers) in well under two
seconds. ``gguf.GGUFReader`` parses every element of every array: 10.3 s for the demo model's
262K-entry vocabulary on the CI-sized machine. This reader walks the same header (with the gguf
package's own type codes and magic), returns scalars and strings, and skips arrays by their
length; tests compare its output with ``GGUFReader`` on real files.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from gguf import GGUF_MAGIC, GGUFValueType

_SCALAR = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}


class NotGGUF(ValueError):
    """The file is not a GGUF file, or its header is damaged."""


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise NotGGUF("the header ends early (truncated file)")
    return struct.unpack(fmt, data)[0]


def _left(f: BinaryIO, size: int) -> int:
    """Bytes left after the current position: the bound every length in the header must respect."""
    return size - f.tell()


def _string(f: BinaryIO, size: int) -> str:
    n = _read(f, "<Q")
    if n > _left(f, size):  # a damaged length would otherwise ask read() for exabytes (MemoryError)
        raise NotGGUF(f"the header ends early: a string length of {n} bytes at offset {f.tell() - 8} runs past "
                      f"the end of the file")
    data = f.read(n)
    if len(data) != n:
        raise NotGGUF("the header ends early (truncated file)")
    return data.decode("utf-8", "replace")


def _value(f: BinaryIO, vtype: int, size: int) -> Any:
    if vtype == GGUFValueType.STRING:
        return _string(f, size)
    if vtype == GGUFValueType.ARRAY:
        item, count = _read(f, "<I"), _read(f, "<Q")
        # every element takes at least one byte (a string at least its 8-byte length)
        smallest = struct.calcsize(_SCALAR[GGUFValueType(item)]) if item in _SCALAR else 8
        if count * smallest > _left(f, size):
            raise NotGGUF(f"the header ends early: an array of {count} elements at offset {f.tell() - 12} runs "
                          f"past the end of the file")
        if item in _SCALAR:
            f.seek(smallest * count, 1)
        else:
            for _ in range(count):
                _value(f, item, size)
        return None  # arrays are skipped: preflight needs none of them
    if vtype in _SCALAR:
        return _read(f, _SCALAR[GGUFValueType(vtype)])
    raise NotGGUF(f"unknown value type {vtype}")


def read_header(path: Path) -> dict[str, Any]:
    """Every key of the header; array values are None (present, not read)."""
    size = path.stat().st_size
    with path.open("rb", buffering=1 << 20) as f:
        if _read(f, "<I") != GGUF_MAGIC:
            raise NotGGUF("no GGUF magic")
        _version, _n_tensors, n_kv = _read(f, "<I"), _read(f, "<Q"), _read(f, "<Q")
        out: dict[str, Any] = {}
        for _ in range(n_kv):
            key = _string(f, size)
            out[key] = _value(f, _read(f, "<I"), size)
        return out
