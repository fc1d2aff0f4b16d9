# shellcheck shell=bash
# The initramfs-tools tier: Debian's default initramfs generator instead of
# dracut. The full tier's trixie root has dracut swapped for initramfs-tools
# offline (dpkg in a chroot, with .debs from the private trixie lists: a few
# seconds instead of a second mmdebstrap), cfs-setup-root's .deb installed
# with dpkg -i (its trigger runs update-initramfs), `update-initramfs -c`
# run inside the root, and the root turned into a composefs image by cfsctl
# in the builder guest. Booted with fs-verity on; the report unit of the full
# tier (guest/full) checks the booted system.
#
# Cache layer, keyed by its inputs:
#   itools-disk   the full tier's mmdebstrap root with initramfs-tools, our
#                 hook and boot script, the test unit, its initramfs, and the
#                 ext4 disk whose repository the builder guest wrote

# Run order: the ro boot writes to /etc and /var first, the rw boot finds
# those writes (persistence) and checks the rest again.
# shellcheck disable=SC2034 # used by vm-tests/run
ITOOLS_BOOTS=(itools-ro itools-boot itools-refused)
BOOT_CASES+=(
	[itools-ro]="itools-ro-multi-user itools-ro-root-composefs-verity itools-ro-sysroot-readonly itools-ro-etc-var-deployment"
	[itools-boot]="itools-multi-user itools-root-composefs-verity itools-sysroot-readonly itools-etc-var-deployment itools-persistence"
	[itools-refused]="itools-refused"
)

# What replaces dracut (busybox: initramfs-tools-core recommends it, so a
# Debian system has it).
ITOOLS_PACKAGES=(initramfs-tools busybox)

# itools_swap_debs ROOT DIR: download into DIR the .debs ROOT needs for
# ITOOLS_PACKAGES, as apt would resolve them against ROOT's dpkg status.
itools_swap_debs() {
	local root=$1 dir=$2 pkgs
	pkgs=$(guest_apt apt-get -s -o Dir::State::status="$root/var/lib/dpkg/status" \
		install --no-install-recommends "${ITOOLS_PACKAGES[@]}" | awk '/^Inst / { print $2 }')
	[ -n "$pkgs" ] || { echo "apt resolved nothing for ${ITOOLS_PACKAGES[*]}"; return 1; }
	mkdir -p "$dir"
	# shellcheck disable=SC2086
	debian_download "$dir" $pkgs
}

itools_disk_build() {
	local dir=$1 s=$1/stage t0
	local root=$s/import/root
	mkdir -p "$s/import"
	t0=$(now)
	cp -a "$FULL_ROOTFS/rootfs" "$root"
	# dracut out (dracut-install stays: initramfs-tools uses it too),
	# initramfs-tools in, as a system switching generators would.
	itools_swap_debs "$root" "$root/var/tmp/itools-debs" || return 1
	if ! in_root "$root" sh -ec 'dpkg --purge --force-depends dracut dracut-core; dpkg -i /var/tmp/itools-debs/*.deb' \
		>"$dir/swap.log" 2>&1; then
		tail -n 30 "$dir/swap.log"
		return 1
	fi
	rm -rf "$root/var/tmp/itools-debs"
	say "initramfs-tools swapped in for dracut in $(elapsed "$t0") s"
	# Installed as a user would: the package, with its maintainer scripts.
	install_deb "$root" "$dir/dpkg.log" || return 1
	install -D -m 0755 "$VM_TESTS/guest/full/report" "$root/usr/lib/cfstest/report"
	install -D -m 0644 "$VM_TESTS/guest/full/tpm-cases" "$root/usr/lib/cfstest/tpm-cases"
	install -D -m 0644 "$VM_TESTS/guest/full/cfstest-report.service" \
		"$root/usr/lib/systemd/system/cfstest-report.service"
	mkdir -p "$root/usr/lib/systemd/system/multi-user.target.wants"
	ln -sfn ../cfstest-report.service "$root/usr/lib/systemd/system/multi-user.target.wants/cfstest-report.service"
	echo cfstest-itools >"$root/etc/hostname"
	mkdir -p "$root/sysroot"
	# A config file the hook must copy into the initramfs.
	install -D -m 0644 /dev/stdin "$root/usr/lib/composefs/setup-root-conf.toml" <<-EOF
		# vm-tests: the defaults, written out
		[etc]
		mount = "overlay"
		[sysroot]
		readonly = true
	EOF
	t0=$(now)
	in_root "$root" update-initramfs -c -k "$KERNEL_VERSION" >"$dir/update-initramfs.log" 2>&1 ||
		{ tail -n 30 "$dir/update-initramfs.log"; return 1; }
	say "update-initramfs took $(elapsed "$t0") s"
	in_root "$root" lsinitramfs "/boot/initrd.img-$KERNEL_VERSION" >"$dir/lsinitramfs.txt" 2>&1 || true
	local f
	for f in usr/bin/cfs-setup-root scripts/local-bottom/cfs-setup-root \
		usr/lib/composefs/setup-root-conf.toml erofs.ko overlay.ko loop.ko; do
		grep -q "$f" "$dir/lsinitramfs.txt" || { echo "the initramfs lacks $f"; return 1; }
	done
	grep -q '^scripts/local-bottom/ORDER' "$dir/lsinitramfs.txt" || { echo "no local-bottom ORDER"; return 1; }
	mv "$root/boot/initrd.img-$KERNEL_VERSION" "$dir/initrd.img"
	cp "$root/boot/vmlinuz-$KERNEL_VERSION" "$dir/vmlinuz"
	rm -rf "${root:?}/boot"/* "${root:?}/dev"/*
	mkdir -p "$s/cfstest"
	mkfs.ext4 -q -F -O verity -b 4096 -L cfstest-root -d "$s" "$dir/disk.img" 3G >/dev/null
	rm -rf "$s"
	builder_boot "$dir" full 900 "$dir/disk.img" || return 1
	grep -q DIGEST_ROOT "$dir/digests.env"
}

# itools_prepare: the disk and its initramfs, built or reused.
itools_prepare() {
	[ -n "${FAST_BASE:-}" ] || fast_pieces
	full_rootfs_prepare
	local versions="" p
	for p in "${ITOOLS_PACKAGES[@]}"; do versions+="$p=$(debian_version "$p") "; done
	cached itools-disk "$(key_of "$(basename "$FULL_ROOTFS")" "$versions" "deb $DEB_KEY" \
		"$VM_TESTS/guest/full" "$VM_TESTS/guest/build.sh" \
		"$VM_TESTS/guest/init" "$(basename "$FAST_CFSCTL")" \
		"$(declare -f itools_disk_build itools_swap_debs install_deb)")" itools_disk_build
	ITOOLS_DISK=$CACHED
	# shellcheck disable=SC1091
	. "$ITOOLS_DISK/digests.env"
	ITOOLS_RUN=$(mktemp -d "$VM_CACHE/run-itools.XXXXXX")
	# The ro and rw boots share one writable layer over the cached disk.
	qemu-img create -q -f qcow2 -F raw -b "$ITOOLS_DISK/disk.img" "$ITOOLS_RUN/disk.qcow2"
}

# No rw/ro here: each boot adds its own (initramfs-tools mounts the root
# read-only unless told rw).
ITOOLS_CMDLINE="$GUEST_KARGS root=LABEL=cfstest-root loglevel=4 systemd.show_status=1"

# What initramfs-tools' panic prints with panic= set, and a sign that the
# root's systemd started.
ITOOLS_PANIC_RE='Rebooting automatically due to panic= boot argument'
ITOOLS_ROOT_RE='Welcome to .*Debian|CFSTEST-RESULT'

# itools_boot BOOT
itools_boot() {
	local boot=$1 log=$LOG_DIR/$1.log rc=0 mode prefix bad
	case $boot in
	itools-ro | itools-boot)
		# Debian's boot loaders pass ro; bootc passes rw.
		mode=rw prefix=itools-
		[ "$boot" = itools-ro ] && mode=ro prefix=itools-ro-
		vm_boot "$log" "${CFS_VM_FULL_TIMEOUT:-300}" "CFSTEST-END|$ITOOLS_PANIC_RE" 30 \
			-kernel "$ITOOLS_DISK/vmlinuz" -initrd "$ITOOLS_DISK/initrd.img" \
			-append "$ITOOLS_CMDLINE $mode composefs=$DIGEST_ROOT" \
			-drive "file=$ITOOLS_RUN/disk.qcow2,format=qcow2,if=virtio" || rc=$?
		# The report names its cases as the full tier does: prefix them
		# with this boot's.
		sed -i -E "s/(CFSTEST-RESULT: (PASS|FAIL) )/\1$prefix/" "$log"
		;;
	itools-refused)
		# A digest with no image: the boot script panics with the tool's
		# error line; panic=-1 makes that a reboot, which QEMU turns into
		# an exit.
		bad=$(printf '%064d' 7)
		vm_boot "$log" "${CFS_VM_FULL_TIMEOUT:-300}" "$ITOOLS_PANIC_RE|$ITOOLS_ROOT_RE" 10 \
			-kernel "$ITOOLS_DISK/vmlinuz" -initrd "$ITOOLS_DISK/initrd.img" \
			-append "$ITOOLS_CMDLINE ro composefs=$bad" \
			-drive "file=$ITOOLS_DISK/disk.img,format=raw,if=virtio,snapshot=on" || rc=$?
		itools_refused_verdict "$log" "$rc"
		;;
	esac
	# shellcheck disable=SC2086
	report_boot "$boot" "$log" "$rc" ${BOOT_CASES[$boot]}
}

# The refused boot's verdict is read by the host from the console. Appends
# a marker line to the log.
itools_refused_verdict() {
	local log=$1 rc=$2 why=() text after
	text=$(tr -d '\r' <"$log")
	[ "$rc" = 0 ] || why+=("the boot ended without a panic (rc $rc)")
	grep -qE "$ITOOLS_PANIC_RE" <<<"$text" || why+=("no initramfs panic")
	# panic prints the tool's error line right after our notice.
	after=$(grep -A1 'cfs-setup-root: the composefs root could not be set up' <<<"$text" | tail -n1 || true)
	[[ $after == "cfs-setup-root: error: "* ]] || why+=("the panic does not carry the tool's error line")
	grep -qE "$ITOOLS_ROOT_RE" <<<"$text" && why+=("the root was booted")
	if [ ${#why[@]} -eq 0 ]; then
		echo "CFSTEST-RESULT: PASS itools-refused" >>"$log"
	else
		echo "CFSTEST-RESULT: FAIL itools-refused: $(IFS=';'; echo "${why[*]}")" >>"$log"
	fi
}
