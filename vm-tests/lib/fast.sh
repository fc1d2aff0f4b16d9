# shellcheck shell=bash
# The fast tier: a busybox initramfs boots the trixie kernel, mounts a disk
# holding composefs repositories at /sysroot, runs cfs-setup-root and checks
# the result from inside (guest/case.sh).
#
# Initramfs pieces are separate cpio archives, concatenated at boot (the
# kernel unpacks them in order):
#   base.cpio    busybox, fsverity, kernel modules, /init and guest scripts
#   cfsctl.cpio  cfsctl and its libraries (only the disk builder needs it)
#   bin.cpio     the cfs-setup-root under test (made on every run)

FAST_MODULES=(virtio_blk crc32c_generic? ext4 erofs overlay loop)

# Boots of the fast tier and the cases each one proves, in run order. The
# -bpo boots run the same checks on the trixie-backports kernel (7.x), where
# the tool takes the detached path; their case names carry the suffix.
FAST_BOOTS=(secure tamper refusals insecure sha512 digest-karg transient-etc
	string-lowerdir loop-erofs transient-root etc-var-none ro-root ro-device
	secure-bpo tamper-bpo refusals-bpo)
BOOT_CASES+=(
	[secure]="secure-boot verity-require attach-first kmsg-complete switch-root"
	[tamper]="tampered-object-eio object-without-verity-eio"
	[refusals]="no-karg wrong-digest digest-mismatch image-without-verity-refused malformed-image-undone forced-detached-undone config-error"
	[insecure]="insecure-noverity"
	[sha512]="sha512-repository"
	[digest-karg]="digest-karg"
	[transient-etc]="first-existing-selector sha256-prefix-karg transient-etc"
	[string-lowerdir]="string-lowerdir"
	[loop-erofs]="loop-erofs"
	[transient-root]="transient-root"
	[etc-var-none]="etc-var-none sysroot-writable"
	[ro-root]="ro-root"
	[ro-device]="ro-device-transient"
	[secure-bpo]="secure-boot-bpo verity-require-bpo detached-bpo kmsg-complete-bpo switch-root-bpo"
	[tamper-bpo]="tampered-object-eio-bpo object-without-verity-eio-bpo"
	[refusals-bpo]="no-karg-bpo wrong-digest-bpo digest-mismatch-bpo image-without-verity-refused-bpo malformed-image-undone-bpo config-error-bpo"
)

# fast_wants_newer: some -bpo boot is wanted (WANT is vm-tests/run's).
fast_wants_newer() {
	local b
	for b in "${!WANT[@]}"; do [[ $b == *-bpo ]] && return 0; done
	return 1
}

# fast_kargs BOOT: the composefs part of the boot's kernel command line.
fast_kargs() {
	local missing
	missing=$(printf '%064d' 42)
	case $1 in
	secure | tamper | string-lowerdir | loop-erofs | transient-root | etc-var-none)
		echo "composefs=$DIGEST_A" ;;
	ro-root | ro-device) echo "composefs=$DIGEST_A cfstest.mountopts=ro" ;;
	refusals) echo "" ;;
	insecure) echo "composefs=?$DIGEST_B" ;;
	sha512) echo "composefs=$DIGEST_C cfstest.disk=vdb" ;;
	digest-karg) echo "composefs.digest=v1-sha256-12:$DIGEST_A" ;;
	transient-etc) echo "composefs=$missing composefs=sha256:$DIGEST_A" ;;
	*) die "no kernel command line for boot $1" ;;
	esac
}

# cpio_of DIR OUT: a newc archive of DIR, root-owned.
cpio_of() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"
}

# copy_with_libs BIN DESTROOT DESTPATH: a dynamic binary and the host
# libraries it loads (bookworm's, which run fine under the guest kernel).
copy_with_libs() {
	local bin=$1 root=$2 dest=$3 lib
	mkdir -p "$root$(dirname "$dest")"
	cp -L "$bin" "$root$dest"
	for lib in $(ldd "$bin" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	# The dynamic loader is looked up at its canonical path.
	mkdir -p "$root/lib64"
	[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
}

fast_base_build() {
	local dir=$1 r=$1/root
	mkdir -p "$r"/{bin,usr/bin,lib/cfstest,proc,sys,dev,run,tmp,sysroot,mnt}
	cp /bin/busybox "$r/bin/busybox"
	copy_with_libs "$(command -v fsverity)" "$r" /usr/bin/fsverity
	kernel_install_modules "$r" "${FAST_MODULES[@]}"
	install -m 0755 "$VM_TESTS/guest/init" "$r/init"
	install -m 0644 "$VM_TESTS/guest/case.sh" "$VM_TESTS/guest/build.sh" "$VM_TESTS/guest/mkosi.sh" \
		"$r/lib/cfstest/"
	# One process enables fs-verity on a whole repository (mkosi disks).
	cc -static -O2 -Wall -o "$r/usr/bin/verity-enable" "$VM_TESTS/guest/verity-enable.c"
	cpio_of "$r" "$dir/base.cpio"
	rm -rf "$r"
}

fast_cfsctl_build() {
	local dir=$1 r=$1/root
	copy_with_libs "$CFSCTL" "$r" /usr/bin/cfsctl
	strip "$r/usr/bin/cfsctl" 2>/dev/null || true
	cpio_of "$r" "$dir/cfsctl.cpio"
	rm -rf "$r"
}

fast_disks_build() {
	local dir=$1 s=$1/stage v
	mkdir -p "$s/a/import" "$s/c/import"
	for v in A B; do tree_make "$s/a/import/$v" "$v"; done
	tree_make "$s/c/import/C" C
	mkfs.ext4 -q -F -O verity -b 4096 -L cfstest-a -d "$s/a" "$dir/disk-a.img" 256M >/dev/null
	mkfs.ext4 -q -F -O verity -b 4096 -L cfstest-c -d "$s/c" "$dir/disk-c.img" 128M >/dev/null
	rm -rf "$s"
	builder_boot "$dir" fast 300 "$dir/disk-a.img" "$dir/disk-c.img" || return 1
	grep -q DIGEST_C "$dir/digests.env"
}

# builder_boot DIR BUILD TIMEOUT DISK...: boots the builder guest (the base and cfsctl
# archives) with cfstest.build=BUILD on DISK..., where it writes the repositories with real
# fs-verity; logs to DIR/build.log and keeps the digests it reports in DIR/digests.env.
# BUILDER_MODE names the guest script (guest/<mode>.sh; default build).
builder_boot() {
	local dir=$1 build=$2 timeout=$3 log=$1/build.log disk drives=() mode=${BUILDER_MODE:-build}
	shift 3
	for disk in "$@"; do drives+=(-drive "file=$disk,format=raw,if=virtio"); done
	cat "$FAST_BASE/base.cpio" "$FAST_CFSCTL/cfsctl.cpio" >"$dir/builder.cpio"
	vm_boot "$log" "$timeout" 'CFSTEST-END' 5 \
		-kernel "$KERNEL_IMAGE" -initrd "$dir/builder.cpio" \
		-append "$GUEST_KARGS loglevel=4 cfstest.mode=$mode cfstest.build=$build" \
		"${drives[@]}" || true
	rm -f "$dir/builder.cpio"
	say "$build disk: builder boot took ${BOOT_SECONDS}s"
	if ! grep -qa "CFSTEST-RESULT: PASS build-$build" "$log"; then
		console_tail "$log" 40
		return 1
	fi
	tr -d '\r' <"$log" | awk '/^CFSTEST-DIGEST / { print "DIGEST_" $2 "=" $3 }' >"$dir/digests.env"
}

# fast_pieces: the base and cfsctl archives (the full tier's disk builder
# uses them too).
fast_pieces() {
	fast_base_of "$KERNEL_VERSION" fast-base
	FAST_BASE=$CACHED
	cached fast-cfsctl "$(key_of "$CFSCTL")" fast_cfsctl_build
	FAST_CFSCTL=$CACHED
}

# fast_base_of VERSION NAME: the base archive with the modules of the kernel
# $KERNEL_DIR/VERSION, cached as NAME.
fast_base_of() {
	[[ $(file -L /bin/busybox) == *statically\ linked* ]] ||
		die "/bin/busybox is not static: install busybox-static (tests/deps.txt)"
	cached "$2" "$(key_of "$1" /bin/busybox "$(command -v fsverity)" \
		"$VM_TESTS/guest" "$VM_TESTS/lib/fast.sh" "$VM_TESTS/lib/kernel.sh")" fast_base_build
}

# fast_disks_prepare: the two disks (the arm64 tier boots them too), built
# or reused; sets FAST_DISKS and the digests. Needs fast_pieces.
fast_disks_prepare() {
	# The disks depend on what the builder runs, not on the case scripts.
	cached fast-disks "$(key_of "$KERNEL_VERSION" /bin/busybox "$(command -v fsverity)" \
		"$CFSCTL" "$VM_TESTS/lib/trees.sh" "$VM_TESTS/guest/init" "$VM_TESTS/guest/build.sh" \
		"$VM_TESTS/guest/image-init")" fast_disks_build
	FAST_DISKS=$CACHED
	# shellcheck disable=SC1091
	. "$FAST_DISKS/digests.env"
}

# fast_prepare: the initramfs pieces and the two disks, built or reused.
fast_prepare() {
	fast_pieces
	fast_disks_prepare
	FAST_RUN=$(mktemp -d "$VM_CACHE/run-fast.XXXXXX")
	mkdir -p "$FAST_RUN/bin/usr/bin"
	cp "$BIN" "$FAST_RUN/bin/usr/bin/cfs-setup-root"
	cpio_of "$FAST_RUN/bin" "$FAST_RUN/bin.cpio"
	cat "$FAST_BASE/base.cpio" "$FAST_RUN/bin.cpio" >"$FAST_RUN/initrd"
	if [ -n "${NEWER_DIR:-}" ]; then
		# The same archives with the newer kernel's modules; the disks are shared.
		KERNEL_DIR=$NEWER_DIR KERNEL_VERSION=$NEWER_VERSION fast_base_of "$NEWER_VERSION" fast-base-bpo
		cat "$CACHED/base.cpio" "$FAST_RUN/bin.cpio" >"$FAST_RUN/initrd-bpo"
	fi
}

# fast_boot BOOT: boot once, report each of the boot's cases.
fast_boot() {
	local boot=$1 log=$LOG_DIR/fast-$1.log rc=0 base=${1%-bpo} disk_a=snapshot=on
	local kernel=$KERNEL_IMAGE initrd=$FAST_RUN/initrd guest="cfstest.path=attach-first"
	if [ "$base" != "$boot" ]; then
		kernel=$NEWER_IMAGE initrd=$FAST_RUN/initrd-bpo guest="cfstest.path=detached cfstest.suffix=-bpo"
	fi
	# A read-only disk: the guest's block device itself refuses writes.
	[ "$boot" = ro-device ] && disk_a=readonly=on
	vm_boot "$log" "${CFS_VM_FAST_TIMEOUT:-120}" 'CFSTEST-END' 5 \
		-kernel "$kernel" -initrd "$initrd" \
		-append "$GUEST_KARGS loglevel=4 cfstest.mode=case cfstest.boot=$base $guest $(fast_kargs "$base")" \
		-drive "file=$FAST_DISKS/disk-a.img,format=raw,if=virtio,$disk_a" \
		-drive "file=$FAST_DISKS/disk-c.img,format=raw,if=virtio,snapshot=on" || rc=$?
	report_boot "fast/$boot" "$log" "$rc" ${BOOT_CASES[$boot]}
}
