#!/usr/bin/env bash
# The crate layering rules of ARCHITECTURE.md, checked by machine: the pure core has no I/O
# dependencies, and the two public client sides never pull in the daemon or the providers.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
deps() { cargo tree -p "$1" -e normal --prefix none --quiet | awk '{print $1}' | sort -u; }
forbid() { # crate, forbidden dependency...
  local c=$1; shift
  local have; have=$(deps "$c")
  for f in "$@"; do
    if grep -qx "$f" <<<"$have"; then echo "layering: $c must not depend on $f" >&2; fail=1; fi
  done
}
forbid vss-model tokio zlink rusqlite rustix vss-protocol vss-daemon vss-provider
forbid vss-freeze tokio zlink rusqlite vss-protocol vss-daemon
forbid vss-provider tokio zlink rusqlite vss-protocol vss-daemon
forbid vss-client vss-daemon vss-provider rusqlite
forbid vss-writer vss-daemon vss-provider rusqlite
forbid vss-protocol vss-daemon vss-provider rusqlite
exit $fail
