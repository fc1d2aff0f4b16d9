# shellcheck shell=bash
# The arm64 tier: the static aarch64 binary (build-aux/cross-build arm64,
# Debian trixie's rustc with libstd-rust-dev:arm64) boots under
# qemu-system-aarch64 (TCG, machine virt) on Debian trixie's arm64 kernel,
# in the fast tier's busybox initramfs with the fast tier's guest scripts
# and disks: the ext4 disks with their fs-verity composefs repositories are
# the x86_64 tier's (made once by its builder guest: ext4, fs-verity and
# erofs are the same on both architectures, 4 KiB blocks and pages). Only
# the kernel, busybox, fsverity and the QEMU invocation differ.
#
# Cache layers (in $VM_CACHE):
#   kernel-arm64    trixie's linux-image-arm64 unpacked, with modules.dep
#   arm64-base      base.cpio: busybox-static:arm64, fsverity:arm64 and its
#                   libraries (from trixie's .debs), the arm64 kernel's
#                   modules, /init and the guest scripts
# The binary is built (or found up to date) by build-aux/cross-build on
# every run; CFS_SETUP_ROOT_BIN_ARM64 names a prebuilt one instead.

ARM64_QEMU=qemu-system-aarch64
# cortex-a57 (Armv8.0) runs TCG faster than -cpu max, which emulates
# pointer authentication with the architected QARMA cipher (CFS_VM_ARM64_CPU
# overrides).
ARM64_CPU=${CFS_VM_ARM64_CPU:-cortex-a57}
# The virt machine's serial port is a PL011.
ARM64_KARGS="console=ttyAMA0 panic=-1"
# What the arm64 initramfs carries from trixie:arm64 (fsverity's libraries
# with it: apt-get download does not follow dependencies).
ARM64_DEBS=(busybox-static fsverity libfsverity0 libssl3t64 zlib1g libzstd1 libc6)

# Whether a run without names (vm-tests/run, tests/run) includes the tier:
# 0 leaves it out, printing its cases as skipped with ARM64_SKIP_REASON.
ARM64_DEFAULT=1
ARM64_SKIP_REASON="arm64 tier left out of the default run (ARM64_DEFAULT=0): run vm-tests/run arm64"

# The boots and their cases: the fast tier's secure, sha512, tamper and
# refusals boots, with -arm64 on every case name.
ARM64_BOOTS=(arm64-secure arm64-sha512 arm64-tamper arm64-refusals)
BOOT_CASES+=(
	[arm64-secure]="secure-boot-arm64 verity-require-arm64 attach-first-arm64 kmsg-complete-arm64 switch-root-arm64"
	[arm64-sha512]="sha512-repository-arm64"
	[arm64-tamper]="tampered-object-eio-arm64 object-without-verity-eio-arm64"
	[arm64-refusals]="no-karg-arm64 wrong-digest-arm64 digest-mismatch-arm64 image-without-verity-refused-arm64 malformed-image-undone-arm64 forced-detached-undone-arm64 config-error-arm64"
)

# arm64_binary: ARM64_BIN, the static aarch64 cfs-setup-root.
arm64_binary() {
	if [ -n "${CFS_SETUP_ROOT_BIN_ARM64:-}" ]; then
		ARM64_BIN=$CFS_SETUP_ROOT_BIN_ARM64
	else
		ARM64_BIN=$("$REPO/build-aux/cross-build" arm64 | tail -n 1) ||
			die "build-aux/cross-build arm64 failed"
	fi
	[ -x "$ARM64_BIN" ] || die "no arm64 binary at $ARM64_BIN"
	[[ $(file -L "$ARM64_BIN") == *'ARM aarch64'*'statically linked'* ]] ||
		die "$ARM64_BIN is not a static aarch64 executable: $(file -bL "$ARM64_BIN")"
}

arm64_base_build() {
	local dir=$1 r=$1/root x=$1/debs deb
	# usrmerge: /lib is /usr/lib (the scripts, the modules, the loader).
	mkdir -p "$r"/{bin,usr/bin,usr/lib/cfstest,proc,sys,dev,run,tmp,sysroot,mnt} "$x"
	ln -s usr/lib "$r/lib"
	(cd "$x" && APT_CONFIG=$ARM64_APT apt-get download -qq "${ARM64_DEBS[@]/%/:arm64}" >&2) ||
		die "apt-get download ${ARM64_DEBS[*]} (arm64) failed"
	for deb in "$x"/*.deb; do dpkg-deb -x "$deb" "$x/root"; done
	cp "$x/root/usr/bin/busybox" "$r/bin/busybox"
	[[ $(file -L "$r/bin/busybox") == *'ARM aarch64'*'statically linked'* ]] ||
		die "busybox-static:arm64 is not a static aarch64 binary"
	# fsverity and what it loads, in the loader's default directory (no
	# ld.so.cache in the guest).
	cp "$x/root/usr/bin/fsverity" "$r/usr/bin/fsverity"
	cp -L "$x/root/usr/lib/aarch64-linux-gnu/"{libc.so.6,libfsverity.so.0,libcrypto.so.3,libz.so.1,libzstd.so.1} "$r/usr/lib/"
	cp -L "$x/root/usr/lib/ld-linux-aarch64.so.1" "$r/usr/lib/"
	rm -rf "$x"
	KERNEL_DIR=$ARM64_KERNEL_DIR KERNEL_VERSION=$ARM64_KERNEL_VERSION \
		kernel_install_modules "$r" "${FAST_MODULES[@]}" virtio_mmio?
	install -m 0755 "$VM_TESTS/guest/init" "$r/init"
	install -m 0644 "$VM_TESTS/guest/case.sh" "$r/lib/cfstest/"
	cpio_of "$r" "$dir/base.cpio"
	rm -rf "$r"
}

# arm64_prepare: the arm64 kernel, the initramfs with the binary under
# test, and the fast tier's disks (made by its x86_64 builder when missing).
arm64_prepare() {
	debian_apt_make "$GUEST_SUITE" arm64
	ARM64_APT=$APT_CONFIG_OUT
	kernel_fetch kernel-arm64 "$ARM64_APT" "$GUEST_SUITE" linux-image-arm64
	ARM64_KERNEL_VERSION=$K_VERSION ARM64_KERNEL_DIR=$K_DIR ARM64_KERNEL_IMAGE=$K_IMAGE
	say "arm64 guest kernel $ARM64_KERNEL_VERSION"
	local versions=() p
	for p in "${ARM64_DEBS[@]}"; do
		versions+=("$p=$(APT_CONFIG=$ARM64_APT apt-cache policy "$p" | awk '/Candidate:/ { print $2 }')")
	done
	cached arm64-base "$(key_of "$ARM64_KERNEL_VERSION" "${versions[*]}" "$VM_TESTS/guest/init" \
		"$VM_TESTS/guest/case.sh" "$VM_TESTS/lib/arm64.sh" "$VM_TESTS/lib/kernel.sh")" arm64_base_build
	ARM64_BASE=$CACHED
	if [ -z "${FAST_DISKS:-}" ]; then
		fast_pieces
		fast_disks_prepare
	fi
	ARM64_RUN=$(mktemp -d "$VM_CACHE/run-arm64.XXXXXX")
	mkdir -p "$ARM64_RUN/bin/usr/bin"
	cp "$ARM64_BIN" "$ARM64_RUN/bin/usr/bin/cfs-setup-root"
	cpio_of "$ARM64_RUN/bin" "$ARM64_RUN/bin.cpio"
	cat "$ARM64_BASE/base.cpio" "$ARM64_RUN/bin.cpio" >"$ARM64_RUN/initrd"
}

# arm64_boot BOOT: boot once under qemu-system-aarch64, report each case.
# The image's busybox (tree A) is x86_64: cfstest.lend-busybox=1 has the
# guest bind its own over it before switch_root (guest/case.sh).
arm64_boot() {
	local boot=$1 base=${1#arm64-} log=$LOG_DIR/arm64-$1.log rc=0
	# vm_boot reads these two (bash's dynamic scope: only for this boot).
	# shellcheck disable=SC2034
	local QEMU=$ARM64_QEMU
	local ACCEL_ARGS=(-machine virt -accel tcg -cpu "$ARM64_CPU")
	vm_boot "$log" "${CFS_VM_ARM64_TIMEOUT:-240}" 'CFSTEST-END' 5 \
		-kernel "$ARM64_KERNEL_IMAGE" -initrd "$ARM64_RUN/initrd" \
		-append "$ARM64_KARGS loglevel=4 cfstest.mode=case cfstest.boot=$base cfstest.path=attach-first cfstest.suffix=-arm64 cfstest.lend-busybox=1 $(fast_kargs "$base")" \
		-drive "file=$FAST_DISKS/disk-a.img,format=raw,if=virtio,snapshot=on" \
		-drive "file=$FAST_DISKS/disk-c.img,format=raw,if=virtio,snapshot=on" || rc=$?
	report_boot "arm64/$boot" "$log" "$rc" ${BOOT_CASES[$boot]}
}
