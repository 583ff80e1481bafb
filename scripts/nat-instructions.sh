#!/usr/bin/env bash
# Instructions per packet of the NAT burst form (pipelines::nat::Nat::run), counted by callgrind on the
# criterion benchmark's hot flows (NAT_BENCH_SESSIONS=4096): client side (out) and replies (in). Unlike
# times, these counts are exact and the same on a busy or a slow host, so two commits compare whatever the
# machine is doing; they say nothing of memory stalls (the 1M-session rows' extra cost).
#   bash scripts/nat-instructions.sh        # about a minute after the bench is built
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v valgrind >/dev/null || { echo "valgrind is not installed (bash scripts/setup.sh installs it)" >&2; exit 1; }
bin=$(cargo bench -q -p pipelines --bench nat --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "nat" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "no nat bench executable" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- pipelines || echo ' (with uncommitted changes)'); $(valgrind --version)"
for dir in out in; do
    NAT_BENCH_SESSIONS=4096 valgrind --tool=callgrind --callgrind-out-file="$out/$dir" \
        --toggle-collect='*Nat::run*' "$bin" --bench "established_$dir/hot_flow\$" --profile-time 2 >/dev/null 2>&1
    python3 - "$out/$dir" "$dir" <<'PY'
import re, sys
path, direction = sys.argv[1], sys.argv[2]
text = open(path).read()
names = {}
for m in re.finditer(r"^c?fn=\((\d+)\) (.*)$", text, re.M):
    names[m.group(1)] = m.group(2)
runs = {k for k, v in names.items() if v.endswith("Nat::run")}
lines = text.split("\n")
calls = 0
for i, l in enumerate(lines):
    m = re.match(r"^cfn=\((\d+)\)", l)
    if m and m.group(1) in runs and i + 1 < len(lines) and lines[i + 1].startswith("calls="):
        calls += int(lines[i + 1].split("=")[1].split()[0])
# Calls of Nat::run from Nat::run itself (none today) would be counted twice; the bench calls it once a burst.
total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))
packets = calls * 32
print(f"established_{direction}/hot_flow: {total / packets:.1f} instructions per packet "
      f"({total} in {calls} bursts of 32)")
PY
done
