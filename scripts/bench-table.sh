#!/usr/bin/env bash
# Runs the stage benchmarks (criterion, pipelines/benches/stages.rs) and prints a markdown table of
# nanoseconds per packet (mean and median of the per-burst time / 32), with the machine it ran on.
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
rows = []
for d in sorted(glob.glob("target/criterion/stage/*/new")):
    b = json.load(open(os.path.join(d, "benchmark.json")))
    e = json.load(open(os.path.join(d, "estimates.json")))
    n = b["throughput"]["Elements"]
    rows.append((b["function_id"], e["mean"]["point_estimate"] / n, e["median"]["point_estimate"] / n))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Machine: {cpu}, {os.cpu_count()} vCPU; rustc {subprocess.run(['rustc','--version'],capture_output=True,text=True).stdout.split()[1]}; "
      f"{subprocess.run(['date','-u','+%Y-%m-%d'],capture_output=True,text=True).stdout.strip()}")
print()
print("| stage / working set | ns per packet (mean) | ns per packet (median) |")
print("|---|---:|---:|")
for name, mean, med in rows:
    print(f"| {name} | {mean:.1f} | {med:.1f} |")
PY
