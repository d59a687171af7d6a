# Sourced by demo.sh and test.sh: they need root (loop devices, mounts, apt-get). Run as root,
# they go on; otherwise they run themselves again through sudo, keeping the caller's Rust
# toolchain (sudo's secure_path and HOME would otherwise hide cargo and rustup).
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "$(basename "$0") needs root (loop devices, mounts): run it as root" >&2; exit 1; }
  exec sudo env "PATH=$PATH" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "$PWD/scripts/$(basename "$0")" "$@"
fi
