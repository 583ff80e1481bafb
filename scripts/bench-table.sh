#!/usr/bin/env bash
# Runs criterion benchmarks of pipelines/ and prints markdown tables of nanoseconds per packet (per-burst
# time / 32). Names the machine it ran on.
#   bash scripts/bench-table.sh              # stage benchmarks (benches/stages.rs): "warm" with the burst's
#                                            # packets in cache (as right after rx and prefetch), "cold" with
#                                            # them out of cache; mean and median (about 2 minutes)
#   bash scripts/bench-table.sh nat          # gateway NAT (benches/nat.rs): new sessions and established
#                                            # translation, one hot flow and 1 M live sessions
#   add --quick for a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bench=stages
args=()
for a in "$@"; do
    case "$a" in
        nat) bench=nat ;;
        --quick) args=(--warm-up-time 1 --measurement-time 2) ;;
        *) echo "usage: $0 [nat] [--quick]" >&2; exit 2 ;;
    esac
done
started=$(date +%s)
cargo bench -q -p pipelines --bench "$bench" -- "${args[@]}" >/dev/null
STARTED="$started" BENCH="$bench" python3 - <<'PY'
import json, glob, os, subprocess
def load(group):
    out = {}
    for d in sorted(glob.glob(f"target/criterion/{group}/*/new") + glob.glob(f"target/criterion/{group}/*/*/new")):
        # Only what this run measured (earlier runs, e.g. with NAT_BENCH_SESSIONS, leave other rows).
        if os.path.getmtime(os.path.join(d, "estimates.json")) < int(os.environ["STARTED"]):
            continue
        b = json.load(open(os.path.join(d, "benchmark.json")))
        e = json.load(open(os.path.join(d, "estimates.json")))
        n = b["throughput"]["Elements"]
        name = b["function_id"] + ("/" + b["value_str"] if b.get("value_str") else "")
        out[name] = (e["mean"]["point_estimate"] / n, e["median"]["point_estimate"] / n)
    return out
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Machine: {cpu}, {os.cpu_count()} vCPU; rustc {subprocess.run(['rustc','--version'],capture_output=True,text=True).stdout.split()[1]}; "
      f"{subprocess.run(['date','-u','+%Y-%m-%d'],capture_output=True,text=True).stdout.strip()}")
print()
if os.environ["BENCH"] == "nat":
    nat = load("nat")
    print("| benchmark | ns per packet (mean) | median | millions per second per core (from the mean) |")
    print("|---|---:|---:|---:|")
    for name in sorted(nat):
        m, md = nat[name]
        print(f"| {name} | {m:.1f} | {md:.1f} | {1000.0 / m:.1f} |")
else:
    warm, cold = load("stage"), load("stage_cold")
    print("| stage / working set | warm mean | warm median | cold mean | cold median |")
    print("|---|---:|---:|---:|---:|")
    for name in sorted(warm):
        w = warm[name]
        c = cold.get(name, (float("nan"), float("nan")))
        print(f"| {name} | {w[0]:.1f} | {w[1]:.1f} | {c[0]:.1f} | {c[1]:.1f} |")
PY
