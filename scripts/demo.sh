#!/usr/bin/env bash
# The main job, as root on a fresh Debian 12 machine: installs what it needs, builds the appliance, and runs
# the overlay in network namespaces (scripts/overlay-net.sh draws the topology):
#
#   client --- edge ---+--- relay 1 (eu) ---+--- gateway (full NAT) --- target server
#                      +--- relay 2 (us) ---+          (the relays sit behind a router namespace)
#
# The client resolves app.overlay.test through the DNS mapper (to the edge's VIP) and downloads a 50 MB
# file from the target's HTTP server through the overlay, twice: with both
# paths healthy, then with relay 1's links cut in the middle of the transfer. After each it prints the
# bytes, time, sha256 check, packets per path, duplicates discarded and NAT sessions. Everything is torn
# down on exit, also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building (release)"
cargo build --release --locked -p appliance -p mapper
BIN=$PWD/target/release/appliance
NET=scripts/overlay-net.sh
ID=$$
DIR=$(mktemp -d)
SERVER=

cleanup() {
  set +e
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
  bash "$NET" down "$ID" "$DIR"
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== topology and appliances (edge, relay1, relay2, gateway on net_af_packet)"
bash "$NET" up "$ID" "$BIN" "$DIR"
mkdir -p "$DIR/www"
dd if=/dev/urandom of="$DIR/www/blob" bs=1M count=50 status=none
WANT=$(sha256sum "$DIR/www/blob" | cut -d' ' -f1)
ip netns exec "ov$ID-srv" python3 -m http.server 8080 --bind 10.20.0.10 --directory "$DIR/www" \
  >"$DIR/http.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 50); do
  ip netns exec "ov$ID-srv" curl -s -o /dev/null -m 1 http://10.20.0.10:8080/ && break
  sleep 0.2
done

metric() { # node name label-filter: sum of matching samples
  bash "$NET" mgmt "$ID" "$1" /metrics | awk -v n="$2" -v f="$3" \
    '$1 ~ "^"n"[{ ]" && index($1, f) { s += $2 } END { printf "%d", s }'
}
declare -A BASE
# Dedupe results the summaries print, in their order.
DEDUPE="passed discarded rogue lost"
snapshot() {
  for k in gw:1 gw:2 edge:3 edge:4; do
    BASE[$k]=$(metric "${k%%:*}" appliance_overlay_path_packets_total "path=\"${k##*:}\",name=\"\",direction=\"rx\"")
  done
  for n in gw edge; do
    for r in $DEDUPE; do
      BASE[$n:$r]=$(metric $n appliance_dedupe_packets_total "result=\"$r\"")
    done
  done
}
summary() { # title seconds
  local got size
  got=$(sha256sum "$DIR/got" | cut -d' ' -f1)
  size=$(stat -c %s "$DIR/got")
  echo "== summary: $1"
  printf '  transfer: %d bytes in %.2f s (%.0f Mbit/s), sha256 %s\n' "$size" "$2" \
    "$(echo "$size * 8 / $2 / 1000000" | bc -l)" "$([ "$got" = "$WANT" ] && echo matches || echo MISMATCH)"
  for k in gw:1 gw:2 edge:3 edge:4; do
    local n=${k%%:*} p=${k##*:} now
    now=$(metric "$n" appliance_overlay_path_packets_total "path=\"$p\",name=\"\",direction=\"rx\"")
    printf '  path %s (%s): %d packets received at the %s\n' "$p" \
      "$([ $p = 1 ] || [ $p = 3 ] && echo via relay 1 || echo via relay 2)" $((now - BASE[$k])) \
      "$([ $n = gw ] && echo gateway || echo edge)"
  done
  for n in gw edge; do
    local since=()
    for r in $DEDUPE; do
      since+=($(($(metric $n appliance_dedupe_packets_total "result=\"$r\"") - BASE[$n:$r])))
    done
    # rogue: copies that came later than the history window behind their twin (dropped, as duplicates are)
    printf '  %s dedupe: passed %d, duplicates discarded %d, rogue %d, lost %d\n' \
      "$([ $n = gw ] && echo gateway || echo edge)" "${since[@]}"
  done
  printf '  gateway NAT sessions: %d created (tcp), %d live\n' \
    "$(metric gw appliance_nat_sessions_created_total 'proto="tcp"')" "$(metric gw appliance_nat_sessions '')"
  [ "$got" = "$WANT" ]
}

echo "== the client resolves the application's name through the mapper, and pings it through the overlay"
ip netns exec "ov$ID-cl" getent hosts app.overlay.test
ip netns exec "ov$ID-cl" ping -c 5 -i 0.2 -W 1 app.overlay.test | tail -2

echo "== download 1: both paths healthy"
snapshot
t0=$(date +%s.%N)
ip netns exec "ov$ID-cl" curl -s -f -m 120 -o "$DIR/got" http://app.overlay.test/blob
summary "both paths healthy" "$(echo "$(date +%s.%N) - $t0" | bc -l)"

echo "== download 2: relay 1's links cut after 3 s (curl limited to 5 MB/s so the cut lands mid-transfer)"
snapshot
t0=$(date +%s.%N)
ip netns exec "ov$ID-cl" curl -s -f -m 120 --limit-rate 5M -o "$DIR/got" http://app.overlay.test/blob &
CURL=$!
sleep 3
bash "$NET" cut "$ID" r1
echo "   relay 1 cut at $(echo "$(date +%s.%N) - $t0" | bc -l | cut -c1-4) s"
wait $CURL
summary "relay 1 cut mid-transfer" "$(echo "$(date +%s.%N) - $t0" | bc -l)"

echo "== stopping the appliances (final counters of the gateway)"
kill "$SERVER"; SERVER=
bash "$NET" down "$ID" "$DIR"
cat "$DIR/gw.out"
