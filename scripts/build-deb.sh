#!/usr/bin/env bash
# Build the Debian package: target/debian/vmrm_<version>_<arch>.deb, with
# cargo-deb (installed with `cargo install --locked cargo-deb` if missing:
# about a minute). The package metadata is [package.metadata.deb] in
# client/Cargo.toml; the maintainer scripts are in client/debian/.
#
#   scripts/build-deb.sh
#   apt install ./target/debian/vmrm_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi

cargo build --release --locked -p vmrmd
cli=$(scripts/build-cli.sh)

# The assets that are not Cargo's: vmrm as linked statically (it is built
# for an explicit --target, so not where cargo-deb looks), man pages
# (gzipped, as Debian policy asks) and the units pointing at the packaged
# binaries.
assets=target/debian-assets
rm -rf "$assets"
mkdir -p "$assets/bin" "$assets/man" "$assets/systemd"
install -m 0755 "$cli" "$assets/bin/vmrm"
cargo run --locked -q -p xtask -- man "$assets/man" >/dev/null
gzip -9n "$assets"/man/*
for unit in dist/systemd/*; do
  sed 's#/usr/local/bin/vmrmd#/usr/sbin/vmrmd#g; s#/usr/local/bin/vmrm#/usr/bin/vmrm#g' \
    "$unit" > "$assets/systemd/$(basename "$unit")"
done
if grep -rq /usr/local "$assets/systemd"; then
  echo "build-deb.sh: a unit still names /usr/local:" >&2
  grep -rn /usr/local "$assets/systemd" >&2
  exit 1
fi

# --no-build: the binaries above; its own output name is
# <name>_<version>-<revision>_<arch>.deb.
cargo deb --locked --no-build -p vmrm --output target/debian/ | tail -n 1
