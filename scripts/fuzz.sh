#!/usr/bin/env bash
# Fuzzes each cargo-fuzz target in fuzz/ for a bounded time, starting from its committed corpus,
# and fails on the first crash, panic, leak or hang (the input is left in
# fuzz/artifacts/<target>/). cargo fuzz needs a nightly toolchain: without one this says that
# fuzzing is skipped and succeeds, since `cargo test` has replayed the corpora on stable already.
# Installs cargo-fuzz when missing. New inputs go to a scratch directory, so a run leaves the
# committed corpora as they are (docs/fuzzing.md says how to grow them).
#
# Usage: scripts/fuzz.sh [TARGET...]   (default: every target)
#   FUZZ_SECONDS  seconds per target (default 40: about 2.5 minutes of fuzzing for the four)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v rustup >/dev/null 2>&1 || ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: fuzzing skipped: no nightly Rust toolchain (cargo fuzz needs one; install it with 'rustup toolchain install nightly'). The corpora were replayed on stable by cargo test." >&2
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo +nightly install --locked --quiet cargo-fuzz
fi

seconds=${FUZZ_SECONDS:-40}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  echo "fuzz.sh: fuzzing $t for ${seconds}s" >&2
  mkdir -p "$scratch/$t"
  # libFuzzer writes new inputs to the first corpus directory and only reads the others. A hang
  # of 10 s on one input counts as a failure: nothing here should take more than milliseconds.
  if ! cargo +nightly fuzz run "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -max_len=8192 -print_final_stats=1 2>"$scratch/$t.log"; then
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz.sh: $t failed; the input is in fuzz/artifacts/$t/. Reproduce it with: cargo +nightly fuzz run $t fuzz/artifacts/$t/<file>" >&2
    exit 1
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|average_exec_per_sec)' "$scratch/$t.log" >&2 || true
done
