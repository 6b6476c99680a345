#!/usr/bin/env bash
# CI check of the Debian package on this machine, as root: build it, install
# it with dpkg -i, check its files, accounts, config and units, then remove
# and purge it and check that nothing is left behind. Needs a machine
# without vmrm installed and without `vmrmd`/`vmrm` accounts (purge deletes
# them).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED Debian package check: needs root"
  exit 0
fi
fail() { echo "check-deb: $*" >&2; exit 1; }

if dpkg-query -W -f='${Status}' vmrm 2>/dev/null | grep -q installed; then
  fail "vmrm is installed already; purge it first (dpkg -P vmrm)"
fi
for account in "passwd vmrmd" "group vmrmd" "group vmrm"; do
  # shellcheck disable=SC2086
  if getent $account >/dev/null; then fail "the $account account exists; this check would delete it"; fi
done

bash scripts/build-deb.sh
debs=(target/debian/vmrm_*.deb)
[ "${#debs[@]}" -eq 1 ] || fail "expected one target/debian/vmrm_*.deb, got: ${debs[*]}"
deb=${debs[0]}
echo "== $deb"

# What the machine holds before: to compare after purge.
snapshot() {
  find /etc /usr /opt /var/lib /run -xdev \
    -path /var/lib/dpkg -prune -o -path /var/lib/apt -prune -o -path /run/user -prune -o \
    -path /var/lib/systemd/timers -prune -o -path /run/systemd/transient -prune -o \
    -path /run/systemd/systemd-units-load -prune -o \
    -print 2>/dev/null | sort
}
before=$(mktemp); after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snapshot > "$before"

echo "== dpkg -i"
dpkg -i "$deb"
for f in /usr/sbin/vmrmd /usr/bin/vmrm /etc/vmrm/vmrmd.toml \
         /usr/lib/systemd/system/vmrmd.socket /usr/lib/systemd/system/vmrmd.service \
         /usr/lib/systemd/system/vmrm-textfile.service /usr/lib/systemd/system/vmrm-textfile.timer \
         /usr/share/man/man8/vmrmd.8.gz /usr/share/man/man1/vmrm.1.gz /usr/share/man/man1/vmrm-rm.1.gz \
         /usr/share/doc/vmrm/copyright; do
  [ -e "$f" ] || fail "missing after install: $f"
done
dpkg-query -W -f='${Conffiles}\n' vmrm | grep -q '/etc/vmrm/vmrmd.toml' || fail "/etc/vmrm/vmrmd.toml is not a conffile"
getent passwd vmrmd >/dev/null || fail "no vmrmd user"
getent group vmrm >/dev/null || fail "no vmrm group"
[ "$(getent passwd vmrmd | cut -d: -f7)" = /usr/sbin/nologin ] || fail "vmrmd has a login shell"
# Enabled as deb-systemd-helper does it, whether or not systemd runs here.
[ -L /etc/systemd/system/sockets.target.wants/vmrmd.socket ] || fail "vmrmd.socket is not enabled"
/usr/sbin/vmrmd --config /etc/vmrm/vmrmd.toml check-config >/dev/null || fail "check-config failed on the shipped config"
systemd-analyze verify --man=no /usr/lib/systemd/system/vmrmd.socket /usr/lib/systemd/system/vmrmd.service \
  /usr/lib/systemd/system/vmrm-textfile.service /usr/lib/systemd/system/vmrm-textfile.timer
man -w vmrmd >/dev/null && man -w vmrm-rm >/dev/null || fail "man pages not found by man"
/usr/bin/vmrm --version
# The client ships linked statically (scripts/build-cli.sh): no dynamic loader at each start.
ldd /usr/bin/vmrm 2>&1 | grep -q 'statically linked' || fail "/usr/bin/vmrm is dynamically linked"
echo "installed: files, vmrmd user, vmrm group, enabled socket, valid config and units"

echo "== the installed units under systemd as PID 1 of a private namespace"
bash scripts/check-systemd.sh

echo "== dpkg -r"
dpkg -r vmrm
for f in /usr/sbin/vmrmd /usr/bin/vmrm /usr/lib/systemd/system/vmrmd.socket /usr/share/man/man8/vmrmd.8.gz; do
  [ ! -e "$f" ] || fail "left after dpkg -r: $f"
done
# Remove keeps the config and the accounts, as Debian's remove does.
[ -e /etc/vmrm/vmrmd.toml ] || fail "dpkg -r removed the conffile"

echo "== dpkg -P"
dpkg -P vmrm
! getent passwd vmrmd >/dev/null || fail "vmrmd user left after purge"
! getent group vmrmd >/dev/null || fail "vmrmd group left after purge"
! getent group vmrm >/dev/null || fail "vmrm group left after purge"
snapshot > "$after"
if ! diff "$before" "$after" > /dev/null; then
  echo "check-deb: the machine differs after purge:" >&2
  diff "$before" "$after" >&2 || true
  exit 1
fi
echo "Debian package check passed: $(basename "$deb")"
