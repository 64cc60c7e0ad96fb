"""Memory held by the server process: VRAM through NVML, RSS through psutil.

llama-server exposes no VRAM figure (neither ``/metrics`` nor ``/props``; tools/server/server.cpp),
so we ask the driver. A background thread samples every ``interval`` seconds; the figures are the
value right after load (idle) and the peak seen while requests ran. Which VRAM method applies (the
server's own NVML process entry, or the cards' used-memory delta when its PID is invisible, as in a
container), and when neither can be trusted, is decided in :mod:`.gpu`; the method is named in the
results. Without an NVIDIA GPU, VRAM is "not measurable" (a VRAM budget is then skipped with that
reason) and the process RSS stands in for the footprint; with one, a VRAM budget is judged or fails
with the reason, never skipped.
"""

from __future__ import annotations

import threading
from typing import Any

import psutil

from pytest_specgate.server.gpu import Gpu, VramTracker, nvml_module, peak_bandwidth, select_gpus


def gpu_inventory() -> list[dict[str, Any]]:
    """Name, driver and total memory of each GPU, for fingerprints; empty without NVML."""
    pynvml, _ = nvml_module()
    if pynvml is None:
        return []
    out = []
    driver = pynvml.nvmlSystemGetDriverVersion()
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        name = pynvml.nvmlDeviceGetName(h)
        out.append({
            "index": i, "name": name.decode() if isinstance(name, bytes) else name,
            "driver": driver.decode() if isinstance(driver, bytes) else driver,
            "total_mib": pynvml.nvmlDeviceGetMemoryInfo(h).total // 2**20,
        })
    return out


class MemoryProbe:
    """Samples one process tree's VRAM (NVML) and RSS (psutil) on a background thread.

    ``visible`` is the server's ``CUDA_VISIBLE_DEVICES`` entries (None: every card). Call
    :meth:`before_load` before the server starts (the cards' baseline for the device-delta method),
    then :meth:`attach` with its PID. ``nvml`` stands in for the driver module in decision tests.
    """

    def __init__(self, pid: int = 0, interval: float = 0.5, *, visible: list[str] | None = None,
                 nvml: Any = None) -> None:
        self.pid = pid
        self.interval = interval
        self._nvml, self.nvml_reason = (nvml, "stand-in NVML") if nvml is not None else nvml_module()
        self.gpus: list[Gpu] = []
        if self._nvml is not None:
            try:
                self.gpus = select_gpus(self._nvml, visible)
            except (ValueError, self._nvml.NVMLError) as e:
                self.nvml_reason = f"cannot select GPU(s) {','.join(visible or [])}: {e}"
        self.nvml = bool(self.gpus)
        self.vram = VramTracker(self._nvml, self.gpus) if self.gpus else None
        self.vram_idle_mib: float | None = None
        self.vram_peak_mib: float | None = None
        self.rss_idle_mib: float | None = None
        self.rss_peak_mib: float | None = None
        self.n_reads = 0
        self._tree: dict[int, psutil.Process] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def gpu_present(self) -> bool:
        """A GPU is there to measure: a VRAM budget is then judged or fails, never skipped."""
        return self.vram is not None

    def before_load(self) -> MemoryProbe:
        """The cards' used memory and tenants before the server starts (device-delta baseline)."""
        if self.vram is not None:
            self.vram.before_load()
        return self

    def attach(self, pid: int) -> MemoryProbe:
        self.pid, self._tree = pid, None
        return self

    # ---- single reads ----

    def _pids(self) -> set[int]:
        """The server's process tree, rescanned every 20th read: a full /proc scan per read costs
        measurable decode speed on a 2-core machine (bench/gate_bench.py, check f)."""
        if self._tree is None or self.n_reads % 20 == 0:
            try:
                proc = psutil.Process(self.pid)
                self._tree = {self.pid: proc, **{c.pid: c for c in proc.children(recursive=True)}}
            except psutil.Error:
                self._tree = {}
        return set(self._tree) or {self.pid}

    def read_vram_mib(self) -> float | None:
        """VRAM the server holds on its cards (total), or None when not measurable (``skip_reason``)."""
        if self.vram is None:
            return None
        try:
            reading = self.vram.read(self._pids())
        except self._nvml.NVMLError as e:  # a driver hiccup must not kill the sampler thread
            self.vram.reason = f"NVML read failed ({e})"
            return None
        return reading.total if reading is not None else None

    def read_rss_mib(self) -> float | None:
        self._pids()
        total = 0
        for proc in (self._tree or {}).values():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20 if total else None

    def read(self) -> None:
        vram, rss = self.read_vram_mib(), self.read_rss_mib()
        self.n_reads += 1
        if vram is not None:
            self.vram_peak_mib = max(self.vram_peak_mib or 0.0, vram)
        if rss is not None:
            self.rss_peak_mib = max(self.rss_peak_mib or 0.0, rss)

    def mark_idle(self) -> None:
        """Record the after-load, before-requests footprint."""
        if self.vram is not None:
            try:
                self.vram.mark_idle(self._pids())
            except self._nvml.NVMLError as e:
                self.vram.reason = f"NVML read failed ({e})"
            self.vram_idle_mib = self.vram.idle.total if self.vram.idle is not None else None
        self.rss_idle_mib = self.read_rss_mib()
        self.read()

    # ---- background sampling ----

    def start(self) -> MemoryProbe:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"specgate-memory-{self.pid}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.read()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ---- results ----

    def figures(self) -> dict[str, float]:
        """Measured figures by metric name; absent keys were not measurable here.

        VRAM: ``vram_idle_mib`` and ``vram_peak_mib`` over all the server's cards, and
        ``vram_peak_mib_per_gpu``, the fullest card's peak (for a per-card budget).
        """
        out = {"rss_idle_mib": self.rss_idle_mib, "rss_peak_mib": self.rss_peak_mib}
        vram = self.vram.figures() if self.vram is not None else {}
        return {**vram, **{k: round(v, 1) for k, v in out.items() if v is not None}}

    @property
    def method(self) -> str:
        """How VRAM was measured: "per-process", "device-delta", or "" when it was not."""
        if self.vram is None or not self.vram.figures():
            return ""
        return self.vram.method or ""

    def per_gpu(self) -> dict[str, float]:
        """Peak VRAM MiB by card label ("0", "1", "0/mig1")."""
        return self.vram.per_gpu() if self.vram is not None else {}

    def foreign_tenants(self) -> str:
        """A sentence naming other processes on the measured cards; "" when there are none."""
        return self.vram.foreign_tenants() if self.vram is not None else ""

    def bandwidths(self) -> list[tuple[float | None, str]]:
        """Peak memory bandwidth of each card the server sees, in CUDA device order (for the roofline)."""
        out = []
        for g in self.gpus:
            bw, source = peak_bandwidth(self._nvml, g.handle, g.name)
            out.append((bw, source + (" (MIG instance: the whole card's figure)" if g.mig else "")))
        return out

    def describe(self) -> str:
        """One line for the report: the VRAM method and per-card peaks, or why VRAM was not measured."""
        if self.method:
            cards = ", ".join(f"GPU {k} {v:.0f} MiB" for k, v in self.per_gpu().items())
            return f"VRAM by {self.method}: {cards}"
        return self.skip_reason("vram_peak_mib")

    def skip_reason(self, metric: str) -> str:
        """Why a memory metric has no figure; "" when it has one."""
        if not metric.startswith("vram") or metric in self.figures():
            return ""
        if self.vram is None:
            return f"VRAM not measurable here: {self.nvml_reason}"
        cards = ", ".join(g.label for g in self.gpus)
        return f"VRAM not measurable on GPU(s) {cards}: {self.vram.reason or 'no reading yet'}"
