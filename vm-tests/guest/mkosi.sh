# The disk a mkosi/build run made, worked on in the builder guest (sourced by
# /init with cfstest.mode=mkosi; vda is that disk, its root partition is
# labelled cfs-root). cfstest.build= names the step:
#   verity  mkosi.finalize wrote the repository without fs-verity (the build
#           host's kernel may have none): enable it on every object (the
#           images are objects too) and then on meta.json, which makes the
#           repository a secure one; each image must measure as its name
#           (part of mkosi/build, not only of the tests)
#   test    the mkosi tier's addition: image B, a small tree made here
#           (busybox and a marker) stored by cfsctl in the now secure
#           repository, so it has fs-verity too; its digest is the one the
#           tests try to get past the signed UKI
# Digests go to the console as "CFSTEST-DIGEST NAME HEX" lines.

what=$(karg cfstest.build)
ok=1
step() {
	echo "CFSTEST: $*"
	"$@" || { ok=0; echo "CFSTEST: failed: $*"; }
}

part=
i=0
while [ -z "$part" ] && [ $i -lt 50 ]; do
	part=$(findfs LABEL=cfs-root 2>/dev/null) || sleep 0.1
	i=$((i + 1))
done
mkdir -p /mnt/a
step mount -t ext4 "$part" /mnt/a
repo=/mnt/a/composefs

case $what in
verity)
	alg=$(grep -o 'fsverity-sha[0-9]*' "$repo/meta.json" | head -n1)
	alg=${alg#fsverity-}
	t0=$(date +%s)
	n=$(find "$repo/objects" -type f | verity-enable "$alg") || ok=0
	step verity-enable "$alg" <<-EOF
		$repo/meta.json
	EOF
	echo "CFSTEST: fs-verity ($alg) on ${n:-?} objects took $(($(date +%s) - t0)) s"
	for img in "$repo"/images/*; do
		[ -L "$img" ] || continue
		hex=${img##*/}
		m=$(fsverity measure "$(readlink -f "$img")")
		case $m in
		"$alg:$hex "*) echo "CFSTEST-DIGEST ROOT $hex" ;;
		*) ok=0; echo "CFSTEST: image $hex measures as $m" ;;
		esac
	done
	;;
test)
	t=/tmp/image-b
	mkdir -p "$t/usr/bin" "$t/usr/share/cfstest" "$t/etc" "$t/boot" "$t/sysroot"
	cp /bin/busybox "$t/usr/bin/busybox"
	echo B >"$t/usr/share/cfstest/variant"
	find "$t" -exec touch -h -d @1700000000 {} +
	out=$(cfsctl --repo "$repo" create-image --bootable "$t" 2>/tmp/err) ||
		{ ok=0; echo "CFSTEST: create-image B failed: $(cat /tmp/err)"; }
	hex=${out##*:}
	fsverity measure "$(readlink -f "$repo/images/$hex")" | grep -q ":$hex " ||
		{ ok=0; echo "CFSTEST: image B has no fs-verity"; }
	echo "CFSTEST-DIGEST B $hex"
	;;
*)
	ok=0
	echo "CFSTEST: unknown cfstest.build=$what"
	;;
esac
umount /mnt/a

if [ $ok = 1 ]; then
	echo "CFSTEST-RESULT: PASS build-$what"
else
	echo "CFSTEST-RESULT: FAIL build-$what: see the console above"
fi
