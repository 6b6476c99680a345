#!/usr/bin/env bash
# Runs README's quick start verbatim, as root: the lines between the
# `<!-- quickstart:... -->` markers, taken from README.md so they cannot
# drift. Checks that the helper it started (its own pid, on the default
# socket nobody else was using) holds CAP_DAC_OVERRIDE alone, that plain
# `rm -rf` failed and `vmrm rm` removed the workdir. Then stops the helper
# and removes every account and file the quick start created, so that the
# Debian package check that follows starts from a clean machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED smoke test: needs root"
  exit 0
fi

# The shell lines of the README block after marker $1.
block() {
  awk -v m="<!-- quickstart:$1 -->" '
    $0 == m { found = 1; next }
    found && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }' README.md
}
build=$(block build)
daemon=$(block daemon)
demo=$(block demo)
for b in build daemon demo; do
  [ -n "${!b}" ] || { echo "README.md has no quickstart:$b block" >&2; exit 1; }
done
socket=/run/vmrmd/vmrmd.sock
if [ -S "$socket" ]; then
  echo "something already listens on $socket; stop it first" >&2
  exit 1
fi

# What the quick start creates, to undo only that.
created_users=()
for u in demo qemu-vm vmrmd; do
  id -u "$u" >/dev/null 2>&1 || created_users+=("$u")
done
client_existed=no
[ -e /usr/local/bin/vmrm ] && client_existed=yes && cp -p /usr/local/bin/vmrm /usr/local/bin/vmrm.smoke-saved
log=$(mktemp)
out=$(mktemp)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf /tmp/vm-3f2a9c1e-quickstart
  for u in "${created_users[@]}"; do
    userdel --remove "$u" 2>/dev/null || userdel "$u" 2>/dev/null || true
    getent group "$u" >/dev/null && groupdel "$u" 2>/dev/null || true
  done
  if [ "$client_existed" = yes ]; then
    mv /usr/local/bin/vmrm.smoke-saved /usr/local/bin/vmrm
  else
    rm -f /usr/local/bin/vmrm
  fi
  rm -f "$log" "$out"
}
trap cleanup EXIT

echo "== quickstart:build"
echo "$build"
bash -euo pipefail -c "$build"

echo "== quickstart:daemon"
echo "$daemon"
# The README line ends in `&`: $! is the helper this script started.
eval "$daemon" 2>"$log"
pid=$!
for _ in $(seq 1 300); do
  [ -S "$socket" ] && /usr/local/bin/vmrm --socket "$socket" ping >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "vmrmd exited:"; cat "$log"; exit 1; }
  sleep 0.1
done
grep -E '^(Name|Uid|CapEff|CapBnd|NoNewPrivs)' "/proc/$pid/status"
grep -q '^Name:[[:space:]]*vmrmd$' "/proc/$pid/status"
grep -q '^CapEff:.*0000000000000002$' "/proc/$pid/status"

echo "== quickstart:demo"
echo "$demo"
bash -uo pipefail -c "$demo" 2>&1 | tee "$out"
grep -q '=> plain rm -rf fails' "$out" || { echo "plain rm -rf did not fail" >&2; exit 1; }
grep -q '=> vmrm removed it' "$out" || { echo "vmrm rm did not succeed:"; cat "$log"; exit 1; }
[ ! -e /tmp/vm-3f2a9c1e-quickstart ] || { echo "the workdir is still there" >&2; exit 1; }

kill "$pid"
wait "$pid"
pid=
grep -q '"vmrmd stopped"' "$log"
[ ! -e "$socket" ] || { echo "$socket left after stop" >&2; exit 1; }
echo "smoke test passed"
