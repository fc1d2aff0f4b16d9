# shellcheck shell=bash
# The mkosi tier: the disk mkosi/build makes (mkosi 25, Debian trixie, a
# signed UKI whose command line carries the composefs digest), booted under
# OVMF with Secure Boot enforced and only our key enrolled.
#
# The test build adds, through mkosi options (the recipe itself is
# unchanged): the report unit (guest/mkosi/report), files to read back and
# one to tamper with, and console=ttyS0 on the UKI's command line. A second
# builder boot adds image B to the repository, the digest every attack tries
# to boot. Firmware variables are made on the host with virt-fw-vars (trixie's
# python3-virt-firmware, unpacked): our certificate as PK, KEK and db, no
# Microsoft keys, Secure Boot on, so the firmware enforces from its first
# instruction (systemd-boot's auto-enrolment would need systemd-boot, a
# firmware in setup mode and an extra reboot).
#
# Boots (one qcow2 layer over the cached disk is shared by the first two):
#   mkosi-boot      the ESP's signed UKI; the report checks the root, Secure
#                   Boot and a tampered object; the host compares the
#                   digest the guest measured with the UKI's .cmdline
#   mkosi-persist   a boot entry (Boot0000) starts the same UKI with load
#                   options "composefs=<B>": the UKI's own command line
#                   must win; /etc and /var keep the first boot's writes
#   mkosi-unsigned  an ESP whose UKI has B's digest in .cmdline, not
#                   re-signed: the firmware must refuse it
# Each boot's deadline: CFS_VM_MKOSI_TIMEOUT seconds (420).

# shellcheck disable=SC2034 # used by vm-tests/run
MKOSI_BOOTS=(mkosi-boot mkosi-persist mkosi-unsigned)
BOOT_CASES+=(
	[mkosi-boot]="mkosi-boot tampered-image"
	[mkosi-persist]="mkosi-persist loader-cmdline-ignored"
	[mkosi-unsigned]="unsigned-uki-refused"
)

OVMF_SB_CODE=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd
# Owner GUID of our certificate in PK, KEK and db (any GUID will do).
MKOSI_KEY_OWNER=4d3ea9f2-8c1b-4e55-9d0a-6f2b7c1e5a93
EFI_TOOL=$VM_TESTS/lib/efi-tool.py
MKOSI_IMAGE=cfs-debian
# The UKI's command line is signed with it: whatever the guest should print
# must be on it at build time.
MKOSI_TEST_CMDLINE="$GUEST_KARGS loglevel=4 systemd.show_status=1"

# The test build's extra tree: the report and its unit, files the report
# reads back, and the file whose object the tamper boot corrupts.
mkosi_extra_tree() {
	local t=$1 d=$1/usr/share/cfstest/data
	install -D -m 0755 "$VM_TESTS/guest/mkosi/report" "$t/usr/lib/cfstest/report"
	install -D -m 0644 "$VM_TESTS/guest/full/cfstest-report.service" \
		"$t/usr/lib/systemd/system/cfstest-report.service"
	mkdir -p "$t/usr/lib/systemd/system/multi-user.target.wants" "$d"
	ln -s ../cfstest-report.service "$t/usr/lib/systemd/system/multi-user.target.wants/cfstest-report.service"
	printf 'inline file\n' >"$d/inline"
	tree_bytes mkosi-block 4096 >"$d/block"
	tree_bytes mkosi-large 300000 >"$d/large"
	tree_bytes mkosi-tamper 65536 >"$t/usr/share/cfstest/tamper-target"
	(cd "$t" && find usr/share/cfstest/data -type f -print0 | sort -z | xargs -0 sha256sum) \
		>"$t/usr/share/cfstest/MANIFEST"
}

mkosi_disk_build() {
	local dir=$1 extra=$1/extra
	mkosi_extra_tree "$extra"
	CFS_VM_LOCKED=1 CFS_MKOSI_CACHE=$VM_CACHE/mkosi-work CFS_SETUP_ROOT_BIN=$BIN CFS_SETUP_ROOT_DEB=$DEB \
		"$REPO/mkosi/build" --output "$dir" -- \
		--extra-tree="$extra" --kernel-command-line="$MKOSI_TEST_CMDLINE" || return 1
	# The object the tamper boot corrupts: named by the file's digest.
	printf 'TAMPER_OBJECT=%s\n' "$(fsverity digest --hash-alg=sha512 \
		"$extra/usr/share/cfstest/tamper-target" | sed -E 's/^sha512:([0-9a-f]{2})([0-9a-f]*) .*/\1\/\2/')" \
		>"$dir/tamper.env"
	rm -rf "$extra"
	BUILDER_MODE=mkosi builder_boot "$dir" test 300 "$dir/$MKOSI_IMAGE.raw" || return 1
	grep -q '^DIGEST_B=' "$dir/digests.env"
}

mkosi_virtfw_build() {
	local dir=$1
	debian_download "$dir" python3-virt-firmware
	dpkg-deb -x "$dir"/python3-virt-firmware_*.deb "$dir/root"
	rm -f "$dir"/*.deb
}

virt_fw_vars() {
	PYTHONPATH=$MKOSI_VIRTFW/root/usr/lib/python3/dist-packages \
		/usr/bin/python3 "$MKOSI_VIRTFW/root/usr/bin/virt-fw-vars" --loglevel warning "$@"
}

# Firmware variables: Secure Boot on with our certificate only; the same
# plus a boot entry whose load options name image B.
mkosi_vars_build() {
	local dir=$1 crt=$MKOSI_DISK/db.crt
	virt_fw_vars --input "$OVMF_VARS" --output "$dir/vars-sb.fd" \
		--set-pk "$MKOSI_KEY_OWNER" "$crt" --add-kek "$MKOSI_KEY_OWNER" "$crt" \
		--add-db "$MKOSI_KEY_OWNER" "$crt" --secure-boot
	virt_fw_vars --input "$dir/vars-sb.fd" --output "$dir/vars-options.fd" \
		--append-boot-filepath "\\EFI\\BOOT\\BOOTX64.EFI composefs=$DIGEST_B"
	virt_fw_vars --input "$dir/vars-options.fd" --print >"$dir/vars-options.txt"
}

# mkosi_prepare: the disk (built or reused), firmware variables, the UKI as
# the firmware finds it on the ESP and its digest, the run's disk layer with
# one object corrupted, and the unsigned ESP.
mkosi_prepare() {
	cached mkosi-disk "$(key_of "$REPO/mkosi" "deb $DEB_KEY" \
		"$CFSCTL" "$(basename "$FAST_BASE")" "$(basename "$FAST_CFSCTL")" "$DEBIAN_MIRROR" \
		"$(debian_version mkosi)" "$VM_TESTS/guest/mkosi" "$VM_TESTS/guest/mkosi.sh" \
		"$VM_TESTS/guest/full/cfstest-report.service" "$MKOSI_TEST_CMDLINE" \
		"$(declare -f mkosi_disk_build mkosi_extra_tree)")" mkosi_disk_build
	MKOSI_DISK=$CACHED
	# shellcheck disable=SC1091
	. "$MKOSI_DISK/digests.env"
	# shellcheck disable=SC1091
	. "$MKOSI_DISK/tamper.env"
	cached mkosi-virtfw "$(key_of "$(debian_version python3-virt-firmware)" "$DEBIAN_MIRROR")" \
		mkosi_virtfw_build
	MKOSI_VIRTFW=$CACHED
	cached mkosi-vars "$(key_of "$(basename "$MKOSI_DISK")" "$(basename "$MKOSI_VIRTFW")" \
		"$OVMF_VARS" "$(declare -f mkosi_vars_build virt_fw_vars)")" mkosi_vars_build
	MKOSI_VARS=$CACHED

	MKOSI_RUN=$(mktemp -d "$VM_CACHE/run-mkosi.XXXXXX")
	local disk=$MKOSI_DISK/$MKOSI_IMAGE.raw root bs block
	# The UKI the firmware boots, read from the ESP, not from mkosi's output.
	/usr/bin/python3 "$EFI_TOOL" esp-file "$disk" /EFI/BOOT/BOOTX64.EFI "$MKOSI_RUN/uki.efi"
	MKOSI_CMDLINE=$(/usr/bin/python3 "$EFI_TOOL" cmdline "$MKOSI_RUN/uki.efi")
	UKI_DIGEST=$(printf '%s\n' "$MKOSI_CMDLINE" | tr ' ' '\n' | sed -n 's/^composefs=//p' | head -n1)
	[ -n "$UKI_DIGEST" ] || die "no composefs= in the UKI's .cmdline: $MKOSI_CMDLINE"
	say "UKI .cmdline: $MKOSI_CMDLINE"

	# The first two boots' disk: a layer over the cached disk, with the first
	# block of the tamper target's object overwritten on the "disk".
	qemu-img create -q -f qcow2 -F raw -b "$disk" "$MKOSI_RUN/disk.qcow2"
	read -r root _ < <(/usr/bin/python3 "$EFI_TOOL" partition "$disk" root)
	bs=$(debugfs -R stats "$disk?offset=$root" 2>/dev/null | awk '/^Block size:/ { print $3 }')
	block=$(debugfs -R "bmap /composefs/objects/$TAMPER_OBJECT 0" "$disk?offset=$root" 2>/dev/null)
	[[ $bs =~ ^[0-9]+$ && $block =~ ^[0-9]+$ && $block -gt 0 ]] ||
		die "cannot locate the object $TAMPER_OBJECT on $disk (block size '$bs', block '$block')"
	qemu-io -f qcow2 -c "write -q -P 0x5a $((root + block * bs)) $bs" "$MKOSI_RUN/disk.qcow2" >&2

	# The unsigned UKI: B's digest in place of the signed one, on an ESP of
	# its own. Checked here: its .cmdline names B, and its signature no
	# longer verifies while the original's does.
	/usr/bin/python3 "$EFI_TOOL" swap-cmdline "$MKOSI_RUN/uki.efi" "$MKOSI_RUN/unsigned.efi" \
		"composefs=$UKI_DIGEST" "composefs=$DIGEST_B"
	UNSIGNED_CMDLINE=$(/usr/bin/python3 "$EFI_TOOL" cmdline "$MKOSI_RUN/unsigned.efi")
	MKOSI_SIG_OK=$(sbverify --cert "$MKOSI_DISK/db.crt" "$MKOSI_RUN/uki.efi" >/dev/null 2>&1 && echo yes || echo no)
	UNSIGNED_SIG_OK=$(sbverify --cert "$MKOSI_DISK/db.crt" "$MKOSI_RUN/unsigned.efi" >/dev/null 2>&1 && echo yes || echo no)
	esp_image "$MKOSI_RUN/unsigned.efi" "$MKOSI_RUN/unsigned-esp.img"
}

# mkosi_qemu LOG END_RE GRACE VARS DRIVE-ARG...: a Secure Boot OVMF machine
# (q35 with SMM, which the secboot firmware needs to protect its variables).
mkosi_qemu() {
	local log=$1 end_re=$2 grace=$3 vars=$4
	shift 4
	cp "$vars" "$MKOSI_RUN/vars.fd"
	vm_boot "$log" "${CFS_VM_MKOSI_TIMEOUT:-420}" "$end_re" "$grace" \
		-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on \
		-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_SB_CODE" \
		-drive "if=pflash,format=raw,unit=1,file=$MKOSI_RUN/vars.fd" "$@"
}

# fact LOG NAME: the value of the guest's last "CFSTEST-FACT NAME VALUE" line
# (a line may start with the serial getty's terminal queries).
mkosi_fact() {
	tr -d '\r' <"$1" | sed -n "s/^.*CFSTEST-FACT $2 //p" | tail -n1
}

# mkosi_verdict LOG CASE WHY...: append the host's verdict for CASE.
mkosi_verdict() {
	local log=$1 c=$2
	shift 2
	if [ $# -eq 0 ]; then
		echo "CFSTEST-RESULT: PASS $c" >>"$log"
	else
		echo "CFSTEST-RESULT: FAIL $c: $(IFS=';'; echo "$*")" >>"$log"
	fi
}

# What every boot of the signed UKI must show: Secure Boot on, the guest's
# root checks passed, the root is the UKI's digest and measures as it.
mkosi_signed_root_why() {
	local log=$1
	grep -qa 'CFSTEST-RESULT: PASS root$' <(tr -d '\r' <"$log") || echo "the root checks did not pass"
	[ "$(mkosi_fact "$log" secureboot)" = 1 ] || echo "SecureBoot is '$(mkosi_fact "$log" secureboot)', not 1"
	[ "$(mkosi_fact "$log" root)" = "$UKI_DIGEST" ] ||
		echo "/ is composefs:$(mkosi_fact "$log" root), not the UKI's $UKI_DIGEST"
	[ "$(mkosi_fact "$log" measured)" = "sha512:$UKI_DIGEST" ] ||
		echo "the image measures as '$(mkosi_fact "$log" measured)', not the UKI's sha512:$UKI_DIGEST"
}

mkosi_boot() {
	local boot=$1 log=$LOG_DIR/$1.log rc=0 why=()
	# shellcheck disable=SC2054 # commas belong to QEMU's option values
	local disk=(-drive "file=$MKOSI_RUN/disk.qcow2,format=qcow2,if=none,id=disk"
		-device virtio-blk-pci,drive=disk)
	case $boot in
	mkosi-boot)
		mkosi_qemu "$log" "CFSTEST-END|$EMERGENCY_RE" 30 "$MKOSI_VARS/vars-sb.fd" "${disk[@]}" || rc=$?
		mapfile -t why < <(mkosi_signed_root_why "$log")
		mkosi_verdict "$log" mkosi-boot "${why[@]}"
		why=()
		grep -qa 'CFSTEST-RESULT: PASS tamper-read' "$log" || why+=("the tampered object did not fail with EIO")
		mkosi_verdict "$log" tampered-image "${why[@]}"
		;;
	mkosi-persist)
		mkosi_qemu "$log" "CFSTEST-END|$EMERGENCY_RE" 30 "$MKOSI_VARS/vars-options.fd" "${disk[@]}" || rc=$?
		mapfile -t why < <(mkosi_signed_root_why "$log")
		grep -qa 'CFSTEST-RESULT: PASS persistence' "$log" || why+=("the first boot's /etc and /var writes were not found")
		mkosi_verdict "$log" mkosi-persist "${why[@]}"
		mapfile -t why < <(mkosi_signed_root_why "$log")
		[ "$(mkosi_fact "$log" load-options)" = "composefs=$DIGEST_B" ] ||
			why+=("the firmware did not start the UKI with load options composefs=<B> ('$(mkosi_fact "$log" load-options)')")
		tr -d '\r' <"$log" | grep -a '^CFSTEST: cmdline ' | grep -q "$DIGEST_B" &&
			why+=("B's digest reached the kernel command line")
		mkosi_verdict "$log" loader-cmdline-ignored "${why[@]}"
		;;
	mkosi-unsigned)
		# The firmware tries the unsigned ESP (PCI slot 5) first; its refusal
		# to load the UKI from there ends the boot. (Other refusals prove
		# nothing: OVMF's own EFI shell is not signed by our key either.)
		local refused='Pci\(0x5,0x0\)[^:]*: (Access Denied|Security Violation)'
		mkosi_qemu "$log" "$refused|CFSTEST-END|Linux version" 0 \
			"$MKOSI_VARS/vars-sb.fd" \
			-drive "file=$MKOSI_RUN/unsigned-esp.img,format=raw,if=none,id=esp,readonly=on" \
			-device virtio-blk-pci,drive=esp,bootindex=0,addr=0x5 \
			-drive "file=$MKOSI_DISK/$MKOSI_IMAGE.raw,format=raw,if=none,id=disk,snapshot=on" \
			-device virtio-blk-pci,drive=disk || rc=$?
		[[ $UNSIGNED_CMDLINE == *"composefs=$DIGEST_B"* ]] || why+=("the unsigned UKI's .cmdline does not name B: $UNSIGNED_CMDLINE")
		[ "$MKOSI_SIG_OK" = yes ] || why+=("sbverify rejects the signed UKI itself")
		[ "$UNSIGNED_SIG_OK" = no ] || why+=("sbverify accepts the changed UKI")
		grep -qaE "$refused" "$log" || why+=("the firmware did not refuse the unsigned UKI")
		grep -qaE 'Linux version|EFI stub|CFSTEST-RESULT' "$log" && why+=("a kernel was started")
		mkosi_verdict "$log" unsigned-uki-refused "${why[@]}"
		;;
	esac
	# shellcheck disable=SC2086 # one argument per case
	report_boot "$boot" "$log" "$rc" ${BOOT_CASES[$boot]}
}
