"""What the memory sampler costs the decode it measures (target: < 1% of decode).

The sampler reads the server's RSS (psutil) and, on a GPU machine, its VRAM (NVML) on a background
thread every ``interval`` seconds while requests run. Two figures, on the CPU demo (the 2-core
development machine; no NVIDIA GPU, so the NVML part is absent and says so):

1. its own CPU time per read x reads per second, as a share of one core: an upper bound on the
   decode it can take, since decode is compute-bound on the CPU and the sampler holds no lock the
   server needs;
2. decode tok/s with the sampler running vs stopped, in alternating blocks (ABBA) so machine drift
   cancels; on a shared 2-core machine this moves by a few percent either way, so it cannot resolve
   1% and is shown as the noise floor next to the bound.

    .venv/bin/python bench/sampler_cost.py [--blocks 4] [--per-block 2] [--tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pytest_specgate import provision
from pytest_specgate.measure import workloads
from pytest_specgate.server.client import Client
from pytest_specgate.server.memory import MemoryProbe
from pytest_specgate.server.process import LlamaServer

REPO = Path(__file__).resolve().parents[1]


def decode(client: Client, n: int) -> float:
    tag = workloads.nonce()
    body = workloads.body("sweep", seed=42, tag=tag, exact_tokens=n)
    return client.chat(body, workload="sweep", point=n, nonce=tag).decode_tps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=4, help="ABBA blocks (each: sampler on, then off)")
    ap.add_argument("--per-block", type=int, default=2, help="decode samples per block")
    ap.add_argument("--tokens", type=int, default=128, help="output tokens per sample")
    ap.add_argument("--reads", type=int, default=400, help="reads timed for the CPU cost")
    args = ap.parse_args()

    binary, model = provision.llama_server(log=lambda *_: None), provision.demo_model(log=lambda *_: None)
    template = REPO / "pytest_specgate" / "data" / "tool-chat-template.jinja"
    server_args = ["-t", "2", "-np", "1", "-c", "4096", "--chat-template-file", str(template)]
    with tempfile.TemporaryDirectory() as tmp:
        srv = LlamaServer("sampler-cost", binary, model, server_args, {}, Path(tmp))
        with srv, Client(srv.url) as client:
            decode(client, args.tokens)  # warm-up
            probe = MemoryProbe(srv.pid or 0)
            probe.mark_idle()
            # 1. CPU time per read (thread CPU time: what the sampler thread itself burns)
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(args.reads):
                probe.read()
            cpu_per_read = (time.thread_time() - c0) / args.reads
            wall_per_read = (time.perf_counter() - w0) / args.reads
            # 2. ABBA decode, sampler on / off
            on: list[float] = []
            off: list[float] = []
            for b in range(args.blocks):
                order = (True, False) if b % 2 == 0 else (False, True)
                for sampling in order:
                    if sampling:
                        probe.start()
                    values = [decode(client, args.tokens) for _ in range(args.per_block)]
                    if sampling:
                        probe.stop()
                    (on if sampling else off).extend(values)
            reads_per_s = 1 / probe.interval
    share = cpu_per_read * reads_per_s
    med_on, med_off = statistics.median(on), statistics.median(off)
    decode_share = share / 2  # the server decodes on 2 threads (-t 2): one core of sampler time is half of it
    print(f"VRAM part: {probe.nvml_reason if not probe.nvml else 'NVML present'}")
    print(f"sampler: {cpu_per_read * 1e3:.3f} ms CPU ({wall_per_read * 1e3:.3f} ms wall) per read, "
          f"{reads_per_s:g} reads/s -> {share:.4%} of one core, at most {decode_share:.4%} of a 2-thread decode "
          f"(target < 1%: {'met' if decode_share < 0.01 else 'MISSED'})")
    print(f"decode with sampler {med_on:.1f} tok/s vs without {med_off:.1f} tok/s: {med_on / med_off - 1:+.2%} "
          f"(N={len(on)}+{len(off)}, ABBA; the machine's block-to-block noise, not the sampler's effect)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
