#!/usr/bin/env bash
# In-process A/B of the GPU path: the working tree against revision REV, W1–W8 alternating
# call by call for ROUNDS rounds (default 80) in one process, so both sides see the same
# machine state. See benchmarks/ab/main.rs.
#
#   benchmarks/ab.sh REV [ROUNDS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
rev="${1:?usage: benchmarks/ab.sh REV [ROUNDS]}"
rounds="${2:-80}"
work="$(mktemp -d)"
trap 'git -C "$root" worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$root" worktree add -q --detach "$work/old" "$rev"
# Two packages named convpool in one build need different versions.
sed -i 's/^version = ".*"/version = "0.0.1"/' "$work/old/Cargo.toml"
mkdir -p "$work/ab/src"
cp "$here/ab/main.rs" "$work/ab/src/main.rs"
cat >"$work/ab/Cargo.toml" <<TOML
[package]
name = "convpool-ab"
version = "0.1.0"
edition = "2021"

[dependencies]
new = { path = "$root", package = "convpool" }
old = { path = "$work/old", package = "convpool" }

[workspace]
TOML
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
(cd "$work/ab" && cargo build --release --quiet)
echo "old: $(git -C "$root" rev-parse --short "$rev"); new: the working tree; $rounds rounds"
XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" "$CARGO_TARGET_DIR/release/convpool-ab" "$rounds"
