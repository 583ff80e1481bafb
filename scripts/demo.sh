#!/usr/bin/env bash
# The main job, as root on a fresh Debian 12 machine: installs what it needs, builds the appliance, and runs
# it in a network-namespace topology
#
#   [west host 10.91.0.1] --veth-- [appliance: west 10.91.0.2 | east 10.92.0.2] --veth-- [east host 10.92.0.1]
#
# on net_af_packet. The west host pings the appliance, resolves it with arping, then pings the east host
# through it (the appliance routes and resolves its next hop by ARP). Prints the appliance's metrics and,
# after SIGTERM, its final counters. Everything is torn down on exit, also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building (release)"
cargo build --release --locked -p appliance
BIN=$PWD/target/release/appliance

ID=$$
NS_APP=dm-app-$ID NS_W=dm-west-$ID NS_E=dm-east-$ID
PREFIX=demo-$ID
LOG=$(mktemp -d)
APP_PID=

cleanup() {
  set +e
  if [ -n "$APP_PID" ] && kill -0 "$APP_PID" 2>/dev/null; then
    kill -TERM "$APP_PID"; sleep 1; kill -KILL "$APP_PID" 2>/dev/null
  fi
  for ns in "$NS_APP" "$NS_W" "$NS_E"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "/var/run/dpdk/$PREFIX" "$LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== topology"
ip netns add "$NS_APP"; ip netns add "$NS_W"; ip netns add "$NS_E"
ip -n "$NS_APP" link set lo up
i=0
for side in W E; do
  host_ns=$([ $side = W ] && echo "$NS_W" || echo "$NS_E")
  net=$([ $side = W ] && echo 91 || echo 92)
  ip link add "dm-a$i" type veth peer name "dm-h$i"
  ip link set "dm-a$i" netns "$NS_APP"; ip link set "dm-h$i" netns "$host_ns"
  ip -n "$NS_APP" link set "dm-a$i" up
  ip netns exec "$NS_APP" ethtool -K "dm-a$i" gro off tso off gso off tx off >/dev/null
  ip -n "$host_ns" link set lo up
  ip -n "$host_ns" addr add "10.$net.0.1/24" dev "dm-h$i"
  ip -n "$host_ns" link set "dm-h$i" up
  ip netns exec "$host_ns" ethtool -K "dm-h$i" tx off >/dev/null
  i=$((i + 1))
done
ip -n "$NS_W" route add 10.92.0.0/24 via 10.91.0.2
ip -n "$NS_E" route add 10.91.0.0/24 via 10.92.0.2

echo "== starting the appliance"
"$BIN" -- --config conf/router.toml --check
ip netns exec "$NS_APP" "$BIN" -l 0 --no-pci --no-huge -m 256 --file-prefix "$PREFIX" \
  --vdev net_af_packet0,iface=dm-a0 --vdev net_af_packet1,iface=dm-a1 \
  -- --config conf/router.toml >"$LOG/out" 2>"$LOG/err" &
APP_PID=$!
mgmt() { ip netns exec "$NS_APP" curl -s -m 2 "http://127.0.0.1:9100$1"; }
for _ in $(seq 1 100); do
  [ "$(mgmt /healthz 2>/dev/null)" = "ok" ] && break
  kill -0 "$APP_PID" 2>/dev/null || { cat "$LOG/err"; exit 1; }
  sleep 0.2
done
[ "$(mgmt /healthz)" = "ok" ] || { echo "appliance did not become healthy"; cat "$LOG/err"; exit 1; }

echo "== west host pings the appliance (10.91.0.2)"
ip netns exec "$NS_W" ping -c 10 -i 0.1 -W 2 10.91.0.2 | tail -3
echo "== west host resolves it with arping"
ip netns exec "$NS_W" arping -c 3 -w 5 -I dm-h0 10.91.0.2 | tail -2
echo "== west host pings the east host (10.92.0.1) through the appliance"
ip netns exec "$NS_W" ping -c 10 -i 0.1 -W 2 10.92.0.1 | tail -3

echo "== metrics (non-zero port, worker, drop and neighbour counters)"
mgmt /metrics | grep -E '^appliance_(port_(rx|tx)_packets|worker_(rx|tx)_packets|drops|neighbour_(requests|resolved|published)|mempool_in_use)' \
  | grep -v ' 0$'

echo "== stopping (SIGTERM): final counters"
kill -TERM "$APP_PID"
wait "$APP_PID" || true
APP_PID=
cat "$LOG/out"
