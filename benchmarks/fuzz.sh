#!/usr/bin/env bash
# The fuzzer: every public op on random specs and shapes (degenerate ones included), fast:: and
# the GPU against cpu::, for MINUTES minutes (default 30) per seed; it stops at the first 20
# findings and prints a tally of cases per op.
#
#   benchmarks/fuzz.sh [MINUTES] [SEED...]
#
# It runs tests/fuzz.rs (ignored in the default test run) in the test profile, whose debug
# assertions catch integer overflow too. Each seed's run is killed if it overruns by 5 minutes
# (a hang is a finding).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
shift || true
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1)
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo test --quiet --all-features --test fuzz --no-run
for seed in "${seeds[@]}"; do
  CONVPOOL_FUZZ_SECONDS=$((minutes * 60)) CONVPOOL_FUZZ_SEED="$seed" \
    timeout $((minutes * 60 + 300)) cargo test --quiet --all-features --test fuzz -- --ignored --nocapture
done
