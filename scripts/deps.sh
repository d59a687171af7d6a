#!/usr/bin/env bash
# Installs what building, the demo and the tests need on a fresh Debian machine (run as root):
# btrfs-progs, xfsprogs and e2fsprogs for the loop-device filesystems, util-linux for losetup
# and fsfreeze, restic for the `vss backup` tests, PostgreSQL (server, pgbench, pg_amcheck) for
# the PostgreSQL writer's tests, MariaDB for the MariaDB writer's tests, and the Python `varlink` package for the Python writer.
set -euo pipefail
missing=()
for tool in mkfs.btrfs:btrfs-progs mkfs.xfs:xfsprogs mkfs.ext4:e2fsprogs losetup:util-linux restic:restic; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || missing+=(postgresql postgresql-client)
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import varlink' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check varlink
fi
