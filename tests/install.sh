#!/usr/bin/env bash
# make install, make uninstall and make deb, checked against the paths each
# generator and Debian expect (written out here, not read from the Makefile):
#   - make install DESTDIR=tmp PREFIX=/usr puts every file at its path, with its
#     mode, the unit's wants link resolving, and the binary named at $BINDIR in
#     every file that runs it (PREFIX=/usr/local: /usr/local/bin);
#   - make uninstall removes every file it installed;
#   - make deb builds the .deb: dpkg-deb -c lists the files (man pages and
#     changelogs compressed), the control fields, md5sums and trigger are there,
#     the maintainer scripts are valid sh, and lintian reports no error or
#     warning (its remaining informational tags are printed).
# Usage: bash tests/install.sh BIN [DEBDIR]   (the static release binary; where
# the .deb goes, default a temporary directory: tests/run keeps it for the VM tier)
# Closes with "install: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: tests/install.sh BIN}
PASSED=0 FAILED=0
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

ok() { echo "PASS  $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL  $1: $2"; FAILED=$((FAILED + 1)); }

# path mode, relative to the root.
FILES=(
	"usr/bin/cfs-setup-root 755"
	"usr/lib/systemd/system/cfs-setup-root.service 644"
	"usr/lib/dracut/modules.d/50cfs-setup-root/module-setup.sh 755"
	"usr/lib/dracut/dracut.conf.d/50-cfs-setup-root.conf 644"
	"usr/share/initramfs-tools/hooks/cfs-setup-root 755"
	"usr/share/initramfs-tools/scripts/local-bottom/cfs-setup-root 755"
	"usr/lib/initcpio/install/cfs-setup-root 644"
	"usr/lib/initcpio/hooks/cfs-setup-root 644"
	"usr/share/man/man8/cfs-setup-root.8 644"
	"usr/share/man/man5/cfs-setup-root.conf.5 644"
	"usr/share/doc/cfs-setup-root/README.md 644"
	"usr/share/doc/cfs-setup-root/CHANGELOG.md 644"
	"usr/share/doc/cfs-setup-root/LICENSE-MIT 644"
	"usr/share/doc/cfs-setup-root/LICENSE-APACHE 644"
	"usr/share/doc/cfs-setup-root/examples/setup-root-conf.toml 644"
)
LINK=usr/lib/systemd/system/initrd-root-fs.target.wants/cfs-setup-root.service
# The files that name the binary's path.
RUNNERS=(usr/lib/systemd/system/cfs-setup-root.service
	usr/lib/dracut/modules.d/50cfs-setup-root/module-setup.sh
	usr/share/initramfs-tools/hooks/cfs-setup-root
	usr/share/initramfs-tools/scripts/local-bottom/cfs-setup-root
	usr/lib/initcpio/install/cfs-setup-root
	usr/lib/initcpio/hooks/cfs-setup-root)

# --- make install / uninstall, PREFIX=/usr ----------------------------------
D=$T/root
if ! make -s install DESTDIR="$D" PREFIX=/usr BIN="$BIN" >"$T/log" 2>&1; then
	fail make-install "$(tail -n 5 "$T/log")"
else
	bad=
	for entry in "${FILES[@]}"; do
		read -r path mode <<<"$entry"
		if [ ! -f "$D/$path" ]; then bad+=" missing:$path"
		elif [ "$(stat -c %a "$D/$path")" != "$mode" ]; then bad+=" mode:$path=$(stat -c %a "$D/$path")"; fi
	done
	[ "$(readlink "$D/$LINK")" = ../cfs-setup-root.service ] && [ -f "$D/$LINK" ] || bad+=" link:$LINK"
	cmp -s "$BIN" "$D/usr/bin/cfs-setup-root" || bad+=" binary-differs"
	for f in "${RUNNERS[@]}"; do grep -q '/usr/bin/cfs-setup-root' "$D/$f" || bad+=" no-binary-path:$f"; done
	grep -q '^Documentation=man:cfs-setup-root(8)' "$D/usr/lib/systemd/system/cfs-setup-root.service" ||
		bad+=" unit-Documentation"
	# Nothing but the listed files and the link.
	extra=$(cd "$D" && find . ! -type d | sed 's|^\./||' | sort | grep -vxF -f <(printf '%s\n' "${FILES[@]%% *}" "$LINK"))
	[ -z "$extra" ] || bad+=" unexpected:$(echo $extra)"
	[ -z "$bad" ] && ok make-install-prefix-usr || fail make-install-prefix-usr "$bad"

	make -s uninstall DESTDIR="$D" PREFIX=/usr >"$T/log" 2>&1 || fail make-uninstall "$(tail -n 5 "$T/log")"
	left=$(cd "$D" && find . ! -type d)
	[ -z "$left" ] && [ ! -e "$D/usr/share/doc/cfs-setup-root" ] && [ ! -e "$D/usr/lib/dracut/modules.d/50cfs-setup-root" ] &&
		ok make-uninstall || fail make-uninstall "left: $(echo $left)"
fi

# --- the RPM spec's %files: what make install puts under PREFIX=/usr, less the
# initramfs-tools and mkinitcpio files and the licences (%license) -------------
spec=packaging/rpm/cfs-setup-root.spec
want=$(printf '%s\n' "${FILES[@]%% *}" "$LINK" | grep -v -e initramfs-tools -e initcpio -e LICENSE- |
	sed 's|^|/|; s|^/usr/share/man/\(.*\)|/usr/share/man/\1*|' | sort)
got=$(sed -n '/^%files/,/^%changelog/p' "$spec" | grep '^%{' |
	sed -e 's|%{_bindir}|/usr/bin|; s|%{_prefix}|/usr|; s|%{_mandir}|/usr/share/man|' \
		-e 's|%{_docdir}/%{name}|/usr/share/doc/cfs-setup-root|' | sort)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml)
if [ "$want" != "$got" ]; then
	fail rpm-spec-files "$(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | tr '\n' ' ')"
elif ! grep -q "^Version: *$version\$" "$spec"; then
	fail rpm-spec-files "Version is not $version"
else
	ok rpm-spec-files
fi

# --- PREFIX=/usr/local: the binary moves, the generator files do not ----------
D=$T/local
if make -s install DESTDIR="$D" BIN="$BIN" >"$T/log" 2>&1; then
	bad=
	[ -x "$D/usr/local/bin/cfs-setup-root" ] || bad+=" no /usr/local/bin/cfs-setup-root"
	[ -f "$D/usr/local/share/man/man8/cfs-setup-root.8" ] || bad+=" no man page under /usr/local"
	for f in "${RUNNERS[@]}"; do
		grep -q '/usr/local/bin/cfs-setup-root' "$D/$f" || bad+=" $f does not name /usr/local/bin"
		grep -q '/usr/bin/cfs-setup-root' "$D/$f" && bad+=" $f still names /usr/bin"
	done
	[ -z "$bad" ] && ok make-install-prefix-default || fail make-install-prefix-default "$bad"
else
	fail make-install-prefix-default "$(tail -n 5 "$T/log")"
fi

# --- ARCH ----------------------------------------------------------------------
if make -s build ARCH=sparc64 >"$T/log" 2>&1; then
	fail make-arch-unknown "ARCH=sparc64 accepted"
elif grep -q 'not supported' "$T/log"; then ok make-arch-unknown
else fail make-arch-unknown "$(tail -n 2 "$T/log")"; fi
other=arm64
[ "$(dpkg --print-architecture)" = arm64 ] && other=amd64
# make deb ARCH=<the other one>: the cross-built static binary (build-aux/cross-build)
# in a package of that architecture. CFS_INSTALL_CROSS=0 (tests/run --no-vm) skips it:
# the cross toolchain root is made by the VM tier's run.
machine=AArch64
[ $other = amd64 ] && machine=X86-64
if [ "${CFS_INSTALL_CROSS:-1}" = 0 ]; then
	echo "SKIP  make-deb-$other: CFS_INSTALL_CROSS=0 (the cross toolchain root is not made without the VM tier)"
elif ! make -s deb ARCH=$other DEBDIR="$T/deb-$other" >"$T/log" 2>&1; then
	fail make-deb-$other "$(tail -n 5 "$T/log")"
else
	bad=
	deb=$(ls "$T/deb-$other"/cfs-setup-root_*_$other.deb 2>/dev/null | head -n 1)
	if [ -z "$deb" ]; then
		bad+=" no cfs-setup-root_*_$other.deb"
	else
		[ "$(dpkg-deb -f "$deb" Architecture)" = $other ] || bad+=" Architecture is not $other"
		dpkg-deb -x "$deb" "$T/x-$other"
		b=$T/x-$other/usr/bin/cfs-setup-root
		readelf -h "$b" 2>/dev/null | grep -q "Machine: *.*$machine" || bad+=" the binary is not $machine"
		readelf -d "$b" 2>/dev/null | grep -q NEEDED && bad+=" the binary is not static"
		echo "      $(basename "$deb"): $(stat -c %s "$deb") bytes, binary $(stat -c %s "$b") bytes"
	fi
	[ -z "$bad" ] && ok make-deb-$other || fail make-deb-$other "$bad"
fi

# --- make deb --------------------------------------------------------------------
DEBDIR=${2:-$T/deb}
if ! make -s deb BIN="$BIN" DEBDIR="$DEBDIR" >"$T/log" 2>&1; then
	fail make-deb "$(tail -n 5 "$T/log")"
else
	deb=$(ls "$DEBDIR"/cfs-setup-root_*_"$(dpkg --print-architecture)".deb)
	echo "      $(basename "$deb"): $(stat -c %s "$deb") bytes"
	bad=
	listing=$(dpkg-deb -c "$deb" | awk '{ print $1, $6 }' | sed 's| \./| |')
	for entry in "${FILES[@]}"; do
		read -r path mode <<<"$entry"
		case $path in
		usr/share/man/*) path=$path.gz ;;
		usr/share/doc/cfs-setup-root/CHANGELOG.md) path=usr/share/doc/cfs-setup-root/changelog.gz ;;
		usr/share/doc/cfs-setup-root/README.md) path=$path.gz ;;
		*/LICENSE-*) continue ;;
		esac
		grep -q " $path\$" <<<"$listing" || bad+=" missing:$path"
	done
	for path in usr/share/doc/cfs-setup-root/copyright usr/share/doc/cfs-setup-root/changelog.Debian.gz \
		"$LINK"; do
		grep -q " $path" <<<"$listing" || bad+=" missing:$path"
	done
	grep -q '^-' <<<"$(dpkg-deb -c "$deb" | grep -v ' root/root ')" && bad+=" not-root-owned"
	dpkg-deb -e "$deb" "$T/ctl"
	for field in Package Version Architecture Maintainer Installed-Size Section Priority Description Recommends Built-Using; do
		grep -q "^$field: " "$T/ctl/control" || bad+=" control-lacks:$field"
	done
	grep -qx 'activate-noawait update-initramfs' "$T/ctl/triggers" || bad+=" no-update-initramfs-trigger"
	for s in postinst postrm; do sh -n "$T/ctl/$s" || bad+=" $s-syntax"; done
	dpkg-deb -x "$deb" "$T/x"
	(cd "$T/x" && md5sum --quiet -c "$T/ctl/md5sums") >/dev/null 2>&1 || bad+=" md5sums"
	grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' \
		"$T/x/usr/share/doc/cfs-setup-root/copyright" &&
		grep -q '^License: MIT or Apache-2.0' "$T/x/usr/share/doc/cfs-setup-root/copyright" || bad+=" copyright"
	[ -z "$bad" ] && ok make-deb || fail make-deb "$bad"

	if command -v lintian >/dev/null; then
		lintian --pedantic "$deb" >"$T/lintian" 2>&1
		grep -E '^[IN]: ' "$T/lintian" | sed 's/^/      lintian /'
		if grep -qE '^[EW]: ' "$T/lintian"; then fail lintian "$(grep -E '^[EW]: ' "$T/lintian" | tr '\n' ' ')"
		else ok lintian; fi
	else
		fail lintian "lintian is not installed (tests/deps.txt)"
	fi
fi

echo "install: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
