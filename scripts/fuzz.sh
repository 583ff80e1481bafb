#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ for a bounded time (default 60 s each, FUZZ_SECONDS to change) from seed
# corpora of valid frames; fails on the first crash (the input is left under fuzz/artifacts/).
# Uses cargo-fuzz on the stable toolchain with --sanitizer none (ASan needs nightly flags).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
secs=${FUZZ_SECONDS:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cargo run -q -p pipelines --example fuzz_seeds -- "$corpus"
for target in outer inner; do
  echo "== fuzz $target for ${secs}s"
  (cd fuzz && cargo fuzz run --sanitizer none "$target" "$corpus/$target" -- -max_total_time="$secs" -print_final_stats=1 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units|stat::new_units_added)|ERROR|panicked|SUMMARY" )
done
