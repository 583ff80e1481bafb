#!/usr/bin/env bash
# The benchmark harness, as root on a fresh Debian 12 machine: installs what it needs, builds `bench`
# (release) and runs it: every role in-process on one worker core, then beside dpdk-testpmd over net_memif,
# without and (when they can be set up) with hugepages. Arguments go to bench after its `--`, e.g.
#
#   bash scripts/bench.sh                               # everything, 5 s phases (about 5 minutes)
#   bash scripts/bench.sh --roles relay --seconds 2
#   bash scripts/bench.sh --json /tmp/bench.json
#
# Uses lcores 0 and 1. Hugepages it reserves are given back at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building bench (release)"
cargo build --release --locked -p bench
exec target/release/bench -- "$@"
