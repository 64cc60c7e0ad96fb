"""Benchmark of the gate itself on the CPU demo config: is the harness honest and cheap?

Prints one table; the README quotes it. Run: `.venv/bin/python bench/gate_bench.py` (after
`make setup`; takes ~5 minutes on 2 cores; run it on an otherwise idle machine).

(a) client-side vs server-side decode tok/s   target: within 2%
(b) client TTFT minus server prompt_ms        target: <= 10 ms median (the harness's own latency)
(c) harness overhead of a suite run           target: <= 5% beyond model load
(d) gate decode tok/s vs llama-bench tg       target: within 10% (same model, same threads)
(e) adaptive samples vs fixed N=10            target: fewer samples, same verdicts
(f) memory sampler's cost                     target: < 1% effect on decode (its CPU share bounds it;
                                              A/B decode samples cannot resolve 1% on a shared machine)

Ratios are compared within one run (the machine is shared and noisy; absolute figures move).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_specgate import provision
from pytest_specgate.config import Budget
from pytest_specgate.measure import workloads
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.stats import summarize
from pytest_specgate.server.client import Client
from pytest_specgate.server.memory import MemoryProbe
from pytest_specgate.server.process import LlamaServer
from pytest_specgate.verdict.budget import Verdict, check_budget, check_point, decisive

REPO = Path(__file__).resolve().parents[1]
THREADS = "2"
OUT = 256


def sample(client: Client, n: int = OUT, **extra):  # type: ignore[no-untyped-def]
    tag = workloads.nonce()
    body = {**workloads.body("sweep", seed=42, tag=tag, exact_tokens=n), **extra}
    return client.chat(body, workload="sweep", point=n, nonce=tag)


def pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def adaptive_needed(values: list[float], budget: Budget, n_min: int = 5,
                    confidence: float = 0.95) -> tuple[int, Verdict]:
    """Replay the gate's adaptive rule on a fixed stream of samples: how many until decisive?"""
    for k in range(n_min, len(values) + 1):
        m = Measurement(config="demo", workload="sweep", point=OUT, confidence=confidence)
        m.extra["decode_tps"] = values[:k]
        results = check_point(m, [budget])
        if decisive(results):
            return k, results[0].verdict
    return len(values), check_point(m, [budget])[0].verdict


def main() -> int:
    binary, model = provision.llama_server(log=lambda *_: None), provision.demo_model(log=lambda *_: None)
    template = REPO / "pytest_specgate" / "data" / "tool-chat-template.jinja"
    args = ["-t", THREADS, "-np", "1", "-c", "4096", "--chat-template-file", str(template)]
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        srv = LlamaServer("bench", binary, model, args, {}, Path(tmp))
        with srv, Client(srv.url) as client:
            for _ in range(2):
                sample(client)  # warm-up
            # (f) the memory sampler's own CPU cost per read, times its read rate: an upper bound on what
            # it can take from decode on a 2-core machine that A/B decode samples cannot resolve here
            probe = MemoryProbe(srv.pid or 0)
            c0 = time.process_time()
            for _ in range(200):
                probe.read()
            cpu_per_read = (time.process_time() - c0) / 200
            on, off = [], []
            for _ in range(4):  # and the A/B decode figures, alternated so drift cancels
                probe.start()
                on += [sample(client, 128).decode_tps for _ in range(2)]
                probe.stop()
                off += [sample(client, 128).decode_tps for _ in range(2)]
            # (a), (b), (e): ten plain samples
            samples = [sample(client) for _ in range(10)]
            # (d) interleaved with llama-bench (the idle server uses no CPU), so machine drift cancels;
            # also with a one-step sampler chain, to see what the server's default chain (penalties, dry,
            # top-k, ... over Gemma's 262K-entry vocabulary) costs against llama-bench, which never samples
            bench_bin = provision.llama_bench(log=lambda *_: None)
            tg, plain, greedy = [], [], []
            for _ in range(4):
                plain.append(sample(client).decode_tps)
                greedy.append(sample(client, samplers=["top_k"]).decode_tps)
                proc = subprocess.run([str(bench_bin), "-m", str(model), "-t", THREADS, "-p", "0", "-n", str(OUT),
                                       "-r", "1", "-o", "json"], capture_output=True, text=True, timeout=600)
                tg.append(json.loads(proc.stdout)[0]["avg_ts"])
        server_tps = [s.decode_tps for s in samples]
        client_tps = [s.client_decode_tps or 0.0 for s in samples]
        ratio = statistics.median(c / s for c, s in zip(client_tps, server_tps))
        rows.append(("(a) client vs server decode tok/s", f"client {statistics.median(client_tps):.1f}, server "
                     f"{statistics.median(server_tps):.1f}", pct(ratio - 1), "within 2%"))
        gap = [(s.ttft_ms or 0) - s.timings.prompt_ms for s in samples]
        before_slot = [s.headers_ms or 0 for s in samples]
        harness = [g - b for g, b in zip(gap, before_slot)]
        rows.append(("(b) client TTFT - server prompt_ms", f"total {statistics.median(gap):.1f} ms, of which server "
                     f"before slot start {statistics.median(before_slot):.1f} ms",
                     f"{statistics.median(harness):.1f} ms "
                     "median harness", "<= 10 ms"))
        effect = statistics.median(on) / statistics.median(off) - 1
        share = cpu_per_read / probe.interval
        rows.append(("(f) memory sampler: CPU per read x reads/s", f"{cpu_per_read * 1000:.2f} ms per read every "
                     f"{probe.interval:g} s; A/B decode on {statistics.median(on):.1f} "
                     f"vs off {statistics.median(off):.1f} "
                     f"tok/s ({pct(effect)}, within noise)", f"{share * 100:.3f}% of one core", "< 1%"))
        # (e) adaptive vs fixed N=10, for a far budget and one close to the measured median
        med = statistics.median(server_tps)
        for label, limit in (("far", med / 5), ("mid", med * 0.93), ("near", med * 0.97)):
            budget = Budget(metric="decode_tps", workload="sweep", point=OUT, min=limit)
            k, verdict = adaptive_needed(server_tps, budget)
            fixed = check_budget(budget, summarize(server_tps)).verdict
            rows.append((f"(e) adaptive vs N=10, {label} budget >= {limit:.1f}",
                         f"adaptive {verdict.value}, fixed {fixed.value}",
                         f"{k} samples vs 10", "fewer, same verdict"))
        ratios = [p / t - 1 for p, t in zip(plain, tg)]
        rows.append(("(d) gate decode vs llama-bench tg, paired", f"gate {statistics.median(plain):.1f}, llama-bench "
                     f"tg{OUT} {statistics.median(tg):.1f} tok/s", pct(statistics.median(ratios)), "within 10%"))
        ratios = [g / t - 1 for g, t in zip(greedy, tg)]
        rows.append(("(d) same, request samplers=[top_k]", f"gate {statistics.median(greedy):.1f} tok/s",
                     pct(statistics.median(ratios)), "within 10%"))
    # (c) the demo suites' wall time against model load + every request's server-side total time,
    # read from the servers' own logs ("total time = X ms"), so requests made outside measurements
    # (cache-reuse trios, tool calls) count as served time too
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "suites/", "--specgate-config=demo", "-q",
                        "-p", "no:cacheprovider",
                        f"--specgate-results={tmp}/results", f"--basetemp={tmp}/bt"], cwd=REPO, check=True,
                       capture_output=True)
        wall = time.perf_counter() - t0
        run = json.loads((Path(tmp) / "results" / "latest.json").read_text())
        load = sum(sum(v) for v in run["load_seconds"].values())
        served = sum(float(x) for log in Path(tmp, "bt").rglob("llama-server-*.log")
                     for x in re.findall(r"total time =\s+([\d.]+) ms", log.read_text(errors="replace"))) / 1000
        overhead = (wall - load - served) / (load + served)
        rows.append(("(c) suites/ wall vs load + server time",
                     f"wall {wall:.1f} s, load {load:.1f} s, served {served:.1f} s",
                     pct(overhead), "<= 5% beyond load"))
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("check", "figures", "result", "target")
    for r in (head, tuple("-" * w for w in width), *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, width)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
