//! The physical root's filesystem as the initramfs left it: is its superblock read-only
//! (the kernel's `ro` argument; initramfs-tools mounts the root read-only unless `rw`), and
//! is its block device itself read-only (then nothing can make it writable).
//!
//! Read once, before planning: the plan remounts the superblock read-write when the state
//! needs writes and the device allows them, or falls back to transient `/etc` and `/var`.

use std::fmt;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, StatxFlags};

/// What the physical root's filesystem allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhysicalRoot {
    /// The filesystem (superblock) is mounted read-only: `ro` on the command line.
    pub superblock_readonly: bool,
    /// The block device under it is read-only (a write-protected disk, `blockdev --setro`,
    /// a read-only loop device or virtual disk).
    pub device_readonly: bool,
}

impl fmt::Display for PhysicalRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "filesystem {}, device {}",
            if self.superblock_readonly {
                "read-only"
            } else {
                "writable"
            },
            if self.device_readonly {
                "read-only"
            } else {
                "writable"
            }
        )
    }
}

/// Looks at the mount `root` names (the root of the physical root's mount).
pub fn survey(root: BorrowedFd<'_>) -> PhysicalRoot {
    let Ok(st) = rustix::fs::statx(
        root,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::MNT_ID | StatxFlags::BASIC_STATS,
    ) else {
        return PhysicalRoot::default();
    };
    let superblock_readonly = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|text| superblock_readonly_in(&text, st.stx_mnt_id))
        .unwrap_or_else(|| {
            // No mountinfo: statvfs says read-only for a read-only mount or superblock; taking
            // it as the superblock costs at most a remount that changes nothing.
            rustix::fs::fstatvfs(root)
                .map(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
                .unwrap_or(false)
        });
    let device_readonly = std::fs::read_to_string(format!(
        "/sys/dev/block/{}:{}/ro",
        st.stx_dev_major, st.stx_dev_minor
    ))
    .map(|v| v.trim() == "1")
    .unwrap_or(false);
    PhysicalRoot {
        superblock_readonly,
        device_readonly,
    }
}

/// In a `/proc/self/mountinfo` text, whether the superblock of mount `id` is read-only
/// (its super options start with `ro`); `None` when no line has that id.
pub fn superblock_readonly_in(mountinfo: &str, id: u64) -> Option<bool> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        if fields.next()?.parse::<u64>().ok()? != id {
            return None;
        }
        // After the optional fields: "-", the type, the source, the super options.
        let (_, after) = line.split_once(" - ")?;
        let super_options = after.split(' ').nth(2)?;
        Some(super_options.split(',').any(|o| o == "ro"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw
30 1 254:1 / /sysroot ro,relatime shared:7 - ext4 /dev/vda1 ro,seclabel
31 30 254:1 / /sysroot/sysroot ro master:7 - ext4 /dev/vda1 rw
40 1 0:40 / /run rw - tmpfs tmpfs rw,size=100k,mode=755
";

    #[test]
    fn superblock_flag_not_mount_flag() {
        assert_eq!(superblock_readonly_in(MOUNTINFO, 30), Some(true));
        // A read-only mount of a writable superblock is not a read-only superblock.
        assert_eq!(superblock_readonly_in(MOUNTINFO, 31), Some(false));
        assert_eq!(superblock_readonly_in(MOUNTINFO, 40), Some(false));
        assert_eq!(superblock_readonly_in(MOUNTINFO, 99), None);
        assert_eq!(superblock_readonly_in("garbage\n30", 30), None);
    }
}
