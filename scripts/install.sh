#!/usr/bin/env bash
# Install vmrm: builds release binaries and installs vmrmd and vmrm, their man
# pages, the systemd units, the config (an existing one is kept), the `vmrm`
# client group and the `vmrmd` system user. Run as root from the repository:
#
#   sudo scripts/install.sh            # into /usr/local, units in /etc/systemd/system
#   PREFIX=/usr scripts/install.sh     # elsewhere
#   DESTDIR=/tmp/stage scripts/install.sh   # staged (packaging): no accounts, no systemctl
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or set DESTDIR to stage the files)" >&2
  exit 1
fi

cargo build --release --locked -p vmrmd
cli=$(scripts/build-cli.sh)   # vmrm, linked statically (see that script)
cargo run --release --locked -q -p xtask -- man target/man >/dev/null

install -D -m 0755 target/release/vmrmd "$DESTDIR$PREFIX/bin/vmrmd"
install -D -m 0755 "$cli" "$DESTDIR$PREFIX/bin/vmrm"
install -d "$DESTDIR$PREFIX/share/man/man1" "$DESTDIR$PREFIX/share/man/man8"
install -m 0644 target/man/*.1 "$DESTDIR$PREFIX/share/man/man1/"
install -m 0644 target/man/*.8 "$DESTDIR$PREFIX/share/man/man8/"

units="$DESTDIR/etc/systemd/system"
install -d "$units"
for unit in dist/systemd/*; do
  sed "s#/usr/local/bin/#$PREFIX/bin/#g" "$unit" > "$units/$(basename "$unit")"
  chmod 0644 "$units/$(basename "$unit")"
done

if [ -e "$DESTDIR/etc/vmrm/vmrmd.toml" ]; then
  echo "keeping existing $DESTDIR/etc/vmrm/vmrmd.toml"
else
  install -D -m 0644 dist/vmrmd.toml "$DESTDIR/etc/vmrm/vmrmd.toml"
fi

if [ -z "$DESTDIR" ]; then
  getent group vmrm >/dev/null || groupadd --system vmrm
  getent passwd vmrmd >/dev/null ||
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin vmrmd
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
  fi
  "$PREFIX/bin/vmrmd" --config /etc/vmrm/vmrmd.toml check-config >/dev/null
fi

cat <<MSG
Installed vmrmd and vmrm into $DESTDIR$PREFIX.
Next:
  usermod -aG vmrm <the sandbox service's user>   # who may connect
  systemctl enable --now vmrmd.socket             # start on first connection
  vmrm ping
MSG
