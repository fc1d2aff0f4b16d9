# shellcheck shell=bash
# The full tier: a Debian trixie root (mmdebstrap, systemd) with
# cfs-setup-root installed from its .deb (make deb) with dpkg -i,
# a dracut initramfs built inside that root, the root turned into a
# composefs image by cfsctl in a guest (fs-verity on every object), booted
# to multi-user by systemd.
#
# Cache layers, each keyed by its inputs:
#   full-rootfs   mmdebstrap output (packages, kernel .deb, mirror)
#   full-disk     the root + our package and test unit, its dracut
#                 initramfs, and the ext4 disk whose repository a builder
#                 guest wrote (the package, guest/full, builder)

FULL_BOOTS=(full-boot full-persist full-tpm-reboot full-tpm-b full-emergency full-tpm-missing)
# What the booted root's report checks (the UKI boot checks the same).
FULL_REPORT_CASES="multi-user root-composefs-verity sysroot-readonly etc-var-deployment"
BOOT_CASES[full-boot]="$FULL_REPORT_CASES demo no-tpm-auto"
# The second boot has a TPM (swtpm): it measures A, seals a secret, stages
# B (refusals first) and soft-reboots into it. The TPM boots after it reuse
# its TPM state and disk: A again (the secret unseals), then B (it does not).
BOOT_CASES[full-persist]="persistence digest-karg-unit ro-cmdline tpm-pcr15 tpm-event-log soft-reboot-refused soft-reboot"
BOOT_CASES[full-tpm-reboot]="tpm-reboot-a"
BOOT_CASES[full-tpm-b]="tpm-sealed-secret tpm-required-b"
BOOT_CASES[full-emergency]="wrong-digest-emergency"
BOOT_CASES[full-tpm-missing]="tpm-required-missing"

# tpm2-tools brings the TSS libraries systemd-creds, systemd-analyze pcrs and
# systemd-pcrlock load at run time.
FULL_PACKAGES=(systemd systemd-sysv udev dracut zstd kmod e2fsprogs fsverity tpm2-tools)

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

# install_deb ROOT LOG: dpkg -i the package (DEB) in ROOT, as a user would
# install it; the log keeps what dpkg and the maintainer scripts said. Its
# update-initramfs trigger makes the generator (initramfs-tools, or Debian's
# dracut, which takes the same trigger) rebuild the images in ROOT's /boot.
# The verdict is the package's state: a generator failing in its trigger
# (another package) is reported, and the tier builds and checks its own
# initramfs next anyway.
install_deb() {
	local root=$1 log=$2 rc=0
	cp "$DEB" "$root/var/tmp/cfs-setup-root.deb"
	in_root "$root" dpkg -i /var/tmp/cfs-setup-root.deb >"$log" 2>&1 || rc=$?
	rm -f "$root/var/tmp/cfs-setup-root.deb"
	in_root "$root" dpkg-query -W -f='${Status} ${Version}\n' cfs-setup-root >>"$log" 2>&1 || true
	if ! grep -q '^install ok installed ' "$log"; then
		echo "dpkg -i did not install cfs-setup-root (exit $rc):"
		tail -n 30 "$log"
		return 1
	fi
	[ "$rc" = 0 ] || say "dpkg -i exit $rc: cfs-setup-root is installed, another package failed (see $log)"
	return 0
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
	# Installed as a user would: the package, with its maintainer scripts.
	install_deb "$root" "$dir/dpkg.log" || return 1
	install -D -m 0755 "$VM_TESTS/guest/full/report" "$root/usr/lib/cfstest/report"
	install -D -m 0644 "$VM_TESTS/guest/full/tpm-cases" "$root/usr/lib/cfstest/tpm-cases"
	# The builder imports this root as image A, then as B with "B" here.
	echo A >"$root/usr/lib/cfstest/image"
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
	grep -q DIGEST_ROOT_B "$dir/digests.env"
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
	cached full-disk "$(key_of "$(basename "$FULL_ROOTFS")" "deb $DEB_KEY" \
		"$VM_TESTS/guest/full" "$VM_TESTS/guest/build.sh" "$VM_TESTS/guest/init" \
		"$(basename "$FAST_CFSCTL")" "$(declare -f full_disk_build install_deb)")" full_disk_build
	FULL_DISK=$CACHED
	# shellcheck disable=SC1091
	. "$FULL_DISK/digests.env"
	FULL_RUN=$(mktemp -d "$VM_CACHE/run-full.XXXXXX")
	# The first boots share one writable layer over the cached disk.
	qemu-img create -q -f qcow2 -F raw -b "$FULL_DISK/disk.img" "$FULL_RUN/disk.qcow2"
	full_tpm_prepare
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
	full-persist | full-tpm-reboot | full-tpm-b)
		full_tpm_boot "$boot" "$log" || rc=$?
		;;
	full-tpm-missing)
		full_tpm_missing_boot "$log" || rc=$?
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

# --- TPM and soft reboot -------------------------------------------------
# swtpm (libtpms) is the TPM of the TPM boots; its state directory lives for
# the run, so a secret sealed in one boot meets the same TPM in the next. A
# small ext4 disk (vdb) carries what the boots hand each other (the sealed
# credential, verdict parts).

# full_tpm_prepare: the shared disk and the initrd variant with
# `[tpm] measure = "required"` (an extra cpio appended to dracut's: the
# kernel unpacks it last, over the config dracut copied in), which also
# prints the mount table when emergency.target starts.
full_tpm_prepare() {
	local x=$FULL_RUN/required
	mkdir -p "$FULL_RUN/tpm" "$FULL_RUN/shared" "$x/usr/lib/composefs" \
		"$x/etc/systemd/system/emergency.target.wants"
	mkfs.ext4 -q -F -L cfstest-shared -d "$FULL_RUN/shared" "$FULL_RUN/shared.img" 8M
	cat >"$x/usr/lib/composefs/setup-root-conf.toml" <<-EOC
		# vm-tests: the defaults, and a TPM measurement that must happen
		[etc]
		mount = "overlay"
		[sysroot]
		readonly = true
		[tpm]
		measure = "required"
	EOC
	cat >"$x/etc/systemd/system/cfstest-mounts.service" <<-'EOC'
		[Unit]
		Description=vm-tests: the mount table in emergency mode
		DefaultDependencies=no
		[Service]
		Type=oneshot
		ExecStart=/bin/sh -c 'exec >/dev/console 2>&1; echo CFSTEST-MOUNTS-BEGIN; cat /proc/self/mountinfo; ls -d /run/cfs-setup-root.* 2>/dev/null | sed "s/^/staging: /"; echo CFSTEST-MOUNTS-END'
	EOC
	ln -s ../cfstest-mounts.service "$x/etc/systemd/system/emergency.target.wants/cfstest-mounts.service"
	cpio_of "$x" "$FULL_RUN/required.cpio"
	# After a compressed archive the kernel takes the next cpio header only at
	# a 4-byte offset ("invalid magic at start of compressed archive"
	# otherwise): pad with zeros, which it skips.
	local size
	size=$(stat -c %s "$FULL_DISK/initrd.img")
	{
		cat "$FULL_DISK/initrd.img"
		head -c $(((4 - size % 4) % 4)) /dev/zero
		cat "$FULL_RUN/required.cpio"
	} >"$FULL_RUN/initrd-required.img"
	TPM_EXPECT_A=$(pcr15_expected "$DIGEST_ROOT")
	TPM_EXPECT_B=$(pcr15_expected "$DIGEST_ROOT_B")
}

# pcr15_expected HEX: PCR 15 after one extend with composefs:HEX from zero,
# in every bank, as "sha1:<hex>,sha256:<hex>,...": H(0...0 || H(string)),
# computed here from the digest alone.
pcr15_expected() {
	/usr/bin/python3 - "$1" <<-'EOP'
		import hashlib, sys
		s = ("composefs:" + sys.argv[1]).encode()
		out = []
		for alg in ("sha1", "sha256", "sha384", "sha512"):
		    h = lambda b: hashlib.new(alg, b).digest()
		    out.append(alg + ":" + h(bytes(len(h(b""))) + h(s)).hex())
		print(",".join(out))
	EOP
}

# swtpm_start: a TPM 2.0 for the next boot, on the run's state directory.
swtpm_start() {
	local s=$FULL_RUN/tpm
	rm -f "$s/sock"
	swtpm socket --tpm2 --tpmstate "dir=$s" --ctrl "type=unixio,path=$s/sock" \
		--log "file=$s/log" --terminate >/dev/null 2>&1 &
	SWTPM_PID=$!
	local i=0
	while [ ! -S "$s/sock" ] && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	TPM_ARGS=(-chardev "socket,id=chrtpm,path=$s/sock" -tpmdev emulator,id=tpm0,chardev=chrtpm
		-device tpm-tis,tpmdev=tpm0)
}

swtpm_stop() {
	kill "$SWTPM_PID" 2>/dev/null || true
	wait "$SWTPM_PID" 2>/dev/null || true
}

# full_tpm_boot BOOT LOG: a boot with swtpm and the shared disk.
#   full-persist     image A, the composefs.digest= karg form (the unit's
#                    second condition), under OVMF (systemd-analyze pcrs
#                    shows PCRs only on an EFI boot) with the kernel loaded
#                    directly; after the soft reboot the report runs again
#                    in B and ends the boot
#   full-tpm-reboot  image A again
#   full-tpm-b       image B, with [tpm] measure = "required"
full_tpm_boot() {
	local boot=$1 log=$2 rc=0 initrd=$FULL_DISK/initrd.img karg firmware=() cmdline=$FULL_CMDLINE
	case $boot in
	full-persist)
		# The second boot of the same disk names the image in the other
		# karg form, which the unit's ConditionKernelCommandLine must also
		# accept, and has `ro` where the first had `rw` (GRUB's default:
		# the physical root comes up read-only; /etc and /var must still
		# be writable and keep the first boot's writes).
		cmdline=${FULL_CMDLINE/ rw / ro }
		karg="composefs.digest=v1-sha256-12:$DIGEST_ROOT cfstest.tpm=seal cfstest.pcr15=$TPM_EXPECT_A"
		karg+=" cfstest.image_b=$DIGEST_ROOT_B cfstest.tampered=$DIGEST_TAMPERED"
		cp /usr/share/OVMF/OVMF_VARS_4M.fd "$FULL_RUN/tpm-vars.fd"
		firmware=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
			-drive "if=pflash,format=raw,unit=1,file=$FULL_RUN/tpm-vars.fd")
		;;
	full-tpm-reboot) karg="composefs=$DIGEST_ROOT cfstest.tpm=unseal cfstest.pcr15=$TPM_EXPECT_A" ;;
	full-tpm-b)
		karg="composefs=$DIGEST_ROOT_B cfstest.tpm=refuse cfstest.pcr15=$TPM_EXPECT_B"
		initrd=$FULL_RUN/initrd-required.img
		;;
	esac
	swtpm_start
	vm_boot "$log" "${CFS_VM_FULL_TIMEOUT:-300}" "CFSTEST-END|$EMERGENCY_RE" 30 \
		-kernel "$FULL_DISK/vmlinuz" -initrd "$initrd" -append "$cmdline $karg" \
		-drive "file=$FULL_RUN/disk.qcow2,format=qcow2,if=virtio" \
		-drive "file=$FULL_RUN/shared.img,format=raw,if=virtio" "${TPM_ARGS[@]}" "${firmware[@]}" || rc=$?
	swtpm_stop
	return "$rc"
}

# full_tpm_missing_boot LOG: [tpm] measure = "required" and no TPM: the
# unit fails, emergency mode, and the mount table printed there shows
# nothing of ours beneath /sysroot (read by the host: the guest cannot
# report from emergency mode).
full_tpm_missing_boot() {
	local log=$1 rc=0 why=() mounts
	vm_boot "$log" "${CFS_VM_FULL_TIMEOUT:-300}" "CFSTEST-MOUNTS-END|CFSTEST-END" 3 \
		-kernel "$FULL_DISK/vmlinuz" -initrd "$FULL_RUN/initrd-required.img" \
		-append "$FULL_CMDLINE composefs=$DIGEST_ROOT" \
		-drive "file=$FULL_DISK/disk.img,format=raw,if=virtio,snapshot=on" || rc=$?
	# systemd colours the unit names in its status lines: match the text without.
	sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$log" | grep -aE "$EMERGENCY_RE" >/dev/null ||
		why+=("emergency mode not reached")
	grep -qa 'cfs-setup-root: error: .*no TPM' "$log" || why+=("no 'error: ... no TPM' line on the console")
	grep -qa 'CFSTEST-RESULT' "$log" && why+=("the root was booted")
	grep -qa 'Initramfs unpacking failed' "$log" && why+=("the kernel did not unpack the appended config")
	# mountinfo: field 5 is the mount point, after " - " the type and source.
	mounts=$(tr -d '\r' <"$log" | sed -n '/^CFSTEST-MOUNTS-BEGIN/,/^CFSTEST-MOUNTS-END/p' |
		awk '$5 ~ /^\/sysroot(\/|$)/ { split($0, a, " - "); print $5, a[2] }')
	if [ -z "$mounts" ]; then
		why+=("no mount table from emergency mode")
	elif [ "$(printf '%s\n' "$mounts" | wc -l)" != 1 ] || [[ $mounts != "/sysroot ext4 "* ]]; then
		why+=("beneath /sysroot: $(printf '%s' "$mounts" | tr '\n' ';')")
	fi
	grep -qa '^staging: ' "$log" && why+=("a staging directory is left")
	if [ ${#why[@]} -eq 0 ]; then
		echo "CFSTEST-RESULT: PASS tpm-required-missing" >>"$log"
	else
		echo "CFSTEST-RESULT: FAIL tpm-required-missing: $(IFS=';'; echo "${why[*]}")" >>"$log"
	fi
	return "$rc"
}
