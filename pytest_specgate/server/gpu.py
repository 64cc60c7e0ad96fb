"""Which GPUs a server uses, and how much of their memory it holds, decided from what NVML can see.

Why this is more than "sum ``usedGpuMemory`` over the server's PID": inside a container NVML reports
host-namespace PIDs, so the server's own PID never appears and a ``VRAM <= 21 GiB`` budget silently
turned into a skip while the run stayed green. The rules here:

1. **per-process**: an NVML process entry matches the server's PID (or any PID of its process
   group/tree): its ``usedGpuMemory`` per card is the figure.
2. **device-delta**: otherwise, when no other tenant was on the selected cards before the server
   started, the server's figure is the card's used memory now minus before load. This counts the
   CUDA context too, which per-process figures also include, so both methods agree to a few MiB.
3. **unmeasurable**: another tenant is (or was) there, or NVML reads fail: the reason is kept, and
   a VRAM budget *fails* with it on a machine that has a GPU (never a silent skip).

A card in MIG mode is measured through its MIG device handles (each instance has its own memory
and process list). Several cards (``-ts``/``-sm``) give per-card figures and a total.

Everything takes the ``pynvml`` module as a parameter, so the decisions are tested with a stand-in
object for the driver (the real path needs a GPU; ``bench/device_check.sh`` runs it on one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BANDWIDTH_TABLE",
    "Gpu",
    "VramReading",
    "VramTracker",
    "nvml_module",
    "parse_visible_devices",
    "peak_bandwidth",
    "select_gpus",
]

try:  # nvidia-ml-py provides the `pynvml` module
    import pynvml as _pynvml
except ImportError:  # pragma: no cover - it is a declared dependency
    _pynvml = None

MIB = 2**20
# Used memory a card may show with no process on it (driver reservations, ECC, display): below this
# delta between "before load" and "idle" we do not trust a device-delta figure for a model load.
NOISE_MIB = 64


def nvml_module() -> tuple[Any, str]:
    """The initialised ``pynvml`` module and a description, or ``(None, why not)``."""
    if _pynvml is None:
        return None, "nvidia-ml-py is not installed"
    try:
        _pynvml.nvmlInit()
        count = _pynvml.nvmlDeviceGetCount()
    except _pynvml.NVMLError as e:  # no driver, no device
        return None, f"NVML unavailable ({e})"
    if count == 0:
        return None, "NVML sees no GPU"
    return _pynvml, f"{count} GPU(s)"


@dataclass(frozen=True)
class Gpu:
    """One measured memory domain: a whole card, or one MIG instance of it."""

    label: str  # "0", "1", "0/mig0"
    index: int  # the NVML index of the card
    handle: Any = field(compare=False, repr=False)
    name: str = ""
    mig: bool = False


def parse_visible_devices(value: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list of entries (indices or UUIDs); None when unset (all cards)."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mig_handles(nvml: Any, handle: Any) -> list[Any]:
    """The MIG device handles of a card in MIG mode; empty for a card that is not."""
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:  # not supported: not a MIG-capable card
        return []
    if current != getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        return []
    out = []
    for i in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            out.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i))
        except nvml.NVMLError:  # an empty slot
            continue
    return out


def select_gpus(nvml: Any, visible: list[str] | None) -> list[Gpu]:
    """The cards (or MIG instances) a server started with ``CUDA_VISIBLE_DEVICES=visible`` can use.

    Indices are NVML's, which equal CUDA's only under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``: the pool sets
    it next to ``CUDA_VISIBLE_DEVICES``. UUID entries (``GPU-...``, ``MIG-...``) are looked up.
    """
    count = nvml.nvmlDeviceGetCount()
    wanted: list[tuple[int | None, Any]] = []
    for entry in visible if visible is not None else [str(i) for i in range(count)]:
        if entry.isdigit():
            if int(entry) >= count:
                raise ValueError(f"GPU {entry} does not exist: NVML sees {count} GPU(s) (indices 0-{count - 1})")
            wanted.append((int(entry), nvml.nvmlDeviceGetHandleByIndex(int(entry))))
        else:
            wanted.append((None, nvml.nvmlDeviceGetHandleByUUID(entry)))
    gpus = []
    for index, handle in wanted:
        if index is None:  # a UUID: find its index for the label
            index = next((i for i in range(count) if nvml.nvmlDeviceGetHandleByIndex(i) == handle), -1)
        name = _text(nvml.nvmlDeviceGetName(handle))
        migs = _mig_handles(nvml, handle)
        if migs:
            gpus += [Gpu(f"{index}/mig{j}", index, h, name, mig=True) for j, h in enumerate(migs)]
        else:
            gpus.append(Gpu(str(index), index, handle, name))
    return gpus


def _processes(nvml: Any, handle: Any) -> list[tuple[int, int | None]]:
    """(pid, used bytes or None) of every compute and graphics process NVML lists on ``handle``."""
    seen: dict[int, int | None] = {}
    for getter in (nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses):
        try:
            for p in getter(handle):
                used = p.usedGpuMemory
                seen[p.pid] = used if seen.get(p.pid) is None else seen[p.pid]
        except nvml.NVMLError:
            continue
    return list(seen.items())


def _used_bytes(nvml: Any, handle: Any) -> int:
    return int(nvml.nvmlDeviceGetMemoryInfo(handle).used)


@dataclass
class VramReading:
    """One read of every selected card: the server's bytes per card by the chosen method."""

    per_gpu: dict[str, float]  # MiB by card label
    method: str  # "per-process" or "device-delta"

    @property
    def total(self) -> float:
        return sum(self.per_gpu.values())


class VramTracker:
    """Server VRAM on the selected cards, by the best method NVML allows; idle and peak, per card and total.

    Call :meth:`before_load` before starting the server (device baseline, tenants present before),
    :meth:`mark_idle` right after it is ready, :meth:`read` from the sampler thread while it serves.
    """

    def __init__(self, nvml: Any, gpus: list[Gpu]) -> None:
        self.nvml = nvml
        self.gpus = gpus
        self.baseline: dict[str, int] = {}
        self.tenants_before: dict[str, list[int]] = {}
        self.foreign: dict[str, set[int]] = {}
        self.method: str | None = None
        self.reason = ""
        self.idle: VramReading | None = None
        self.peak_per_gpu: dict[str, float] = {}
        self.peak_total: float | None = None

    # ---- before the server exists ----

    def before_load(self) -> None:
        """Device used memory and processes on each card before the server starts."""
        for gpu in self.gpus:
            self.baseline[gpu.label] = _used_bytes(self.nvml, gpu.handle)
            self.tenants_before[gpu.label] = [pid for pid, _ in _processes(self.nvml, gpu.handle)]

    # ---- reads ----

    def _decide(self, pids: set[int]) -> VramReading | None:
        """Measure once; sets ``method``/``reason`` and records foreign tenants."""
        per_process: dict[str, float] = {}
        delta: dict[str, float] = {}
        matched = hidden = False
        crowded: dict[str, set[int]] = {}
        for gpu in self.gpus:
            procs = _processes(self.nvml, gpu.handle)
            mine = [used for pid, used in procs if pid in pids]
            others = {pid for pid, _ in procs if pid not in pids}
            matched = matched or bool(mine)
            hidden = hidden or any(u is None for u in mine)
            per_process[gpu.label] = sum(u or 0 for u in mine) / MIB
            if others and (mine or len(procs) > 1):
                crowded[gpu.label] = others
            if gpu.label in self.baseline:
                delta[gpu.label] = (_used_bytes(self.nvml, gpu.handle) - self.baseline[gpu.label]) / MIB
        if matched:
            for label, others in crowded.items():
                self.foreign.setdefault(label, set()).update(others)
            if not hidden:
                self.method, self.reason = "per-process", ""
                return VramReading(per_process, "per-process")
        if not self.baseline:
            self.method, self.reason = None, "no device reading from before the server started"
            return None
        if busy := {label: p for label, p in self.tenants_before.items() if p}:
            label, before = next(iter(busy.items()))
            for lbl, p in busy.items():
                self.foreign.setdefault(lbl, set()).update(p)
            self.method = None
            self.reason = (f"the server's PID is not in NVML's process list (container PID namespace?) and GPU "
                           f"{label} already had other processes before the server started (PIDs "
                           f"{', '.join(map(str, sorted(before)))}), so the device-level delta would count them too")
            return None
        # PIDs are not comparable here (our server shows under a host PID): a card listing more than one
        # process has gained a tenant since the server started, and the delta counts it too.
        for label, others in crowded.items():
            self.foreign.setdefault(label, set()).update(others)
        self.method, self.reason = "device-delta", ""
        return VramReading(delta, "device-delta")

    def read(self, pids: Iterable[int]) -> VramReading | None:
        """One read; updates the per-card and total peaks. None when VRAM is not measurable (``reason``)."""
        reading = self._decide(set(pids))
        if reading is None:
            return None
        for label, mib in reading.per_gpu.items():
            self.peak_per_gpu[label] = max(self.peak_per_gpu.get(label, 0.0), mib)
        self.peak_total = max(self.peak_total or 0.0, reading.total)
        return reading

    def mark_idle(self, pids: Iterable[int]) -> None:
        self.idle = self.read(pids)
        if self.idle is not None and self.method == "device-delta" and self.idle.total < NOISE_MIB:
            # a model load that moved the cards' used memory by less than the noise: the server did not
            # load onto these cards (CPU build, -ngl 0, other devices); not a VRAM figure to judge
            self.reason = (f"the server's load moved used memory on GPU(s) {', '.join(self.peak_per_gpu)} by "
                           f"{self.idle.total:.0f} MiB only: it is not running on them (CPU build, -ngl 0?)")

    # ---- results ----

    def figures(self) -> dict[str, float]:
        """``vram_idle_mib``/``vram_peak_mib`` (all cards), ``vram_peak_mib_per_gpu`` (the fullest card)."""
        if self.idle is None or self.peak_total is None or self.method is None:
            return {}
        if self.method == "device-delta" and self.idle.total < NOISE_MIB:
            return {}  # the load did not land on these cards (reason set by mark_idle)
        out = {"vram_idle_mib": self.idle.total, "vram_peak_mib": self.peak_total,
               "vram_peak_mib_per_gpu": max(self.peak_per_gpu.values())}
        return {k: round(v, 1) for k, v in out.items()}

    def per_gpu(self) -> dict[str, float]:
        """Peak MiB by card label, for the report."""
        return {label: round(v, 1) for label, v in self.peak_per_gpu.items()}

    def foreign_tenants(self) -> str:
        """A sentence naming other processes seen on the selected cards; empty when none."""
        if not self.foreign:
            return ""
        parts = [f"GPU {label}: PID(s) {', '.join(map(str, sorted(p)))}" for label, p in sorted(self.foreign.items())]
        return ("other processes share the measured GPU(s) (" + "; ".join(parts) +
                "): memory and speed figures are untrustworthy. Fix: run the gate on idle GPUs "
                "(devices = [...] in the config)")


# (substring of the NVML name, bytes/s, where the figure comes from): vendor data-sheet peaks.
BANDWIDTH_TABLE: tuple[tuple[str, float, str], ...] = (
    ("H200", 4.8e12, "NVIDIA H200 data sheet"),
    ("H100 NVL", 3.9e12, "NVIDIA H100 NVL data sheet"),
    ("H100 PCIe", 2.0e12, "NVIDIA H100 PCIe data sheet"),
    ("H100", 3.35e12, "NVIDIA H100 SXM data sheet"),
    ("A100-SXM4-80GB", 2.039e12, "NVIDIA A100 80GB SXM data sheet"),
    ("A100", 1.555e12, "NVIDIA A100 40GB data sheet"),
    ("L40S", 0.864e12, "NVIDIA L40S data sheet"),
    ("RTX 4090", 1.008e12, "GeForce RTX 4090 specifications"),
    ("RTX 3090 Ti", 1.008e12, "GeForce RTX 3090 Ti specifications"),
    ("RTX 3090", 0.936e12, "GeForce RTX 3090 specifications"),
)


def peak_bandwidth(nvml: Any, handle: Any, name: str) -> tuple[float | None, str]:
    """Peak memory bandwidth of one card in bytes/s and where it came from; (None, why) when unknown."""
    if nvml is not None and handle is not None:
        try:
            clock_mhz = nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM)
            bus_bits = nvml.nvmlDeviceGetMemoryBusWidth(handle)
        except Exception:  # noqa: BLE001 - older drivers, MIG handles: fall back to the table
            clock_mhz = bus_bits = 0
        if clock_mhz and bus_bits:
            return clock_mhz * 1e6 * bus_bits * 2 / 8, f"NVML: {clock_mhz} MHz x {bus_bits} bit x 2"
    for key, bw, source in BANDWIDTH_TABLE:
        if key.lower() in name.lower():
            return bw, f"table: {source}"
    return None, f"peak bandwidth of {name or 'this device'!r} unknown (not in NVML or the table)"



def visible_from_env(env: dict[str, str] | None = None) -> list[str] | None:
    return parse_visible_devices((env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES"))


def worker_gpu_candidates(worker_id: str | None) -> list[str] | None:
    """An xdist worker's GPUs to take a free one from, its own (index = worker number) first.

    None outside xdist or with fewer than two GPUs. A config that names its ``devices`` keeps them
    (the pool only picks for a server without ``CUDA_VISIBLE_DEVICES``).
    """
    if not worker_id or not worker_id.removeprefix("gw").isdigit():
        return None
    nvml, _ = nvml_module()
    count = nvml.nvmlDeviceGetCount() if nvml is not None else 0
    if count < 2:
        return None
    first = int(worker_id.removeprefix("gw")) % count
    return [str((first + i) % count) for i in range(count)]


def gpu_indices() -> list[str]:
    """NVML indices of this machine's GPUs ("0", "1", ...); empty without a GPU or a driver."""
    nvml, _ = nvml_module()
    return [str(i) for i in range(nvml.nvmlDeviceGetCount())] if nvml is not None else []
