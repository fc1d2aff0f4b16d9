# shellcheck shell=bash
# The msrv tier: Cargo.toml's rust-version (1.85) proven by building the
# release binary with Debian trixie's own rustc and cargo, offline, from
# crates vendored on the host, in a copy of the full tier's trixie root.
#
# Cache layer:
#   msrv-root   the full tier's mmdebstrap root plus trixie's rustc and cargo
#               and what they depend on (.debs fetched through the private apt
#               configuration, installed with dpkg in the root; keyed by the
#               root and the two versions)
# The build itself runs on every run, in a throwaway directory bound into
# the root: nothing of it is cached.

MSRV_BOOTS=(msrv-trixie)
BOOT_CASES+=([msrv-trixie]="msrv-trixie-build")
MSRV_PACKAGES=(rustc cargo)

msrv_root_build() {
	local dir=$1 root=$1/root debs=$1/debs
	cp -a --reflink=auto "$FULL_ROOTFS/rootfs" "$root"
	mkdir -p "$debs/partial"
	# What the root lacks for rustc and cargo, resolved against its own
	# dpkg status, fetched into the layer (not into the host's apt).
	guest_apt apt-get install -y -qq --download-only --no-install-recommends \
		-o Dir::State::status="$root/var/lib/dpkg/status" \
		-o Dir::Cache::archives="$debs" "${MSRV_PACKAGES[@]}" >&2 ||
		die "apt-get download of ${MSRV_PACKAGES[*]} failed"
	mkdir -p "$root/msrv-debs"
	cp "$debs"/*.deb "$root/msrv-debs/"
	in_root "$root" sh -c 'dpkg -i /msrv-debs/*.deb' >"$dir/dpkg.log" 2>&1 ||
		{ tail -n 20 "$dir/dpkg.log"; return 1; }
	rm -rf "$root/msrv-debs" "$debs"
	in_root "$root" rustc --version >"$dir/rustc-version"
	in_root "$root" cargo --version >"$dir/cargo-version"
}

# msrv_prepare: the trixie root with rustc and cargo, built or reused.
msrv_prepare() {
	full_rootfs_prepare
	local versions=() p
	for p in "${MSRV_PACKAGES[@]}"; do versions+=("$p=$(debian_version "$p")"); done
	cached msrv-root "$(key_of "$(basename "$FULL_ROOTFS")" "${versions[*]}" \
		"$(declare -f msrv_root_build)")" msrv_root_build
	MSRV_ROOT=$CACHED
}

# msrv_build_case: copy this checkout, vendor its crates with the host's
# cargo, build the release binary with trixie's cargo --offline --locked.
msrv_build_case() {
	local run log=$LOG_DIR/msrv-trixie.log t0 verdict
	run=$(mktemp -d "$VM_CACHE/run-msrv.XXXXXX")
	t0=$(now)
	{
		echo "rust-version: $(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$REPO/Cargo.toml")"
		echo "toolchain: $(cat "$MSRV_ROOT/rustc-version"), $(cat "$MSRV_ROOT/cargo-version")"
	} >"$log"
	# The working tree as it is (tracked and new files), without build output.
	mkdir -p "$run/src"
	(cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
		cpio -pdm0 --quiet "$run/src") 2>>"$log"
	if (cd "$run/src" && cargo vendor --locked --quiet vendor) 2>>"$log" &&
		printf '%s\n' '[source.crates-io]' 'replace-with = "vendored-sources"' \
			'[source.vendored-sources]' 'directory = "vendor"' >>"$run/src/.cargo/config.toml" &&
		unshare --mount --propagation private sh -ec '
			root=$1 src=$2
			mount -t proc proc "$root/proc"
			mount --rbind /dev "$root/dev"
			mount -t tmpfs tmpfs "$root/tmp"
			mkdir "$root/tmp/src"
			mount --bind "$src" "$root/tmp/src"
			exec chroot "$root" sh -ec "
				cd /tmp/src
				CARGO_HOME=/tmp/cargo-home cargo build --release --offline --locked
				bin=target/x86_64-unknown-linux-gnu/release/cfs-setup-root
				\$bin --version"' sh "$MSRV_ROOT/root" "$run/src" >>"$log" 2>&1 &&
		grep -q '^cfs-setup-root ' "$log" &&
		file -L "$run/src/target/x86_64-unknown-linux-gnu/release/cfs-setup-root" >>"$log" &&
		! grep -q 'dynamically linked' "$log"; then
		verdict="CFSTEST-RESULT: PASS msrv-trixie-build"
	else
		verdict="CFSTEST-RESULT: FAIL msrv-trixie-build: trixie's cargo build --release failed: $(grep -E '^error' "$log" | head -n 1)"
	fi
	echo "$verdict" >>"$log"
	BOOT_SECONDS=$(elapsed "$t0")
	rm -rf "$run"
	report_boot msrv-trixie "$log" 0 "${BOOT_CASES[msrv-trixie]}"
}
