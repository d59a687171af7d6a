#!/usr/bin/env bash
# Runs every test: unit tests, and the end-to-end tests that make btrfs/xfs/ext4 filesystems on
# loop devices and run vssd and writer processes (these need root). Also checks formatting and
# lints. Usage: scripts/test.sh (as root, or
# through sudo, which it uses by itself)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/as-root.sh
scripts/deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
scripts/check-layers.sh
# The end-to-end tests start the workspace's binaries (vssd, writers), so build them first.
cargo build --workspace --bins --quiet
cargo test --workspace
scripts/fuzz.sh  # bounded fuzzing where a nightly toolchain exists, skipped otherwise (docs/fuzzing.md)
