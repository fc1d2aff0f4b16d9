# shellcheck shell=bash
# The guest kernel: Debian trixie's 6.12 (fs-verity and file-backed erofs
# built in; erofs, overlay, ext4, virtio_blk and loop as modules).

# kernel_prepare: sets KERNEL_PKG, KERNEL_VERSION (uname -r of the guest),
# KERNEL_PKGVER, KERNEL_DIR (unpacked package with modules.dep), KERNEL_IMAGE.
kernel_prepare() {
	local meta=linux-image-amd64
	KERNEL_PKG=$(guest_apt apt-cache depends "$meta" | awk '/Depends: linux-image-/ { print $2; exit }')
	[ -n "$KERNEL_PKG" ] || die "cannot resolve $meta in $GUEST_SUITE"
	KERNEL_VERSION=${KERNEL_PKG#linux-image-}
	KERNEL_PKGVER=$(debian_version "$KERNEL_PKG")
	cached kernel "$(key_of "$KERNEL_PKG" "$KERNEL_PKGVER" "$DEBIAN_MIRROR")" kernel_build "$KERNEL_PKG"
	KERNEL_DIR=$CACHED
	KERNEL_IMAGE=$KERNEL_DIR/root/boot/vmlinuz-$KERNEL_VERSION
}

kernel_build() {
	local dir=$1 pkg=$2
	debian_download "$dir" "$pkg"
	dpkg-deb -x "$dir"/*.deb "$dir/root"
	rm -f "$dir"/*.deb
	# The package ships no modules.dep: the postinst would make it.
	depmod -b "$dir/root/usr" "${pkg#linux-image-}"
	grep -q '^CONFIG_FS_VERITY=y' "$dir/root/boot/config-${pkg#linux-image-}" ||
		die "$pkg has no built-in fs-verity"
}

# kernel_modules_closure MOD...: the modules MOD... need, dependencies first,
# as paths relative to the module directory (one per line, no duplicates).
kernel_modules_closure() {
	local moddir=$KERNEL_DIR/root/usr/lib/modules/$KERNEL_VERSION
	local m path
	for m in "$@"; do
		path=$(awk -F: -v m="$m" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", n); gsub(/-/, "_", n) }
			n == m { print $1; exit }' "$moddir/modules.dep")
		if [ -z "$path" ]; then
			# Built into the kernel: nothing to load.
			grep -q "/$m.ko" "$moddir/modules.builtin" 2>/dev/null || warn "module $m not found"
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
# insmod (which cannot read .xz) under DEST/lib/modules, in load order listed
# in DEST/lib/modules/load-order.
kernel_install_modules() {
	local dest=$1 moddir=$KERNEL_DIR/root/usr/lib/modules/$KERNEL_VERSION path name
	shift
	mkdir -p "$dest/lib/modules"
	: >"$dest/lib/modules/load-order"
	for path in $(kernel_modules_closure "$@"); do
		name=$(basename "$path")
		name=${name%.xz}
		xz -dc "$moddir/$path" >"$dest/lib/modules/$name"
		printf '%s\n' "$name" >>"$dest/lib/modules/load-order"
	done
}
