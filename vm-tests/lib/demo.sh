# shellcheck shell=bash
# What vm-tests/demo shows of a full boot, from its console log. The full
# tier's full-boot runs the same boot (full_boot_first) and checks the same
# output (case demo), so the README's first command cannot break unseen.

# demo_show LOG: the demo's output: the kernel command line, cfs-setup-root's
# lines from the initrd, what the booted system shows of its mounts and
# fs-verity digests, and the verdict of each check the booted root ran.
demo_show() {
	local text
	text=$(console_clean "$1")
	echo "kernel command line:"
	sed -n 's/^CFSTEST: cmdline /  /p' <<<"$text"
	echo
	echo "cfs-setup-root in the initrd:"
	sed -n 's/^CFSTEST:   initrd: /  /p' <<<"$text"
	echo
	echo "inside the booted system:"
	sed -n 's/^.*CFSTEST-SHOW: /  /p' <<<"$text"
	echo
	sed -n 's/^.*CFSTEST-RESULT: /  check: /p' <<<"$text"
}

# demo_verdict LOG RC: whether the demo's output of this boot (RC: vm_boot's)
# shows what the README promises: the boot got to the report, every check
# passed, /, /sysroot, /etc and /var and the image's digest are shown, and
# no terminal escape sequence is left in it. Appends a verdict marker for
# case demo to LOG and returns non-zero when it failed.
demo_verdict() {
	local log=$1 rc=$2 out why=() m
	out=$(demo_show "$log")
	[ "$rc" = 0 ] || why+=("the boot did not finish (vm_boot $rc)")
	grep -qaE 'CFSTEST-END' "$log" || why+=("the booted system's report did not finish")
	for m in / /sysroot /etc /var; do
		grep -qxF "  \$ findmnt $m" <<<"$out" || why+=("no findmnt of $m")
	done
	grep -qE '^  / +composefs:[0-9a-f]{64} +overlay ' <<<"$out" || why+=("/ is not shown as composefs:<digest>")
	grep -qE '^  sha256:[0-9a-f]{64} ' <<<"$out" || why+=("no fs-verity digest shown")
	grep -qE '^  check: PASS ' <<<"$out" || why+=("no check ran")
	grep -qE '^  check: FAIL ' <<<"$out" && why+=("a check failed: $(grep -m1 -E '^  check: FAIL ' <<<"$out")")
	grep -q $'[\x01-\x08\x0b-\x1f\x7f]' <<<"$out" && why+=("control characters left in the output")
	if [ ${#why[@]} -eq 0 ]; then
		echo "CFSTEST-RESULT: PASS demo" >>"$log"
	else
		echo "CFSTEST-RESULT: FAIL demo: $(IFS=';'; echo "${why[*]}")" >>"$log"
		return 1
	fi
}
