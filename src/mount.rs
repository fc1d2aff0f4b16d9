//! Owned-fd wrappers over the new mount API: fsopen/fsconfig/fsmount, move_mount,
//! open_tree, mount_setattr and umount2.
//!
//! Every mount we make starts detached: an `FsContext` is configured, then turned into a
//! `Mount` (an fd naming a mount that is attached nowhere). A detached mount tree is freed
//! by the kernel when its last fd closes, so a failure before a mount is attached needs no
//! cleanup at all. Attaching is one `move_mount`, and its inverse is one lazy unmount.
//!
//! When fsconfig refuses a key, the kernel usually says why in the context's message
//! buffer ("e overlay: ..."); `FsContext` collects those messages into the error.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, StatxFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, FsPickFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
    UnmountFlags,
};

/// A failed mount-API call: what was tried, the errno, and what the kernel said about it.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A syscall failed.
    #[error("{what}: {}{}", std::io::Error::from(*errno), KernelSays(kernel))]
    Syscall {
        /// What was tried, with its arguments ("fsconfig overlay lowerdir+=...").
        what: String,
        /// The error number.
        errno: Errno,
        /// Messages from the filesystem context's log, if any.
        kernel: Vec<String>,
    },
    /// Another mount covers ours: unmounting by path would take that one instead.
    #[error(
        "{} is covered by another mount (id {top}) stacked on ours (id {ours}) since: left in place",
        at.display()
    )]
    Covered {
        /// The mount point.
        at: std::path::PathBuf,
        /// Our mount's id.
        ours: u64,
        /// The id of the mount on top.
        top: u64,
    },
}

/// The mount id (`STATX_MNT_ID`) of the mount `path` resolves to from `dir`.
fn mount_id<P: rustix::path::Arg>(dir: impl AsFd, path: P, flags: AtFlags) -> Result<u64, Errno> {
    rustix::fs::statx(dir, path, flags, StatxFlags::MNT_ID).map(|st| st.stx_mnt_id)
}

impl MountError {
    /// The errno of the failed call.
    pub fn errno(&self) -> Errno {
        match self {
            MountError::Syscall { errno, .. } => *errno,
            MountError::Covered { .. } => Errno::BUSY,
        }
    }

    fn syscall(what: String, errno: Errno) -> Self {
        MountError::Syscall {
            what,
            errno,
            kernel: Vec::new(),
        }
    }
}

struct KernelSays<'a>(&'a [String]);

impl fmt::Display for KernelSays<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, " (kernel: {})", self.0.join("; "))
    }
}

/// A filesystem context from `fsopen`, being configured.
pub struct FsContext {
    fd: OwnedFd,
    fstype: &'static str,
}

impl FsContext {
    /// `fsopen(fstype)`. The kernel loads the filesystem module on demand.
    pub fn new(fstype: &'static str) -> Result<Self, MountError> {
        let fd = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| {
            MountError::syscall(
                format!("fsopen {fstype} (is the {fstype} module available?)"),
                e,
            )
        })?;
        Ok(FsContext { fd, fstype })
    }

    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
    pub fn set_string(&self, key: &str, value: &str) -> Result<(), MountError> {
        rustix::mount::fsconfig_set_string(&self.fd, key, value)
            .map_err(|e| self.error(format!("fsconfig {} {key}={value}", self.fstype), e))
    }

    /// `fsconfig(FSCONFIG_SET_FLAG, key)`.
    pub fn set_flag(&self, key: &str) -> Result<(), MountError> {
        rustix::mount::fsconfig_set_flag(&self.fd, key)
            .map_err(|e| self.error(format!("fsconfig {} {key}", self.fstype), e))
    }

    /// `fsconfig(FSCONFIG_SET_FD, key, fd)`; `what` names the fd's target for messages.
    pub fn set_fd(&self, key: &str, fd: BorrowedFd<'_>, what: &str) -> Result<(), MountError> {
        rustix::mount::fsconfig_set_fd(&self.fd, key, fd)
            .map_err(|e| self.error(format!("fsconfig {} {key}=fd({what})", self.fstype), e))
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)`: create the superblock (without mounting it).
    pub fn create(&self) -> Result<(), MountError> {
        rustix::mount::fsconfig_create(&self.fd)
            .map_err(|e| self.error(format!("creating the {} superblock", self.fstype), e))
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)` then `fsmount`: a new detached mount.
    pub fn mount(self, attrs: MountAttrFlags) -> Result<Mount, MountError> {
        self.create()?;
        let fd = rustix::mount::fsmount(&self.fd, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
            .map_err(|e| self.error(format!("fsmount {}", self.fstype), e))?;
        Ok(Mount { fd })
    }

    /// Builds an error carrying whatever the kernel logged to this context.
    fn error(&self, what: String, errno: Errno) -> MountError {
        MountError::Syscall {
            what,
            errno,
            kernel: self.drain_messages(),
        }
    }

    /// Reads the context's message buffer: one message per read, until it is empty.
    fn drain_messages(&self) -> Vec<String> {
        let mut messages = Vec::new();
        let mut buf = [0u8; 1024];
        // The kernel keeps at most 8 messages; bound the loop anyway.
        for _ in 0..16 {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n.min(buf.len())]);
                    // Each message starts with its kind: "e " error, "w " warning, "i " info.
                    let text = text.trim_end();
                    let text = text
                        .strip_prefix("e ")
                        .or_else(|| text.strip_prefix("w "))
                        .or_else(|| text.strip_prefix("i "))
                        .unwrap_or(text);
                    messages.push(text.to_string());
                }
            }
        }
        messages
    }
}

/// An fd naming a mount: detached (from `fsmount` or `open_tree(OPEN_TREE_CLONE)`) until
/// `attach` moves it somewhere. Dropping a detached mount's last fd unmounts it.
#[derive(Debug)]
pub struct Mount {
    fd: OwnedFd,
}

impl Mount {
    /// `open_tree(dirfd, path, OPEN_TREE_CLONE)`: a detached copy of the mount at `path`
    /// (not of mounts beneath it).
    pub fn clone_of(dirfd: BorrowedFd<'_>, path: &str, what: &str) -> Result<Mount, MountError> {
        Self::clone_tree(dirfd, path, false, what)
    }

    /// `open_tree(dirfd, path, OPEN_TREE_CLONE [| AT_RECURSIVE])`: a detached copy of the
    /// mount at `path`, with the mounts beneath it when `recursive` (`mount --rbind`).
    pub fn clone_tree(
        dirfd: BorrowedFd<'_>,
        path: &str,
        recursive: bool,
        what: &str,
    ) -> Result<Mount, MountError> {
        let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        if path.is_empty() {
            flags |= OpenTreeFlags::AT_EMPTY_PATH;
        }
        if recursive {
            flags |= OpenTreeFlags::AT_RECURSIVE;
        }
        let fd = rustix::mount::open_tree(dirfd, path, flags)
            .map_err(|e| MountError::syscall(format!("open_tree clone of {what}"), e))?;
        Ok(Mount { fd })
    }

    /// `move_mount` this mount onto `path` relative to `dirfd` (or onto `dirfd` itself when
    /// `path` is empty). Mounting onto a detached tree needs Linux 6.15.
    pub fn attach(&self, dirfd: BorrowedFd<'_>, path: &str, what: &str) -> Result<(), MountError> {
        let mut flags = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH;
        if path.is_empty() {
            flags |= MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
        }
        rustix::mount::move_mount(&self.fd, "", dirfd, path, flags)
            .map_err(|e| MountError::syscall(format!("move_mount onto {what}"), e))
    }

    /// Make this mount (only this one, not the superblock) read-only.
    pub fn set_readonly(&self, what: &str) -> Result<(), MountError> {
        self.set_attributes(MountAttributes::READ_ONLY, false, what)
    }

    /// `mount_setattr` on this mount, and on every mount beneath it when `recursive`.
    pub fn set_attributes(
        &self,
        attrs: MountAttributes,
        recursive: bool,
        what: &str,
    ) -> Result<(), MountError> {
        mount_setattr(self.fd.as_fd(), attrs, recursive).map_err(|e| {
            MountError::syscall(format!("mount_setattr ({}) on {what}", attrs.describe()), e)
        })
    }

    /// Unmounts this mount, attached at `at` (`umount2(at, MNT_DETACH)`), only if it is the
    /// mount on top there: a path names the top of a stack of mounts (even
    /// `/proc/self/fd/N` of a covered mount does), so whatever someone else stacked on ours
    /// since is left alone and reported instead of being unmounted in its place.
    pub fn unmount(&self, at: &Path) -> Result<(), MountError> {
        let what = || format!("unmount {}", at.display());
        let ours = mount_id(self.fd.as_fd(), "", AtFlags::EMPTY_PATH)
            .map_err(|e| MountError::syscall(what(), e))?;
        let top =
            mount_id(CWD, at, AtFlags::empty()).map_err(|e| MountError::syscall(what(), e))?;
        if ours != top {
            return Err(MountError::Covered {
                at: at.to_path_buf(),
                ours,
                top,
            });
        }
        rustix::mount::unmount(at, UnmountFlags::DETACH).map_err(|e| MountError::syscall(what(), e))
    }

    /// A second fd naming the same mount (one `dup`: the mount itself is not copied).
    pub fn try_clone(&self) -> std::io::Result<Mount> {
        Ok(Mount {
            fd: self.fd.try_clone()?,
        })
    }

    /// The mount's root directory as an fd, usable as a dirfd or an overlay layer.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `/proc/self/fd/N`: the path of an open fd, resolvable by the kernel while it is open.
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// What a `mount_setattr` call changes: flags to set and clear, and a new propagation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountAttributes {
    /// `MOUNT_ATTR_*` flags to set.
    pub set: MountAttrFlags,
    /// `MOUNT_ATTR_*` flags to clear.
    pub clear: MountAttrFlags,
    /// Make the mounts private (no propagation to or from any peer group).
    pub private: bool,
}

impl Default for MountAttributes {
    fn default() -> Self {
        MountAttributes {
            set: MountAttrFlags::empty(),
            clear: MountAttrFlags::empty(),
            private: false,
        }
    }
}

impl MountAttributes {
    /// Read-only, nothing else.
    pub const READ_ONLY: MountAttributes = MountAttributes {
        set: MountAttrFlags::MOUNT_ATTR_RDONLY,
        clear: MountAttrFlags::empty(),
        private: false,
    };

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.set.contains(MountAttrFlags::MOUNT_ATTR_RDONLY) {
            parts.push("read-only");
        }
        if self.clear.contains(MountAttrFlags::MOUNT_ATTR_RDONLY) {
            parts.push("writable");
        }
        if self.private {
            parts.push("private");
        }
        parts.join(", ")
    }
}

/// `MS_PRIVATE` from `<linux/mount.h>`: the one propagation type `mount_setattr` takes that
/// we use.
const MS_PRIVATE: u64 = 1 << 18;

/// `struct mount_attr` from `<linux/mount.h>` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
static_assertions::assert_eq_size!(MountAttr, [u8; 32]);

fn mount_setattr(fd: BorrowedFd<'_>, attrs: MountAttributes, recursive: bool) -> Result<(), Errno> {
    raw_mount_setattr(
        fd,
        &MountAttr {
            attr_set: u64::from(attrs.set.bits()),
            attr_clr: u64::from(attrs.clear.bits()),
            propagation: if attrs.private { MS_PRIVATE } else { 0 },
            userns_fd: 0,
        },
        recursive,
    )
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], attr, sizeof attr)`. rustix has no
/// wrapper for it.
fn raw_mount_setattr(fd: BorrowedFd<'_>, attr: &MountAttr, recursive: bool) -> Result<(), Errno> {
    let empty = CString::default();
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: mount_setattr reads `size_of::<MountAttr>()` bytes from `attr`, which is a
    // valid, initialised `#[repr(C)]` struct of exactly that size (asserted above); `empty`
    // is a valid NUL-terminated string; `fd` is open for the duration of the call. The
    // kernel writes nothing back.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL))
    }
}

/// Makes the superblock of the mount `root` names read-only or writable
/// (`fspick(root, "", FSPICK_EMPTY_PATH)`, the VFS flag `ro` or `rw`, then
/// `FSCONFIG_CMD_RECONFIGURE`): what `mount -o remount,rw` does to the filesystem, leaving
/// every mount's own read-only flag alone. `root` must be the root of a mount.
pub fn reconfigure_superblock(
    root: BorrowedFd<'_>,
    readonly: bool,
    what: &str,
) -> Result<(), MountError> {
    let flag = if readonly { "ro" } else { "rw" };
    let fd = rustix::mount::fspick(
        root,
        "",
        FsPickFlags::FSPICK_EMPTY_PATH | FsPickFlags::FSPICK_CLOEXEC,
    )
    .map_err(|e| MountError::syscall(format!("fspick {what}"), e))?;
    let ctx = FsContext {
        fd,
        fstype: "superblock",
    };
    ctx.set_flag(flag)?;
    rustix::mount::fsconfig_reconfigure(&ctx.fd)
        .map_err(|e| ctx.error(format!("remounting {what} {flag} (reconfigure)"), e))
}
