#!/usr/bin/env bash
# The whole test suite, as root on Debian 12: set-up (idempotent), format and lint checks, then every test,
# one process per test (cargo-nextest). DPDK tests use --no-pci, --no-huge and a --file-prefix of their own;
# namespace tests create and remove their own namespaces. Then each fuzz target runs for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo nextest run --workspace"
profile=default
[ "${CI:-}" = "true" ] && profile=ci
cargo nextest run --workspace --locked --profile "$profile"
echo "== fuzz (each target for ${FUZZ_SECONDS:-60} s)"
bash scripts/fuzz.sh
