#!/bin/sh
# Install cfs-setup-root for mkinitcpio into DESTDIR (a package build root,
# an image tree, or / itself), without make (install.sh: install/ holds the
# install hook):
#
#   DESTDIR=/path/to/root mkinitcpio/install.sh [BIN]
#
# BIN is the static binary (default: the release build of this checkout,
# target/x86_64-unknown-linux-gnu/release/cfs-setup-root). Installs:
#   /usr/bin/cfs-setup-root
#   /usr/lib/systemd/system/cfs-setup-root.service  (for the systemd hook)
#   /usr/lib/systemd/system/initrd-root-fs.target.wants/cfs-setup-root.service
#   /usr/lib/initcpio/install/cfs-setup-root
#   /usr/lib/initcpio/hooks/cfs-setup-root
# Then add cfs-setup-root to HOOKS in /etc/mkinitcpio.conf (after systemd
# when it is there) and rebuild (mkinitcpio -P). The config file
# (/usr/lib/composefs/setup-root-conf.toml) is the system's own: install it
# separately; the hook copies it when present.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
: "${DESTDIR:?set DESTDIR to the root to install into (/ for this system)}"
bin=${1:-$here/../target/x86_64-unknown-linux-gnu/release/cfs-setup-root}
[ -x "$bin" ] || { echo "mkinitcpio/install.sh: no binary at $bin" >&2; exit 1; }

unitdir=/usr/lib/systemd/system
install -D -m 0755 "$bin" "$DESTDIR/usr/bin/cfs-setup-root"
# The same initrd unit as dracut's.
install -D -m 0644 "$here/../dracut/cfs-setup-root.service" "$DESTDIR$unitdir/cfs-setup-root.service"
mkdir -p "$DESTDIR$unitdir/initrd-root-fs.target.wants"
ln -sfn ../cfs-setup-root.service "$DESTDIR$unitdir/initrd-root-fs.target.wants/cfs-setup-root.service"
install -D -m 0644 "$here/install/cfs-setup-root" "$DESTDIR/usr/lib/initcpio/install/cfs-setup-root"
install -D -m 0644 "$here/hooks/cfs-setup-root" "$DESTDIR/usr/lib/initcpio/hooks/cfs-setup-root"
