#!/usr/bin/env bash
# Runs the stage benchmarks (criterion, pipelines/benches/stages.rs) and prints a markdown table of
# nanoseconds per packet (per-burst time / 32): "warm" with the burst's packets in cache (as right after rx
# and prefetch), "cold" with them out of cache; mean and median. Names the machine it ran on.
#   bash scripts/bench-table.sh            # full run (about 2 minutes)
#   bash scripts/bench-table.sh --quick    # smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
args=()
[ "${1:-}" = "--quick" ] && args=(--warm-up-time 1 --measurement-time 2)
cargo bench -q -p pipelines --bench stages -- "${args[@]}" >/dev/null
python3 - <<'PY'
import json, glob, os, platform, subprocess
def load(group):
    out = {}
    for d in sorted(glob.glob(f"target/criterion/{group}/*/new")):
        b = json.load(open(os.path.join(d, "benchmark.json")))
        e = json.load(open(os.path.join(d, "estimates.json")))
        n = b["throughput"]["Elements"]
        out[b["function_id"]] = (e["mean"]["point_estimate"] / n, e["median"]["point_estimate"] / n)
    return out
warm, cold = load("stage"), load("stage_cold")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Machine: {cpu}, {os.cpu_count()} vCPU; rustc {subprocess.run(['rustc','--version'],capture_output=True,text=True).stdout.split()[1]}; "
      f"{subprocess.run(['date','-u','+%Y-%m-%d'],capture_output=True,text=True).stdout.strip()}")
print()
print("| stage / working set | warm mean | warm median | cold mean | cold median |")
print("|---|---:|---:|---:|---:|")
for name in sorted(warm):
    w = warm[name]
    c = cold.get(name, (float("nan"), float("nan")))
    print(f"| {name} | {w[0]:.1f} | {w[1]:.1f} | {c[0]:.1f} | {c[1]:.1f} |")
PY
