#!/usr/bin/env bash
# The benchmark, in one command (as root, on a machine you can spare for a
# quarter of an hour): installs sudo and qemu-utils when missing, builds the
# release binaries, and writes BENCHMARKS.md and benchmarks.svg at the top of
# the repository. It creates a `vmrmbench` user and a NOPASSWD sudoers rule
# for the run and removes both afterwards.
#
#   sudo scripts/bench.sh           # full run (about 15 minutes on 2 cores)
#   sudo scripts/bench.sh --quick   # smaller trees, fewer repetitions
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "bench.sh: run as root" >&2
  exit 1
fi
missing=()
command -v sudo >/dev/null || missing+=(sudo)
command -v qemu-img >/dev/null || missing+=(qemu-utils)
command -v setpriv >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo build --release --locked -p vmrmd -p vmrm -p vmrm-bench
exec ./target/release/vmrm-bench --out . "$@"
