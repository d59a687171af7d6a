#!/usr/bin/env bash
# Minimizes the committed fuzz corpora after a run that grew them (docs/fuzzing.md), in two
# steps: `cargo fuzz cmin` (libFuzzer's merge, by edge coverage), then a greedy set cover over
# each remaining input's own edge coverage, which keeps at most FUZZ_MAX_FILES inputs (default
# 400) chosen to cover the most edges. libFuzzer's merge keeps every input that adds an edge in
# size order, which leaves a long tail of inputs covering one or two edges each; the cap trades
# that tail (a few percent of the edges, which a fuzzing run finds again in seconds) for a
# corpus small enough to commit. The seeds (`seed-*`, real messages and documents) are always
# kept. Needs the nightly toolchain and cargo-fuzz, and python3.
#
# Usage: scripts/fuzz-minimize.sh [TARGET...]   (default: every target)
set -euo pipefail
cd "$(dirname "$0")/.."

max=${FUZZ_MAX_FILES:-400}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  bin=fuzz/target/$host/release/$t
  # The seeds stay out of the merge, which would rename them after their hashes.
  mkdir -p "$work/$t/seeds"
  find "$corpus" -maxdepth 1 -name 'seed-*' -exec mv -t "$work/$t/seeds" {} +
  cargo +nightly fuzz cmin "$t" -- -max_len=8192 -use_counters=0 >"$work/$t/cmin.log" 2>&1 ||
    { tail -n 20 "$work/$t/cmin.log" >&2; exit 1; }
  mv "$work/$t"/seeds/* "$corpus"/ 2>/dev/null || true
  # Each input's own coverage: a merge of that input alone records all of its edges.
  mkdir -p "$work/$t/ctl" "$work/$t/out"
  for f in "$corpus"/*; do
    n=$(basename "$f")
    mkdir -p "$work/$t/one/$n"
    cp "$f" "$work/$t/one/$n/"
    "$bin" -merge=1 -use_counters=0 -max_len=8192 -merge_control_file="$work/$t/ctl/$n" \
      "$work/$t/out" "$work/$t/one/$n" >/dev/null 2>&1
    rm -rf "$work/$t/out"/* "$work/$t/one/$n"
  done
  python3 - "$work/$t/ctl" "$corpus" "$max" <<'EOF'
import os, sys
ctl_dir, corpus, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
cov = {}
for name in os.listdir(ctl_dir):
    edges = set()
    with open(os.path.join(ctl_dir, name)) as f:
        for line in f:
            if line.startswith("COV "):
                edges.update(line.split()[2:])
    cov[name] = edges
size = lambda n: os.path.getsize(os.path.join(corpus, n))
keep = [n for n in cov if n.startswith("seed-")]
covered = set().union(*(cov[n] for n in keep)) if keep else set()
rest = sorted(n for n in cov if not n.startswith("seed-"))
while len(keep) < cap:
    # The input adding the most edges; the smaller one on a tie.
    best = max(rest, key=lambda n: (len(cov[n] - covered), -size(n)), default=None)
    if best is None or not cov[best] - covered:
        break
    keep.append(best)
    covered |= cov[best]
    rest.remove(best)
everything = set().union(*cov.values())
for n in rest:
    os.remove(os.path.join(corpus, n))
print(f"{os.path.basename(corpus)}: kept {len(keep)} of {len(cov)} inputs, "
      f"{len(covered)} of {len(everything)} edges", file=sys.stderr)
EOF
done
