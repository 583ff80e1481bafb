#!/usr/bin/env bash
# The overlay test network in network namespaces, for the demo (scripts/demo.sh) and the end-to-end tests
# (appliance/tests/overlay.rs):
#
#   client 10.10.0.2 --- [edge 10.10.0.1 | 10.1.0.1] ---+                +--- [relay1 10.2.0.1] (eu)
#   VIP 10.10.0.100        node 1                        +--- inet -----+--- [relay2 10.3.0.1] (us)
#                                                        |  (router ns)  |
#   server 10.20.0.10 --- [gateway 10.20.0.1 | 10.4.0.1]-+  10.x.0.254   +
#   (python http.server      node 4, pool 10.20.0.100
#    :8080, iperf3 :5201)
#
# Appliances run on net_af_packet (one worker each, adaptive idle); the Internet between them is a
# kernel-forwarding router namespace ("inet", one interface per appliance), where impairment goes:
#   overlay-net.sh up ID BIN DIR [WORKERS] [RELAYS]
#                                              build, start, wait until healthy (state in DIR); WORKERS of
#                                              the edge and the gateway, 1 or 2 (qpairs=2, so kernel fanout
#                                              spreads packets over both); RELAYS 2, or 3: relay 3 (region "ap",
#                                              10.5.0.1) joins, and the edge and gateway select 2 of 3
#                                              paths from probes (conf/overlay/three-relays.*.toml)
#   overlay-net.sh down ID DIR                 stop the appliances (final counters in DIR/*.out), remove all
#   overlay-net.sh cut ID r1|r2|r3             take a relay's router links down (a dead path)
#   overlay-net.sh heal ID r1|r2|r3
#   overlay-net.sh loss ID r1|r2|r3 PERCENT    drop PERCENT % of what the relay sends (both directions of
#                                              its path), in the router's forward chain; 0 removes it
#   overlay-net.sh mgmt ID NODE PATH           GET an appliance's management endpoint (edge|r1|r2|r3|gw)
# Appliances run on copies of conf/overlay/*.toml in DIR (edge.toml, relay1.toml, relay2.toml,
# gateway.toml): edit one and reload it (kill -HUP, or POST /reload) to change the running network.
# DNS: the mapper (the `mapper` binary next to BIN) runs in namespace "dns", authoritative for
# overlay.test: app.overlay.test -> the edge's VIP while the edge's /healthz answers. The client reaches it
# over a kernel link (10.98.0.0/24; /etc/netns/ov<ID>-cl/resolv.conf points there), and the mapper reaches
# the edge's management endpoint over a management link (10.99.0.0/24; the edge's endpoint listens on
# 0.0.0.0:9100 in its namespace).
# Namespaces are ov<ID>-{cl,edge,inet,r1,r2,r3,gw,srv,dns}; DPDK file prefixes ov<ID>-<node>.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?command}; ID=${2:?id}
ns() { echo "ov$ID-$1"; }
NODES="edge r1 r2 r3 gw"

up() {
  local BIN=${1:?binary} DIR=${2:?state dir} WORKERS=${3:-1} RELAYS=${4:-2}
  mkdir -p "$DIR"
  local nodes="edge r1 r2 gw" spaces="cl edge inet r1 r2 gw srv dns"
  if [ "$RELAYS" = 3 ]; then nodes="edge r1 r2 r3 gw"; spaces="$spaces r3"; fi
  for n in $spaces; do
    ip netns add "$(ns $n)"
    ip -n "$(ns $n)" link set lo up
  done
  # link A-ns A-if B-ns B-if
  link() { ip link add "$2" netns "$(ns $1)" type veth peer name "$4" netns "$(ns $3)"; }
  link cl eth0 edge c0
  link edge u0 inet e
  link r1 u0 inet r1
  link r2 u0 inet r2
  link gw u0 inet g
  link gw t0 srv eth0
  if [ "$RELAYS" = 3 ]; then link r3 u0 inet r3; fi
  link cl d0 dns c
  link edge m0 dns e
  # DPDK reads these: promiscuous, no offloads (af_packet sees frames before GRO and checksums).
  local ends=("edge c0" "edge u0" "r1 u0" "r2 u0" "gw u0" "gw t0")
  if [ "$RELAYS" = 3 ]; then ends+=("r3 u0"); fi
  for x in "${ends[@]}"; do
    set -- $x
    ip -n "$(ns $1)" link set "$2" up promisc on
    ip netns exec "$(ns $1)" ethtool -K "$2" gro off tso off gso off tx off rx off >/dev/null 2>&1 || true
  done
  # Kernel hosts and the router: checksums in software (ENVIRONMENT.md: TCP never connects otherwise).
  host() { # ns if addr
    ip -n "$(ns $1)" addr add "$3" dev "$2"
    ip -n "$(ns $1)" link set "$2" up
    ip netns exec "$(ns $1)" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
  }
  host cl eth0 10.10.0.2/24
  # A receive buffer of at most 1 MB (the default grows to 32 MB): a download that curl rate-limits is
  # then rate-limited on the wire too, so a path cut lands in the middle of it.
  ip netns exec "$(ns cl)" sysctl -qw net.ipv4.tcp_rmem="4096 131072 1048576"
  host srv eth0 10.20.0.10/24
  host inet e 10.1.0.254/24
  host inet r1 10.2.0.254/24
  host inet r2 10.3.0.254/24
  host inet g 10.4.0.254/24
  if [ "$RELAYS" = 3 ]; then host inet r3 10.5.0.254/24; fi
  host cl d0 10.98.0.2/24
  host dns c 10.98.0.1/24
  host edge m0 10.99.0.2/24
  host dns e 10.99.0.1/24
  mkdir -p "/etc/netns/$(ns cl)"
  echo "nameserver 10.98.0.1" >"/etc/netns/$(ns cl)/resolv.conf"
  cat >"$DIR/mapper.toml" <<EOT
# Written by scripts/overlay-net.sh: the mapper of the overlay test network.
listen = "10.98.0.1:53"
metrics = "10.98.0.1:9200"
zone = "overlay.test"
ttl = 5
health_interval_ms = 500
health_timeout_ms = 400
default_region = "eu"

[[regions]]
prefix = "10.98.0.0/24"
region = "eu"

[[edges]]
name = "edge"
region = "eu"
health = "http://10.99.0.2:9100/healthz"

[[apps]]
hostname = "app.overlay.test"
edges = [{ edge = "edge", vip = "10.10.0.100" }]
EOT
  local MAPPER
  MAPPER="$(dirname "$BIN")/mapper"
  "$MAPPER" --config "$DIR/mapper.toml" --check >/dev/null
  ip netns exec "$(ns dns)" "$MAPPER" --config "$DIR/mapper.toml" >"$DIR/mapper.out" 2>"$DIR/mapper.err" &
  echo $! >"$DIR/mapper.pid"
  ip netns exec "$(ns inet)" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$(ns inet)" nft add table inet imp
  ip netns exec "$(ns inet)" nft add chain inet imp f '{ type filter hook forward priority 0; }'

  # The appliances: edge and relay1 on CPU 0, relay2 and the gateway on CPU 1.
  local q=""
  if [ "$WORKERS" = 2 ]; then q=",qpairs=2"; fi
  # af_packet rings of 4096 frames (default 512), so that bursts wait in the ring instead of being dropped.
  local fc=",framecnt=4096"
  for node in $nodes; do
    local conf vdevs lc
    case $node in
      edge) conf=edge.toml; vdevs="--vdev net_af_packet0,iface=c0$q$fc --vdev net_af_packet1,iface=u0$q$fc"
          if [ "$WORKERS" = 2 ]; then lc="--lcores 0@0,1@1"; else lc="--lcores 0@0"; fi ;;
      r1) conf=relay1.toml; vdevs="--vdev net_af_packet0,iface=u0$fc"; lc="--lcores 0@0" ;;
      r2) conf=relay2.toml; vdevs="--vdev net_af_packet0,iface=u0$fc"; lc="--lcores 0@1" ;;
      r3) conf=relay3.toml; vdevs="--vdev net_af_packet0,iface=u0$fc"; lc="--lcores 0@1" ;;
      gw) conf=gateway.toml
          vdevs="--vdev net_af_packet0,iface=u0$q$fc --vdev net_af_packet1,iface=t0$q$fc"
          if [ "$WORKERS" = 2 ]; then lc="--lcores 0@1,1@0"; else lc="--lcores 0@1"; fi ;;
    esac
    # Each appliance runs on a copy of its configuration in DIR, which a reload re-reads.
    cp "$HERE/conf/overlay/$conf" "$DIR/$conf"
    conf="$DIR/$conf"
    if { [ "$node" = gw ] || [ "$node" = edge ]; } && [ "$WORKERS" = 2 ]; then
      sed -i 's/^workers = \[0\]/workers = [0, 1]/' "$conf"
    fi
    if [ "$RELAYS" = 3 ] && { [ "$node" = edge ] || [ "$node" = gw ]; }; then
      sed -i 's/^peers = \["10.2.0.1", "10.3.0.1"\]/peers = ["10.2.0.1", "10.3.0.1", "10.5.0.1"]/' "$conf"
      cat "$HERE/conf/overlay/three-relays.$([ $node = gw ] && echo gateway || echo edge).toml" >>"$conf"
    fi
    "$BIN" $lc -- --config "$conf" --check >/dev/null
    # The edge's management endpoint also serves the mapper's health checks on the management link.
    local listen=127.0.0.1:9100
    if [ "$node" = edge ]; then listen=0.0.0.0:9100; fi
    # shellcheck disable=SC2086
    APPLIANCE__MANAGEMENT__LISTEN=$listen ip netns exec "$(ns $node)" "$BIN" $lc --no-pci --no-huge -m 256 --file-prefix "ov$ID-$node" $vdevs \
      -- --config "$conf" >"$DIR/$node.out" 2>"$DIR/$node.err" &
    echo $! >"$DIR/$node.pid"
  done
  for node in $nodes; do
    local ok=
    for _ in $(seq 1 100); do
      if [ "$(mgmt "$node" /healthz 2>/dev/null)" = ok ]; then ok=1; break; fi
      kill -0 "$(cat "$DIR/$node.pid")" 2>/dev/null || break
      sleep 0.2
    done
    [ -n "$ok" ] || { echo "$node did not become healthy:" >&2; cat "$DIR/$node.err" >&2; return 1; }
  done
  # The client resolves the application's name once the mapper has seen the edge healthy.
  local resolved=
  for _ in $(seq 1 50); do
    if ip netns exec "$(ns cl)" getent hosts app.overlay.test >/dev/null 2>&1; then resolved=1; break; fi
    sleep 0.2
  done
  [ -n "$resolved" ] || { echo "app.overlay.test does not resolve:" >&2; cat "$DIR/mapper.err" >&2; return 1; }
}

mgmt() { ip netns exec "$(ns $1)" curl -s -m 3 "http://127.0.0.1:9100$2"; }

down() {
  local DIR=${1:?state dir}
  set +e
  for node in $NODES mapper; do
    [ -f "$DIR/$node.pid" ] || continue
    local pid; pid=$(cat "$DIR/$node.pid")
    kill -TERM "$pid" 2>/dev/null
  done
  for node in $NODES mapper; do
    [ -f "$DIR/$node.pid" ] || continue
    local pid; pid=$(cat "$DIR/$node.pid")
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    rm -f "$DIR/$node.pid"
  done
  rm -rf "/etc/netns/$(ns cl)"
  for n in cl edge inet r1 r2 r3 gw srv dns; do
    # Anything still running in a namespace (servers, clients) goes with it.
    for p in $(ip netns pids "$(ns $n)" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$(ns $n)" 2>/dev/null
  done
  for node in $NODES; do rm -rf "/var/run/dpdk/ov$ID-$node"; done
  return 0
}

relay_if() { case $1 in r1|r2|r3) echo "$1" ;; *) echo "relay must be r1, r2 or r3" >&2; exit 2 ;; esac; }

case $cmd in
  up) shift 2; up "$@" ;;
  down) shift 2; down "$@" ;;
  cut) ip -n "$(ns inet)" link set "$(relay_if "$3")" down ;;
  heal) ip -n "$(ns inet)" link set "$(relay_if "$3")" up ;;
  loss)
    r=$(relay_if "$3"); pct=${4:?percent}
    # Replace the relay's rule (tagged by a comment) with the new rate.
    h=$(ip netns exec "$(ns inet)" nft -a list chain inet imp f | sed -n "s/.*comment \"loss-$r\" # handle \([0-9]*\)/\1/p")
    for x in $h; do ip netns exec "$(ns inet)" nft delete rule inet imp f handle "$x"; done
    if [ "$pct" != 0 ]; then
      ip netns exec "$(ns inet)" nft add rule inet imp f iifname "$r" numgen random mod 100 '<' "$pct" drop comment "\"loss-$r\""
    fi ;;
  mgmt) mgmt "$3" "$4" ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
