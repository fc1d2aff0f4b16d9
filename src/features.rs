//! What the running kernel can do, probed once at start rather than read from its version.
//!
//! Each probe asks the kernel the question directly and cheaply (an fsconfig key it may
//! reject, two tiny tmpfs mounts that are never attached), so one binary serves every kernel
//! from 6.6 on and picks the best mount path for it. Whether erofs mounts a regular file
//! (6.12) is not probed with a throw-away superblock: the erofs step asks with the real
//! image and binds a loop device only when the kernel answers ENOTBLK. Test-only overrides force each path so
//! the host tests can cover all of them on one kernel.

use std::fmt;
use std::os::fd::AsFd;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::MountAttrFlags;

use crate::mount::FsContext;

/// Kernel capabilities that decide the mount path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelFeatures {
    /// overlayfs knows `verity=` (6.6), and so data-only lower layers (6.5).
    pub overlay_verity: bool,
    /// overlayfs takes `lowerdir+` / `datadir+` one layer at a time (6.7).
    pub lowerdir_plus: bool,
    /// overlayfs takes layers as file descriptors (`FSCONFIG_SET_FD`, 6.13).
    pub fd_layers: bool,
    /// Mounts can be attached onto detached trees and used as layers while detached (6.15).
    pub detached_trees: bool,
}

impl KernelFeatures {
    /// Every feature present (a current kernel), for tests and dry runs.
    pub const ALL: KernelFeatures = KernelFeatures {
        overlay_verity: true,
        lowerdir_plus: true,
        fd_layers: true,
        detached_trees: true,
    };
}

impl fmt::Display for KernelFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "overlay verity {}, lowerdir+ {}, fd layers {}, detached trees {}",
            yn(self.overlay_verity),
            yn(self.lowerdir_plus),
            yn(self.fd_layers),
            yn(self.detached_trees)
        )
    }
}

/// How the mount tree is put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assembly {
    /// Everything built detached, layers passed as fds, one final `move_mount` (6.15+).
    Detached,
    /// The erofs attached to a private directory first; layers given with `lowerdir+`
    /// (as fds on 6.13+, else as `/proc/self/fd/N` paths); the root attached before the
    /// mounts beneath it (6.7+).
    AttachFirst,
    /// As `AttachFirst`, with one legacy `lowerdir=/proc/self/fd/A::/proc/self/fd/B`
    /// string (6.6).
    StringLowerdir,
}

impl Assembly {
    /// Name used in logs and by `--force-overlay`.
    pub fn name(self) -> &'static str {
        match self {
            Assembly::Detached => "detached",
            Assembly::AttachFirst => "attach-first",
            Assembly::StringLowerdir => "string-lowerdir",
        }
    }

    /// Parses a `--force-overlay` value.
    pub fn from_name(name: &str) -> Option<Assembly> {
        [
            Assembly::Detached,
            Assembly::AttachFirst,
            Assembly::StringLowerdir,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

/// Where the erofs superblock reads the image from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErofsBacking {
    /// The image file itself, or a loop device when the kernel refuses a file (ENOTBLK:
    /// before 6.12). The default.
    FileOrLoop,
    /// The image file itself (6.12+), no fallback (`--force-erofs file`).
    File,
    /// A read-only, autoclear loop device over the image.
    Loop,
}

impl ErofsBacking {
    /// Name used in logs and by `--force-erofs`.
    pub fn name(self) -> &'static str {
        match self {
            ErofsBacking::FileOrLoop => "file-or-loop",
            ErofsBacking::File => "file",
            ErofsBacking::Loop => "loop",
        }
    }

    /// Parses a `--force-erofs` value.
    pub fn from_name(name: &str) -> Option<ErofsBacking> {
        [ErofsBacking::File, ErofsBacking::Loop]
            .into_iter()
            .find(|b| b.name() == name)
    }
}

/// The chosen mount path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountStrategy {
    /// How the tree is assembled.
    pub assembly: Assembly,
    /// How erofs reads the image.
    pub erofs: ErofsBacking,
    /// Whether overlay layers are passed as fds (else as `/proc/self/fd/N` strings).
    pub fd_layers: bool,
}

impl fmt::Display for MountStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let erofs = match self.erofs {
            ErofsBacking::FileOrLoop => "file-backed erofs (loop device fallback)",
            ErofsBacking::File => "file-backed erofs",
            ErofsBacking::Loop => "loop-backed erofs",
        };
        write!(
            f,
            "{} assembly, {erofs}, layers as {}",
            self.assembly.name(),
            if self.fd_layers { "fds" } else { "paths" }
        )
    }
}

/// Test-only choices that replace what the probe would pick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--force-overlay`.
    pub assembly: Option<Assembly>,
    /// `--force-erofs`.
    pub erofs: Option<ErofsBacking>,
}

/// The kernel lacks something we cannot do without.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    /// No overlayfs `verity=` / data-only layers.
    #[error(
        "this kernel's overlayfs has no data-only lower layers or verity= option (Linux 6.6 or newer is needed, with CONFIG_OVERLAY_FS)"
    )]
    NoDataOnlyLayers,
}

impl KernelFeatures {
    /// Picks the mount path for these features, honouring test overrides.
    pub fn strategy(&self, overrides: Overrides) -> Result<MountStrategy, FeatureError> {
        if !self.overlay_verity {
            return Err(FeatureError::NoDataOnlyLayers);
        }
        let assembly = overrides
            .assembly
            .unwrap_or(if self.detached_trees && self.fd_layers {
                Assembly::Detached
            } else if self.lowerdir_plus {
                Assembly::AttachFirst
            } else {
                Assembly::StringLowerdir
            });
        let erofs = overrides.erofs.unwrap_or(ErofsBacking::FileOrLoop);
        let fd_layers = match assembly {
            Assembly::Detached => true,
            Assembly::AttachFirst => self.fd_layers,
            Assembly::StringLowerdir => false,
        };
        Ok(MountStrategy {
            assembly,
            erofs,
            fd_layers,
        })
    }
}

/// Probes the running kernel. Fails only without the privilege to ask.
pub fn probe() -> std::io::Result<KernelFeatures> {
    let (overlay_verity, lowerdir_plus, fd_layers) = probe_overlay()?;
    Ok(KernelFeatures {
        overlay_verity,
        lowerdir_plus,
        fd_layers,
        detached_trees: probe_detached_trees(),
    })
}

/// (verity=, lowerdir+, fd layers). Fails only when fsopen is not permitted at all
/// (no CAP_SYS_ADMIN): then every other probe would read as "absent".
fn probe_overlay() -> std::io::Result<(bool, bool, bool)> {
    let ctx = match FsContext::new("overlay") {
        Ok(ctx) => ctx,
        Err(e) if e.errno() == Errno::PERM => return Err(std::io::Error::from(Errno::PERM)),
        Err(_) => return Ok((false, false, false)),
    };
    let verity = ctx.set_string("verity", "off").is_ok();
    let plus = ctx.set_string("lowerdir+", "/").is_ok();
    let fds = plus
        && rustix::fs::open(
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(|root| ctx.set_fd("lowerdir+", root.as_fd(), "/").is_ok())
        .unwrap_or(false);
    Ok((verity, plus, fds))
}

fn probe_detached_trees() -> bool {
    let tmpfs = || FsContext::new("tmpfs").and_then(|ctx| ctx.mount(MountAttrFlags::empty()));
    match (tmpfs(), tmpfs()) {
        (Ok(base), Ok(top)) => top.attach(base.as_fd(), "", "a detached tmpfs").is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn without(f: impl Fn(&mut KernelFeatures)) -> KernelFeatures {
        let mut k = KernelFeatures::ALL;
        f(&mut k);
        k
    }

    #[test]
    fn picks_path_per_kernel() {
        let s = KernelFeatures::ALL.strategy(Overrides::default()).unwrap();
        assert_eq!(
            (s.assembly, s.erofs, s.fd_layers),
            (Assembly::Detached, ErofsBacking::FileOrLoop, true)
        );
        // 6.13 and 6.14: fds, but no detached trees.
        let s = without(|k| k.detached_trees = false)
            .strategy(Overrides::default())
            .unwrap();
        assert_eq!((s.assembly, s.fd_layers), (Assembly::AttachFirst, true));
        // 6.12: lowerdir+ as paths; erofs from the file, a loop device only if refused.
        let k612 = without(|k| {
            k.detached_trees = false;
            k.fd_layers = false;
        });
        let s = k612.strategy(Overrides::default()).unwrap();
        assert_eq!(
            (s.assembly, s.erofs, s.fd_layers),
            (Assembly::AttachFirst, ErofsBacking::FileOrLoop, false)
        );
        // 6.6: the legacy string.
        let k66 = without(|k| {
            k.detached_trees = false;
            k.fd_layers = false;
            k.lowerdir_plus = false;
        });
        let s = k66.strategy(Overrides::default()).unwrap();
        assert_eq!(s.assembly, Assembly::StringLowerdir);
        assert_eq!(
            without(|k| k.overlay_verity = false).strategy(Overrides::default()),
            Err(FeatureError::NoDataOnlyLayers)
        );
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            assembly: Some(Assembly::StringLowerdir),
            erofs: Some(ErofsBacking::Loop),
        };
        let s = KernelFeatures::ALL.strategy(o).unwrap();
        assert_eq!(
            (s.assembly, s.erofs, s.fd_layers),
            (Assembly::StringLowerdir, ErofsBacking::Loop, false)
        );
        for a in [
            Assembly::Detached,
            Assembly::AttachFirst,
            Assembly::StringLowerdir,
        ] {
            assert_eq!(Assembly::from_name(a.name()), Some(a));
        }
        assert_eq!(Assembly::from_name("other"), None);
        assert_eq!(ErofsBacking::from_name("loop"), Some(ErofsBacking::Loop));
    }
}
