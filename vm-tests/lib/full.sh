# shellcheck shell=bash
# The full tier: a Debian trixie root (mmdebstrap, systemd) with
# cfs-setup-root installed by dracut/install exactly as a package would,
# a dracut initramfs built inside that root, the root turned into a
# composefs image by cfsctl in a guest (fs-verity on every object), booted
# to multi-user by systemd.
#
# Cache layers, each keyed by its inputs:
#   full-rootfs   mmdebstrap output (packages, kernel .deb, mirror)
#   full-disk     the root + our packaging and test unit, its dracut
#                 initramfs, and the ext4 disk whose repository a builder
#                 guest wrote (binary, dracut/, guest/full, builder)

FULL_BOOTS=(full-boot full-persist full-emergency)
# What the booted root's report checks (the UKI boot checks the same).
FULL_REPORT_CASES="multi-user root-composefs-verity sysroot-readonly etc-var-deployment"
BOOT_CASES[full-boot]="$FULL_REPORT_CASES demo"
BOOT_CASES[full-persist]="persistence digest-karg-unit ro-cmdline"
BOOT_CASES[full-emergency]="wrong-digest-emergency"

FULL_PACKAGES=(systemd systemd-sysv udev dracut zstd kmod e2fsprogs fsverity)

full_rootfs_build() {
	local dir=$1
	local include
	include=$(IFS=,; echo "${FULL_PACKAGES[*]}")
	# The kernel the other tiers boot, by name and version from the same
	# mirror. Its hooks build an initramfs now; ours is built later.
	mmdebstrap --mode=root --variant=minbase --include="$include,$KERNEL_PKG=$KERNEL_PKGVER" \
		--aptopt='Acquire::Languages "none"' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--customize-hook='rm -f "$1"/boot/initrd.img-*' \
		--customize-hook='echo cfstest-full >"$1/etc/hostname"' \
		"$GUEST_SUITE" "$dir/rootfs" "$DEBIAN_MIRROR" || return 1
}

# in_root ROOT CMD...: run CMD chrooted in ROOT with /proc, /sys and /dev,
# in a private mount namespace so nothing outlives the command.
in_root() {
	local root=$1
	shift
	unshare --mount --propagation private sh -ec '
		root=$1; shift
		mount -t proc proc "$root/proc"
		mount -t sysfs sysfs "$root/sys"
		mount --rbind /dev "$root/dev"
		mount -t tmpfs tmpfs "$root/tmp"
		exec chroot "$root" "$@"' sh "$root" "$@"
}

full_disk_build() {
	local dir=$1 s=$1/stage
	local root=$s/import/root
	mkdir -p "$s/import"
	cp -a "$FULL_ROOTFS/rootfs" "$root"
	# Installed the way a package or an image recipe would.
	DESTDIR=$root "$REPO/dracut/install" "$BIN"
	install -D -m 0755 "$VM_TESTS/guest/full/report" "$root/usr/lib/cfstest/report"
	install -D -m 0644 "$VM_TESTS/guest/full/cfstest-report.service" \
		"$root/usr/lib/systemd/system/cfstest-report.service"
	mkdir -p "$root/usr/lib/systemd/system/multi-user.target.wants"
	ln -sfn ../cfstest-report.service "$root/usr/lib/systemd/system/multi-user.target.wants/cfstest-report.service"
	# The image needs a mount point for the physical root.
	mkdir -p "$root/sysroot"
	# A config file (spelling out defaults) that the dracut module must copy
	# into the initramfs (the peer forgets to: composefs-rs#86).
	install -D -m 0644 /dev/stdin "$root/usr/lib/composefs/setup-root-conf.toml" <<-EOF
		# vm-tests: the defaults, written out
		[etc]
		mount = "overlay"
		[sysroot]
		readonly = true
	EOF
	in_root "$root" dracut --no-hostonly --force --kver "$KERNEL_VERSION" /boot/cfstest-initrd.img \
		>"$dir/dracut.log" 2>&1 || { tail -n 30 "$dir/dracut.log"; return 1; }
	in_root "$root" lsinitrd /boot/cfstest-initrd.img >"$dir/lsinitrd.txt" 2>&1 || true
	mv "$root/boot/cfstest-initrd.img" "$dir/initrd.img"
	local f
	for f in usr/bin/cfs-setup-root usr/lib/systemd/system/cfs-setup-root.service \
		usr/lib/systemd/system/initrd-root-fs.target.wants/cfs-setup-root.service \
		usr/lib/composefs/setup-root-conf.toml erofs.ko overlay.ko loop.ko; do
		grep -q "$f" "$dir/lsinitrd.txt" || { echo "the initramfs lacks $f"; return 1; }
	done
	cp "$root/boot/vmlinuz-$KERNEL_VERSION" "$dir/vmlinuz"
	rm -rf "${root:?}/boot"/* "${root:?}/dev"/*
	mkdir -p "$s/cfstest"
	mkfs.ext4 -q -F -O verity -b 4096 -L cfstest-root -d "$s" "$dir/disk.img" 3G >/dev/null
	rm -rf "$s"
	builder_boot "$dir" full 900 "$dir/disk.img" || return 1
	grep -q DIGEST_ROOT "$dir/digests.env"
}

# full_rootfs_prepare: the mmdebstrap root, built or reused (the
# initramfs-tools and msrv tiers derive their roots from it too). Sets
# FULL_ROOTFS.
full_rootfs_prepare() {
	cached full-rootfs "$(key_of "$GUEST_SUITE" "$DEBIAN_MIRROR" "${FULL_PACKAGES[*]}" \
		"$KERNEL_PKG=$KERNEL_PKGVER" "$(declare -f full_rootfs_build)")" full_rootfs_build
	FULL_ROOTFS=$CACHED
}

# full_prepare: the root, its initramfs and the disk, built or reused.
full_prepare() {
	[ -n "${FAST_BASE:-}" ] || fast_pieces
	full_rootfs_prepare
	cached full-disk "$(key_of "$(basename "$FULL_ROOTFS")" "$BIN" "$REPO/dracut" \
		"$VM_TESTS/guest/full" "$VM_TESTS/guest/build.sh" "$VM_TESTS/guest/init" \
		"$(basename "$FAST_CFSCTL")" "$(declare -f full_disk_build)")" full_disk_build
	FULL_DISK=$CACHED
	# shellcheck disable=SC1091
	. "$FULL_DISK/digests.env"
	FULL_RUN=$(mktemp -d "$VM_CACHE/run-full.XXXXXX")
	# The first two boots share one writable layer over the cached disk.
	qemu-img create -q -f qcow2 -F raw -b "$FULL_DISK/disk.img" "$FULL_RUN/disk.qcow2"
}

FULL_CMDLINE="$GUEST_KARGS root=LABEL=cfstest-root rw loglevel=4 systemd.show_status=1"

# full_boot_first LOG DRIVE_ARG...: the first boot of the full disk, as the
# demo shows it and full-boot checks it (DRIVE_ARG: the disk's -drive).
full_boot_first() {
	local log=$1
	shift
	vm_boot "$log" "${CFS_VM_FULL_TIMEOUT:-300}" "CFSTEST-END|$EMERGENCY_RE" 30 \
		-kernel "$FULL_DISK/vmlinuz" -initrd "$FULL_DISK/initrd.img" \
		-append "$FULL_CMDLINE composefs=$DIGEST_ROOT" "$@"
}

# What systemd and dracut print on the way to emergency mode: a boot that
# gets there is over.
EMERGENCY_RE='Entering emergency mode|Reached target emergency.target|You are in emergency mode'

# full_boot BOOT
full_boot() {
	local boot=$1 log=$LOG_DIR/$1.log rc=0 bad
	case $boot in
	full-boot)
		full_boot_first "$log" -drive "file=$FULL_RUN/disk.qcow2,format=qcow2,if=virtio" || rc=$?
		# What vm-tests/demo would print of this boot, and whether it shows
		# what it must (case demo).
		demo_show "$log" >"$log.demo"
		demo_verdict "$log" "$rc" || true
		;;
	full-persist)
		# The second boot of the same disk names the image in the other
		# karg form, which the unit's ConditionKernelCommandLine must also
		# accept, and has `ro` where the first had `rw` (GRUB's default:
		# the physical root comes up read-only; /etc and /var must still
		# be writable and keep the first boot's writes).
		vm_boot "$log" "${CFS_VM_FULL_TIMEOUT:-300}" "CFSTEST-END|$EMERGENCY_RE" 30 \
			-kernel "$FULL_DISK/vmlinuz" -initrd "$FULL_DISK/initrd.img" \
			-append "${FULL_CMDLINE/ rw / ro } composefs.digest=v1-sha256-12:$DIGEST_ROOT" \
			-drive "file=$FULL_RUN/disk.qcow2,format=qcow2,if=virtio" || rc=$?
		;;
	full-emergency)
		# A digest with no image: the unit fails, the initrd isolates
		# emergency.target, and the root is never switched to.
		bad=$(printf '%064d' 5)
		vm_boot "$log" "${CFS_VM_FULL_TIMEOUT:-300}" "CFSTEST-END|$EMERGENCY_RE" 3 \
			-kernel "$FULL_DISK/vmlinuz" -initrd "$FULL_DISK/initrd.img" \
			-append "$FULL_CMDLINE composefs=$bad" \
			-drive "file=$FULL_DISK/disk.img,format=raw,if=virtio,snapshot=on" || rc=$?
		full_emergency_verdict "$log" "$rc"
		;;
	esac
	report_boot "$boot" "$log" "$rc" ${BOOT_CASES[$boot]}
}

# The emergency boot's verdict is read by the host: the guest cannot report
# from emergency mode. Appends a marker line to the log.
full_emergency_verdict() {
	local log=$1 rc=$2 why=()
	[ "$rc" = 0 ] && grep -qaE "$EMERGENCY_RE" "$log" || why+=("emergency mode not reached")
	grep -qa 'cfs-setup-root: error:' "$log" || why+=("no 'cfs-setup-root: error:' line on the console")
	grep -qa 'CFSTEST-RESULT' "$log" && why+=("the root was booted")
	if [ ${#why[@]} -eq 0 ]; then
		echo "CFSTEST-RESULT: PASS wrong-digest-emergency" >>"$log"
	else
		echo "CFSTEST-RESULT: FAIL wrong-digest-emergency: $(IFS=';'; echo "${why[*]}")" >>"$log"
	fi
}
