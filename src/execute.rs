//! Runs a plan's steps in order, logging each, and undoes everything on the first error.
//!
//! Mounts start detached; a detached mount (and every mount attached beneath it) is freed
//! by the kernel when its fd closes, so only what has been attached to the visible tree
//! needs an explicit undo. Those undos are kept on a stack and run in reverse, and each
//! carries what it undoes: the mount it attached (unmounted only while it is the mount on top
//! at its path, never "whatever is at that path now"), the directory it created (removed
//! through its parent's fd), the superblock it made writable. A failed boot leaves `/sysroot` exactly as it was, with no
//! mount, staging or state directory or loop device behind; an undo that fails is reported.
//!
//! Propagation: every clone of the physical root is made private before it is attached. A
//! clone of a shared mount (in a systemd initrd `/sysroot` is shared) would otherwise join
//! the physical root's peer group, so that mounts made later under `/sysroot/sysroot` would
//! also appear on the physical root hidden below the new root, and vice versa. Attached
//! under the new root, our mounts take that root's propagation; after switch_root, systemd
//! makes `/` shared again, in peer groups of their own.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::MountAttrFlags;

use crate::dataflow::{Handle, Handles};
use crate::digest::{Digest, compute_fsverity_digest};
use crate::features::{Assembly, ErofsBacking};
use crate::loopdev::{LoopDevice, LoopError};
use crate::mount::{
    FsContext, Mount, MountAttributes, MountError, proc_fd_path, reconfigure_superblock,
};
use crate::plan::{OverlayVerity, Plan, StateMount, Step, VerifyMode};
use crate::repo::{CreatedDir, ImageFile, RepoError, Repository, StateDir};
use crate::tpm::{self, TpmError};
use crate::verdict::{Evidence, Verified, judge, overlay_requires_verity};
use crate::verity::{MeasureError, Measurement, measure};

/// What execute needs that the plan only names: the opened repository, image and sysroot.
#[derive(Debug)]
pub struct Resources {
    /// The repository (none with `--root-fs`).
    pub repo: Option<Repository>,
    /// The chosen image, opened (none with `--root-fs`).
    pub image: Option<ImageFile>,
    /// The physical root, opened as a directory (`O_PATH`): the root of its mount.
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
    /// The image is larger than `[image] max-size`.
    #[error(
        "image {path} is {size} bytes, more than [image] max-size = {max}: a composefs image holds only metadata; refusing it (raise max-size in the config if this image is real)"
    )]
    TooLarge {
        /// Image path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
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
    /// A step left other handles than its declared flow says ([`crate::plan::Step::flow`]).
    #[error(
        "internal error: after this step the setup holds {held}, but the plan was checked for {expected} (please report this with the output of --dry-run)"
    )]
    Flow {
        /// What the run holds.
        held: Handles,
        /// What the plan's check predicted.
        expected: Handles,
    },
    /// A failure injected by the test-only `fault-injection` feature.
    #[error("failure injected before this step (CFS_SETUP_ROOT_FAIL_AT)")]
    Injected,
}

impl ExecError {
    /// Whether this refuses the disk's content (a wrong, unverifiable or oversized image, an
    /// entry leading out of the repository or the state directory), as opposed to a mount
    /// that failed.
    pub fn is_refusal(&self) -> bool {
        match self {
            ExecError::Mismatch { .. }
            | ExecError::NoVerity { .. }
            | ExecError::TooLarge { .. }
            | ExecError::Measure { .. }
            | ExecError::Read { .. } => true,
            ExecError::Repo(e) => e.is_escape(),
            _ => false,
        }
    }
}

/// A failed run: which step, and why. Everything done before it has been undone, unless
/// `undo_failures` says otherwise.
#[derive(Debug)]
pub struct StepError {
    /// 1-based step number.
    pub number: usize,
    /// The step's line.
    pub step: String,
    /// The cause.
    pub cause: ExecError,
    /// Undo actions that failed (each with its cause); empty when everything was undone.
    pub undo_failures: Vec<String>,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} ({}) failed: {}; ",
            self.number, self.step, self.cause
        )?;
        if self.undo_failures.is_empty() {
            f.write_str("everything done so far was undone")
        } else {
            write!(
                f,
                "undoing it failed in part ({}): check the mount table and the state directory before retrying",
                self.undo_failures.join("; ")
            )
        }
    }
}

impl std::error::Error for StepError {}

/// Something done to the visible tree or the disk, and how to take it back.
#[derive(Debug)]
enum Undo {
    /// A mount we attached: unmounted through its own fd.
    Unmount { mount: Mount, at: PathBuf },
    /// A staging directory we created under /run.
    RemoveStagingDir(PathBuf),
    /// A state directory we created.
    RemoveStateDir(CreatedDir),
    /// The `/run/systemd/volatile-root` link.
    RemoveLink(PathBuf),
    /// The physical root's superblock, which we made writable.
    RestoreReadOnly,
}

impl fmt::Display for Undo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undo::Unmount { at, .. } => write!(f, "unmount {}", at.display()),
            Undo::RemoveStagingDir(p) | Undo::RemoveLink(p) => write!(f, "remove {}", p.display()),
            Undo::RemoveStateDir(d) => write!(f, "remove {}", d.path.display()),
            Undo::RestoreReadOnly => f.write_str("remount the physical root read-only"),
        }
    }
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

/// One run of a plan. The handle slots (`verified` to `state_view`) are filled and emptied
/// by the steps in the order `dataflow::check` proved for the plan before the first step, and
/// compared with that proof after every step ([`Run::held`]).
struct Run<'p> {
    plan: &'p Plan,
    res: Resources,
    report: Report,
    undo: Vec<Undo>,
    verified: Option<Verified>,
    loopdev: Option<LoopDevice>,
    erofs: Option<Mount>,
    composefs: Option<Mount>,
    root: Option<Mount>,
    physical: Option<Mount>,
    state_view: Option<Mount>,
    state: Option<StateDir>,
}

/// Runs every step of `plan`. On error, undoes what was done and says which step failed.
/// `order` is what [`Plan::check_order`] gave for this plan: the handles each step leaves,
/// which the run is held to after every step.
pub fn execute(plan: &Plan, order: &[Handles], res: Resources) -> Result<Report, Box<StepError>> {
    let mut run = Run {
        plan,
        res,
        report: Report::default(),
        undo: Vec::new(),
        verified: None,
        loopdev: None,
        erofs: None,
        composefs: None,
        root: None,
        physical: None,
        state_view: None,
        state: None,
    };
    for warning in &plan.warnings {
        log::warn!("{warning}");
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let number = i + 1;
        log::info!("step {number}: {step}");
        let started = std::time::Instant::now();
        let result = injected(number)
            .and_then(|()| run.step(step))
            .and_then(|()| run.held_as(order.get(i).copied()));
        let usec = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        run.report.timings.push((step.name(), usec));
        if let Err(cause) = result {
            let undo_failures = run.unwind();
            return Err(Box::new(StepError {
                number,
                step: step.to_string(),
                cause,
                undo_failures,
            }));
        }
    }
    // The state view is the last staged mount; the staging directory is empty once every
    // staged mount is gone. (Leftovers here cost a directory in /run, not the boot.)
    while run.has_staged() {
        if let Err(e) = run.unstage() {
            log::warn!("could not release a staged mount: {e}");
            break;
        }
    }
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

/// Test-only: make the first undo action fail, to see it reported (`CFS_SETUP_ROOT_FAIL_UNDO`).
#[cfg(feature = "fault-injection")]
fn undo_injected(first: bool) -> bool {
    first && std::env::var_os("CFS_SETUP_ROOT_FAIL_UNDO").is_some()
}

#[cfg(not(feature = "fault-injection"))]
fn undo_injected(_first: bool) -> bool {
    false
}

/// The layers of one overlay, as fds; passed to the kernel as the plan's strategy says.
struct Layers<'a> {
    lower: BorrowedFd<'a>,
    data: Option<BorrowedFd<'a>>,
    upper: Option<(BorrowedFd<'a>, BorrowedFd<'a>)>,
}

/// Log a progress line every this many bytes of a digest computed in userspace.
const PROGRESS_STEP: u64 = 128 << 20;

impl Run<'_> {
    /// The handles the run holds now.
    fn held(&self) -> Handles {
        let slots = [
            (Handle::Verdict, self.verified.is_some()),
            (Handle::Erofs, self.erofs.is_some()),
            (Handle::ImageTree, self.composefs.is_some()),
            (Handle::Root, self.root.is_some()),
            (Handle::PhysicalClone, self.physical.is_some()),
            (Handle::StateView, self.state_view.is_some()),
        ];
        let held: Vec<Handle> = slots.iter().filter(|s| s.1).map(|s| s.0).collect();
        Handles::of(&held)
    }

    /// Fails when the run holds other handles than the plan's check predicted.
    fn held_as(&self, expected: Option<Handles>) -> Result<(), ExecError> {
        let expected = expected.ok_or_else(|| missing("checked order for this step"))?;
        let held = self.held();
        if held == expected {
            Ok(())
        } else {
            Err(ExecError::Flow { held, expected })
        }
    }

    fn attach_first(&self) -> bool {
        self.plan.strategy.assembly != Assembly::Detached
    }

    fn step(&mut self, step: &Step) -> Result<(), ExecError> {
        match step {
            Step::VerifyImage {
                path,
                expected,
                mode,
                max_size,
            } => self.verify(path, expected, *mode, *max_size),
            Step::MountErofs { backing, staging } => self.mount_erofs(*backing, staging.as_deref()),
            Step::MountComposefs { source, verity, .. } => self.mount_composefs(source, *verity),
            Step::ClonePhysicalRoot { readonly, .. } => {
                let m =
                    Mount::clone_tree(self.res.sysroot_fd.as_fd(), "", true, "the physical root")?;
                let attrs = MountAttributes {
                    set: if *readonly {
                        MountAttrFlags::MOUNT_ATTR_RDONLY
                    } else {
                        MountAttrFlags::empty()
                    },
                    private: true,
                    ..MountAttributes::default()
                };
                m.set_attributes(attrs, true, "the physical root's clone")?;
                self.physical = Some(m);
                Ok(())
            }
            Step::RemountPhysicalRootWritable { sysroot } => {
                reconfigure_superblock(
                    self.res.sysroot_fd.as_fd(),
                    false,
                    &sysroot.display().to_string(),
                )
                .map_err(|e| {
                    hint(
                        e.into(),
                        "is the disk write-protected? boot with `rw`, or use transient /etc and /var",
                    )
                })?;
                self.undo.push(Undo::RestoreReadOnly);
                Ok(())
            }
            Step::OpenStateView { staging, .. } => {
                let view = Mount::clone_tree(
                    self.res.sysroot_fd.as_fd(),
                    "",
                    true,
                    "the physical root (state view)",
                )?;
                let attrs = MountAttributes {
                    clear: MountAttrFlags::MOUNT_ATTR_RDONLY,
                    private: true,
                    ..MountAttributes::default()
                };
                view.set_attributes(attrs, true, "the state view")?;
                if let Some(at) = staging {
                    self.stage(&view, at)?;
                }
                self.state_view = Some(view);
                Ok(())
            }
            Step::AttachRoot { target } => {
                let root = self.root()?;
                root.attach(CWD, &path_str(target)?, &target.display().to_string())?;
                let mount = clone_handle(root)?;
                self.undo.push(Undo::Unmount {
                    mount,
                    at: target.clone(),
                });
                Ok(())
            }
            Step::CloneRootTree { path } => {
                let tree = Mount::clone_of(CWD, &path_str(path)?, &path.display().to_string())?;
                tree.set_readonly(&path.display().to_string())?;
                self.root = Some(clone_handle(&tree)?);
                self.composefs = Some(tree);
                Ok(())
            }
            Step::TransientRoot { source } => self.transient_root(source),
            Step::MountPhysicalRoot { target } => {
                let physical = self
                    .physical
                    .take()
                    .ok_or_else(|| missing("physical root clone"))?;
                self.attach_beneath(&physical, "sysroot", target)
                    .map_err(|e| hint(e, "does the image have a /sysroot directory?"))
            }
            Step::CreateStateDir { path, mode } => {
                let created = self.state()?.create_dirs(path, *mode)?;
                self.undo
                    .extend(created.into_iter().map(Undo::RemoveStateDir));
                Ok(())
            }
            Step::MountState { name, how, target } => self.mount_state(name, how, target),
            Step::MeasureImage {
                device,
                pcr,
                event,
                unverified_event,
                required,
            } => {
                let event = crate::plan::measured_event(
                    event,
                    unverified_event,
                    self.report.verity_require,
                );
                self.measure_image(device, *pcr, event, *required)
            }
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

    /// The state directory beneath the writable view, opened (and created) on first use.
    fn state(&mut self) -> Result<&StateDir, ExecError> {
        if self.state.is_none() {
            let view = self
                .state_view
                .as_ref()
                .ok_or_else(|| missing("state view"))?;
            let (dir, created) = StateDir::create(view.as_fd(), &self.plan.sysroot)?;
            if let Some(created) = created {
                self.undo.push(Undo::RemoveStateDir(created));
            }
            self.state = Some(dir);
        }
        self.state
            .as_ref()
            .ok_or_else(|| missing("state directory"))
    }

    fn verify(
        &mut self,
        path: &Path,
        expected: &Digest,
        mode: VerifyMode,
        max_size: u64,
    ) -> Result<(), ExecError> {
        let size = self.image()?.size();
        if size > max_size {
            return Err(ExecError::TooLarge {
                path: path.to_path_buf(),
                size,
                max: max_size,
            });
        }
        let measured = measure(self.image()?.as_fd()).map_err(|source| ExecError::Measure {
            path: path.to_path_buf(),
            source,
        })?;
        let evidence = match (measured, mode) {
            (Measurement::Digest(d), _) => Evidence::Kernel(d),
            (Measurement::NoVerity, VerifyMode::KernelRequired) => {
                return Err(ExecError::NoVerity {
                    path: path.to_path_buf(),
                });
            }
            (Measurement::NoVerity, VerifyMode::KernelIfPresent) => Evidence::Unchecked,
            (Measurement::NoVerity, VerifyMode::KernelOrComputed) => {
                let mut reader = ProgressReader {
                    fd: self.image()?.as_fd(),
                    offset: 0,
                    size,
                    next_report: PROGRESS_STEP,
                    path,
                };
                let d = compute_fsverity_digest(expected.algorithm(), &mut reader).map_err(
                    |source| ExecError::Read {
                        path: path.to_path_buf(),
                        source,
                    },
                )?;
                Evidence::Computed(d)
            }
        };
        let verified = judge(expected, evidence).map_err(|m| ExecError::Mismatch {
            path: path.to_path_buf(),
            expected: format!("{}:{expected}", expected.algorithm()),
            found: format!("{}:{}", m.found.algorithm(), m.found),
        })?;
        match verified {
            Verified::ByKernel | Verified::ByComputation => log::info!(
                "image digest {}:{expected} matches ({})",
                expected.algorithm(),
                if verified == Verified::ByKernel {
                    "kernel fs-verity"
                } else {
                    "computed"
                }
            ),
            Verified::NotChecked => log::warn!(
                "image {} has no fs-verity and check-digest = false: its content is not checked",
                path.display()
            ),
        }
        self.report.kernel_verity = verified == Verified::ByKernel;
        self.report.computed_digest = verified == Verified::ByComputation;
        self.verified = Some(verified);
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
        erofs_superblock(&proc_fd_path(self.image()?.as_fd()))
    }

    fn erofs_from_loop(&mut self) -> Result<Mount, ExecError> {
        let dev = LoopDevice::attach(self.image()?.as_fd())?;
        log::info!("bound {} to the image", dev.path());
        let erofs = erofs_superblock(dev.path());
        // Held until the end: autoclear releases the device once the mount is gone.
        self.report.loop_device = Some(dev.path().to_string());
        self.loopdev = Some(dev);
        erofs
    }

    fn mount_composefs(&mut self, source: &str, verity: OverlayVerity) -> Result<(), ExecError> {
        let objects = self
            .res
            .repo
            .as_ref()
            .ok_or_else(|| missing("repository"))?
            .open_objects()?;
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
        let verified = self.verified.ok_or_else(|| missing("verified image"))?;
        let require = overlay_requires_verity(verity, verified);
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

    fn transient_root(&mut self, source: &str) -> Result<(), ExecError> {
        let root = self.root.take().ok_or_else(|| missing("root mount"))?;
        let overlay = self.transient_overlay(root.as_fd(), "root", source)?;
        if self.attach_first() {
            // Stack the transient overlay over the composefs root already attached.
            let target = self.plan.target.clone();
            overlay.attach(CWD, &path_str(&target)?, &target.display().to_string())?;
            let mount = clone_handle(&overlay)?;
            self.undo.push(Undo::Unmount { mount, at: target });
        }
        self.unstage()?;
        self.root = Some(overlay);
        Ok(())
    }

    /// An overlay of `lower` with a fresh tmpfs as upper (changes are lost at reboot).
    fn transient_overlay(
        &mut self,
        lower: BorrowedFd<'_>,
        what: &str,
        source: &str,
    ) -> Result<Mount, ExecError> {
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
        ctx.set_string("source", source)?;
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
        let mount = match how {
            StateMount::Bind { source } => {
                let state = self.state()?;
                let dir = state.open_dir(source)?;
                let what = state.path().join(source).display().to_string();
                Mount::clone_of(dir.as_fd(), "", &what)?
            }
            StateMount::Overlay { upper, work } => {
                let lower = self.image_dir(name)?;
                let state = self.state()?;
                let upper = state.open_dir(upper)?;
                let work = state.open_dir(work)?;
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
                let m =
                    self.transient_overlay(lower.as_fd(), name, &format!("transient-{name}"))?;
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
            path: self.plan.target.join(name),
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
            let mount = clone_handle(mount)?;
            self.undo.push(Undo::Unmount {
                mount,
                at: target.to_path_buf(),
            });
        }
        Ok(())
    }

    /// The image file (absent with `--root-fs`, whose plan has no step that reads it).
    fn image(&self) -> Result<&ImageFile, ExecError> {
        self.res.image.as_ref().ok_or_else(|| missing("image"))
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
            .any(|u| matches!(u, Undo::RemoveStagingDir(p) if p == staging))
        {
            match rustix::fs::mkdir(staging, Mode::from_raw_mode(0o700)) {
                Ok(()) => self
                    .undo
                    .push(Undo::RemoveStagingDir(staging.to_path_buf())),
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
        self.undo.push(Undo::RemoveStagingDir(at.to_path_buf()));
        mount.attach(CWD, &path_str(at)?, &at.display().to_string())?;
        self.undo.push(Undo::Unmount {
            mount: clone_handle(mount)?,
            at: at.to_path_buf(),
        });
        Ok(())
    }

    /// Whether a staged mount is still attached.
    fn has_staged(&self) -> bool {
        self.plan.staging.as_ref().is_some_and(|staging| {
            self.undo.iter().any(
                |u| matches!(u, Undo::Unmount { at, .. } if at.parent() == Some(staging.as_path())),
            )
        })
    }

    /// Releases the most recent staged mount (and its directory), if any.
    fn unstage(&mut self) -> Result<(), ExecError> {
        let Some(staging) = &self.plan.staging else {
            return Ok(());
        };
        let Some(pos) = self.undo.iter().rposition(
            |u| matches!(u, Undo::Unmount { at, .. } if at.parent() == Some(staging.as_path())),
        ) else {
            return Ok(());
        };
        let Undo::Unmount { mount, at } = self.undo.remove(pos) else {
            return Ok(());
        };
        mount.unmount(&at)?;
        if let Some(dpos) = self
            .undo
            .iter()
            .rposition(|u| matches!(u, Undo::RemoveStagingDir(p) if *p == at))
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
        let Some(staging) = &self.plan.staging else {
            return;
        };
        if let Some(pos) = self
            .undo
            .iter()
            .position(|u| matches!(u, Undo::RemoveStagingDir(p) if p == staging))
        {
            self.undo.remove(pos);
            if let Err(e) = rustix::fs::rmdir(staging) {
                log::warn!("could not remove {}: {e}", staging.display());
            }
        }
    }

    /// Undoes everything done so far, newest first; returns the undo actions that failed.
    fn unwind(&mut self) -> Vec<String> {
        // Detached mounts go with their fds, first: an overlay still mounted in a detached
        // tree would keep its work directory busy. (Attached ones are held by their undo.)
        self.root = None;
        self.composefs = None;
        self.erofs = None;
        self.physical = None;
        let mut failures = Vec::new();
        let mut first = true;
        while let Some(undo) = self.undo.pop() {
            let result = if undo_injected(first) {
                Err("injected undo failure (CFS_SETUP_ROOT_FAIL_UNDO)".to_string())
            } else {
                self.undo_one(&undo)
            };
            first = false;
            match result {
                Ok(()) => log::info!("undone: {undo}"),
                Err(e) => {
                    log::error!("could not undo ({undo}): {e}");
                    failures.push(format!("{undo}: {e}"));
                }
            }
        }
        self.state = None;
        self.state_view = None;
        self.loopdev = None;
        failures
    }

    fn undo_one(&self, undo: &Undo) -> Result<(), String> {
        match undo {
            Undo::Unmount { mount, at } => mount.unmount(at).map_err(|e| e.to_string()),
            Undo::RemoveStagingDir(p) => rustix::fs::rmdir(p).map_err(errno_text),
            Undo::RemoveStateDir(d) => d.remove().map_err(errno_text),
            Undo::RemoveLink(p) => rustix::fs::unlink(p).map_err(errno_text),
            Undo::RestoreReadOnly => reconfigure_superblock(
                self.res.sysroot_fd.as_fd(),
                true,
                &self.plan.sysroot.display().to_string(),
            )
            .map_err(|e| e.to_string()),
        }
    }
}

fn errno_text(errno: Errno) -> String {
    std::io::Error::from(errno).to_string()
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

/// A slot found empty: unreachable for a plan that passed `dataflow::check`, kept so that a
/// slip is an error and an undo, never a panic.
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

/// Reads a file with `pread` from offset 0, leaving the fd's position alone, and logs
/// progress every [`PROGRESS_STEP`] bytes: a large image takes seconds to hash.
struct ProgressReader<'a> {
    fd: BorrowedFd<'a>,
    offset: u64,
    size: u64,
    next_report: u64,
    path: &'a Path,
}

impl std::io::Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = rustix::io::pread(self.fd, buf, self.offset)?;
        self.offset += n as u64;
        if self.offset >= self.next_report && self.offset < self.size {
            log::info!(
                "computing the fs-verity digest of {}: {} of {} MiB",
                self.path.display(),
                self.offset >> 20,
                self.size >> 20
            );
            self.next_report = self.offset.saturating_add(PROGRESS_STEP);
        }
        Ok(n)
    }
}
