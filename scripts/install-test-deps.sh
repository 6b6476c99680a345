#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, when missing:
# setpriv/prlimit (util-linux), chattr (e2fsprogs), systemd-socket-activate
# and systemd-analyze (systemd), strace (startup tests), groff and man (man
# pages check), adduser, useradd and su (the quick start and the Debian
# package), cargo-nextest and cargo-deb.
set -euo pipefail
missing=()
command -v setpriv >/dev/null || missing+=(util-linux)
command -v prlimit >/dev/null || missing+=(util-linux)
command -v chattr >/dev/null || missing+=(e2fsprogs)
command -v systemd-socket-activate >/dev/null || missing+=(systemd)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v timeout >/dev/null || missing+=(coreutils)
command -v strace >/dev/null || missing+=(strace)
command -v groff >/dev/null || missing+=(groff-base)
command -v man >/dev/null || missing+=(man-db)
command -v adduser >/dev/null || missing+=(adduser)
command -v useradd >/dev/null || missing+=(passwd)
command -v su >/dev/null || missing+=(util-linux)
command -v deb-systemd-helper >/dev/null || missing+=(init-system-helpers)
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
if ! cargo deb --version 2>/dev/null | grep -q 3.8.0; then
  cargo install --locked --version 3.8.0 cargo-deb
fi
echo "test dependencies present"
