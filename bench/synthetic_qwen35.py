"""Size, load time and decode rate of the synthetic qwen35 target: plain, draft-mtp, draft-dflash.

Why: the CI twins of the production configs run on these tiny models; this prints what they cost on
the machine at hand (file size, server start to /health 200, decode tok/s with -t 2), with the exact
argv, so the closing note of issue 10 can quote measured figures. Decode is the median over
``ROUNDS`` servers x 3 requests (after one warm-up request each); on a shared 2-core box the spread
is large, so the min/max are printed too.

Usage: ``.venv/bin/python bench/synthetic_qwen35.py [DIR] [ROUNDS]``
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import httpx

from pytest_specgate.provision.llama_cpp import manifest_path, reusable_build
from pytest_specgate.provision.qwen35 import write_dflash_drafter, write_qwen35_mtp
from pytest_specgate.server.process import LlamaServer

COMMON = ["--reasoning-budget", "256", "-fa", "on", "-ctk", "q4_0", "-ctv", "q4_0", "--jinja",
          "-c", "4096", "-t", "2", "-np", "1"]
SPEC = ["--spec-draft-n-max", "6", "--spec-draft-p-min", "0.75"]


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/specgate-synthetic-qwen35")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    build = reusable_build(manifest_path())
    if build is None:
        sys.exit("the pinned llama-server is not built; run `specgate provision` first")
    binary = build.binaries["llama-server"]
    target = write_qwen35_mtp(root / "target.gguf")
    drafter = write_dflash_drafter(root / "drafter.gguf")
    print(f"target {target} {target.stat().st_size} B; drafter {drafter} {drafter.stat().st_size} B")
    modes = {
        "plain": [],
        "mtp": ["--spec-type", "draft-mtp", *SPEC],
        "dflash": ["--spec-type", "draft-dflash", "-md", str(drafter), *SPEC],
    }
    results: dict[str, dict[str, list[float]]] = {m: {"load_s": [], "tok_s": [], "draft_n": [], "accepted": []}
                                                  for m in modes}
    argv: dict[str, str] = {}
    for _ in range(rounds):
        for mode, spec in modes.items():
            server = LlamaServer(f"bench-{mode}", binary, target, spec + COMMON, dict(os.environ),
                                 root / "logs", startup_timeout=300)
            with server:
                argv[mode] = server.command_line()
                results[mode]["load_s"].append(server.load_seconds)
                for i in range(4):
                    resp = httpx.post(f"{server.url}/v1/chat/completions", timeout=600, json={
                        "messages": [{"role": "user", "content": "Write a linked list class in Python."}],
                        "max_tokens": 256, "temperature": 0, "seed": 42})
                    resp.raise_for_status()
                    t = resp.json()["timings"]
                    if i:  # the first request warms up
                        results[mode]["tok_s"].append(t["predicted_per_second"])
                        results[mode]["draft_n"].append(t.get("draft_n", 0))
                        results[mode]["accepted"].append(t.get("draft_n_accepted", 0))
    for mode, r in results.items():
        print(json.dumps({
            "mode": mode,
            "argv": argv[mode],
            "load_s_median": round(statistics.median(r["load_s"]), 2),
            "decode_tok_s_median": round(statistics.median(r["tok_s"]), 1),
            "decode_tok_s_min_max": [round(min(r["tok_s"]), 1), round(max(r["tok_s"]), 1)],
            "draft_n_per_256": statistics.median(r["draft_n"]),
            "accepted_per_256": statistics.median(r["accepted"]),
        }))


if __name__ == "__main__":
    main()
