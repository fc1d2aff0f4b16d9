# shellcheck shell=bash
# Host preparation: the Debian packages the tier runs on, cfsctl, our binary.
#
# Nothing here touches the host's systemd or its apt sources: dracut and
# ukify run from the trixie guest root or from unpacked .debs, never from
# packages installed on the host.

HOST_PACKAGES=(
	qemu-system-x86 qemu-utils ovmf # the machine and its UEFI firmware
	busybox-static fsverity         # guest userland of the fast tier
	e2fsprogs dosfstools mtools     # ext4 disks with verity, the ESP
	mmdebstrap cpio zstd xz-utils kmod file
	python3 python3-pefile # ukify runs on the host's python
	swtpm                  # the TPM of the TPM boots
)

# host_packages: install whichever of HOST_PACKAGES is missing.
host_packages() {
	local missing=() p
	for p in "${HOST_PACKAGES[@]}"; do
		dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing host packages: ${missing[*]}"
	[ "$(id -u)" = 0 ] || die "need root to install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

CFSCTL_VERSION=0.9.4

# host_cfsctl: cfsctl 0.9.4 under $TOOLS_ROOT, compiled once per machine.
host_cfsctl() {
	CFSCTL=$TOOLS_ROOT/bin/cfsctl
	if [ -x "$CFSCTL" ] && "$CFSCTL" --version 2>/dev/null | grep -q "$CFSCTL_VERSION"; then
		return 0
	fi
	say "installing cfsctl $CFSCTL_VERSION (a cold compile takes several minutes)"
	need_cmd cargo
	# composefs-ctl links openssl.
	for p in libssl-dev pkg-config; do
		dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
			HOST_PACKAGES+=("$p")
	done
	host_packages
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
	if file -L "$BIN" | grep -q 'dynamically linked'; then
		die "$BIN is dynamically linked; the initramfs needs a static binary"
	fi
}
