#!/usr/bin/env bash
# CI check of README's install and uninstall commands, staged into a temp
# DESTDIR (no accounts created, nothing started): every file lands, the
# staged units pass `systemd-analyze verify`, and uninstall removes them.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
DESTDIR="$stage" PREFIX=/usr/local bash scripts/install.sh >/dev/null
for f in usr/local/bin/vmrmd usr/local/bin/vmrm usr/local/share/man/man1/vmrm.1 \
         usr/local/share/man/man1/vmrm-rm.1 usr/local/share/man/man8/vmrmd.8 \
         etc/systemd/system/vmrmd.socket etc/systemd/system/vmrmd.service etc/vmrm/vmrmd.toml; do
  [ -e "$stage/$f" ] || { echo "missing after install: $f" >&2; exit 1; }
done
# Verify the units against the staged binaries.
units=$(mktemp -d)
for u in "$stage"/etc/systemd/system/*; do
  sed "s#/usr/local/bin/#$stage/usr/local/bin/#g; s#/etc/vmrm/#$stage/etc/vmrm/#g" "$u" > "$units/$(basename "$u")"
done
systemd-analyze verify --man=no "$units"/*
"$stage/usr/local/bin/vmrmd" --config "$stage/etc/vmrm/vmrmd.toml" check-config >/dev/null
rm -rf "$units"
DESTDIR="$stage" PREFIX=/usr/local bash scripts/uninstall.sh --purge >/dev/null
left=$(find "$stage" -type f | wc -l)
[ "$left" -eq 0 ] || { echo "left after uninstall:"; find "$stage" -type f; exit 1; }
echo "install check passed"
