"""Memory held by the server process: VRAM through NVML, RSS through psutil.

llama-server exposes no VRAM figure (neither ``/metrics`` nor ``/props``; tools/server/server.cpp),
so we ask the driver. A background thread samples every ``interval`` seconds; the figures are the
value right after load (idle) and the peak seen while requests ran. On a machine without an NVIDIA
GPU, VRAM is "not measurable" (a VRAM budget is then skipped with that reason) and the process RSS
stands in for the footprint.
"""

from __future__ import annotations

import threading
from typing import Any

import psutil

try:  # nvidia-ml-py provides the `pynvml` module
    import pynvml
except ImportError:  # pragma: no cover - it is a declared dependency
    pynvml = None


def _nvml() -> tuple[bool, str]:
    if pynvml is None:
        return False, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as e:  # no driver, no device
        return False, f"NVML unavailable ({e})"
    if count == 0:
        return False, "NVML sees no GPU"
    return True, f"{count} GPU(s)"


def gpu_inventory() -> list[dict[str, Any]]:
    """Name, driver and total memory of each GPU, for fingerprints; empty without NVML."""
    ok, _ = _nvml()
    if not ok:
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
    """Samples one process tree's VRAM (NVML) and RSS (psutil) on a background thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.nvml, self.nvml_reason = _nvml()
        self.vram_idle_mib: float | None = None
        self.vram_peak_mib: float | None = None
        self.rss_idle_mib: float | None = None
        self.rss_peak_mib: float | None = None
        self.n_reads = 0
        self._tree: dict[int, psutil.Process] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        """VRAM used by the process tree across all GPUs, or None when NVML cannot see it."""
        if not self.nvml:
            return None
        pids, used, seen = self._pids(), 0, False
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            procs = []
            for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
                try:
                    procs += getter(h)
                except pynvml.NVMLError:
                    pass
            for p in procs:
                if p.pid in pids and p.usedGpuMemory is not None:
                    used += p.usedGpuMemory
                    seen = True
        return used / 2**20 if seen else None

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
        self.vram_idle_mib, self.rss_idle_mib = self.read_vram_mib(), self.read_rss_mib()
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

    def figures(self) -> dict[str, float]:
        """Measured figures by metric name; absent keys were not measurable here."""
        out = {
            "vram_idle_mib": self.vram_idle_mib, "vram_peak_mib": self.vram_peak_mib,
            "rss_idle_mib": self.rss_idle_mib, "rss_peak_mib": self.rss_peak_mib,
        }
        return {k: round(v, 1) for k, v in out.items() if v is not None}

    def skip_reason(self, metric: str) -> str:
        if metric.startswith("vram") and self.vram_peak_mib is None:
            return (f"VRAM not measurable here: {self.nvml_reason}" if not self.nvml
                    else "NVML does not list the server process (CPU-only build or other container)")
        return ""
