# shellcheck shell=bash
# The guest kernels: Debian trixie's 6.12 for every tier (fs-verity and
# file-backed erofs built in; erofs, overlay, ext4, virtio_blk and loop as
# modules), and the newest kernel of trixie-backports (7.x) for the fast
# tier's -bpo boots, where cfs-setup-root takes the detached path (6.15+).

# The suite of the newer kernel (its boots are named -bpo).
NEWER_SUITE=trixie-backports

# kernel_prepare: the trixie kernel. Sets KERNEL_PKG, KERNEL_VERSION (uname -r
# of the guest), KERNEL_PKGVER, KERNEL_DIR (unpacked package with
# modules.dep), KERNEL_IMAGE.
kernel_prepare() {
	kernel_fetch kernel "$APT_CONFIG_FILE" "$GUEST_SUITE"
	KERNEL_PKG=$K_PKG KERNEL_VERSION=$K_VERSION KERNEL_PKGVER=$K_PKGVER
	KERNEL_DIR=$K_DIR KERNEL_IMAGE=$K_IMAGE
}

# kernel_newer_prepare: the trixie-backports kernel, resolved through a
# private apt configuration of its own. Sets NEWER_VERSION, NEWER_DIR,
# NEWER_IMAGE.
kernel_newer_prepare() {
	debian_apt_make "$NEWER_SUITE"
	kernel_fetch kernel-bpo "$APT_CONFIG_OUT" "$NEWER_SUITE"
	NEWER_VERSION=$K_VERSION NEWER_DIR=$K_DIR NEWER_IMAGE=$K_IMAGE
	say "newer guest kernel $NEWER_VERSION ($NEWER_SUITE)"
}

# kernel_fetch NAME APTCONF SUITE [META]: download and unpack the kernel that
# META (linux-image-amd64 by default) names in SUITE, cached as NAME. Sets
# K_PKG, K_VERSION, K_PKGVER, K_DIR, K_IMAGE.
kernel_fetch() {
	local name=$1 conf=$2 suite=$3 meta=${4:-linux-image-amd64}
	# (awk reads to the end: leaving early would kill apt-cache under pipefail.)
	K_PKG=$(APT_CONFIG=$conf apt-cache depends "$meta" |
		awk '/Depends: linux-image-/ && !p { print $2; p = 1 }')
	[ -n "$K_PKG" ] || die "cannot resolve $meta in $suite"
	K_VERSION=${K_PKG#linux-image-}
	K_PKGVER=$(APT_CONFIG=$conf apt-cache policy "$K_PKG" | awk '/Candidate:/ { print $2 }')
	cached "$name" "$(key_of "$K_PKG" "$K_PKGVER" "$DEBIAN_MIRROR")" kernel_build "$K_PKG" "$conf"
	K_DIR=$CACHED
	K_IMAGE=$(kernel_file "$K_DIR" "$K_VERSION" vmlinuz)
}

kernel_build() {
	local dir=$1 pkg=$2 conf=$3 ver=${2#linux-image-} parts deb
	# From 7.x on, linux-image-<version> is a small package depending on
	# linux-binary-<version> (the kernel) and linux-modules-<version>.
	parts=$(APT_CONFIG=$conf apt-cache depends "$pkg" |
		awk -v v="-$ver" '$1 ~ /Depends:$/ && $2 ~ /^linux-[a-z]+-/ &&
			substr($2, length($2) - length(v) + 1) == v { print $2 }')
	# shellcheck disable=SC2086 # one word per package
	(cd "$dir" && APT_CONFIG=$conf apt-get download -qq "$pkg" $parts >&2) ||
		die "apt-get download $pkg $parts failed"
	for deb in "$dir"/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
	rm -f "$dir"/*.deb
	# The package ships no modules.dep: the postinst would make it.
	depmod -b "$dir/root/usr" "${pkg#linux-image-}"
	grep -q '^CONFIG_FS_VERITY=y' "$(kernel_file "$dir" "$ver" config)" ||
		die "$pkg has no built-in fs-verity"
}

# kernel_file DIR VERSION vmlinuz|config: where the unpacked package keeps
# the file: /boot/NAME-VERSION (6.12), /usr/lib/modules/VERSION/NAME (7.x).
kernel_file() {
	if [ -e "$1/root/boot/$3-$2" ]; then
		echo "$1/root/boot/$3-$2"
	else
		echo "$1/root/usr/lib/modules/$2/$3"
	fi
}

# kernel_modules_closure MOD...: the modules MOD... need, dependencies first,
# as paths relative to the module directory (one per line, no duplicates).
# MOD? is a module only some kernels have (crc32c_generic: gone in 7.x).
kernel_modules_closure() {
	local moddir=$KERNEL_DIR/root/usr/lib/modules/$KERNEL_VERSION
	local m path
	for m in "$@"; do
		path=$(awk -F: -v m="${m%\?}" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", n); gsub(/-/, "_", n) }
			n == m { print $1; exit }' "$moddir/modules.dep")
		if [ -z "$path" ]; then
			# Built into the kernel: nothing to load.
			grep -q "/$m.ko" "$moddir/modules.builtin" 2>/dev/null || [ "${m%\?}" != "$m" ] ||
				warn "module $m not found"
			continue
		fi
		kernel_dep_walk "$moddir" "$path"
	done | awk '!seen[$0]++'
}

kernel_dep_walk() {
	local moddir=$1 path=$2 dep
	for dep in $(awk -F: -v p="$path" '$1 == p { print $2 }' "$moddir/modules.dep"); do
		kernel_dep_walk "$moddir" "$dep"
	done
	printf '%s\n' "$path"
}

# kernel_install_modules DEST MOD...: decompressed .ko files for busybox
# insmod (which cannot read compressed modules) under DEST/lib/modules, in
# load order listed in DEST/lib/modules/load-order. The kernel is
# $KERNEL_DIR/$KERNEL_VERSION (a caller may set both for one call).
kernel_install_modules() {
	local dest=$1 moddir=$KERNEL_DIR/root/usr/lib/modules/$KERNEL_VERSION path name
	shift
	mkdir -p "$dest/lib/modules"
	: >"$dest/lib/modules/load-order"
	for path in $(kernel_modules_closure "$@"); do
		name=$(basename "$path")
		case $name in
		*.ko.xz) xz -dc "$moddir/$path" >"$dest/lib/modules/${name%.xz}" ;;
		*.ko.zst) zstd -qdc "$moddir/$path" >"$dest/lib/modules/${name%.zst}" ;;
		*.ko) cp "$moddir/$path" "$dest/lib/modules/$name" ;;
		*) die "module $path: unknown compression" ;;
		esac
		printf '%s\n' "${name%.ko*}.ko" >>"$dest/lib/modules/load-order"
	done
}
