# shellcheck shell=bash
# Host preparation: the Debian packages the tier runs on, cfsctl, our binary.
#
# Nothing here touches the host's systemd or its apt sources: dracut and
# ukify run from the trixie guest root or from unpacked .debs, never from
# packages installed on the host.

# shellcheck source=../../tests/lib/deps.sh
. "$REPO/tests/lib/deps.sh"

# host_packages: every host command the tier calls, from the one list
# (tests/deps.txt, groups vm and build: cfsctl may need compiling), installed
# with apt-get when missing; a command still missing stops the run here.
host_packages() {
	deps_install vm build || die "host commands missing (see above; the list is tests/deps.txt)"
}

CFSCTL_VERSION=0.9.4

# host_cfsctl: cfsctl 0.9.4 under $TOOLS_ROOT, compiled once per machine.
host_cfsctl() {
	CFSCTL=$TOOLS_ROOT/bin/cfsctl
	if [ -x "$CFSCTL" ] && [[ $("$CFSCTL" --version 2>/dev/null) == *"$CFSCTL_VERSION"* ]]; then
		return 0
	fi
	say "installing cfsctl $CFSCTL_VERSION (a cold compile takes several minutes)"
	cargo install --locked composefs-ctl --version "$CFSCTL_VERSION" \
		--root "$TOOLS_ROOT" >&2 || die "cargo install composefs-ctl failed"
	[ -x "$CFSCTL" ] || die "cargo install did not produce $CFSCTL"
}

# host_binary: the static cfs-setup-root the guests run. CFS_SETUP_ROOT_BIN
# names a prebuilt one; otherwise build the release binary of this checkout.
host_binary() {
	if [ -n "${CFS_SETUP_ROOT_BIN:-}" ]; then
		BIN=$CFS_SETUP_ROOT_BIN
	else
		local target=${CARGO_TARGET_DIR:-$REPO/target}
		say "cargo build --release"
		(cd "$REPO" && CARGO_TARGET_DIR=$target cargo build --release --quiet >&2) ||
			die "cargo build --release failed"
		BIN=$target/x86_64-unknown-linux-gnu/release/cfs-setup-root
	fi
	[ -x "$BIN" ] || die "no binary at $BIN"
	# The fast-tier initramfs has no libc: the binary must be static.
	if [[ $(file -L "$BIN") == *'dynamically linked'* ]]; then
		die "$BIN is dynamically linked; the initramfs needs a static binary"
	fi
}

# host_package: the Debian package the full, initramfs-tools and mkosi tiers
# install into their guests (so every boot of theirs proves the package).
# CFS_SETUP_ROOT_DEB names a prebuilt one (tests/run builds it once per run);
# otherwise `make deb` with BIN. Sets DEB and DEB_KEY, the hash of what in
# the package can change a boot (the files but the documentation, the
# maintainer scripts and triggers): a change to the README or a man page does
# not rebuild the disks.
host_package() {
	if [ -n "${CFS_SETUP_ROOT_DEB:-}" ]; then
		DEB=$CFS_SETUP_ROOT_DEB
	else
		say "make deb"
		(cd "$REPO" && make -s deb BIN="$BIN" >&2) || die "make deb failed"
		DEB=$REPO/$(cd "$REPO" && make -s print-deb)
	fi
	[ -f "$DEB" ] || die "no package at $DEB"
	local t
	t=$(mktemp -d)
	dpkg-deb -x "$DEB" "$t/root" && dpkg-deb -e "$DEB" "$t/root/DEBIAN" || {
		rm -rf "$t"
		die "$DEB cannot be unpacked"
	}
	rm -rf "$t/root/usr/share/doc" "$t/root/usr/share/man" "$t/root/DEBIAN/md5sums" "$t/root/DEBIAN/control"
	DEB_KEY=$(key_of "$t/root")
	rm -rf "$t"
}
