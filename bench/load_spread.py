"""How much decode differs between fresh loads of one unchanged config, against its spread within a load.

Why: the upgrade verdict's interval is only honest if it holds every source of spread between the
two sides. Samples on one server share that server's memory pages and cores; a fresh load draws
new ones. If loads differ by more than their samples explain, a verdict that treats samples as
independent mistakes one unlucky load for a regression. This starts the config's llama-server LOADS
times (argv as the gate builds it), takes one warm-up and SAMPLES sweep samples per load at POINT
tokens, and prints each load's mean and the spread between load means against the spread the
samples alone predict. ``--block N`` also cuts each load's samples into consecutive blocks of N and
prints the same comparison within a load (time, not the load); ``--extra-args`` appends flags to
the config's own, to try one (``--extra-args=--no-repack``).

Run: `.venv/bin/python bench/load_spread.py [--config demo] [--loads 10] [--samples 6] [--point 64]
[--block 6] [--extra-args "-t 1"]`
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import tempfile
from pathlib import Path

from pytest_specgate import preflight
from pytest_specgate.config import load as load_file
from pytest_specgate.measure import workloads
from pytest_specgate.server.client import Client
from pytest_specgate.server.process import LlamaServer

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="demo")
    ap.add_argument("--file", type=Path, default=REPO / "specgate.toml")
    ap.add_argument("--loads", type=int, default=10)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--point", type=int, default=64)
    ap.add_argument("--block", type=int, default=0, help="also compare blocks of this many samples within a load")
    ap.add_argument("--extra-args", default="", help="flags appended to the config's args")
    a = ap.parse_args()
    cfg = load_file(a.file).get(a.config)
    r = preflight.run(cfg)
    argv = r.args + shlex.split(a.extra_args)
    loads: list[list[float]] = []
    with tempfile.TemporaryDirectory() as logs:
        for load in range(a.loads):
            server = LlamaServer(cfg.name, r.binary, r.model, argv, cfg.device_env, Path(logs),
                                 startup_timeout=cfg.startup_timeout)
            server.start()
            try:
                client = Client(server.url, timeout=cfg.workloads.request_timeout)
                values = []
                for i in range(a.samples + 1):
                    tag = workloads.nonce()
                    body = workloads.body("sweep", seed=cfg.workloads.seed, tag=tag, exact_tokens=a.point,
                                          extras=cfg.request_extras)
                    sample = client.chat(body, workload="sweep", point=a.point, nonce=tag)
                    if i:  # the first is the warm-up, as in the gate
                        values.append(sample.timings.predicted_per_second)
                client.close()
            finally:
                server.stop()
            loads.append(values)
            print(f"load {load + 1:2d}: mean {statistics.fmean(values):6.1f} tok/s  "
                  f"samples {' '.join(f'{v:.1f}' for v in values)}", flush=True)
    what = f"{a.config} sweep@{a.point}{' ' + a.extra_args if a.extra_args else ''}"
    if a.loads > 1:
        print(f"{what}, {a.loads} loads x {a.samples} samples: {spread(loads, 'load')}")
    if a.block > 1:
        blocks = [v[i:i + a.block] for v in loads for i in range(0, len(v) - a.block + 1, a.block)]
        print(f"{what}, {len(blocks)} blocks of {a.block} samples within {a.loads} load(s): {spread(blocks, 'block')}")


def spread(groups: list[list[float]], unit: str) -> str:
    """SD of the group means against the SD the samples' own noise predicts for a mean of that size."""
    means = [statistics.fmean(g) for g in groups]
    grand, between = statistics.fmean(means), statistics.stdev(means)
    predicted = math.sqrt(statistics.fmean(statistics.variance(g) for g in groups) / len(groups[0]))
    own = math.sqrt(max(between**2 - predicted**2, 0.0))
    return (f"mean {grand:.1f} tok/s; SD of {unit} means {between:.2f} ({between / grand:.1%}), predicted by the "
            f"samples {predicted:.2f} ({predicted / grand:.1%}); the {unit}s' own spread {own / grand:.1%}")


if __name__ == "__main__":
    main()
