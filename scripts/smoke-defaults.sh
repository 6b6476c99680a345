#!/usr/bin/env bash
# Runs README's first command (vmrmd on its built-in defaults) as root, and
# checks that a client reaches it and that it holds CAP_DAC_OVERRIDE alone.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED smoke test: needs root"
  exit 0
fi
# Built one package at a time, as `cargo run -p vmrmd` resolves features, so
# that the run below starts at once instead of compiling again.
cargo build --release -p vmrmd
cargo build --release -p vmrm
log=$(mktemp)
cargo run --release -q -p vmrmd 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 600); do
  ./target/release/vmrm ping >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "vmrmd exited:"; cat "$log"; exit 1; }
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
