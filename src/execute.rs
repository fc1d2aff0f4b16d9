//! Runs a plan's steps in order, logging each, and undoes everything on the first error.
//!
//! Mounts start detached; a detached mount (and every mount attached beneath it) is freed
//! by the kernel when its fd closes, so only what has been attached to the visible tree
//! needs an explicit undo. Those undos are kept on a stack and run in reverse: a failed
//! boot leaves `/sysroot` exactly as it was, with no mount, staging directory or loop
//! device behind.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::MountAttrFlags;

use crate::digest::{Digest, compute_fsverity_digest};
use crate::features::{Assembly, ErofsBacking};
use crate::loopdev::{LoopDevice, LoopError};
use crate::mount::{FsContext, Mount, MountError, detach, proc_fd_path};
use crate::plan::{OverlayVerity, Plan, StateMount, Step, VerifyMode};
use crate::repo::{ImageFile, RepoError, Repository, create_state_dir, open_state_dir};
use crate::tpm::{self, TpmError};
use crate::verity::{MeasureError, Measurement, measure};

/// What execute needs that the plan only names: the opened repository, image and sysroot.
#[derive(Debug)]
pub struct Resources {
    /// The repository.
    pub repo: Repository,
    /// The chosen image, opened.
    pub image: ImageFile,
    /// The physical root, opened as a directory (`O_PATH`).
    pub sysroot_fd: OwnedFd,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The image's digest is not the one the command line names.
    #[error(
        "image {path} has digest {found}, but the command line asks for {expected}: the image is corrupt or was replaced; refusing to mount it"
    )]
    Mismatch {
        /// Image path.
        path: PathBuf,
        /// From the command line.
        expected: String,
        /// Measured or computed.
        found: String,
    },
    /// Secure mode and the image has no fs-verity.
    #[error(
        "image {path} has no fs-verity, and the composefs= argument is secure (no '?'): enable fs-verity on the repository (a filesystem with verity support, e.g. ext4 -O verity), or boot with composefs=?<digest> to accept an unverified image"
    )]
    NoVerity {
        /// Image path.
        path: PathBuf,
    },
    /// Measuring failed.
    #[error("measuring {path}: {source}")]
    Measure {
        /// Image path.
        path: PathBuf,
        /// The cause.
        source: MeasureError,
    },
    /// Reading the image to compute its digest failed.
    #[error("reading {path} to compute its fs-verity digest: {source}")]
    Read {
        /// Image path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A mount-API call failed.
    #[error("{0}")]
    Mount(#[from] MountError),
    /// The repository or a state directory refused.
    #[error("{0}")]
    Repo(#[from] RepoError),
    /// No loop device.
    #[error("{0}")]
    Loop(#[from] LoopError),
    /// A filesystem call on a path failed.
    #[error("{what} {path}: {}", std::io::Error::from(*errno))]
    Io {
        /// What was tried.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error number.
        errno: Errno,
    },
    /// `[tpm] measure = "required"` and the image could not be measured.
    #[error("{0} ([tpm] measure = \"required\" refuses to boot an unmeasured image)")]
    Tpm(#[from] TpmError),
    /// A failure injected by the test-only `fault-injection` feature.
    #[error("failure injected before this step (CFS_SETUP_ROOT_FAIL_AT)")]
    Injected,
}

impl ExecError {
    /// Whether this is a verification refusal (as opposed to a mount failure).
    pub fn is_verification(&self) -> bool {
        matches!(
            self,
            ExecError::Mismatch { .. }
                | ExecError::NoVerity { .. }
                | ExecError::Measure { .. }
                | ExecError::Read { .. }
        )
    }
}

/// A failed run: which step, and why. Everything done before it has been undone.
#[derive(Debug, thiserror::Error)]
#[error("step {number} ({step}) failed: {cause}; everything mounted so far was undone")]
pub struct StepError {
    /// 1-based step number.
    pub number: usize,
    /// The step's line.
    pub step: String,
    /// The cause.
    pub cause: ExecError,
}

/// Something attached to the visible tree, and how to take it back.
#[derive(Debug)]
enum Undo {
    Unmount(PathBuf),
    RemoveDir(PathBuf),
    RemoveLink(PathBuf),
}

/// What the steps found out, for the status record.
#[derive(Debug, Default)]
pub struct Report {
    /// The image's kernel fs-verity digest was measured and matched.
    pub kernel_verity: bool,
    /// The image's digest was computed in userspace and matched.
    pub computed_digest: bool,
    /// The composefs overlay got `verity=require`.
    pub verity_require: bool,
    /// The loop device erofs reads the image through, if any.
    pub loop_device: Option<String>,
    /// The TPM measurement, or why there is none (`None`: not planned).
    pub tpm: Option<Result<tpm::Measurement, String>>,
    /// Each step's short name and duration in microseconds, in order.
    pub timings: Vec<(&'static str, u64)>,
}

struct Run<'p> {
    plan: &'p Plan,
    res: Resources,
    report: Report,
    undo: Vec<Undo>,
    image_has_verity: bool,
    loopdev: Option<LoopDevice>,
    erofs: Option<Mount>,
    composefs: Option<Mount>,
    root: Option<Mount>,
    physical: Option<Mount>,
}

/// Runs every step of `plan`. On error, undoes what was done and says which step failed.
pub fn execute(plan: &Plan, res: Resources) -> Result<Report, StepError> {
    let mut run = Run {
        plan,
        res,
        report: Report::default(),
        undo: Vec::new(),
        image_has_verity: false,
        loopdev: None,
        erofs: None,
        composefs: None,
        root: None,
        physical: None,
    };
    for (i, step) in plan.steps.iter().enumerate() {
        let number = i + 1;
        log::info!("step {number}: {step}");
        let started = std::time::Instant::now();
        let result = injected(number).and_then(|()| run.step(step));
        let usec = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        run.report.timings.push((step.name(), usec));
        if let Err(cause) = result {
            let err = StepError {
                number,
                step: step.to_string(),
                cause,
            };
            run.unwind();
            return Err(err);
        }
    }
    // The staging directory is empty once every staged mount is gone.
    run.release_staging_dir();
    // Autoclear releases the loop device when the erofs superblock goes.
    run.loopdev = None;
    Ok(run.report)
}

#[cfg(feature = "fault-injection")]
fn injected(number: usize) -> Result<(), ExecError> {
    match std::env::var("CFS_SETUP_ROOT_FAIL_AT") {
        Ok(v) if v.trim() == number.to_string() => Err(ExecError::Injected),
        _ => Ok(()),
    }
}

#[cfg(not(feature = "fault-injection"))]
fn injected(_number: usize) -> Result<(), ExecError> {
    Ok(())
}

/// The layers of one overlay, as fds; passed to the kernel as the plan's strategy says.
struct Layers<'a> {
    lower: BorrowedFd<'a>,
    data: Option<BorrowedFd<'a>>,
    upper: Option<(BorrowedFd<'a>, BorrowedFd<'a>)>,
}

impl Run<'_> {
    fn attach_first(&self) -> bool {
        self.plan.strategy.assembly != Assembly::Detached
    }

    fn step(&mut self, step: &Step) -> Result<(), ExecError> {
        match step {
            Step::VerifyImage {
                path,
                expected,
                mode,
            } => self.verify(path, expected, *mode),
            Step::MountErofs { backing, staging } => self.mount_erofs(*backing, staging.as_deref()),
            Step::MountComposefs { source, verity, .. } => self.mount_composefs(source, *verity),
            Step::ClonePhysicalRoot { sysroot, readonly } => {
                let m = Mount::clone_of(CWD, &path_str(sysroot)?, "the physical root")?;
                if *readonly {
                    m.set_readonly("the physical root's clone")?;
                }
                self.physical = Some(m);
                Ok(())
            }
            Step::AttachRoot { target } => {
                let root = self.root()?;
                root.attach(CWD, &path_str(target)?, &target.display().to_string())?;
                self.undo.push(Undo::Unmount(target.clone()));
                Ok(())
            }
            Step::TransientRoot => self.transient_root(),
            Step::MountPhysicalRoot { target } => {
                let physical = self
                    .physical
                    .take()
                    .ok_or_else(|| missing("physical root clone"))?;
                self.attach_beneath(&physical, "sysroot", target)
                    .map_err(|e| hint(e, "does the image have a /sysroot directory?"))
            }
            Step::CreateStateDir { path, mode } => Ok(create_state_dir(
                self.res.sysroot_fd.as_fd(),
                path,
                *mode,
                &self.plan.sysroot,
            )?),
            Step::MountState { name, how, target } => self.mount_state(name, how, target),
            Step::MeasureImage {
                device,
                pcr,
                event,
                required,
            } => self.measure_image(device, *pcr, event, *required),
            Step::VolatileRootLink { link, target } => {
                if let Some(parent) = link.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                match std::os::unix::fs::symlink(target, link) {
                    Ok(()) => self.undo.push(Undo::RemoveLink(link.clone())),
                    Err(e) => log::warn!("could not create {}: {e}", link.display()),
                }
                Ok(())
            }
        }
    }

    fn verify(
        &mut self,
        path: &Path,
        expected: &Digest,
        mode: VerifyMode,
    ) -> Result<(), ExecError> {
        let measured = measure(self.res.image.as_fd()).map_err(|source| ExecError::Measure {
            path: path.to_path_buf(),
            source,
        })?;
        let found = match (measured, mode) {
            (Measurement::Digest(d), _) => {
                self.image_has_verity = true;
                self.report.kernel_verity = true;
                d
            }
            (Measurement::NoVerity, VerifyMode::KernelRequired) => {
                return Err(ExecError::NoVerity {
                    path: path.to_path_buf(),
                });
            }
            (Measurement::NoVerity, VerifyMode::KernelIfPresent) => {
                log::warn!(
                    "image {} has no fs-verity and check-digest = false: its content is not checked",
                    path.display()
                );
                return Ok(());
            }
            (Measurement::NoVerity, VerifyMode::KernelOrComputed) => {
                let mut reader = PositionedReader {
                    fd: self.res.image.as_fd(),
                    offset: 0,
                };
                let d = compute_fsverity_digest(expected.algorithm(), &mut reader).map_err(
                    |source| ExecError::Read {
                        path: path.to_path_buf(),
                        source,
                    },
                )?;
                self.report.computed_digest = true;
                d
            }
        };
        if found != *expected {
            return Err(ExecError::Mismatch {
                path: path.to_path_buf(),
                expected: format!("{}:{expected}", expected.algorithm()),
                found: format!("{}:{found}", found.algorithm()),
            });
        }
        log::info!(
            "image digest {}:{found} matches ({})",
            found.algorithm(),
            if self.image_has_verity {
                "kernel fs-verity"
            } else {
                "computed"
            }
        );
        Ok(())
    }

    fn mount_erofs(
        &mut self,
        backing: ErofsBacking,
        staging: Option<&Path>,
    ) -> Result<(), ExecError> {
        let erofs = match backing {
            ErofsBacking::File => self.erofs_from_file()?,
            ErofsBacking::Loop => self.erofs_from_loop()?,
            // The kernel is the probe: before 6.12 it looks for a block device (ENOTBLK).
            ErofsBacking::FileOrLoop => match self.erofs_from_file() {
                Err(ExecError::Mount(e)) if e.errno() == Errno::NOTBLK => {
                    log::info!(
                        "erofs cannot read the image file itself (a kernel before 6.12, or \
                         a filesystem such as tmpfs): using a loop device"
                    );
                    self.erofs_from_loop()?
                }
                other => other?,
            },
        };
        if let Some(at) = staging {
            self.stage(&erofs, at)?;
        }
        self.erofs = Some(erofs);
        Ok(())
    }

    fn erofs_from_file(&self) -> Result<Mount, ExecError> {
        erofs_superblock(&proc_fd_path(self.res.image.as_fd()))
    }

    fn erofs_from_loop(&mut self) -> Result<Mount, ExecError> {
        let dev = LoopDevice::attach(self.res.image.as_fd())?;
        log::info!("bound {} to the image", dev.path());
        let erofs = erofs_superblock(dev.path());
        // Held until the end: autoclear releases the device once the mount is gone.
        self.report.loop_device = Some(dev.path().to_string());
        self.loopdev = Some(dev);
        erofs
    }

    fn mount_composefs(&mut self, source: &str, verity: OverlayVerity) -> Result<(), ExecError> {
        let objects = self.res.repo.open_objects()?;
        let erofs = self.erofs.take().ok_or_else(|| missing("erofs mount"))?;
        let ctx = FsContext::new("overlay")?;
        ctx.set_string("source", source)?;
        self.set_layers(
            &ctx,
            Layers {
                lower: erofs.as_fd(),
                data: Some(objects.as_fd()),
                upper: None,
            },
        )?;
        ctx.set_string("metacopy", "on")?;
        ctx.set_string("redirect_dir", "on")?;
        let require = match verity {
            OverlayVerity::Require => true,
            OverlayVerity::IfImageHasVerity => self.image_has_verity,
        };
        if require {
            ctx.set_string("verity", "require")?;
        }
        self.report.verity_require = require;
        let overlay = ctx.mount(MountAttrFlags::MOUNT_ATTR_RDONLY)?;
        // The overlay holds its own private clones of its layers: the staged erofs can go.
        self.unstage()?;
        drop(erofs);
        self.root = Some(clone_handle(&overlay)?);
        self.composefs = Some(overlay);
        Ok(())
    }

    fn transient_root(&mut self) -> Result<(), ExecError> {
        let root = self.root.take().ok_or_else(|| missing("root mount"))?;
        let overlay = self.transient_overlay(root.as_fd(), "root")?;
        if self.attach_first() {
            // Stack the transient overlay over the composefs root already on the sysroot.
            let target = self.plan.sysroot.clone();
            overlay.attach(CWD, &path_str(&target)?, &target.display().to_string())?;
            self.undo.push(Undo::Unmount(target));
        }
        self.unstage()?;
        self.root = Some(overlay);
        Ok(())
    }

    /// An overlay of `lower` with a fresh tmpfs as upper (changes are lost at reboot).
    fn transient_overlay(&mut self, lower: BorrowedFd<'_>, what: &str) -> Result<Mount, ExecError> {
        let tmpfs = FsContext::new("tmpfs")?;
        tmpfs.set_string("mode", "0755")?;
        let tmpfs = tmpfs.mount(MountAttrFlags::empty())?;
        if let Some(staging) = &self.plan.staging {
            let at = staging.join(format!("transient-{what}"));
            self.stage(&tmpfs, &at)?;
        }
        let upper = make_dir(tmpfs.as_fd(), "upper", 0o755)?;
        let work = make_dir(tmpfs.as_fd(), "work", 0o700)?;
        let ctx = FsContext::new("overlay")?;
        ctx.set_string("source", &format!("transient-{what}"))?;
        self.set_layers(
            &ctx,
            Layers {
                lower,
                data: None,
                upper: Some((upper.as_fd(), work.as_fd())),
            },
        )?;
        Ok(ctx.mount(MountAttrFlags::empty())?)
    }

    fn mount_state(
        &mut self,
        name: &'static str,
        how: &StateMount,
        target: &Path,
    ) -> Result<(), ExecError> {
        let sysroot = &self.plan.sysroot;
        let mount = match how {
            StateMount::Bind { source } => {
                let dir = open_state_dir(self.res.sysroot_fd.as_fd(), source, sysroot)?;
                Mount::clone_of(dir.as_fd(), "", &sysroot.join(source).display().to_string())?
            }
            StateMount::Overlay { upper, work } => {
                let lower = self.image_dir(name)?;
                let upper = open_state_dir(self.res.sysroot_fd.as_fd(), upper, sysroot)?;
                let work = open_state_dir(self.res.sysroot_fd.as_fd(), work, sysroot)?;
                let ctx = FsContext::new("overlay")?;
                ctx.set_string("source", &format!("composefs-{name}"))?;
                self.set_layers(
                    &ctx,
                    Layers {
                        lower: lower.as_fd(),
                        data: None,
                        upper: Some((upper.as_fd(), work.as_fd())),
                    },
                )?;
                ctx.mount(MountAttrFlags::empty())?
            }
            StateMount::Transient => {
                let lower = self.image_dir(name)?;
                let m = self.transient_overlay(lower.as_fd(), name)?;
                self.unstage_after_attach(m, name, target)?;
                return Ok(());
            }
        };
        self.attach_beneath(&mount, name, target)
    }

    /// Attaches a transient overlay, then releases its staged tmpfs.
    fn unstage_after_attach(
        &mut self,
        m: Mount,
        name: &str,
        target: &Path,
    ) -> Result<(), ExecError> {
        self.attach_beneath(&m, name, target)?;
        self.unstage()
    }

    /// The image's own directory `name` (in the composefs overlay, below any transient root).
    fn image_dir(&self, name: &str) -> Result<OwnedFd, ExecError> {
        let composefs = self
            .composefs
            .as_ref()
            .ok_or_else(|| missing("composefs mount"))?;
        rustix::fs::openat(
            composefs.as_fd(),
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| ExecError::Io {
            what: "open the image's directory",
            path: self.plan.sysroot.join(name),
            errno,
        })
    }

    /// Attaches `mount` at `name` inside the new root; records the undo when the root is
    /// already visible.
    fn attach_beneath(
        &mut self,
        mount: &Mount,
        name: &str,
        target: &Path,
    ) -> Result<(), ExecError> {
        let root = self.root()?;
        mount.attach(root.as_fd(), name, &target.display().to_string())?;
        if self.attach_first() {
            self.undo.push(Undo::Unmount(target.to_path_buf()));
        }
        Ok(())
    }

    fn root(&self) -> Result<&Mount, ExecError> {
        self.root.as_ref().ok_or_else(|| missing("root mount"))
    }

    /// Passes an overlay's layers as the strategy says: fds, `lowerdir+` paths, or one
    /// legacy `lowerdir=` string.
    fn set_layers(&self, ctx: &FsContext, layers: Layers<'_>) -> Result<(), ExecError> {
        let s = self.plan.strategy;
        if s.fd_layers {
            ctx.set_fd("lowerdir+", layers.lower, "lower layer")?;
            if let Some(data) = layers.data {
                ctx.set_fd("datadir+", data, "objects")?;
            }
            if let Some((upper, work)) = layers.upper {
                ctx.set_fd("upperdir", upper, "upper")?;
                ctx.set_fd("workdir", work, "work")?;
            }
        } else {
            if s.assembly == Assembly::StringLowerdir {
                let mut lowerdir = proc_fd_path(layers.lower);
                if let Some(data) = layers.data {
                    lowerdir = format!("{lowerdir}::{}", proc_fd_path(data));
                }
                ctx.set_string("lowerdir", &lowerdir)?;
            } else {
                ctx.set_string("lowerdir+", &proc_fd_path(layers.lower))?;
                if let Some(data) = layers.data {
                    ctx.set_string("datadir+", &proc_fd_path(data))?;
                }
            }
            if let Some((upper, work)) = layers.upper {
                ctx.set_string("upperdir", &proc_fd_path(upper))?;
                ctx.set_string("workdir", &proc_fd_path(work))?;
            }
        }
        Ok(())
    }

    /// Attach-first paths: attaches `mount` at `at` (in the private staging directory) so
    /// it can serve as an overlay layer on kernels that refuse detached layers.
    fn stage(&mut self, mount: &Mount, at: &Path) -> Result<(), ExecError> {
        let staging = at.parent().unwrap_or(at);
        if !self
            .undo
            .iter()
            .any(|u| matches!(u, Undo::RemoveDir(p) if p == staging))
        {
            match rustix::fs::mkdir(staging, Mode::from_raw_mode(0o700)) {
                Ok(()) => self.undo.push(Undo::RemoveDir(staging.to_path_buf())),
                Err(Errno::EXIST) => {}
                Err(errno) => {
                    return Err(ExecError::Io {
                        what: "create the staging directory",
                        path: staging.to_path_buf(),
                        errno,
                    });
                }
            }
        }
        rustix::fs::mkdir(at, Mode::from_raw_mode(0o700)).map_err(|errno| ExecError::Io {
            what: "create the staging directory",
            path: at.to_path_buf(),
            errno,
        })?;
        self.undo.push(Undo::RemoveDir(at.to_path_buf()));
        if let Err(e) = mount.attach(CWD, &path_str(at)?, &at.display().to_string()) {
            return Err(e.into());
        }
        self.undo.push(Undo::Unmount(at.to_path_buf()));
        Ok(())
    }

    /// Releases the most recent staged mount (and its directory), if any.
    fn unstage(&mut self) -> Result<(), ExecError> {
        let Some(staging) = &self.plan.staging else {
            return Ok(());
        };
        let Some(pos) = self
            .undo
            .iter()
            .rposition(|u| matches!(u, Undo::Unmount(p) if p.parent() == Some(staging.as_path())))
        else {
            return Ok(());
        };
        let Undo::Unmount(at) = self.undo.remove(pos) else {
            return Ok(());
        };
        detach(&at)?;
        if let Some(dpos) = self
            .undo
            .iter()
            .rposition(|u| matches!(u, Undo::RemoveDir(p) if *p == at))
        {
            self.undo.remove(dpos);
        }
        rustix::fs::rmdir(&at).map_err(|errno| ExecError::Io {
            what: "remove the staging directory",
            path: at,
            errno,
        })
    }

    fn release_staging_dir(&mut self) {
        if let Some(staging) = &self.plan.staging
            && let Some(pos) = self
                .undo
                .iter()
                .position(|u| matches!(u, Undo::RemoveDir(p) if p == staging))
        {
            self.undo.remove(pos);
            if let Err(e) = rustix::fs::rmdir(staging) {
                log::warn!("could not remove {}: {e}", staging.display());
            }
        }
    }

    /// Undoes every attached mount and created entry, newest first.
    fn unwind(&mut self) {
        while let Some(undo) = self.undo.pop() {
            let result = match &undo {
                Undo::Unmount(p) => detach(p).map_err(|e| e.to_string()),
                Undo::RemoveDir(p) => rustix::fs::rmdir(p).map_err(|e| e.to_string()),
                Undo::RemoveLink(p) => rustix::fs::unlink(p).map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => log::info!("undone: {undo:?}"),
                Err(e) => log::error!("could not undo {undo:?}: {e}"),
            }
        }
        // Detached mounts go with their fds.
        self.root = None;
        self.composefs = None;
        self.erofs = None;
        self.physical = None;
        self.loopdev = None;
    }
}

impl Run<'_> {
    /// Extends the PCR; without a TPM or on a TPM error, a warning (auto) or a refusal
    /// (required, undone like any failed step).
    fn measure_image(
        &mut self,
        device: &Path,
        pcr: u32,
        event: &str,
        required: bool,
    ) -> Result<(), ExecError> {
        tpm::wait_for_device(device);
        match tpm::measure_and_log(device, &tpm::event_log_path(), pcr, event) {
            Ok(m) => {
                let banks: Vec<String> = m.digests.iter().map(|d| d.alg.to_string()).collect();
                log::info!(
                    "extended TPM PCR {pcr} with {event} in the {} bank{}{}",
                    banks.join(", "),
                    if banks.len() == 1 { "" } else { "s" },
                    if m.logged {
                        ", logged"
                    } else {
                        " (not logged)"
                    }
                );
                self.report.tpm = Some(Ok(m));
                Ok(())
            }
            Err(e) if required => Err(e.into()),
            Err(e) => {
                log::warn!(
                    "{e}; the image is not measured into PCR {pcr}, the boot goes on ([tpm] measure = \"auto\")"
                );
                self.report.tpm = Some(Err(e.to_string()));
                Ok(())
            }
        }
    }
}

/// A read-only erofs superblock over `source`, as a detached mount.
fn erofs_superblock(source: &str) -> Result<Mount, ExecError> {
    let ctx = FsContext::new("erofs")?;
    ctx.set_string("source", source)?;
    // A read-only superblock: else the kernel opens a loop device for writing (EACCES).
    ctx.set_flag("ro")?;
    Ok(ctx.mount(MountAttrFlags::MOUNT_ATTR_RDONLY)?)
}

/// A second fd naming the same mount (the composefs overlay serves both as the root and as
/// the lower of /etc and /var overlays).
fn clone_handle(m: &Mount) -> Result<Mount, ExecError> {
    m.try_clone().map_err(|e| ExecError::Io {
        what: "dup the mount fd of",
        path: PathBuf::from("the composefs overlay"),
        errno: Errno::from_io_error(&e).unwrap_or(Errno::INVAL),
    })
}

fn make_dir(dir: BorrowedFd<'_>, name: &str, mode: u32) -> Result<OwnedFd, ExecError> {
    let err = |errno| ExecError::Io {
        what: "create in the transient tmpfs",
        path: PathBuf::from(name),
        errno,
    };
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)).map_err(err)?;
    rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)
}

fn path_str(p: &Path) -> Result<String, ExecError> {
    p.to_str().map(str::to_string).ok_or(ExecError::Io {
        what: "non-UTF-8 path",
        path: p.to_path_buf(),
        errno: Errno::INVAL,
    })
}

fn missing(what: &'static str) -> ExecError {
    ExecError::Io {
        what: "internal: step order left no",
        path: PathBuf::from(what),
        errno: Errno::INVAL,
    }
}

fn hint(e: ExecError, check: &'static str) -> ExecError {
    match e {
        ExecError::Mount(MountError::Syscall {
            what,
            errno,
            kernel,
        }) => ExecError::Mount(MountError::Syscall {
            what: format!("{what} ({check})"),
            errno,
            kernel,
        }),
        other => other,
    }
}

/// Reads a file with `pread` from offset 0, leaving the fd's position alone.
struct PositionedReader<'a> {
    fd: BorrowedFd<'a>,
    offset: u64,
}

impl std::io::Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = rustix::io::pread(self.fd, buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}
