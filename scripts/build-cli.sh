#!/usr/bin/env bash
# Build the `vmrm` command as it ships: linked statically. A dynamically
# linked vmrm spends about 0.3 ms of every start in the dynamic loader and in
# libgcc_s's CPU probe (cpuid, a trap to the hypervisor in a VM): more than the
# removal of a typical workdir. Static linking is only for the client; vmrmd
# resolves account names through NSS and stays dynamically linked.
#
#   scripts/build-cli.sh                      # prints the binary's path
#   scripts/build-cli.sh /usr/local/bin/vmrm  # and installs it there (0755)
#
# `--target` keeps the flag off build scripts and proc-macros (they must
# stay dynamic), so the binary lands in target/<host triple>/release/.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$host" -p vmrm >&2
bin="target/$host/release/vmrm"
if [ "$#" -gt 0 ]; then
  install -D -m 0755 "$bin" "$1"
fi
echo "$bin"
