#!/usr/bin/env bash
# The benchmark of vss for Linux against its peers (BENCHMARKS.md): installs btrfs-progs,
# xfsprogs, e2fsprogs, snapper and qemu-guest-agent when missing, builds the release binaries,
# sets up throwaway loop filesystems (btrfs; XFS reflink=1 holding two XFS and one ext4 image),
# a snapper config, and runs target/release/vss-bench, which prints the result table.
# Everything it made is undone on exit, also on failure or Ctrl-C: processes it started (by pid),
# thaws, snapper config, mounts, loop devices (only those backed by its own files), files.
#
# Usage: bench/run.sh [--quick] [--only 1,3,...] [--no-build] [--out DIR]   (as root, or sudo)
#   --quick     a smoke run (few repetitions, small catalog): checks the setup, not for numbers
#   --only      only these figures (1 and 2 run together; 6's 1,000-writer half is part of 4)
#   --no-build  use the binaries already in target/release
#   --out     where results.md, results.json and run.log go [default: target/vss-bench/<time>]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "bench/run.sh needs root (loop devices, mounts, freezing): run it as root" >&2; exit 1; }
  exec sudo env "PATH=$PATH" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "$repo/bench/run.sh" "$@"
fi

quick=(); only=(); out=""; build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick) ;;
    --only) only=(--only "$2"); shift ;;
    --out) out=$2; shift ;;
    --no-build) build=0 ;;
    *) echo "usage: bench/run.sh [--quick] [--only 1,3,...] [--no-build] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
started=$(date +%s)

# 1. The peers and the filesystem tools.
missing=()
for tool in mkfs.btrfs:btrfs-progs mkfs.xfs:xfsprogs mkfs.ext4:e2fsprogs losetup:util-linux \
            fsfreeze:util-linux snapper:snapper qemu-ga:qemu-guest-agent; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. Release binaries (timings of debug builds mean nothing).
if [ $build = 1 ]; then
  echo "== cargo build --release --workspace --bins"
  cargo build --release --workspace --bins --quiet
fi
bin=$repo/target/release
for b in vssd vss vss-freeze-guard vss-bench; do
  [ -x "$bin/$b" ] || { echo "$bin/$b is missing: run without --no-build" >&2; exit 1; }
done

# 3. Scratch space on the root disk (never frozen: only the image filesystems are).
work=$(mktemp -d /var/tmp/vss-bench.XXXXXX)
[ -n "$out" ] || out=$repo/target/vss-bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out" "$work/pids" "$work/mnt"
snapper_config=""

cleanup() {
  status=$?
  set +e
  # Processes vss-bench started (vssd, qemu-ga), by the pids it recorded, if still ours.
  for f in "$work"/pids/*.pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f")
    if grep -qE 'vssd|qemu-ga' "/proc/$p/cmdline" 2>/dev/null; then kill -TERM "$p" 2>/dev/null; fi
  done
  for _ in $(seq 1 100); do
    alive=0
    for f in "$work"/pids/*.pid; do [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  for f in "$work"/pids/*.pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f")
    if grep -qE 'vssd|qemu-ga' "/proc/$p/cmdline" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; fi
  done
  # A qemu-ga killed while frozen leaves its filesystems frozen: thaw ours (EINVAL if not frozen).
  for m in "$work"/mnt/img*; do mountpoint -q "$m" && fsfreeze -u "$m" 2>/dev/null; done
  if [ -n "$snapper_config" ]; then
    if ! snapper --no-dbus -c "$snapper_config" delete-config 2>/dev/null; then
      rm -f "/etc/snapper/configs/$snapper_config"
      for f in /etc/default/snapper /etc/sysconfig/snapper; do
        [ -f "$f" ] && sed -i -E "s/^(SNAPPER_CONFIGS=\".*)\\b$snapper_config\\b ?/\\1/" "$f"
      done
    fi
  fi
  # Mounts vssd may have made under its run directories (deepest first); then everything this
  # script set up, undone in reverse order from its log: each image is unmounted and its loop
  # device detached before the XFS holding the image file, and a loop device is detached only
  # while it is still backed by the file this script gave it.
  grep -F " $work/" /proc/self/mounts | awk '{print $2}' | sort -r | while read -r m; do
    grep -qxF "mount $m" "$work/undo" 2>/dev/null || umount "$m" 2>/dev/null
  done
  [ -f "$work/undo" ] && tac "$work/undo" | while read -r kind what file; do
    case "$kind" in
      mount) mountpoint -q "$what" && { umount "$what" || { sleep 1; umount "$what"; } || echo "cannot unmount $what" >&2; } ;;
      loop) back=$(losetup -n -O BACK-FILE "$what" 2>/dev/null)
            [ "${back% (deleted)}" = "$file" ] && { losetup -d "$what" || echo "cannot detach $what" >&2; } ;;
    esac
  done
  rm -rf --one-file-system "$work"
  echo "== cleaned up (${work}); whole run took $(( $(date +%s) - started )) s"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# losetup --find can offer a device that another process takes first: retry.
# Each device is logged (with its file) for the cleanup, which detaches only these.
attach() {
  local dev=""
  for i in $(seq 1 10); do
    dev=$(losetup --find --show "$1" 2>/dev/null) && { echo "loop $dev $1" >>"$work/undo"; echo "$dev"; return 0; }
    sleep "0.$i"
  done
  echo "no free loop device for $1" >&2; return 1
}
# Mounts are logged too, in order, so the cleanup can undo everything in reverse.
mount_at() {
  mkdir -p "$2"; mount "$1" "$2"; echo "mount $2" >>"$work/undo"
}

# 4. Filesystems: btrfs (figures 1, 2, 4, 5); XFS reflink=1 holding three image filesystems
# (figure 3: the image provider clones their backing files; qemu-ga freezes them too).
truncate -s 8G "$work/btrfs.img"
dev=$(attach "$work/btrfs.img"); mkfs.btrfs -q -f "$dev" >/dev/null
mount_at "$dev" "$work/mnt/btrfs"
btrfs subvolume create "$work/mnt/btrfs/subject" >/dev/null
truncate -s 4G "$work/xfs.img"
dev=$(attach "$work/xfs.img"); mkfs.xfs -q -f -m reflink=1 "$dev"
mount_at "$dev" "$work/mnt/xfs"
images=()
for spec in 1:xfs 2:ext4 3:xfs; do
  n=${spec%%:*}; fs=${spec##*:}; img="$work/mnt/xfs/img$n.img"
  truncate -s 512M "$img"
  dev=$(attach "$img")
  if [ "$fs" = xfs ]; then mkfs.xfs -q -f "$dev"; else mkfs.ext4 -q -F "$dev"; fi
  mount_at "$dev" "$work/mnt/img$n"
  images+=(--image "$work/mnt/img$n")
done
sync

# 5. snapper's config on the subject subvolume (creates its .snapshots subvolume there).
mkdir -p /etc/snapper/configs
snapper_config=vssbench$$
snapper --no-dbus -c "$snapper_config" create-config "$work/mnt/btrfs/subject"

# 6. 1,000 writers are 1,000 sockets here and 1,000 connections in vssd (which inherits this).
ulimit -n "$(ulimit -Hn)"

echo "== vss-bench (work: $work, results: $out)"
"$bin/vss-bench" --bin-dir "$bin" --work "$work" --btrfs "$work/mnt/btrfs" \
  --subject "$work/mnt/btrfs/subject" --snapper-config "$snapper_config" "${images[@]}" \
  --out "$out" "${quick[@]}" "${only[@]}" 2>&1 | tee "$out/run.log"
