#!/usr/bin/env bash
# Tests of the initramfs hooks that cannot be boot-tested here (no Arch
# userland can be fetched): mkinitcpio's install hook (what build() adds to
# the image) and runtime hook (what it runs for each command line and
# mounted root, and its failure path), plus initramfs-tools' boot script
# failure path (the VM tier boots it, but only a panic with panic= set).
#
# The hooks run as they are installed, in a throwaway chroot with busybox
# (ash, the shell both initramfs use) and a stub cfs-setup-root that records
# its arguments and exits as each case plans; the generators' helper
# functions (mkinitcpio's add_* and err/launch_interactive_shell,
# initramfs-tools' panic) are stubs that record their calls. Roots are
# mounted (tmpfs) in a private mount namespace, as the init would leave them.
#
# Needs root (chroot, unshare), busybox (static) and bash. Prints one line
# per case and closes with "hooks: N passed, N failed".
set -uo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
PASSED=0 FAILED=0

if [ "$(id -u)" != 0 ]; then
	echo "SKIP  hooks: needs root (chroot, unshare)"
	echo "hooks: 0 passed, 0 failed"
	exit 0
fi
BUSYBOX=$(command -v busybox) || { echo "FAIL  hooks: no busybox"; echo "hooks: 0 passed, 1 failed"; exit 1; }
file -L "$BUSYBOX" | grep -E 'static(ally|-pie) linked' >/dev/null ||
	{ echo "FAIL  hooks: $BUSYBOX is not static (install busybox-static)"; echo "hooks: 0 passed, 1 failed"; exit 1; }

R=$(mktemp -d)
trap 'rm -rf "$R"' EXIT

# --- the chroot ---------------------------------------------------------
mkdir -p "$R"/{bin,usr/bin,proc,dev,run/initramfs,root,t,scripts/local-bottom,hooks,lib64}
mknod -m 0666 "$R/dev/null" c 1 3
mkdir -p "$R"/usr/lib/initcpio/{install,hooks}
cp "$BUSYBOX" "$R/bin/busybox"
for applet in sh cat stat mkdir rm echo kill sleep grep head; do ln -s busybox "$R/bin/$applet"; done
# bash and its libraries, for mkinitcpio's install hook (a bash script).
cp -L "$(command -v bash)" "$R/bin/bash"
for lib in $(ldd "$(command -v bash)" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
	mkdir -p "$R$(dirname "$lib")"
	cp -L "$lib" "$R$lib"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"

# The hooks, where the generators look for them (make install, as a package
# would; /bin/true stands for the binary, which the cases replace by a stub).
make -s -C "$HERE" install DESTDIR="$R" PREFIX=/usr BIN=/bin/true >/dev/null
cp "$R/usr/share/initramfs-tools/scripts/local-bottom/cfs-setup-root" "$R/scripts/local-bottom/"
cp "$R/usr/lib/initcpio/hooks/cfs-setup-root" "$R/hooks/"
rm -f "$R/usr/bin/cfs-setup-root"

# The stub tool: records its arguments; exits with the next code of
# /t/plan (0 when none is left), printing an error line like the tool's
# when that is not 0.
cat >"$R/t/tool" <<'EOF'
#!/bin/sh
echo "tool $*" >>/t/calls
code=0
if [ -s /t/plan ]; then
	read -r code rest </t/plan
	echo "$rest" >/t/plan
fi
code=${code:-0}
if [ "$code" != 0 ]; then
	echo "cfs-setup-root: step 1: probing the kernel" >&2
	echo "cfs-setup-root: error: no usable image: composefs=$code (stub)" >&2
fi
exit "$code"
EOF
chmod +x "$R/t/tool"

# mkinitcpio's helpers, as stubs that record their calls.
cat >"$R/t/mkinitcpio-runtime" <<'EOF'
# sourced by busybox ash in place of /init_functions
err() { echo "ERROR: $*"; }
msg() { echo "$@"; }
# A function: busybox ash would run its own applet before any stub on PATH.
modprobe() { echo "modprobe $*" >>/t/calls; }
# The shell of the failure path: recorded; the last allowed one ends the
# test as PID 1's exec'd shell would never return to the hook.
launch_interactive_shell() {
	echo "shell $*" >>/t/calls
	n=$(($(cat /t/shells 2>/dev/null || echo 0) + 1))
	echo "$n" >/t/shells
	[ "$n" -lt "${MAX_SHELLS:-1}" ] || exit 99
}
. /hooks/cfs-setup-root
run_latehook
echo "latehook returned $?"
EOF
cat >"$R/t/mkinitcpio-build" <<'EOF'
# sourced by bash in place of mkinitcpio: add_* record their calls
rec() { echo "$*" >>/t/calls; }
map() { local f=$1 r=0 a; shift; for a; do "$f" "$a" || r=1; done; return "$r"; }
add_module() { rec add_module "$@"; }
add_binary() { rec add_binary "$@"; }
add_file() { rec add_file "$@"; }
add_symlink() { rec add_symlink "$@"; }
add_runscript() { rec add_runscript "$@"; }
error() { rec error "$@"; }
warning() { rec warning "$@"; }
if [ "${SYSTEMD_HOOK:-}" = 1 ]; then add_systemd_unit() { rec add_systemd_unit "$@"; }; fi
_hooks=(${HOOKS_LIST:-base udev cfs-setup-root})
. /usr/lib/initcpio/install/cfs-setup-root
build
echo "build returned $?"
help | head -n 1 | grep -q . && echo "help printed"
EOF
# initramfs-tools' /scripts/functions, with panic recording its message and,
# at the last allowed one, killing the script as a reboot would.
mkdir -p "$R/scripts"
cat >"$R/scripts/functions" <<'EOF'
modprobe() { echo "modprobe $*" >>/t/calls; }
panic() {
	echo "panic $*" >>/t/calls
	n=$(($(cat /t/panics 2>/dev/null || echo 0) + 1))
	echo "$n" >/t/panics
	[ "$n" -lt "${MAX_PANICS:-1}" ] || kill -9 $$
}
EOF
cat >"$R/t/itools" <<'EOF'
export rootmnt=/root panic=
/scripts/local-bottom/cfs-setup-root
echo "script exited $?"
EOF

# --- running a case -------------------------------------------------------
# run_case CMDLINE MOUNTS PLAN COMMAND...: a fresh /t state, CMDLINE as
# /proc/cmdline, tmpfs roots mounted at MOUNTS (space-separated paths in the
# chroot), the stub tool's exit codes from PLAN (NO_TOOL=1: no tool at all),
# then COMMAND in the chroot. Output in $OUT, recorded calls in $CALLS.
OUT='' CALLS=''
run_case() {
	local cmdline=$1 mounts=$2 plan=$3
	shift 3
	rm -f "$R"/t/{calls,shells,panics,plan}
	: >"$R/t/calls"
	printf '%s\n' "$plan" >"$R/t/plan"
	printf '%s\n' "$cmdline" >"$R/t/cmdline"
	rm -f "$R/usr/bin/cfs-setup-root"
	[ -n "${NO_TOOL:-}" ] || cp "$R/t/tool" "$R/usr/bin/cfs-setup-root"
	# shellcheck disable=SC2016
	OUT=$(unshare --mount --propagation private sh -c '
		r=$1 mounts=$2; shift 2
		# /proc/cmdline is what the case says.
		mount -t tmpfs tmpfs "$r/proc"
		cp "$r/t/cmdline" "$r/proc/cmdline"
		for m in $mounts; do mkdir -p "$r$m"; mount -t tmpfs root "$r$m"; done
		exec chroot "$r" /usr/bin/env -i PATH=/usr/bin:/bin "$@"' sh "$R" "$mounts" "$@" 2>&1)
	CALLS=$(cat "$R/t/calls")
	# Directories a case made (roots) go, so the next starts clean.
	rm -rf "$R/sysroot" "$R/new_root"
}
# env(1) for the chroot: busybox's.
ln -s ../../bin/busybox "$R/usr/bin/env"

fails=()
bad() { fails+=("$*"); }
verdict() {
	if [ ${#fails[@]} -eq 0 ]; then
		printf 'PASS  %s\n' "$1"
		PASSED=$((PASSED + 1))
	else
		printf 'FAIL  %s: %s\n' "$1" "$(IFS=';'; echo "${fails[*]}")"
		printf '%s\n' "$OUT" | sed 's/^/    | /'
		printf '%s\n' "$CALLS" | sed 's/^/    calls: /'
		FAILED=$((FAILED + 1))
	fi
	fails=()
}
has_line() { grep -qxF -- "$2" <<<"$1"; }
count() { grep -cxF -- "$2" <<<"$1" || true; }
HEX=$(printf '%064d' 1)

# --- mkinitcpio runtime hook ---------------------------------------------
run_case "root=/dev/vda rw quiet" "/new_root" "" /bin/sh -c '. /t/mkinitcpio-runtime'
has_line "$OUT" "latehook returned 0" || bad "did not return 0"
[ -z "$CALLS" ] || bad "ran something without a composefs argument"
verdict mkinitcpio-runtime-no-karg

run_case "root=/dev/vda rw composefs=$HEX" "/new_root" "" /bin/sh -c '. /t/mkinitcpio-runtime'
has_line "$OUT" "latehook returned 0" || bad "did not return 0"
has_line "$CALLS" "tool --sysroot /new_root" || bad "tool not run on /new_root"
[ "$(count "$CALLS" "tool --sysroot /new_root")" = 1 ] || bad "tool run more than once"
has_line "$CALLS" "modprobe -qa erofs overlay loop" || bad "modules not loaded"
verdict mkinitcpio-runtime-new-root

# mkinitcpio 42: the root at /sysroot, /new_root an empty directory.
mkdir -p "$R/new_root"
run_case "root=/dev/vda composefs.digest=v1-sha256-12:$HEX" "/sysroot" "" /bin/sh -c '. /t/mkinitcpio-runtime'
has_line "$OUT" "latehook returned 0" || bad "did not return 0"
has_line "$CALLS" "tool --sysroot /sysroot" || bad "tool not run on /sysroot"
verdict mkinitcpio-runtime-sysroot

# Before 42 with a stray /sysroot directory: the mounted /new_root wins.
mkdir -p "$R/sysroot"
run_case "composefs=?$HEX" "/new_root" "" /bin/sh -c '. /t/mkinitcpio-runtime'
has_line "$CALLS" "tool --sysroot /new_root" || bad "tool not run on the mounted /new_root"
verdict mkinitcpio-runtime-unmounted-sysroot-dir

# Failure: the error line on the console, a shell, and the tool again when
# the shell is left; the hook returns only once the tool succeeded.
run_case "composefs=$HEX" "/new_root" "3 0" /bin/sh -c 'MAX_SHELLS=5; . /t/mkinitcpio-runtime'
has_line "$OUT" "ERROR: cfs-setup-root: error: no usable image: composefs=3 (stub)" ||
	bad "no error line with the tool's error"
[ "$(count "$CALLS" "tool --sysroot /new_root")" = 2 ] || bad "tool not run again after the shell"
[ "$(count "$CALLS" "shell ")" = 1 ] || bad "not exactly one shell"
has_line "$OUT" "latehook returned 0" || bad "did not return after the retry succeeded"
verdict mkinitcpio-runtime-failure-retry

# A failure that persists: shell after shell, never a return to init.
run_case "composefs=$HEX" "/new_root" "4 4 4 4" /bin/sh -c 'MAX_SHELLS=2; . /t/mkinitcpio-runtime'
[ "$(count "$CALLS" "shell ")" = 2 ] || bad "not a shell per failure"
grep -q "latehook returned" <<<"$OUT" && bad "the hook returned: the root would boot"
verdict mkinitcpio-runtime-failure-never-returns

# --- mkinitcpio install hook ---------------------------------------------
run_case "" "" "" /bin/bash -c '. /t/mkinitcpio-build'
for want in "add_module erofs?" "add_module overlay?" "add_module loop?" \
	"add_binary /usr/bin/cfs-setup-root" "add_runscript"; do
	has_line "$CALLS" "$want" || bad "no '$want'"
done
grep -q '^add_file' <<<"$CALLS" && bad "added a config file the system does not have"
grep -q 'systemd' <<<"$CALLS" && bad "added systemd pieces to a busybox initramfs"
has_line "$OUT" "build returned 0" || bad "build failed"
has_line "$OUT" "help printed" || bad "help printed nothing"
verdict mkinitcpio-build-busybox

mkdir -p "$R/usr/lib/composefs"
echo '[etc]' >"$R/usr/lib/composefs/setup-root-conf.toml"
run_case "" "" "" /bin/bash -c 'SYSTEMD_HOOK=1 HOOKS_LIST="base systemd cfs-setup-root"; . /t/mkinitcpio-build'
has_line "$CALLS" "add_file /usr/lib/composefs/setup-root-conf.toml" || bad "config file not added"
has_line "$CALLS" "add_systemd_unit cfs-setup-root.service" || bad "unit not added"
has_line "$CALLS" "add_symlink /usr/lib/systemd/system/initrd-root-fs.target.wants/cfs-setup-root.service ../cfs-setup-root.service" ||
	bad "no static initrd-root-fs.target.wants link"
has_line "$CALLS" "add_binary /usr/bin/cfs-setup-root" || bad "binary not added"
grep -q '^add_runscript' <<<"$CALLS" && bad "runtime hook added to a systemd initramfs"
has_line "$OUT" "build returned 0" || bad "build failed"
# The installed link resolves to the unit make install put next to it.
[ -f "$R/usr/lib/systemd/system/initrd-root-fs.target.wants/cfs-setup-root.service" ] ||
	bad "installed wants link does not resolve"
verdict mkinitcpio-build-systemd
rm -rf "$R/usr/lib/composefs"

# systemd in HOOKS but after us: no unit possible, so the build must fail.
run_case "" "" "" /bin/bash -c 'HOOKS_LIST="base cfs-setup-root systemd"; . /t/mkinitcpio-build'
grep -q '^error ' <<<"$CALLS" || bad "no error"
has_line "$OUT" "build returned 1" || bad "build did not fail"
grep -q '^add_runscript' <<<"$CALLS" && bad "fell back to the runtime hook"
verdict mkinitcpio-build-systemd-misordered

# --- initramfs-tools boot script -----------------------------------------
run_case "root=/dev/vda ro" "/root" "" /bin/sh /t/itools
has_line "$OUT" "script exited 0" || bad "did not exit 0"
[ -z "$CALLS" ] || bad "ran something without a composefs argument"
verdict itools-script-no-karg

run_case "root=/dev/vda ro composefs=$HEX" "/root" "" /bin/sh /t/itools
has_line "$OUT" "script exited 0" || bad "did not exit 0"
has_line "$CALLS" "tool --sysroot /root" || bad "tool not run on \${rootmnt}"
has_line "$CALLS" "modprobe -a erofs overlay loop" || bad "modules not loaded"
verdict itools-script-rootmnt

run_case "composefs=$HEX" "/root" "3 0" /bin/sh -c 'MAX_PANICS=5 /bin/sh /t/itools'
has_line "$CALLS" "panic cfs-setup-root: error: no usable image: composefs=3 (stub)" ||
	bad "panic without the tool's error line"
[ "$(count "$CALLS" "tool --sysroot /root")" = 2 ] || bad "tool not run again after the panic shell"
has_line "$OUT" "script exited 0" || bad "did not exit 0 after the retry succeeded"
verdict itools-script-failure-retry

run_case "composefs=$HEX" "/root" "4 4 4" /bin/sh -c 'MAX_PANICS=2 /bin/sh /t/itools'
[ "$(count "$CALLS" "panic cfs-setup-root: error: no usable image: composefs=4 (stub)")" = 2 ] ||
	bad "not a panic per failure"
# Any exit lets init go on to boot what is at ${rootmnt}: only the
# simulated reboot (panic's kill) may end it.
has_line "$OUT" "script exited 137" || bad "the script ended by itself: the root would boot"
verdict itools-script-failure-never-succeeds

NO_TOOL=1 run_case "composefs=$HEX" "/root" "" /bin/sh /t/itools
grep -q '^panic cfs-setup-root: error: /usr/bin/cfs-setup-root is not in this initramfs' <<<"$CALLS" ||
	bad "no panic for a missing binary"
has_line "$OUT" "script exited 137" || bad "the script ended by itself: the root would boot"
verdict itools-script-missing-binary

echo "hooks: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
