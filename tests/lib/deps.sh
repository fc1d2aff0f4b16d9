# shellcheck shell=bash
# Host dependencies from the one list, tests/deps.txt (what each script calls, and the
# Debian package that provides it). Sourced by tests/run, vm-tests/lib/host.sh,
# benches/run, benches/vm-boot, demo/run and tests/tools/build-mkcomposefs; also a
# script of its own:
#
#   tests/lib/deps.sh install GROUP...   install what is missing, fail if anything still is
#   tests/lib/deps.sh missing GROUP...   print "WHAT PACKAGE" for each missing entry
#   tests/lib/deps.sh verify             each installed package ships what the list says
#   tests/lib/deps.sh packages GROUP...  the Debian packages of GROUP... (for a fresh machine)
#
# Messages go to stderr. Nothing here reads or writes the host's apt sources.

DEPS_FILE=${DEPS_FILE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/deps.txt}

# deps_entries GROUP...: "WHAT PACKAGE" of every entry in any of GROUP... (all entries
# when no group or "all" is given), in list order.
deps_entries() {
	local want=" $* "
	[ "$want" = " all " ] && want="  "
	awk -v want="$want" '
		{ sub(/#.*/, "") }
		NF < 3 { next }
		{
			n = split($3, g, ",")
			for (i = 1; i <= n; i++)
				if (want == "  " || g[i] == "all" || index(want, " " g[i] " ")) { print $1, $2; break }
		}' "$DEPS_FILE"
}

# deps_present WHAT: an absolute path exists, or a command is on $PATH.
deps_present() {
	case $1 in
	/*) [ -e "$1" ] ;;
	*) command -v "$1" >/dev/null 2>&1 ;;
	esac
}

# deps_missing GROUP...: "WHAT PACKAGE" for each entry of GROUP... that is missing.
deps_missing() {
	local what pkg
	deps_entries "$@" | while read -r what pkg; do
		deps_present "$what" || printf '%s %s\n' "$what" "$pkg"
	done
}

# deps_packages GROUP...: the Debian packages of GROUP..., one per line, sorted.
deps_packages() {
	deps_entries "$@" | awk '$2 != "-" { print $2 }' | LC_ALL=C sort -u
}

# deps_install GROUP...: apt-get install the packages of the missing entries (idempotent:
# nothing happens when none is missing), then fail, naming each entry and its package,
# if any is still missing. A second round installs what the first one removed (on this
# kind of machine, bookworm's qemu-system-x86 removes the image's backported qemu-utils).
deps_install() {
	local missing pkgs round out
	for round in 1 2; do
		missing=$(deps_missing "$@")
		[ -z "$missing" ] && return 0
		pkgs=$(printf '%s\n' "$missing" | awk '$2 != "-" { print $2 }' | LC_ALL=C sort -u | tr '\n' ' ')
		[ -n "$pkgs" ] || break
		printf 'deps: installing %s(for %s)\n' "$pkgs" \
			"$(printf '%s\n' "$missing" | awk '$2 != "-" { print $1 }' | tr '\n' ' ' | sed 's/ $//')" >&2
		if [ "$(id -u)" != 0 ]; then
			printf 'deps: need root to apt-get install %s\n' "$pkgs" >&2
			break
		fi
		[ "$round" = 1 ] && { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 ||
			printf 'deps: apt-get update failed\n' >&2; }
		# shellcheck disable=SC2086 # one word per package
		if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
			--no-install-recommends $pkgs </dev/null 2>&1); then
			printf 'deps: apt-get install %sfailed:\n' "$pkgs" >&2
			printf '%s\n' "$out" | tail -n 15 | sed 's/^/    /' >&2
			break
		fi
	done
	missing=$(deps_missing "$@")
	[ -z "$missing" ] && return 0
	printf '%s\n' "$missing" | while read -r what pkg; do
		if [ "$pkg" = - ]; then
			printf 'deps: missing %s (%s)\n' "$what" "$(deps_comment "$what")" >&2
		else
			printf 'deps: missing %s (Debian package %s)\n' "$what" "$pkg" >&2
		fi
	done
	return 1
}

# deps_comment WHAT: the list's comment on WHAT.
deps_comment() {
	awk -v w="$1" '$1 == w { sub(/^[^#]*#[ \t]*/, ""); print; exit }' "$DEPS_FILE"
}

# deps_verify: the list is right. For every entry whose package is installed, the
# package (or, failing that, a package it depends on: python3's interpreter is
# python3-minimal's) ships the entry: the path itself, a link on the way to the file a
# command resolves to (/usr/bin/cc -> alternatives -> /usr/bin/gcc), or a file named like
# the command in a bin directory. Paths compare without a leading /usr (usrmerge).
deps_verify() {
	local what pkg p bad=0 n=0 target
	while read -r what pkg; do
		[ "$pkg" = - ] && continue
		dpkg-query -L "$pkg" >/dev/null 2>&1 || continue
		n=$((n + 1))
		case $what in
		/*) set -- "$what" ;;
		*) set -- /bin/"$what" /sbin/"$what" ;;
		esac
		if p=$(command -v "$what" 2>/dev/null) && [ "${p#/}" != "$p" ]; then
			for _ in 1 2 3 4 5 6; do
				set -- "$@" "$p"
				[ -L "$p" ] || break
				target=$(readlink "$p")
				case $target in /*) p=$target ;; *) p=$(realpath -sm "$(dirname "$p")/$target") ;; esac
			done
		fi
		deps_ships "$pkg" "$@" && continue
		for p in $(dpkg-query -W -f '${Pre-Depends},${Depends}' "$pkg" | tr ',|' '\n' |
			awk '{ sub(/:any$/, "", $1); print $1 }'); do
			deps_ships "$p" "$@" && continue 2
		done
		printf 'deps: %s is not shipped by %s (tests/deps.txt is wrong)\n' "$what" "$pkg" >&2
		bad=1
	done < <(deps_entries)
	printf 'deps: %d entries of installed packages checked against their file lists\n' "$n" >&2
	return $bad
}

# deps_ships PKG PATH...: the installed package PKG ships one of PATH...
declare -A DEPS_FILES=()
deps_ships() {
	local files f
	if [ -z "${DEPS_FILES[$1]+set}" ]; then
		DEPS_FILES[$1]=$(dpkg-query -L "$1" 2>/dev/null | sed 's|^/usr/|/|') || DEPS_FILES[$1]=
	fi
	files=${DEPS_FILES[$1]}
	[ -n "$files" ] || return 1
	shift
	for f in "$@"; do
		# A here-string, not a pipe: grep -q leaves early, which would kill the writer.
		grep -qxF -- "${f/#\/usr\//\/}" <<<"$files" && return 0
	done
	return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	cmd=${1:-}
	shift || true
	case $cmd in
	install) deps_install "$@" ;;
	missing) deps_missing "$@" ;;
	verify) deps_verify ;;
	packages) deps_packages "$@" ;;
	*)
		sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//' >&2
		exit 2
		;;
	esac
fi
