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
pub fn superblock_readonly_in(mountinfo_text: &str, id: u64) -> Option<bool> {
    let mount = mountinfo(mountinfo_text).find(|m| m.id == id)?;
    Some(mount.super_options.split(',').any(|o| o == "ro"))
}

/// One line of `/proc/self/mountinfo` (proc_pid_mountinfo(5)): the fields this tool reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount ID (field 1).
    pub id: u64,
    /// Where it is mounted (field 5), escapes decoded.
    pub mount_point: String,
    /// The mount source (after ` - ` and the type), escapes decoded (`composefs:<hex>`).
    pub source: String,
    /// The superblock's options (`ro,...`).
    pub super_options: String,
}

/// The mounts of a mountinfo text, in its order (lines that do not parse are skipped): the
/// one mountinfo parser of this tool.
pub fn mountinfo(text: &str) -> impl DoubleEndedIterator<Item = MountInfo> + '_ {
    text.lines().filter_map(|line| {
        // After the optional fields: "-", the type, the source, the super options.
        let (mount, after) = line.split_once(" - ")?;
        let mut fields = mount.split(' ');
        let id = fields.next()?.parse().ok()?;
        let mount_point = unescape(fields.nth(3)?);
        let mut after = after.split(' ').skip(1);
        Some(MountInfo {
            id,
            mount_point,
            source: unescape(after.next()?),
            super_options: after.next()?.to_string(),
        })
    })
}

/// Decodes mountinfo's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0')));
        match octal.and_then(|n| u8::try_from(n).ok()) {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    #[test]
    fn mountinfo_fields_and_escapes() {
        let mounts: Vec<MountInfo> = mountinfo(MOUNTINFO).collect();
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[1].mount_point, "/sysroot");
        assert_eq!(mounts[1].source, "/dev/vda1");
        assert_eq!(mounts[1].super_options, "ro,seclabel");
        let escaped = "31 22 8:1 / /run/next\\040root rw - overlay composefs:bb ro\n";
        assert_eq!(
            mountinfo(escaped).next().unwrap().mount_point,
            "/run/next root"
        );
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
    }
}
