# shellcheck shell=bash
# The small root trees the fast tier turns into composefs images.
#
#   A  the main sha256 image: busybox and an init script, so a guest can
#      switch_root into it and check the root from inside
#   B  a sha256 image whose image file and objects get no fs-verity
#      (content shares no object with A, so stripping B leaves A intact)
#   C  the sha512 repository's image
#
# Content is generated, the same on every run, with sizes that exercise
# inline files (<= 64 bytes), one block, several blocks and an empty file.
# /usr/share/cfstest/MANIFEST holds the sha256 of every file the guests
# read back.

# tree_make DIR VARIANT
tree_make() {
	local t=$1 v=$2
	mkdir -p "$t"/{usr/bin,usr/lib/cfstest,usr/share/cfstest/data,etc/cfstest,var,sysroot,proc,sys,dev,run,tmp,tamper}
	printf '%s\n' "$v" >"$t/usr/share/cfstest/variant"
	printf 'cfstest-%s\n' "$v" >"$t/etc/hostname"
	printf 'variant = "%s"\n' "$v" >"$t/etc/cfstest/base.conf"
	: >"$t/usr/share/cfstest/data/empty"
	printf 'inline file of image %s\n' "$v" >"$t/usr/share/cfstest/data/inline"
	tree_bytes "$v-block" 4096 >"$t/usr/share/cfstest/data/block"
	tree_bytes "$v-large" 300000 >"$t/usr/share/cfstest/data/large"
	tree_bytes "$v-odd" 12345 >"$t/usr/share/cfstest/data/odd"
	ln -s data/large "$t/usr/share/cfstest/large-link"
	ln "$t/usr/share/cfstest/data/odd" "$t/usr/share/cfstest/odd-hardlink"
	chmod 0640 "$t/usr/share/cfstest/data/odd"
	# Two objects the tamper boot swaps under the image.
	tree_bytes "$v-victim1" 20000 >"$t/tamper/victim1"
	tree_bytes "$v-victim2" 20000 >"$t/tamper/victim2"
	tree_bytes "$v-control" 20000 >"$t/tamper/control"
	if [ "$v" != B ]; then
		cp /bin/busybox "$t/usr/bin/busybox"
		cp "$VM_TESTS/guest/image-init" "$t/usr/lib/cfstest/init"
		chmod 0755 "$t/usr/lib/cfstest/init"
	fi
	(cd "$t" && find usr/share/cfstest/data etc/cfstest tamper -type f -print0 | sort -z |
		xargs -0 sha256sum) >"$t/usr/share/cfstest/MANIFEST"
	# Fixed times: the same tree gives the same image digest on every run.
	find "$t" -exec touch -h -d @1700000000 {} +
}

# tree_bytes SEED SIZE: SIZE bytes that depend only on SEED (a sha256
# counter stream).
tree_bytes() {
	/usr/bin/python3 -c '
import hashlib, sys
seed, size = sys.argv[1].encode(), int(sys.argv[2])
out, i = bytearray(), 0
while len(out) < size:
    out += hashlib.sha256(seed + i.to_bytes(8, "little")).digest()
    i += 1
sys.stdout.buffer.write(bytes(out[:size]))
' "$1" "$2"
}
