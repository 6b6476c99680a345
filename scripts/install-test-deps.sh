#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, when missing:
# setpriv/prlimit (util-linux), chattr (e2fsprogs), systemd-socket-activate
# and systemd-analyze (systemd), strace (startup tests), and cargo-nextest.
set -euo pipefail
missing=()
command -v setpriv >/dev/null || missing+=(util-linux)
command -v prlimit >/dev/null || missing+=(util-linux)
command -v chattr >/dev/null || missing+=(e2fsprogs)
command -v systemd-socket-activate >/dev/null || missing+=(systemd)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v timeout >/dev/null || missing+=(coreutils)
command -v strace >/dev/null || missing+=(strace)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (install them as root)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
echo "test dependencies present"
