#!/usr/bin/env bash
# The benchmark, in one command (as root, on a machine you can spare for a
# good part of an hour): installs sudo and qemu-utils when missing, builds the
# release binaries, and writes BENCHMARKS.md and benchmarks.svg at the top of
# the repository. It creates a `vmrmbench` user and a NOPASSWD sudoers rule
# for the run and removes both afterwards.
#
#   sudo scripts/bench.sh           # full run (about 45 minutes on 2 cores)
#   sudo scripts/bench.sh --quick   # smaller trees, fewer repetitions
#   sudo scripts/bench.sh --only python   # one section (typical, tenants,
#                                         # large, engine, fairness, python)
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
# The vmrm command as shipped (statically linked); target/release/vmrm, the
# dynamically linked one a plain `cargo build` makes, is measured beside it.
VMRM_BENCH_CLI="$PWD/$(scripts/build-cli.sh)"
export VMRM_BENCH_CLI
# Section 5 runs the Python package as the service user: install it where
# that user can read it, for an interpreter it can run.
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  python3 -m pip install --quiet --upgrade --target target/python-bench ./python
  chmod -R a+rX target/python-bench
  export VMRM_BENCH_PYTHONPATH="$PWD/target/python-bench"
  if [ -x /usr/bin/python3 ]; then export VMRM_BENCH_PYTHON=/usr/bin/python3; fi
fi
exec ./target/release/vmrm-bench --out . "$@"
