#!/usr/bin/env bash
# The installed units under a real systemd: systemd runs as PID 1 of a
# private PID and mount namespace (its own /run, a unit path holding only
# vmrmd.socket, vmrmd.service and a target), and this checks socket
# activation on the first connection, `systemctl reload`, the watchdog (30 s
# shortened to 2 s by a drop-in) and stop. Run as root with the Debian
# package installed (scripts/check-deb.sh calls it): it uses the package's
# units, binaries, config and accounts.
set -euo pipefail
units_from=${1:-/usr/lib/systemd/system}
fail() {
  echo "check-systemd: $*" >&2
  [ -n "${pid:-}" ] && sc status --no-pager vmrmd.socket vmrmd.service >&2 || true
  echo "vmrmd's log:" >&2; cat "$work/vmrmd.log" >&2 || true
  exit 1
}
for f in vmrmd.socket vmrmd.service; do
  [ -e "$units_from/$f" ] || { echo "check-systemd: no $units_from/$f (install the package first)" >&2; exit 1; }
done

work=$(mktemp -d)
units="$work/units"
mkdir -p "$units/vmrmd.service.d"
cp "$units_from/vmrmd.socket" "$units_from/vmrmd.service" "$units/"
cat > "$units/default.target" <<'UNIT'
[Unit]
Description=vmrm's systemd check
Wants=vmrmd.socket
UNIT
# The targets the units' default dependencies name, empty.
for t in sysinit basic sockets shutdown multi-user; do
  printf '[Unit]\nDescription=%s (stub)\n' "$t" > "$units/$t.target"
done
# Watchdog pings every WatchdogSec/2: shortened so that missing pings would
# show within the check.
printf '[Service]\nWatchdogSec=2s\n' > "$units/vmrmd.service.d/watchdog.conf"
# No journald in the namespace: vmrmd's log goes to a file, shown on failure.
printf '[Service]\nStandardError=append:%s\n' "$work/vmrmd.log" > "$units/vmrmd.service.d/log.conf"
cat > "$work/init" <<INIT
#!/bin/sh
# A /run of its own, so the host's /run (and sockets there) stay untouched.
mount -t tmpfs -o mode=0755 tmpfs /run
exec env container=vmrm-check SYSTEMD_UNIT_PATH=$units /lib/systemd/systemd --system --unit=default.target --log-level=warning
INIT
chmod +x "$work/init"

# systemd creates its cgroups in the host's hierarchies; remove those that
# were not there before.
cgroups_before=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d | sort)
unshare_pid=
pid=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  [ -n "$unshare_pid" ] && wait "$unshare_pid" 2>/dev/null || true
  comm -13 <(echo "$cgroups_before") <(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d | sort) |
    while read -r d; do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

unshare --pid --mount --fork --mount-proc --propagation private "$work/init" >"$work/log" 2>&1 &
unshare_pid=$!
for _ in $(seq 1 100); do
  pid=$(pgrep -P "$unshare_pid" || true)
  [ -n "$pid" ] && break
  sleep 0.1
done
[ -n "$pid" ] || { cat "$work/log"; echo "check-systemd: systemd did not start" >&2; exit 1; }
sc() { nsenter -t "$pid" -m -p systemctl "$@"; }
inside() { nsenter -t "$pid" -m -p "$@"; }
for _ in $(seq 1 100); do
  state=$(sc is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 0.1
done
echo "systemd $(sc --version | head -n 1 | cut -d' ' -f2) as PID 1 of a private namespace: $state"

[ "$(sc is-active vmrmd.socket)" = active ] || fail "vmrmd.socket is not listening"
[ "$(sc is-active vmrmd.service || true)" = inactive ] || fail "vmrmd.service runs before any connection"

echo "== activation on the first connection"
inside /usr/bin/vmrm ping || fail "vmrm ping through the socket failed"
[ "$(sc is-active vmrmd.service)" = active ] || fail "vmrmd.service not active after a connection"
main=$(sc show -p MainPID --value vmrmd.service)
status=$(inside cat "/proc/$main/status")
grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs)' <<<"$status"
grep -q '^CapEff:.*0000000000000002$' <<<"$status" || fail "vmrmd holds more than CAP_DAC_OVERRIDE"
[ "$(grep '^Uid:' <<<"$status" | awk '{print $2}')" = "$(id -u vmrmd)" ] || fail "vmrmd does not run as user vmrmd"

grep -iE 'sandbox|landlock|seccomp' "$work/vmrmd.log" | head -n 3 || true

echo "== a removal under the unit's sandbox"
dir=$(mktemp -d /tmp/vm-sdcheck-XXXXXXXX)
mkdir -p "$dir/a/b" && touch "$dir/a/b/f" "$dir/overlay.qcow2" && mkfifo "$dir/fifo"
inside /usr/bin/vmrm rm --json "$dir" || { rm -rf "$dir"; fail "vmrm rm failed under systemd"; }
[ ! -e "$dir" ] || { rm -rf "$dir"; fail "$dir is still there"; }

echo "== systemctl reload"
sc reload vmrmd.service || fail "reload failed"
[ "$(sc is-active vmrmd.service)" = active ] || fail "not active after reload"
[ "$(sc show -p MainPID --value vmrmd.service)" = "$main" ] || fail "reload restarted vmrmd"
inside /usr/bin/vmrm ping >/dev/null || fail "no answer after reload"

echo "== watchdog (2 s): still the same process after 6 s"
sleep 6
[ "$(sc show -p MainPID --value vmrmd.service)" = "$main" ] || fail "vmrmd was restarted (watchdog?)"
[ "$(sc show -p NRestarts --value vmrmd.service)" = 0 ] || fail "vmrmd restarted"
[ "$(sc show -p WatchdogUSec --value vmrmd.service)" = 2s ] || fail "the watchdog is not armed"

echo "== stop"
sc stop vmrmd.service vmrmd.socket || fail "stop failed"
[ "$(sc is-active vmrmd.service || true)" = inactive ] || fail "vmrmd.service still active"
[ "$(sc show -p Result --value vmrmd.service)" = success ] || fail "vmrmd.service did not stop cleanly"
inside test ! -e /run/vmrmd/vmrmd.sock || fail "the socket file is left after stop"
if grep -E '"level":"(WARN|ERROR)"' "$work/vmrmd.log"; then
  fail "vmrmd warned under the unit's sandbox (above)"
fi
echo "systemd check passed"
