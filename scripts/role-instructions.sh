#!/usr/bin/env bash
# Instructions per packet of each role's worker (edge, relay, gateway), counted by callgrind on the release
# appliance reading a pcap through net_pcap: client TCP flows toward the edge's VIP (a SYN each, then
# data), the edge's output toward relay 1 for the relay, and both relays' output for the gateway (both
# copies of every packet: duplicate removal, decapsulation, full NAT). The configurations are the demo's
# nodes on one port (scripts/instructions/). What is counted is the worker loop (Worker::run and all it
# calls) less the driver's receive and transmit (shim_rx_burst, shim_tx_burst) and the 100 µs tick
# (on_tick, whose count grows with time, and valgrind's time is not the packets'). Unlike times, these
# counts repeat to the packet on any host, busy or not, so two commits compare.
#   bash scripts/role-instructions.sh          # FLOWS=512 PER_FLOW=64 by default: 33 280 client packets
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v valgrind >/dev/null || { echo "valgrind is not installed (bash scripts/setup.sh installs it)" >&2; exit 1; }
FLOWS=${FLOWS:-512}
PER_FLOW=${PER_FLOW:-64}
here=scripts/instructions
cargo build -q --release --locked -p appliance
bin=$PWD/target/release/appliance
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
    rm -rf /var/run/dpdk/ri$$-*
}
trap cleanup EXIT

metric() { # metric PORT NAME: the sum of NAME's samples, or -1
    { curl -s -m 5 "http://127.0.0.1:$1/metrics" || true; } |
        awk -v n="$2" 'BEGIN{s=-1} $1 ~ "^"n"({|$)" {if(s<0)s=0; s+=$2} END{print s}'
}

# run NODE IN OUT [callgrind]: the appliance as NODE over IN until it has received every frame and sent
# what it will, its output in OUT.
run() {
    local node=$1 in=$2 out=$3 count=$4 measure=${5:-}
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    local cmd=("$bin" -l 0 --no-pci --no-huge -m 512 --file-prefix "ri$$-$node" --log-level lib.eal:error
        --vdev "net_pcap0,rx_pcap=$in,tx_pcap=$out" -- --config "$here/$node.toml")
    [ -n "$measure" ] && cmd=(valgrind --tool=callgrind --separate-callers=4 --callgrind-out-file="$work/$node.cg" "${cmd[@]}")
    APPLIANCE__MANAGEMENT__LISTEN=127.0.0.1:$port "${cmd[@]}" >"$work/$node.out" 2>"$work/$node.err" &
    local pid=$! rx=-1 tx=-1 last=-2 t0=$SECONDS
    pids+=("$pid")
    # Every frame received, then the sent count the same on two reads in a row.
    while :; do
        [ $((SECONDS - t0)) -gt 600 ] && { echo "$node: no end in 600 s (rx $rx)" >&2; tail "$work/$node.err" >&2; exit 1; }
        kill -0 "$pid" 2>/dev/null || { echo "$node exited early" >&2; tail "$work/$node.err" >&2; exit 1; }
        rx=$(metric "$port" appliance_worker_rx_packets_total)
        if [ "${rx%.*}" -ge "$count" ] 2>/dev/null; then
            tx=$(metric "$port" appliance_worker_tx_packets_total)
            [ "$tx" = "$last" ] && break
            last=$tx
        fi
        sleep 0.5
    done
    kill -TERM "$pid"
    wait "$pid" || { echo "$node: exit $?" >&2; tail "$work/$node.err" >&2; exit 1; }
    rm -rf "/var/run/dpdk/ri$$-$node"
}

# per_packet NODE: instructions per received packet of the worker loop, less driver and tick.
per_packet() {
    python3 - "$1" "$work/$1.cg" "$work/$1.out" <<'PY'
import re, sys
from collections import defaultdict
node, cg, out = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
# Callgrind's format (one event, Ir): "fn=(id) name" starts a function context (with --separate-callers,
# "name'caller'caller..."); cost lines are "position cost"; "cfn=" names a callee, and the line after its
# "calls=" line carries the call's inclusive cost.
names, self_cost, calls = {}, defaultdict(int), defaultdict(int)
def name(ref):
    m = re.match(r"\((\d+)\)(?: (.*))?", ref)
    if m.group(2) is not None:
        names[m.group(1)] = m.group(2)
    return names[m.group(1)]
fn = callee = None
after_calls = False
for line in open(cg):
    line = line.rstrip("\n")
    if line.startswith("fn="):
        fn = name(line[3:])
    elif line.startswith("cfn="):
        callee = name(line[4:])
    elif line.startswith("calls="):
        after_calls = True
    elif line and (line[0].isdigit() or line[0] in "+-*") and fn is not None:
        cost = int(line.split()[-1])
        if after_calls:
            calls[(fn, callee)] += cost
            after_calls = False
        else:
            self_cost[fn] += cost
def leaf(ctx):
    return ctx.split("'")[0]
incl = defaultdict(int)
for f, c in self_cost.items():
    incl[leaf(f)] += c
for (f, c), v in calls.items():
    if leaf(f) != leaf(c):  # a call within a function's own contexts is not counted twice
        incl[leaf(f)] += v
def total(suffix, under=None):
    """Inclusive cost of the contexts of functions ending in `suffix` (called within `under`, if given)."""
    return sum(v for (f, c), v in calls.items()
               if leaf(c).endswith(suffix) and (under is None or any(p.endswith(under) for p in c.split("'")[1:])))
loop = sum(v for k, v in incl.items() if k.endswith("Worker::run"))
rx, tx = total("shim_rx_burst"), total("shim_tx_burst")
tick = total("Worker::on_tick") - total("shim_tx_burst", under="Worker::on_tick")
packets = int(re.search(r"worker 0 \(lcore 0\): rx (\d+)", out).group(1))
if loop == 0 or packets == 0:
    sys.exit(f"{node}: no worker loop or no packets in the profile")
net = loop - rx - tx - tick
print(f"{node:8} {net / packets:8.1f} instructions per packet  ({packets} packets; loop {loop}, less "
      f"driver rx {rx}, tx {tx}, tick {tick})")
PY
}

python3 $here/traffic.py clients "$work/clients.pcap" "$FLOWS" "$PER_FLOW"
n=$(python3 $here/traffic.py count "$work/clients.pcap")
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- appliance pipelines pmd-bindings || echo ' (with uncommitted changes)'); $(valgrind --version); $n client packets"
run edge "$work/clients.pcap" "$work/edge.pcap" "$n" measure
python3 $here/traffic.py split "$work/edge.pcap" "$work/to-r1.pcap" "$work/to-r2.pcap"
n1=$(python3 $here/traffic.py count "$work/to-r1.pcap")
n2=$(python3 $here/traffic.py count "$work/to-r2.pcap")
run relay1 "$work/to-r1.pcap" "$work/r1.pcap" "$n1" measure
run relay2 "$work/to-r2.pcap" "$work/r2.pcap" "$n2"
python3 $here/traffic.py interleave "$work/r1.pcap" "$work/r2.pcap" "$work/gw-in.pcap" 02:00:00:00:04:00
ng=$(python3 $here/traffic.py count "$work/gw-in.pcap")
run gateway "$work/gw-in.pcap" "$work/gw.pcap" "$ng" measure
echo "gateway sent $(python3 $here/traffic.py count "$work/gw.pcap") of $ng packets toward the target (the rest are duplicates)"
per_packet relay1
per_packet edge
per_packet gateway
