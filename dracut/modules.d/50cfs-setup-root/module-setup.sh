#!/bin/bash
# dracut module: cfs-setup-root, the composefs root setup for a systemd
# initramfs. Installs the static binary, its initrd unit with a static
# initrd-root-fs.target.wants link (dracut 109+ leaves $systemdsystemconfdir
# empty in generic images, and mkosi's initrd presets disable enabled
# units), the config file when the system has one, and the kernel modules
# the setup may need.

# Included whenever the binary is installed.
check() {
    require_binaries /usr/bin/cfs-setup-root || return 1
    return 0
}

# The unit is a systemd initrd unit.
depends() {
    echo systemd
    return 0
}

installkernel() {
    # erofs for the image, overlay for the root and /etc, loop for kernels
    # that cannot mount erofs from a file. Some may be built in.
    hostonly='' instmods erofs overlay loop
    # The TPM drivers, for the PCR 15 measurement (built in on Debian; missing
    # ones are skipped).
    hostonly='' instmods tpm_tis tpm_crb
}

install() {
    inst_binary /usr/bin/cfs-setup-root
    inst_simple "$systemdsystemunitdir/cfs-setup-root.service"
    mkdir -p "${initdir}${systemdsystemunitdir}/initrd-root-fs.target.wants"
    ln_r "$systemdsystemunitdir/cfs-setup-root.service" \
        "$systemdsystemunitdir/initrd-root-fs.target.wants/cfs-setup-root.service"
    # The peer forgets this (composefs-rs#86): without it the initrd runs
    # with defaults whatever the system configured.
    if [[ -e "$dracutsysrootdir/usr/lib/composefs/setup-root-conf.toml" ]]; then
        inst_simple /usr/lib/composefs/setup-root-conf.toml
    fi
}
