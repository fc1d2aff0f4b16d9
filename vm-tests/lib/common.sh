# shellcheck shell=bash
# Shared helpers for vm-tests/run: messages, timing, cache keys and stamps.
#
# Everything built or downloaded lives under $VM_CACHE, in a directory whose
# name carries a key computed from the inputs that produced it. A directory is
# complete only when its `.done` stamp exists, so an interrupted build is
# redone rather than trusted.

VM_CACHE=${CFS_VM_CACHE:-$HOME/.cache/cfs-setup-root/vm}
TOOLS_ROOT=${CFS_TOOLS_ROOT:-$HOME/.cache/cfs-setup-root/tools}
mkdir -p "$VM_CACHE"

# Boot name -> the cases it proves (filled by the tier files).
declare -A BOOT_CASES=()

# Progress goes to stderr so that stdout carries only the per-case lines and
# the closing count.
say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'vm-tests: warning: %s\n' "$*" >&2; }
die() { printf 'vm-tests: error: %s\n' "$*" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Phase timings, printed at the end and kept in $VM_CACHE/last-run.txt.
TIMINGS=()
# timed LABEL CMD...: run CMD, record how long it took under LABEL. CMD runs
# as a plain command, so `set -e` stays in force inside it: a failed step
# of a preparation stops the run (never call it after || or in an if).
timed() {
	local label=$1 t0
	shift
	t0=$(now)
	"$@"
	TIMINGS+=("$(printf '%-34s %7ss' "$label" "$(elapsed "$t0")")")
}

# key_of ARG...: a 16-hex-digit key over the arguments. A file contributes
# its name and content, a directory every file beneath it (sorted), anything
# else its literal text.
key_of() {
	local a
	for a in "$@"; do
		if [ -d "$a" ]; then
			printf 'D %s\n' "$(basename "$a")"
			(cd "$a" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
		elif [ -f "$a" ]; then
			printf 'F %s ' "$(basename "$a")"
			sha256sum <"$a"
		else
			printf 'S %s\n' "$a"
		fi
	done | sha256sum | cut -c1-16
}

# cached NAME KEY BUILDER [ARG...]: make sure $VM_CACHE/NAME-KEY is complete,
# calling `BUILDER DIR ARG...` to fill it when it is not; sets CACHED to the
# directory. Older directories of the same NAME are removed so the cache
# does not grow. Call it as a plain command (not in $(...), after ||, or in
# an if): bash ignores `set -e` in those places, and the builders rely on
# it to stop at their first failing step.
cached() {
	local name=$1 key=$2 builder=$3 dir old
	shift 3
	dir=$VM_CACHE/$name-$key
	if [ ! -e "$dir/.done" ]; then
		rm -rf "$dir"
		mkdir -p "$dir"
		say "building $name ($key)"
		STAGE="building $name (partial output left in $dir)"
		"$builder" "$dir" "$@" >&2
		STAGE=
		touch "$dir/.done"
		for old in "$VM_CACHE/$name"-*; do
			# Only NAME-<key>: "uki" must not take "uki-tools" with it.
			[[ $old =~ /$name-[0-9a-f]{16}$ ]] && [ "$old" != "$dir" ] && rm -rf "$old"
		done
	fi
	CACHED=$dir
}

# vm_lock: one run at a time per cache (runs share disks, logs and the
# rootfs being built).
vm_lock() {
	exec 9>"$VM_CACHE/.lock"
	flock -n 9 || die "another vm-tests run is using $VM_CACHE"
}

# need_cmd CMD...: fail clearly when a host command is missing.
need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "missing host command: $c"
	done
}
