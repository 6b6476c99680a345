#!/usr/bin/env bash
# Runs README's first command (vmrmd on its built-in defaults) as root, and
# checks that a client reaches it and that it holds CAP_DAC_OVERRIDE alone.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED smoke test: needs root"
  exit 0
fi
cargo build --release -p vmrmd -p vmrm
log=$(mktemp)
cargo run --release -q -p vmrmd 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  ./target/release/vmrm ping >/dev/null 2>&1 && break
  sleep 0.1
done
./target/release/vmrm ping
daemon=$(pgrep -n -x vmrmd)
grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs)' "/proc/$daemon/status"
grep -q '^CapEff:.*0000000000000002$' "/proc/$daemon/status"
kill "$pid"
wait "$pid"
grep -q '"vmrmd stopped"' "$log"
echo "smoke test passed"
