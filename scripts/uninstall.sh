#!/usr/bin/env bash
# Uninstall vmrm: stops and disables the units, removes binaries, man pages
# and units. The config, the `vmrm` group and the `vmrmd` user stay unless
# --purge is given. Same PREFIX and DESTDIR as install.sh.
set -euo pipefail
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
purge=no
[ "${1:-}" = "--purge" ] && purge=yes
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run as root (or set DESTDIR)" >&2
  exit 1
fi
units="vmrmd.socket vmrmd.service vmrm-textfile.service vmrm-textfile.timer"
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl disable --now $units 2>/dev/null || true
fi
for unit in $units; do
  rm -f "$DESTDIR/etc/systemd/system/$unit"
done
rm -f "$DESTDIR$PREFIX/bin/vmrmd" "$DESTDIR$PREFIX/bin/vmrm"
rm -f "$DESTDIR$PREFIX"/share/man/man1/vmrm.1 "$DESTDIR$PREFIX"/share/man/man1/vmrm-*.1
rm -f "$DESTDIR$PREFIX/share/man/man8/vmrmd.8"
if [ "$purge" = yes ]; then
  rm -rf "$DESTDIR/etc/vmrm"
  if [ -z "$DESTDIR" ]; then
    getent passwd vmrmd >/dev/null && userdel vmrmd
    getent group vmrm >/dev/null && groupdel vmrm
  fi
fi
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "vmrm uninstalled${purge:+ (purge: $purge)}"
