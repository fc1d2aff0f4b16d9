# cfs-setup-root: build, install, uninstall, package.
#
#   make                        the static release binary (cargo build --release)
#   make install [DESTDIR=] [PREFIX=/usr/local]
#   make uninstall [DESTDIR=] [PREFIX=/usr/local]
#   make deb                    target/debian/cfs-setup-root_<version>-1_<arch>.deb
#   make man                    the man pages (roff, from man/*.scd, by scdoc)
#
# PREFIX follows the GNU convention: /usr/local by default, PREFIX=/usr for a
# distribution package (make deb uses /usr). It places what is found through
# $PATH and MANPATH: the binary ($(BINDIR)), the man pages and the
# documentation. The initramfs integration goes where each generator looks,
# whatever PREFIX is (systemd /usr/lib/systemd/system, dracut /usr/lib/dracut,
# initramfs-tools /usr/share/initramfs-tools, mkinitcpio /usr/lib/initcpio),
# and names the binary at $(BINDIR).
#
# ARCH (Debian names: amd64, arm64; default: this machine's) picks the binary:
# the native one is built with cargo, another by build-aux/cross-build ARCH.
# BIN=FILE installs a binary built elsewhere instead (nothing is built).
#
# Debug symbols: the release profile strips the binary (every byte lands in
# every initramfs). A packager who wants a -dbgsym package sets
#   CARGO_PROFILE_RELEASE_STRIP=false
# in the environment of make (cargo reads it; make passes it on and strips
# nothing itself), then lets dh_strip split the symbols off. (Add
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for source lines as well.)

PACKAGE := cfs-setup-root
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/$(PACKAGE)
# The generators' own directories (not under PREFIX: they look nowhere else).
UNITDIR ?= /usr/lib/systemd/system
DRACUTDIR ?= /usr/lib/dracut
INITRAMFSTOOLSDIR ?= /usr/share/initramfs-tools
INITCPIODIR ?= /usr/lib/initcpio

NATIVE_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
ARCH ?= $(NATIVE_ARCH)
TRIPLE_amd64 := x86_64-unknown-linux-gnu
TRIPLE_arm64 := aarch64-unknown-linux-gnu
TRIPLE := $(TRIPLE_$(ARCH))
ifeq ($(TRIPLE),)
$(error ARCH=$(ARCH) is not supported: use amd64 or arm64 (Debian architecture names))
endif

ifeq ($(origin BIN),undefined)
BIN := $(or $(CARGO_TARGET_DIR),target)/$(TRIPLE)/release/$(PACKAGE)
BUILD := build
else
BUILD :=
endif

# Reproducible dates (man pages, changelog.Debian, file times in the .deb):
# the last commit's, else now.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

INSTALL ?= install
CARGO ?= cargo
SCDOC ?= scdoc
MANPAGES := target/man/cfs-setup-root.8 target/man/cfs-setup-root.conf.5

# What names the binary's path, rewritten for BINDIR at install time.
SUBST := sed -e 's|/usr/bin/cfs-setup-root|$(BINDIR)/cfs-setup-root|g'

.PHONY: all build man install uninstall deb print-deb clean-deb
all: build man

build:
ifeq ($(ARCH),$(NATIVE_ARCH))
	$(CARGO) build --release
else
	@if [ ! -x build-aux/cross-build ]; then \
		echo "make: ARCH=$(ARCH) is not this machine's ($(NATIVE_ARCH)) and build-aux/cross-build is missing:" >&2; \
		echo "  build the binary elsewhere and pass it as BIN=FILE" >&2; exit 1; fi
	build-aux/cross-build $(ARCH)
endif

man: $(MANPAGES)

target/man/%: man/%.scd
	@mkdir -p target/man
	@command -v $(SCDOC) >/dev/null || { echo "make: $(SCDOC) is missing (apt-get install scdoc)" >&2; exit 1; }
	$(SCDOC) <$< >$@.tmp && mv $@.tmp $@

# The files, by destination (uninstall removes exactly these).
FILES := \
	$(BINDIR)/$(PACKAGE) \
	$(UNITDIR)/$(PACKAGE).service \
	$(UNITDIR)/initrd-root-fs.target.wants/$(PACKAGE).service \
	$(DRACUTDIR)/modules.d/50$(PACKAGE)/module-setup.sh \
	$(DRACUTDIR)/dracut.conf.d/50-$(PACKAGE).conf \
	$(INITRAMFSTOOLSDIR)/hooks/$(PACKAGE) \
	$(INITRAMFSTOOLSDIR)/scripts/local-bottom/$(PACKAGE) \
	$(INITCPIODIR)/install/$(PACKAGE) \
	$(INITCPIODIR)/hooks/$(PACKAGE) \
	$(MANDIR)/man8/cfs-setup-root.8 \
	$(MANDIR)/man5/cfs-setup-root.conf.5 \
	$(DOCDIR)/README.md \
	$(DOCDIR)/CHANGELOG.md \
	$(DOCDIR)/LICENSE-MIT \
	$(DOCDIR)/LICENSE-APACHE \
	$(DOCDIR)/examples/setup-root-conf.toml
# Directories of ours alone, removed by uninstall when empty.
DIRS := $(DOCDIR)/examples $(DOCDIR) $(DRACUTDIR)/modules.d/50$(PACKAGE)

install: $(BUILD) man
	@[ -x "$(BIN)" ] || { echo "make: no binary at $(BIN)" >&2; exit 1; }
	$(INSTALL) -D -m 0755 "$(BIN)" "$(DESTDIR)$(BINDIR)/$(PACKAGE)"
	$(INSTALL) -d "$(DESTDIR)$(UNITDIR)/initrd-root-fs.target.wants"
	$(SUBST) dracut/$(PACKAGE).service >"$(DESTDIR)$(UNITDIR)/$(PACKAGE).service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/$(PACKAGE).service"
	ln -sfn ../$(PACKAGE).service "$(DESTDIR)$(UNITDIR)/initrd-root-fs.target.wants/$(PACKAGE).service"
	$(INSTALL) -d "$(DESTDIR)$(DRACUTDIR)/modules.d/50$(PACKAGE)" "$(DESTDIR)$(DRACUTDIR)/dracut.conf.d"
	$(SUBST) dracut/modules.d/50$(PACKAGE)/module-setup.sh >"$(DESTDIR)$(DRACUTDIR)/modules.d/50$(PACKAGE)/module-setup.sh"
	chmod 0755 "$(DESTDIR)$(DRACUTDIR)/modules.d/50$(PACKAGE)/module-setup.sh"
	$(INSTALL) -m 0644 dracut/dracut.conf.d/50-$(PACKAGE).conf "$(DESTDIR)$(DRACUTDIR)/dracut.conf.d/"
	$(INSTALL) -d "$(DESTDIR)$(INITRAMFSTOOLSDIR)/hooks" "$(DESTDIR)$(INITRAMFSTOOLSDIR)/scripts/local-bottom"
	$(SUBST) initramfs-tools/hooks/$(PACKAGE) >"$(DESTDIR)$(INITRAMFSTOOLSDIR)/hooks/$(PACKAGE)"
	$(SUBST) initramfs-tools/scripts/local-bottom/$(PACKAGE) >"$(DESTDIR)$(INITRAMFSTOOLSDIR)/scripts/local-bottom/$(PACKAGE)"
	chmod 0755 "$(DESTDIR)$(INITRAMFSTOOLSDIR)/hooks/$(PACKAGE)" "$(DESTDIR)$(INITRAMFSTOOLSDIR)/scripts/local-bottom/$(PACKAGE)"
	$(INSTALL) -d "$(DESTDIR)$(INITCPIODIR)/install" "$(DESTDIR)$(INITCPIODIR)/hooks"
	$(SUBST) mkinitcpio/install/$(PACKAGE) >"$(DESTDIR)$(INITCPIODIR)/install/$(PACKAGE)"
	$(SUBST) mkinitcpio/hooks/$(PACKAGE) >"$(DESTDIR)$(INITCPIODIR)/hooks/$(PACKAGE)"
	chmod 0644 "$(DESTDIR)$(INITCPIODIR)/install/$(PACKAGE)" "$(DESTDIR)$(INITCPIODIR)/hooks/$(PACKAGE)"
	$(INSTALL) -D -m 0644 target/man/cfs-setup-root.8 "$(DESTDIR)$(MANDIR)/man8/cfs-setup-root.8"
	$(INSTALL) -D -m 0644 target/man/cfs-setup-root.conf.5 "$(DESTDIR)$(MANDIR)/man5/cfs-setup-root.conf.5"
	$(INSTALL) -d "$(DESTDIR)$(DOCDIR)/examples"
	$(INSTALL) -m 0644 README.md CHANGELOG.md LICENSE-MIT LICENSE-APACHE "$(DESTDIR)$(DOCDIR)/"
	$(INSTALL) -m 0644 examples/setup-root-conf.toml "$(DESTDIR)$(DOCDIR)/examples/"

uninstall:
	rm -f $(addprefix "$(DESTDIR),$(addsuffix ",$(FILES)))
	-rmdir $(addprefix "$(DESTDIR),$(addsuffix ",$(DIRS))) 2>/dev/null
	-rmdir "$(DESTDIR)$(UNITDIR)/initrd-root-fs.target.wants" 2>/dev/null

# --- the Debian package -------------------------------------------------------
# dpkg-deb over a `make install PREFIX=/usr` staging tree: the file list above is
# the package's; packaging/debian/ holds the maintainer scripts, the triggers and
# the copyright file.
DEBVERSION ?= $(VERSION)-1
DEBDIR ?= target/debian
DEB := $(DEBDIR)/$(PACKAGE)_$(DEBVERSION)_$(ARCH).deb
MAINTAINER ?= cfs-setup-root developers <cfs-setup-root@example.org>

print-deb:
	@echo $(DEB)

deb: $(BUILD) man
	BIN="$(BIN)" ARCH=$(ARCH) VERSION=$(DEBVERSION) OUT="$(DEB)" MAINTAINER="$(MAINTAINER)" \
		MAKE="$(MAKE)" packaging/debian/build-deb
