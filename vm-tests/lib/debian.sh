# shellcheck shell=bash
# Debian trixie packages without touching the host's apt: a private apt
# configuration under the cache, whose only source is the host's own Debian
# mirror (read from /etc/apt at run time, so no host name is written here)
# with the suite replaced by trixie.

GUEST_SUITE=${CFS_VM_SUITE:-trixie}

# debian_mirror: the URI of the host's Debian archive source (not -security,
# not a third-party repository). CFS_VM_MIRROR overrides it.
debian_mirror() {
	if [ -n "${CFS_VM_MIRROR:-}" ]; then
		printf '%s\n' "$CFS_VM_MIRROR"
		return
	fi
	local f uri
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		case $f in
		*.sources)
			# deb822: take the URIs of stanzas that are Types: deb and enabled.
			uri=$(awk '
				BEGIN { RS = ""; FS = "\n" }
				{
					deb = 0; on = 1; u = ""
					for (i = 1; i <= NF; i++) {
						if ($i ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb = 1
						if ($i ~ /^Enabled:[ \t]*no/) on = 0
						if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); u = $i }
					}
					if (deb && on && u != "") print u
				}' "$f" | tr ' ' '\n')
			;;
		*)
			uri=$(sed -nE 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "$f")
			;;
		esac
		# The archive proper ends in /debian; -security and others do not.
		uri=$(printf '%s\n' "$uri" | grep -E '/debian/?$' | head -n1)
		if [ -n "$uri" ]; then
			printf '%s\n' "${uri%/}"
			return
		fi
	done
	die "no Debian archive source in /etc/apt; set CFS_VM_MIRROR"
}

# debian_apt_setup: the private apt tree for $GUEST_SUITE (debian_apt_make);
# sets APT_CONFIG_FILE and DEBIAN_MIRROR.
debian_apt_setup() {
	debian_apt_make "$GUEST_SUITE"
	APT_CONFIG_FILE=$APT_CONFIG_OUT
}

# debian_apt_make SUITE [ARCH]: create the private apt tree for SUITE (and
# the Debian architecture ARCH, amd64 by default) and refresh its lists when
# they are missing or older than a day. Sets APT_CONFIG_OUT (its apt.conf)
# and DEBIAN_MIRROR.
debian_apt_make() {
	local suite=$1 arch=${2:-amd64} mirror dir conf
	mirror=$(debian_mirror)
	dir=$VM_CACHE/apt-$suite-$(key_of "$mirror")
	[ "$arch" = amd64 ] || dir=$VM_CACHE/apt-$suite-$arch-$(key_of "$mirror")
	conf=$dir/apt.conf
	DEBIAN_MIRROR=$mirror
	mkdir -p "$dir"/etc/{preferences.d,apt.conf.d,sources.list.d} "$dir"/state/lists/partial \
		"$dir"/cache/archives/partial
	printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
		"$mirror" "$suite" >"$dir/etc/sources.list"
	cat >"$conf" <<-EOF
		Dir::Etc "$dir/etc";
		Dir::Etc::SourceList "$dir/etc/sources.list";
		Dir::Etc::SourceParts "$dir/etc/sources.list.d";
		Dir::Etc::Preferences "$dir/etc/preferences";
		Dir::Etc::PreferencesParts "$dir/etc/preferences.d";
		Dir::Etc::Parts "$dir/etc/apt.conf.d";
		Dir::State "$dir/state";
		Dir::State::status "/dev/null";
		Dir::Cache "$dir/cache";
		APT::Architecture "$arch";
		APT::Architectures { "$arch"; };
		APT::Sandbox::User "root";
		Acquire::Languages "none";
	EOF
	if [ -z "$(find "$dir/state/lists" -maxdepth 1 -name '*_Packages' -mmin -1440 2>/dev/null)" ]; then
		say "apt-get update ($suite $arch, private configuration)"
		APT_CONFIG=$conf apt-get update -qq >&2 || die "apt-get update for $suite failed"
	fi
	APT_CONFIG_OUT=$conf
}

# guest_apt CMD ARG...: run an apt command against the private trixie lists.
guest_apt() { APT_CONFIG=$APT_CONFIG_FILE "$@"; }

# debian_version PKG: the candidate version of PKG in $GUEST_SUITE.
debian_version() {
	guest_apt apt-cache policy "$1" | awk '/Candidate:/ { print $2 }'
}

# debian_download DIR PKG...: download the candidate .debs of PKG... into
# DIR (kept there; callers key DIR by the versions).
debian_download() {
	local dir=$1
	shift
	(cd "$dir" && guest_apt apt-get download -qq "$@" >&2) || die "apt-get download $* failed"
}
