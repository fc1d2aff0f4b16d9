# shellcheck shell=bash
# Running guests: accelerator choice and a boot with a deadline whose
# verdict comes from marker lines on the serial console.

QEMU=qemu-system-x86_64
GUEST_MEM=${CFS_VM_MEM:-2048}
# Every direct kernel boot's console and panic settings. no_timer_check: under
# TCG on a busy host the kernel's IO-APIC timer check can fail and panic the
# guest at boot ("IO-APIC + timer doesn't work!").
GUEST_KARGS="console=ttyS0 panic=-1 no_timer_check"

# qemu_accel: set ACCEL_ARGS. KVM when /dev/kvm exists and a probe boot
# reaches userspace under it, TCG otherwise (CFS_VM_ACCEL=kvm|tcg forces).
# The probe result is cached per host kernel, QEMU and guest kernel.
qemu_accel() {
	local choice=${CFS_VM_ACCEL:-auto}
	if [ "$choice" = auto ]; then
		if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
			local key file
			key=$(key_of "$(uname -r)" "$($QEMU --version | head -n1)" "$KERNEL_VERSION")
			file=$VM_CACHE/accel-$key
			if [ ! -s "$file" ]; then
				say "probing KVM"
				if qemu_probe_kvm; then echo kvm >"$file"; else echo tcg >"$file"; fi
			fi
			choice=$(cat "$file")
		else
			choice=tcg
		fi
	fi
	case $choice in
	kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
	tcg) ACCEL_ARGS=(-accel tcg -cpu max) ;;
	*) die "CFS_VM_ACCEL must be auto, kvm or tcg" ;;
	esac
	ACCEL=$choice
	say "accelerator: $ACCEL"
}

# A tiny initramfs whose /init prints a marker: if it shows up under KVM
# within a few seconds, KVM works. (On some hosts KVM fails inside the
# kernel's decompressor with an emulation error and never gets there.)
qemu_probe_kvm() {
	local d log rc
	d=$(mktemp -d)
	mkdir -p "$d/root/bin"
	cp /bin/busybox "$d/root/bin/busybox"
	printf '#!/bin/busybox sh\necho CFSTEST-PROBE-OK\n/bin/busybox poweroff -f\n' >"$d/root/init"
	chmod +x "$d/root/init"
	(cd "$d/root" && find . | cpio -o -H newc --quiet) >"$d/initrd"
	rc=0
	ACCEL_ARGS=(-accel kvm -cpu host)
	vm_boot "$d/log" 15 'CFSTEST-PROBE-OK' 2 \
		-kernel "$KERNEL_IMAGE" -initrd "$d/initrd" -append "$GUEST_KARGS" || rc=$?
	rm -rf "$d"
	return "$rc"
}

# vm_boot LOG TIMEOUT END_RE GRACE QEMU_ARG...: boot, copying the serial
# console to LOG, until a line matches END_RE, QEMU exits, or TIMEOUT
# seconds pass. After END_RE the guest has GRACE seconds to power off by
# itself before it is killed. Returns 0 when END_RE was seen, 1 on timeout,
# 2 when QEMU exited first. BOOT_SECONDS is how long the boot took.
vm_boot() {
	local log=$1 timeout=$2 end_re=$3 grace=$4 pid t0 state=running deadline
	shift 4
	: >"$log"
	t0=$(now)
	"$QEMU" "${ACCEL_ARGS[@]}" -m "$GUEST_MEM" -smp 1 -nodefaults -display none \
		-no-reboot -serial "file:$log" -device virtio-rng-pci "$@" \
		</dev/null >"$log.qemu" 2>&1 &
	pid=$!
	deadline=$(($(date +%s) + timeout))
	while :; do
		if grep -qaE "$end_re" "$log"; then
			state=done
			break
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			# One last look: the marker may have landed as QEMU left.
			grep -qaE "$end_re" "$log" && state=done || state=exited
			break
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			state=timeout
			break
		fi
		sleep 0.25
	done
	if [ "$state" = done ]; then
		deadline=$(($(date +%s) + grace))
		while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
			sleep 0.25
		done
	fi
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	BOOT_SECONDS=$(elapsed "$t0")
	case $state in
	done) return 0 ;;
	timeout) return 1 ;;
	*) return 2 ;;
	esac
}

# console_clean LOG: the console log as text: carriage returns and terminal
# escape sequences removed (CSI colours and cursor moves; OSC sequences such
# as the palette reset \e]104\a that systemd writes to the console, which
# would otherwise stick to the start of the next line).
console_clean() {
	sed -e 's/\r//g' -e 's/\x1b\][^\x07\x1b]*\(\x07\|\x1b\\\)//g' \
		-e 's/\x1b\[[0-9;=?!]*[A-Za-z]//g' "$1"
}

# console_tail LOG [N]: the last N lines of a console log, indented, for a
# failure report (escape sequences and carriage returns removed).
console_tail() {
	local n=${2:-25}
	{
		console_clean "$1" | tail -n "$n" | sed -e 's/^/    | /'
		if [ -s "$1.qemu" ]; then
			sed -e 's/^/    qemu: /' "$1.qemu" | tail -n 5
		fi
	} >&2
}
