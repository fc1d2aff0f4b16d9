# shellcheck shell=bash
# The UKI boot: trixie's ukify (run from the unpacked .deb on the host's
# python, with python3-pefile) joins the full tier's kernel, initramfs and
# a command line carrying the composefs digest into one EFI binary, put on
# an ESP as the removable-media loader. OVMF boots it with no -append: the
# digest can only come from the UKI.

BOOT_CASES[uki]="uki-ovmf"
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd

uki_tools_build() {
	local dir=$1 deb
	debian_download "$dir" systemd-ukify systemd-boot-efi
	for deb in "$dir"/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
	rm -f "$dir"/*.deb
}

# esp_image EFI IMG: a FAT ESP image at IMG holding EFI as the removable-media boot path
# (EFI/BOOT/BOOTX64.EFI), 8 MiB larger than the binary; EFI is removed.
esp_image() {
	local kib=$(($(stat -c %s "$1") / 1024 + 8192))
	mkfs.vfat -C "$2" "$kib" >/dev/null
	mmd -i "$2" ::/EFI ::/EFI/BOOT
	mcopy -i "$2" "$1" ::/EFI/BOOT/BOOTX64.EFI
	rm -f "$1"
}

uki_build() {
	local dir=$1
	/usr/bin/python3 "$UKI_TOOLS/root/usr/bin/ukify" build \
		--linux "$FULL_DISK/vmlinuz" --initrd "$FULL_DISK/initrd.img" \
		--cmdline "$FULL_CMDLINE composefs=$DIGEST_ROOT" \
		--stub "$UKI_TOOLS/root/usr/lib/systemd/boot/efi/linuxx64.efi.stub" \
		--output "$dir/uki.efi" || return 1
	esp_image "$dir/uki.efi" "$dir/esp.img"
}

uki_prepare() {
	local ver
	ver=$(debian_version systemd-ukify)
	cached uki-tools "$(key_of "$ver" "$(debian_version systemd-boot-efi)" "$DEBIAN_MIRROR")" \
		uki_tools_build
	UKI_TOOLS=$CACHED
	cached uki "$(key_of "$(basename "$UKI_TOOLS")" "$(basename "$FULL_DISK")" "$FULL_CMDLINE" \
		"$(declare -f uki_build)")" uki_build
	UKI_DIR=$CACHED
	cp "$OVMF_VARS" "$FULL_RUN/ovmf-vars.fd"
}

uki_boot() {
	local log=$LOG_DIR/uki.log rc=0 why=()
	vm_boot "$log" "${CFS_VM_FULL_TIMEOUT:-300}" "CFSTEST-END|$EMERGENCY_RE" 30 \
		-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE" \
		-drive "if=pflash,format=raw,unit=1,file=$FULL_RUN/ovmf-vars.fd" \
		-drive "file=$FULL_DISK/disk.img,format=raw,if=none,id=root,snapshot=on" \
		-device virtio-blk-pci,drive=root \
		-drive "file=$UKI_DIR/esp.img,format=raw,if=none,id=esp,readonly=on" \
		-device virtio-blk-pci,drive=esp,bootindex=0 || rc=$?
	# The booted root's report, plus proof of the path it came by.
	local c
	for c in $FULL_REPORT_CASES; do
		grep -qa "CFSTEST-RESULT: PASS $c" "$log" || why+=("$c did not pass")
	done
	grep -qa 'CFSTEST: firmware efi, stub systemd-stub' "$log" || why+=("not started by systemd-stub under UEFI")
	grep -qa "CFSTEST: cmdline .*composefs=$DIGEST_ROOT" "$log" || why+=("the UKI's command line was not used")
	if [ ${#why[@]} -eq 0 ]; then
		echo "CFSTEST-RESULT: PASS uki-ovmf" >>"$log"
	elif [ "$rc" = 0 ]; then
		echo "CFSTEST-RESULT: FAIL uki-ovmf: $(IFS=';'; echo "${why[*]}")" >>"$log"
	fi
	report_boot uki "$log" "$rc" uki-ovmf
}
