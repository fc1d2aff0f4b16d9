# Disk builder, sourced by /init with cfstest.mode=build. It runs in a guest
# because only the guest kernel has fs-verity: cfsctl writes the
# repositories here, so every object and image carries fs-verity exactly as
# on a real system. cfstest.build= names what to build:
#   fast  vda: sha256 repository with images A (verity) and B (no verity)
#         vdb: sha512 repository with image C
#   full  vda: sha256 repository with the Debian root from /import/root
# Digests go to /cfstest/digests.env on each disk and to the console as
# "CFSTEST-DIGEST NAME HEX" lines.

what=$(karg cfstest.build)
ok=1
step() {
	echo "CFSTEST: $*"
	"$@" || { ok=0; echo "CFSTEST: failed: $*"; }
}

# import REPO TREE NAME: create the image, record its digest and print it
# (the marker line goes to the console through stderr).
import() {
	local out hex
	out=$(cfsctl --repo "$1" create-image "$2" 2>/tmp/err) || {
		ok=0
		echo "CFSTEST: create-image $2 failed: $(cat /tmp/err)" >&2
		return 1
	}
	hex=${out##*:}
	echo "CFSTEST-DIGEST $3 $hex" >&2
	echo "DIGEST_$3=$hex" >>"$(dirname "$1")/cfstest/digests.env"
	echo "$hex"
}

# unverity FILE...: replace each file by a copy without fs-verity.
unverity() {
	for f in "$@"; do
		cp -p "$f" "$f.tmp" && mv "$f.tmp" "$f" || ok=0
	done
}

objects() { find "$1/objects" -type f | sort; }
object_path() { echo "$1/objects/$(echo "$2" | cut -c1-2)/$(echo "$2" | cut -c3-)"; }

case $what in
fast)
	mkdir -p /mnt/a /mnt/c
	step mount -t ext4 /dev/vda /mnt/a
	step mount -t ext4 /dev/vdb /mnt/c
	mkdir -p /mnt/a/cfstest /mnt/c/cfstest
	: >/mnt/a/cfstest/digests.env
	: >/mnt/c/cfstest/digests.env

	step cfsctl init --algorithm fsverity-sha256-12 /mnt/a/composefs
	a=$(import /mnt/a/composefs /mnt/a/import/A A)
	# The tamper boot swaps these two objects.
	v1=$(fsverity digest /mnt/a/import/A/tamper/victim1 | sed 's/^sha256:\([0-9a-f]*\).*/\1/')
	v2=$(fsverity digest /mnt/a/import/A/tamper/victim2 | sed 's/^sha256:\([0-9a-f]*\).*/\1/')
	printf 'VICTIM1=%s\nVICTIM2=%s\n' "$v1" "$v2" >/mnt/a/cfstest/victims.env
	[ -f "$(object_path /mnt/a/composefs "$v1")" ] || { ok=0; echo "CFSTEST: victim1 object missing"; }

	# B: everything its import adds loses fs-verity.
	objects /mnt/a/composefs >/tmp/before
	b=$(import /mnt/a/composefs /mnt/a/import/B B)
	objects /mnt/a/composefs >/tmp/after
	unverity $(grep -vxFf /tmp/before /tmp/after)
	fsverity measure "$(readlink -f "/mnt/a/composefs/images/$b")" >/dev/null 2>&1 &&
		{ ok=0; echo "CFSTEST: image B kept fs-verity"; }
	fsverity measure "$(readlink -f "/mnt/a/composefs/images/$a")" | grep -q "$a" ||
		{ ok=0; echo "CFSTEST: image A lost fs-verity"; }

	step cfsctl init --algorithm fsverity-sha512-12 /mnt/c/composefs
	c=$(import /mnt/c/composefs /mnt/c/import/C C)
	fsverity measure "$(readlink -f "/mnt/c/composefs/images/$c")" | grep -q "sha512:$c" ||
		{ ok=0; echo "CFSTEST: image C does not measure as sha512"; }

	rm -rf /mnt/a/import /mnt/c/import
	umount /mnt/a /mnt/c
	;;
full)
	mkdir -p /mnt/a
	step mount -t ext4 /dev/vda /mnt/a
	mkdir -p /mnt/a/cfstest
	: >/mnt/a/cfstest/digests.env
	step cfsctl init --algorithm fsverity-sha256-12 /mnt/a/composefs
	t0=$(date +%s)
	root=$(import /mnt/a/composefs /mnt/a/import/root ROOT)
	echo "CFSTEST: import took $(($(date +%s) - t0)) s"
	# Image B (soft reboot, TPM): the same root with another image name, so
	# only the image and one object are new.
	if [ -f /mnt/a/import/root/usr/lib/cfstest/image ]; then
		echo B >/mnt/a/import/root/usr/lib/cfstest/image
		t0=$(date +%s)
		import /mnt/a/composefs /mnt/a/import/root ROOT_B >/dev/null
		echo "CFSTEST: import of B took $(($(date +%s) - t0)) s"
		# A tampered entry: images/<T> leads to image A's object, whose
		# digest is not T (staging it must be refused).
		tampered=$(printf '%s' "$root" | tr 0-9a-f 1-9a-f0)
		ln -s "$(readlink "/mnt/a/composefs/images/$root")" "/mnt/a/composefs/images/$tampered"
		echo "CFSTEST-DIGEST TAMPERED $tampered" >&2
	fi
	rm -rf /mnt/a/import
	umount /mnt/a
	;;
*)
	ok=0
	echo "CFSTEST: unknown cfstest.build=$what"
	;;
esac

if [ $ok = 1 ]; then
	echo "CFSTEST-RESULT: PASS build-$what"
else
	echo "CFSTEST-RESULT: FAIL build-$what: see the console above"
fi
