#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root).
# Installs every Debian package the build, the tests and the demo need. Safe to run again.
set -euo pipefail

PKGS=(
  # build: DPDK 22.11 headers and libraries, bindgen's libclang, the C shim's compiler
  dpdk dpdk-dev libdpdk-dev libclang-dev clang pkg-config build-essential
  # network test hosts and tools (python3: the target's http.server and the benchmark tables; dig: mapper)
  iproute2 iputils-ping iputils-arping ethtool nftables curl tcpdump procps python3 dnsutils
  # UDP through the overlay (end-to-end tests)
  iperf3
  # the demo's arithmetic
  bc
  # tshark decodes the overlay (Lua dissector test)
  tshark
  # promtool, to check the metrics exposition
  prometheus
  # callgrind, for the NAT's instructions per packet (scripts/nat-instructions.sh)
  valgrind
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# Rust toolchain and cargo-nextest: present on the project's machines; fail clearly if not.
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found (the Rust toolchain is required)" >&2; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

pkg-config --atleast-version=22.11 libdpdk || { echo "setup: libdpdk >= 22.11 not found by pkg-config" >&2; exit 1; }
echo "setup: DPDK $(pkg-config --modversion libdpdk) ready"
