# Fast-tier boots, sourced by /init with cfstest.mode=case. cfstest.boot=
# names the boot; each boot checks one or more cases and prints a verdict
# line per case. The physical root (cfstest.disk=, default vda) is mounted
# at /sysroot first, as a real initramfs would: read-write, or with the
# options of cfstest.mountopts=. cfstest.path= is the mount path the tool
# must choose on this kernel (attach-first on 6.12, detached from 6.15);
# cfstest.suffix= is appended to every case name (the -bpo boots).

boot=$(karg cfstest.boot)
disk=$(karg cfstest.disk)
disk=/dev/${disk:-vda}
path=$(karg cfstest.path)
suffix=$(karg cfstest.suffix)
mountopts=$(karg cfstest.mountopts)
TOOL=/usr/bin/cfs-setup-root
CONF=/usr/lib/composefs/setup-root-conf.toml

# --- verdicts -----------------------------------------------------------
# Failures accumulate per case; verdict prints PASS or FAIL with them.
failures=""
bad() { failures="$failures; $*"; }
# verdict CASE [keep]: "keep" carries the failures on to the next verdict,
# for checks that prove two cases at once.
verdict() {
	if [ -z "$failures" ]; then
		echo "CFSTEST-RESULT: PASS $1$suffix"
	else
		echo "CFSTEST-RESULT: FAIL $1$suffix: ${failures#; }"
	fi
	[ "${2:-}" = keep ] || failures=""
}

# fatal CASE...: the run already failed; every case of the boot fails with
# the same reason and the boot ends here.
fatal() {
	local f=$failures c
	for c in "$@"; do
		failures=$f
		verdict "$c"
	done
	finish
}

# --- mounts -------------------------------------------------------------
# top_mount MP: "fstype source mountopts superopts" of the top mount at MP.
top_mount() {
	awk -v mp="$1" '{ for (i = 7; $i != "-"; i++); if ($5 == mp) l = $(i+1) " " $(i+2) " " $6 " " $(i+3) }
		END { if (l == "") exit 1; print l }' /proc/self/mountinfo
}
# A mount table reduced to what must not change across a refused run.
mount_table() { awk '{ for (i = 7; $i != "-"; i++); print $5, $(i+1), $(i+2), $6 }' /proc/self/mountinfo; }
loop_table() {
	for f in /sys/block/loop*/loop/backing_file; do
		[ -f "$f" ] && echo "$f: $(cat "$f")"
	done
}
snapshot() { { mount_table; loop_table; } >"/tmp/snap.$1"; }
# nothing_left: the mount and loop tables equal the "before" snapshot.
nothing_left() {
	snapshot after
	if ! cmp -s /tmp/snap.before /tmp/snap.after; then
		bad "left behind: $(diff /tmp/snap.before /tmp/snap.after | grep '^[+-][^+-]' | tr '\n' ' ')"
	fi
}

# expect_mount MP FSTYPE SOURCE-PATTERN: check the top mount at MP.
expect_mount() {
	set -- "$1" "$2" "$3" $(top_mount "$1" || echo none none none none)
	[ "$4" = "$2" ] || bad "$1 is $4, expected $2"
	case $5 in $3) ;; *) bad "$1 source is $5, expected $3" ;; esac
	MOUNT_OPTS=$6
	SUPER_OPTS=$7
}
has_opt() { case ",$1," in *",$2,"*) return 0 ;; esac; return 1; }

# --- running the tool ---------------------------------------------------
# run_tool ARG...: run cfs-setup-root, keep its exit code in RC, the lines it
# logged to the kernel log in /tmp/kmsg, and those with its own output in
# /tmp/log (echoed for the console log). Verdicts rest on effects; the log
# is for people, and for kmsg-complete, which checks that no line is lost.
run_tool() {
	dmesg -c >/dev/null
	"$TOOL" "$@" >/tmp/out 2>&1
	RC=$?
	dmesg | grep 'cfs-setup-root' | sed 's/^\[[^]]*\] //' >/tmp/kmsg
	cat /tmp/kmsg /tmp/out >/tmp/log
	echo "CFSTEST: cfs-setup-root $* -> exit $RC"
	sed 's/^/CFSTEST:   /' /tmp/log
	grep -E ' /sysroot(/| )' /proc/self/mountinfo | sed 's/^/CFSTEST:   mountinfo: /'
}
# expect_rc CODE: a wrong exit code fails the case with the tool's last line
# and returns non-zero, so a case can skip checks that would only cascade.
expect_rc() {
	[ "$RC" = "$1" ] && return 0
	bad "exit code $RC, expected $1 ($(grep -v '^$' /tmp/log | tail -n1))"
	return 1
}
expect_error_line() { grep -q 'cfs-setup-root: error:' /tmp/log || bad "no 'cfs-setup-root: error:' line"; }

# readback ROOT: every file of the MANIFEST reads back with its content.
readback() {
	(cd "$1" && sha256sum -c -s usr/share/cfstest/MANIFEST) || bad "MANIFEST does not verify under $1"
}

# A secure mount: overlay composefs:DIGEST, read-only, verity=require.
expect_composefs_root() {
	expect_mount /sysroot overlay "composefs:$1"
	has_opt "$MOUNT_OPTS" ro || bad "/sysroot not read-only ($MOUNT_OPTS)"
	if [ "${2:-secure}" = secure ]; then
		has_opt "$SUPER_OPTS" verity=require || bad "overlay lacks verity=require ($SUPER_OPTS)"
	else
		case ",$SUPER_OPTS," in *,verity=*) bad "insecure overlay has $SUPER_OPTS" ;; esac
	fi
	has_opt "$SUPER_OPTS" metacopy=on || bad "overlay lacks metacopy=on ($SUPER_OPTS)"
}

# The physical root at /sysroot/sysroot, /etc and /var from the state dir.
expect_state_mounts() {
	local d=$1 state=/sysroot/sysroot/state/deploy/$1
	expect_mount /sysroot/sysroot ext4 "$disk"
	has_opt "$MOUNT_OPTS" ro || bad "/sysroot/sysroot not read-only ($MOUNT_OPTS)"
	expect_mount /sysroot/etc overlay '*'
	echo probe >/sysroot/etc/cfstest-probe || bad "/etc not writable"
	[ -f "$state/etc/upper/cfstest-probe" ] || bad "/etc write not in state etc/upper"
	[ -f /sysroot/etc/cfstest/base.conf ] || bad "/etc does not show the image's files"
	expect_mount /sysroot/var ext4 "$disk"
	echo probe >/sysroot/var/cfstest-probe || bad "/var not writable"
	[ -f "$state/var/cfstest-probe" ] || bad "/var write not in state var"
}

# expect_image_measures ALG DIGEST: the kernel measures the image named DIGEST as ALG:DIGEST.
expect_image_measures() {
	case $(fsverity measure "$(readlink -f "/sysroot/sysroot/composefs/images/$2")") in
	"$1:$2 "*) ;;
	*) bad "image object does not measure as $1:$2" ;;
	esac
}

# kmsg_complete: every step of the plan that --dry-run printed before the run
# (/tmp/plan) reached the kernel log, in order, and nothing was suppressed
# (/dev/kmsg drops a writer's lines past a burst of 10 unless
# printk.devkmsg=on, which no one sets). The staging directory's name
# carries the pid, which differs between the two runs.
kmsg_complete() {
	local n
	sed -n 's/cfs-setup-root\.[0-9]*/cfs-setup-root.PID/g; /^step [0-9]*: /p' /tmp/plan >/tmp/plan.steps
	sed -n 's/cfs-setup-root\.[0-9]*/cfs-setup-root.PID/g; s/^cfs-setup-root\[[0-9]*\]: \(step [0-9]*: \)/\1/p' \
		/tmp/kmsg >/tmp/kmsg.steps
	n=$(wc -l </tmp/plan.steps)
	echo "CFSTEST: kmsg-complete: the plan has $n steps, the kernel log $(wc -l </tmp/kmsg.steps)"
	[ "$n" -gt 0 ] || bad "--dry-run printed no steps"
	cmp -s /tmp/plan.steps /tmp/kmsg.steps ||
		bad "the kernel log has $(wc -l </tmp/kmsg.steps) of the plan's $n steps: $(diff /tmp/plan.steps /tmp/kmsg.steps | grep '^[+-][^+-]' | head -n 3 | tr '\n' ' ')"
	grep -q 'output lines suppressed due to ratelimiting' /tmp/kmsg &&
		bad "kernel log dropped lines: $(grep -o '[0-9]* output lines suppressed' /tmp/kmsg)"
}

# expect_assembly PATH: the mount path the overlay at /sysroot was built on,
# from the kernel's own record of how its layers were given (the overlay's
# options in mountinfo), and no staging directory left under /run:
#   detached         lowerdir+=/ : the erofs layer was a mount attached nowhere
#   attach-first     lowerdir+=<path>, datadir+=<path>: the erofs layer was
#                    attached (staged) when the overlay took it
#   string-lowerdir  lowerdir=<lower>::<data>, one string
expect_assembly() {
	expect_mount /sysroot overlay 'composefs:*'
	case $1 in
	detached)
		has_opt "$SUPER_OPTS" lowerdir+=/ || bad "the erofs layer was not a detached mount ($SUPER_OPTS)"
		;;
	attach-first)
		case ",$SUPER_OPTS," in
		*,lowerdir+=/,*) bad "the erofs layer was a detached mount ($SUPER_OPTS)" ;;
		*,lowerdir+=/?*,datadir+=/?*) ;;
		*) bad "the layers were not appended one by one ($SUPER_OPTS)" ;;
		esac
		;;
	string-lowerdir)
		case ",$SUPER_OPTS," in
		*,lowerdir=/?*::/?*,*) ;;
		*) bad "the layers were not given as one lowerdir string ($SUPER_OPTS)" ;;
		esac
		;;
	*) bad "unknown mount path '$1'" ;;
	esac
	# Staging directories (cfs-setup-root.<pid>) must be gone; the status
	# record's directory (cfs-setup-root) is meant to stay.
	ls /run >/tmp/run.list
	grep -q '^cfs-setup-root\.' /tmp/run.list && bad "left in /run: $(grep '^cfs-setup-root\.' /tmp/run.list | tr '\n' ' ')"
}

# expect_ro_physical_root: the physical root at /sysroot is mounted read-only
# (the mount and its superblock), before the run.
expect_ro_physical_root() {
	expect_mount /sysroot ext4 "$disk"
	has_opt "$MOUNT_OPTS" ro && has_opt "$SUPER_OPTS" ro ||
		bad "the physical root was not mounted read-only ($MOUNT_OPTS; $SUPER_OPTS)"
}

# object_of DIGEST: the object path for a file digest in the repository.
object_of() { echo "/sysroot/composefs/objects/$(echo "$1" | cut -c1-2)/$(echo "$1" | cut -c3-)"; }

# --- the physical root --------------------------------------------------
mount -t ext4 -o "${mountopts:-rw}" "$disk" /sysroot || echo "CFSTEST: cannot mount $disk"
. /sysroot/cfstest/digests.env
[ -n "${DIGEST_A:-}${DIGEST_C:-}" ] || echo "CFSTEST: no digests on $disk"
mkdir -p /usr/lib/composefs
snapshot before

# --- the boots ----------------------------------------------------------
case $boot in
secure)
	# composefs=<hex>, secure: the default path for this kernel.
	[ -e "/sysroot/state/deploy/$DIGEST_A" ] && bad "state existed before the run"
	"$TOOL" --dry-run >/tmp/plan 2>/dev/null || bad "--dry-run failed"
	run_tool
	expect_rc 0 || fatal secure-boot verity-require "$path" kmsg-complete switch-root
	expect_composefs_root "$DIGEST_A"
	expect_state_mounts "$DIGEST_A"
	readback /sysroot
	expect_image_measures sha256 "$DIGEST_A"
	verdict secure-boot
	# (That it is enforced, an object without fs-verity failing to read, is
	# the tamper boot's.)
	expect_mount /sysroot overlay "composefs:$DIGEST_A"
	has_opt "$SUPER_OPTS" verity=require || bad "overlay lacks verity=require ($SUPER_OPTS)"
	verdict verity-require
	expect_assembly "$path"
	verdict "$path"
	kmsg_complete
	verdict kmsg-complete
	# Hand over to the image: its own init checks the root from inside.
	# cfstest.lend-busybox=1 (the arm64 tier): the image's busybox is the
	# disk builder's (x86_64), so this guest's own is bound over it first.
	if [ "$(karg cfstest.lend-busybox)" = 1 ]; then
		mount --bind /bin/busybox /sysroot/usr/bin/busybox ||
			echo "CFSTEST: cannot lend busybox to the image"
	fi
	exec switch_root /sysroot /usr/lib/cfstest/init
	;;
tamper)
	# Swap two objects under an intact image before the tool runs:
	# victim1 becomes other content with its own fs-verity, victim2 the
	# same content without fs-verity. Both must fail to read.
	. /sysroot/cfstest/victims.env
	o1=$(object_of "$VICTIM1")
	o2=$(object_of "$VICTIM2")
	{ head -c 100 "$o1"; printf 'X'; tail -c +102 "$o1"; } >/sysroot/tmp.obj
	fsverity enable /sysroot/tmp.obj || bad "fsverity enable failed"
	mv /sysroot/tmp.obj "$o1"
	cp "$o2" /sysroot/tmp.obj && mv /sysroot/tmp.obj "$o2"
	fsverity measure "$o2" >/dev/null 2>&1 && bad "victim2 object still has verity"
	sync
	run_tool
	expect_rc 0 || fatal tampered-object-eio object-without-verity-eio
	expect_composefs_root "$DIGEST_A"
	if out=$(cat /sysroot/tamper/victim1 2>/tmp/err | wc -c); [ -s /tmp/err ] && grep -qE 'I/O error|Input/output error' /tmp/err; then
		[ "$out" = 0 ] || bad "victim1 returned $out bytes before failing"
	else
		bad "reading a swapped object did not fail with EIO ($(cat /tmp/err))"
	fi
	verdict tampered-object-eio
	if cat /sysroot/tamper/victim2 >/dev/null 2>/tmp/err; then
		bad "an object without fs-verity was read under verity=require"
	else
		grep -qE 'I/O error|Input/output error' /tmp/err || bad "unexpected error: $(cat /tmp/err)"
	fi
	cat /sysroot/tamper/control >/dev/null || bad "an untouched object does not read"
	verdict object-without-verity-eio
	;;
refusals)
	# Refused runs, batched: each is a separate run of the tool (via
	# --cmdline), and after each the mount and loop tables must be as
	# before. The real command line has no composefs karg.
	run_tool
	expect_rc 0
	nothing_left
	verdict no-karg

	run_tool --cmdline "root=/dev/vda composefs=$(printf '%064d' 7)"
	expect_rc 3
	expect_error_line
	nothing_left
	verdict wrong-digest

	# A digest whose images/ link leads to another image's object.
	fake=$(printf 'fe%062d' 0)
	ln -s "$(readlink "/sysroot/composefs/images/$DIGEST_A")" "/sysroot/composefs/images/$fake"
	snapshot before
	run_tool --cmdline "composefs=$fake"
	expect_rc 4
	expect_error_line
	nothing_left
	verdict digest-mismatch

	run_tool --cmdline "composefs=$DIGEST_B"
	expect_rc 4
	expect_error_line
	nothing_left
	verdict image-without-verity-refused

	# Verification passes (the file has fs-verity and the right digest)
	# but the file is no erofs image: the mount fails and is undone.
	head -c 65536 /dev/urandom >/sysroot/garbage.obj
	fsverity enable /sysroot/garbage.obj
	g=$(fsverity measure /sysroot/garbage.obj | sed 's/^sha256:\([0-9a-f]*\).*/\1/')
	mkdir -p "$(dirname "$(object_of "$g")")"
	mv /sysroot/garbage.obj "$(object_of "$g")"
	ln -s "../objects/$(echo "$g" | cut -c1-2)/$(echo "$g" | cut -c3-)" "/sysroot/composefs/images/$g"
	snapshot before
	run_tool --cmdline "composefs=$g"
	# A mount step failed (src/lib.rs exit_code: RunError::Step, not a verification).
	expect_rc 5
	expect_error_line
	nothing_left
	verdict malformed-image-undone

	# A kernel before 6.15 cannot build the tree from detached mounts:
	# forcing that path fails part-way, and everything must be undone.
	if [ "$path" != detached ]; then
		run_tool --force-overlay detached --cmdline "composefs=$DIGEST_A"
		expect_rc 5
		expect_error_line
		nothing_left
		verdict forced-detached-undone
	fi

	printf '[etc]\nmount = "sideways"\n' >/tmp/bad.toml
	run_tool --config /tmp/bad.toml --cmdline "composefs=$DIGEST_A"
	expect_rc 2
	expect_error_line
	nothing_left
	verdict config-error
	;;
insecure)
	# composefs=?<hex> on an image with no fs-verity anywhere.
	run_tool
	expect_rc 0 || fatal insecure-noverity
	expect_composefs_root "$DIGEST_B" insecure
	readback /sysroot
	[ "$(cat /sysroot/usr/share/cfstest/variant)" = B ] || bad "wrong image content"
	verdict insecure-noverity
	;;
sha512)
	run_tool
	expect_rc 0 || fatal sha512-repository
	expect_composefs_root "$DIGEST_C"
	expect_state_mounts "$DIGEST_C"
	readback /sysroot
	expect_image_measures sha512 "$DIGEST_C"
	verdict sha512-repository
	;;
digest-karg)
	# composefs.digest=v1-sha256-12:<hex>
	run_tool
	expect_rc 0 || fatal digest-karg
	expect_composefs_root "$DIGEST_A"
	readback /sysroot
	verdict digest-karg
	;;
transient-etc)
	# composefs=<missing> composefs=sha256:<A>, [etc] mount = "transient"
	printf '[etc]\nmount = "transient"\n' >"$CONF"
	run_tool
	expect_rc 0 || fatal first-existing-selector sha256-prefix-karg transient-etc
	expect_composefs_root "$DIGEST_A"
	verdict first-existing-selector keep
	verdict sha256-prefix-karg
	expect_mount /sysroot/etc overlay '*'
	echo probe >/sysroot/etc/cfstest-probe || bad "/etc not writable"
	[ -e "/sysroot/sysroot/state/deploy/$DIGEST_A/etc/upper/cfstest-probe" ] &&
		bad "transient /etc wrote to the state directory"
	[ -f /sysroot/etc/cfstest/base.conf ] || bad "/etc does not show the image's files"
	verdict transient-etc
	;;
string-lowerdir)
	run_tool --force-overlay string-lowerdir
	expect_rc 0 || fatal string-lowerdir
	expect_composefs_root "$DIGEST_A"
	expect_assembly string-lowerdir
	expect_state_mounts "$DIGEST_A"
	readback /sysroot
	verdict string-lowerdir
	;;
loop-erofs)
	run_tool --force-erofs loop
	expect_rc 0 || fatal loop-erofs
	expect_composefs_root "$DIGEST_A"
	readback /sysroot
	loop_table >/tmp/loops
	grep -q "$(echo "$DIGEST_A" | cut -c3-)" /tmp/loops || bad "no loop device backs the image"
	verdict loop-erofs
	;;
transient-root)
	# [root] transient: / takes writes in memory; /etc and /var stay the
	# deployment's and visible on top (the peer hid them: bootc#2201).
	printf '[root]\ntransient = true\n' >"$CONF"
	run_tool
	expect_rc 0 || fatal transient-root
	# The source bootc reads back from / after boot.
	expect_mount /sysroot overlay "transient:composefs=$DIGEST_A"
	echo probe >/sysroot/usr/cfstest-probe || bad "transient root not writable"
	expect_state_mounts "$DIGEST_A"
	readback /sysroot
	verdict transient-root
	;;
etc-var-none)
	printf '[etc]\nmount = "none"\n[var]\nmount = "none"\n[sysroot]\nreadonly = false\n' >"$CONF"
	run_tool
	expect_rc 0 || fatal etc-var-none sysroot-writable
	expect_composefs_root "$DIGEST_A"
	top_mount /sysroot/etc >/dev/null && bad "/etc is mounted with [etc] mount = none"
	top_mount /sysroot/var >/dev/null && bad "/var is mounted with [var] mount = none"
	touch /sysroot/etc/x 2>/dev/null && bad "/etc of the image is writable"
	expect_mount /sysroot/sysroot ext4 "$disk"
	has_opt "$MOUNT_OPTS" rw || bad "/sysroot/sysroot read-only despite readonly = false"
	verdict etc-var-none keep
	verdict sysroot-writable
	;;
ro-root)
	# The physical root mounted read-only, as initramfs-tools and GRUB's
	# default `ro` leave it: the run must make its superblock writable
	# (what `rw` would have done), create the deployment's state and mount
	# /etc and /var from it, writable, while the view of the physical root
	# at /sysroot/sysroot stays read-only.
	[ -e "/sysroot/state/deploy/$DIGEST_A" ] && bad "state existed before the run"
	expect_ro_physical_root
	run_tool
	expect_rc 0 || fatal ro-root
	expect_composefs_root "$DIGEST_A"
	expect_state_mounts "$DIGEST_A"
	expect_mount /sysroot/sysroot ext4 "$disk"
	has_opt "$SUPER_OPTS" rw || bad "the physical root's superblock stayed read-only ($SUPER_OPTS)"
	readback /sysroot
	verdict ro-root
	;;
ro-device)
	# The disk itself is read-only (QEMU readonly=on): its superblock cannot
	# be made writable, so /etc and /var fall back to transient ones: they
	# take writes, in memory, and nothing reaches the disk.
	expect_ro_physical_root
	[ "$(cat "/sys/block/${disk#/dev/}/ro")" = 1 ] || bad "$disk is not a read-only device"
	run_tool
	expect_rc 0 || fatal ro-device-transient
	expect_composefs_root "$DIGEST_A"
	readback /sysroot
	for d in etc var; do
		expect_mount "/sysroot/$d" overlay '*'
		echo probe >"/sysroot/$d/cfstest-probe" || bad "/$d not writable"
	done
	[ -f /sysroot/etc/cfstest/base.conf ] || bad "/etc does not show the image's files"
	[ -e "/sysroot/sysroot/state/deploy/$DIGEST_A" ] && bad "a state directory exists on the read-only disk"
	expect_mount /sysroot/sysroot ext4 "$disk"
	has_opt "$MOUNT_OPTS" ro || bad "/sysroot/sysroot not read-only ($MOUNT_OPTS)"
	verdict ro-device-transient
	;;
*)
	echo "CFSTEST-RESULT: FAIL $boot: unknown boot"
	;;
esac
