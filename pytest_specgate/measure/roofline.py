"""How close decode runs to the card's memory-bandwidth bound ("decode at 61% of this card's bound").

Why: a decode figure alone does not say whether a config has headroom. Plain decoding of one
sequence reads every offloaded weight and the KV cache up to the current position once per token,
so ``peak bandwidth / bytes per token`` bounds tokens per second; the ratio of the measured rate to
that bound is comparable across cards and models, and budgetable (``roofline_ratio``).

Bytes per token come from the server's own load log (``-lv 4`` prints them, see
``src/llama-model.cpp`` "model buffer size" and ``src/llama-kv-cache.cpp`` "size = ... cells"):
the weights in each CUDA device's model buffer (the token embedding stays in host memory and is
read one row per token, so it is rightly left out), plus for each KV cache its bytes per cell times
the cells in use at the measured context (a sliding-window cache never holds more than its size),
plus any recurrent state (read whole every token). With ``-sm layer`` (the default) the cards work
one after another, so the bound's time is the sum of each card's bytes over its bandwidth.

Peak bandwidth per card comes from ``server/gpu.py`` (NVML's memory clock x bus width x 2, else a
table of known cards). Without a GPU the figure is unavailable: we do not know a CPU's real
bandwidth and do not make one up.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

__all__ = ["Footprint", "Roofline", "parse_footprint", "roofline"]

MIB = 2**20

_MODEL_BUF = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB")
_KV_BUF = re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s+([\d.]+) MiB")
_KV_SIZE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells")
_GPU_BUFFER = re.compile(r"CUDA\d+")  # device memory; CUDA_Host is pinned host memory
_RS_BUF = re.compile(r"llama_memory_recurrent:\s+(\S+) RS buffer size =\s+([\d.]+) MiB")


@dataclass
class Footprint:
    """What one decode step reads, per device, from the server's load log."""

    weights: dict[str, float] = field(default_factory=dict)  # bytes by buffer name (CUDA0, CPU_Mapped...)
    kv: list[tuple[str, float, int]] = field(default_factory=list)  # (device, bytes per cell, cells)
    recurrent: dict[str, float] = field(default_factory=dict)  # bytes by device

    def bytes_per_token(self, context: float) -> dict[str, float]:
        """Bytes read per decoded token at ``context`` tokens, by device (GPU buffers only)."""
        out: dict[str, float] = {}
        for dev, b in self.weights.items():
            out[dev] = out.get(dev, 0.0) + b
        for dev, per_cell, cells in self.kv:
            out[dev] = out.get(dev, 0.0) + per_cell * min(context, cells)
        for dev, b in self.recurrent.items():
            out[dev] = out.get(dev, 0.0) + b
        return {dev: b for dev, b in out.items() if _GPU_BUFFER.fullmatch(dev)}


def parse_footprint(log_text: str) -> Footprint | None:
    """The model, KV and recurrent buffers a llama-server load log reports; None without them."""
    fp = Footprint()
    for dev, mib in _MODEL_BUF.findall(log_text):
        fp.weights[dev] = fp.weights.get(dev, 0.0) + float(mib) * MIB
    # Each cache prints its per-device buffer lines, then one "size = ... cells" summary line.
    pending: list[tuple[str, float]] = []
    for line in log_text.splitlines():
        if m := _KV_BUF.search(line):
            pending.append((m.group(1), float(m.group(2)) * MIB))
        elif (m := _KV_SIZE.search(line)) and pending:
            cells = int(m.group(2))
            fp.kv += [(dev, b / cells, cells) for dev, b in pending]
            pending = []
        elif m := _RS_BUF.search(line):
            fp.recurrent[m.group(1)] = fp.recurrent.get(m.group(1), 0.0) + float(m.group(2)) * MIB
    return fp if fp.weights else None


@dataclass(frozen=True)
class Roofline:
    """Decode against the bandwidth bound: ``ratio`` (measured / bound) or the reason it is unavailable."""

    ratio: float | None
    bound_tps: float | None = None
    bytes_per_token: float | None = None
    bandwidth: str = ""
    reason: str = ""

    def sentence(self, decode_tps: float) -> str:
        if self.ratio is None or self.bound_tps is None or self.bytes_per_token is None:
            return f"roofline unavailable: {self.reason}"
        return (f"decode {decode_tps:.1f} tok/s at {self.ratio:.0%} of this card's bound "
                f"({self.bound_tps:.1f} tok/s = {self.bandwidth} / {self.bytes_per_token / 1e9:.2f} GB per token)")


def roofline(decode_tps: float, context: float, footprint: Footprint | None,
             bandwidths: list[tuple[float | None, str]]) -> Roofline:
    """``decode_tps`` against the bound; ``bandwidths[i]`` is the i-th visible GPU's (CUDA<i>)."""
    if not bandwidths:
        return Roofline(None, reason="no GPU: a CPU's memory bandwidth is not known to specgate, so no bound is shown")
    if footprint is None:
        return Roofline(None, reason="the server log lacks the model/KV buffer lines (add \"-lv\", \"4\" to args)")
    per_dev = footprint.bytes_per_token(context)
    if not per_dev:
        return Roofline(None, reason="no weights in GPU memory (CPU build or -ngl 0): not a GPU decode")
    seconds, total, sources = 0.0, 0.0, []
    for dev, nbytes in sorted(per_dev.items()):
        i = int(dev.removeprefix("CUDA") or 0)
        bw, source = bandwidths[i] if i < len(bandwidths) else (None, f"{dev} is not a selected GPU")
        if bw is None:
            return Roofline(None, reason=source)
        seconds += nbytes / bw
        total += nbytes
        sources.append(f"{bw / 1e12:.2f} TB/s ({source})")
    bound = 1.0 / seconds
    return Roofline(decode_tps / bound, bound, total, " + ".join(dict.fromkeys(sources)))


def decode_roofline(decode_tps: list[float], prompt_tokens: list[int], output_tokens: int, log_text: str,
                    bandwidths: list[tuple[float | None, str]]) -> tuple[Roofline, list[float]]:
    """The roofline of one sweep point, and each decode sample's ratio to the bound (for an interval).

    The context is the mean KV length while decoding: the prompt plus half of the output.
    """
    if not decode_tps:
        return Roofline(None, reason="no decode samples"), []
    context = sum(prompt_tokens) / max(1, len(prompt_tokens)) + output_tokens / 2
    median = statistics.median(decode_tps)
    r = roofline(median, context, parse_footprint(log_text), bandwidths)
    if r.bound_tps is None:
        return r, []
    return r, [d / r.bound_tps for d in decode_tps]
