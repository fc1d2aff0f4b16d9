//! cfs-setup-root: turn `/sysroot` into a verified composefs root in the initramfs.

pub mod cmdline;
pub mod config;
pub mod digest;
