#!/usr/bin/env bash
# The main job on a fresh machine: build, make a throwaway btrfs volume on a loop device, start
# vssd and the example writer, back the volume up through the whole VSS sequence, print the
# writers' statuses, and clean everything up again. Usage: scripts/demo.sh (as root, or
# through sudo, which it uses by itself)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/as-root.sh
scripts/deps.sh
cargo build --workspace --bins --quiet
bin=target/debug

work=$(mktemp -d /var/tmp/vss-demo.XXXXXX)
mnt="$work/mnt"; loop=""; pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # Private mounts vssd made (btrfs top level), then the volume, then the loop device.
  grep -F " $work/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" || true; done
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

truncate -s 512M "$work/btrfs.img"
for _ in 1 2 3 4 5; do loop=$(losetup --find --show "$work/btrfs.img" 2>/dev/null) && break; sleep 0.2; done
[ -n "$loop" ] || { echo "no free loop device" >&2; exit 1; }
mkfs.btrfs -q -f "$loop"
mkdir -p "$mnt" && mount "$loop" "$mnt"
mkdir -p "$mnt/data" && for i in $(seq 1 100); do echo "record $i" > "$mnt/data/file$i.txt"; done

export VSS_SOCKET="$work/vssd.sock" VSS_WRITERS_DIR="$work/writers" VSS_STATE_DIR="$work/state" \
  VSS_RUN_DIR="$work/run" VSS_LOCK_FILE="$work/set.lock"
"$bin/vssd" 2>"$work/vssd.log" &
pids+=($!)
"$bin/vss-example-writer" --writers-dir "$work/writers" --data-dir "$mnt/data" 2>"$work/writer.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$work/vssd.sock" ] && [ -n "$(ls "$work/writers" 2>/dev/null)" ] && break; sleep 0.1; done

echo "== vss backup $mnt (btrfs on $loop): the whole VSS sequence around a backup command =="
"$bin/vss" backup "$mnt" -- sh -c 'echo "the backup command reads $VSS_SNAPSHOT_1: $(find "$VSS_SNAPSHOT_1/data" -type f | wc -l) files"; cp -a "{snapshot}/data" "'"$work"'/copy"'
echo "== copied: $(ls "$work/copy" | wc -l) files =="
echo "== vss list writers =="
"$bin/vss" list writers
echo "== what the example writer saw =="
grep -E '^\[writer\]' "$work/writer.log"
