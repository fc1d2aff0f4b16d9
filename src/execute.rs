//! Carries out a plan: one straight function, [`execute`], whose steps hand each other typed
//! handles (a verified image, a detached erofs mount, the image tree and the root...), so
//! that a step can only run once what it needs exists: a wrong order does not compile.
//!
//! Mounts start detached; a detached mount (and every mount attached beneath it) is freed
//! by the kernel when its fd closes, so only what has been attached to the visible tree or
//! written to a disk needs an explicit undo. Each such undo is a guard on a stack ([`Undo`])
//! that owns what it undoes: the mount it attached (unmounted only while it is the mount on
//! top at its path), the directory it created (removed through its parent's fd), the link it
//! made, the superblock it made writable. On error every handle the steps made is closed
//! first, then the guards run newest first; on success they are disarmed. A failed boot
//! leaves `/sysroot` exactly as it was, with no mount, staging or state directory or loop
//! device behind; an undo that fails is reported.
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

use crate::features::{Assembly, ErofsBacking, MountStrategy};
use crate::loopdev::{LoopDevice, LoopError};
use crate::mount::{
    FsContext, Mount, MountAttributes, MountError, proc_fd_path, reconfigure_superblock,
};
use crate::plan::{self, ImageSource, Plan, StateMount};
use crate::repo::{ImageFile, RepoError, Repository, StateDir};
use crate::tpm::{self, TpmError};
use crate::undo::{Guard, Undo, clone_handle, dup, open_dir, path_str, split};
use crate::verdict::{Verified, overlay_requires_verity};
use crate::verify::{VerifiedImage, VerifyError, verify};

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
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
    /// /etc or /var needs the state directory, but the plan opened no view of it (a bug).
    #[error(
        "internal error: /{name} comes from the state directory, but the plan did not open it (please report this with the output of --dry-run)"
    )]
    NoStateView {
        /// "etc" or "var".
        name: &'static str,
    },
    /// The image was refused.
    #[error("{0}")]
    Verify(#[from] VerifyError),
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
            ExecError::Verify(_) => true,
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

/// What the steps found out, for the status record.
#[derive(Debug, Default)]
pub struct Report {
    /// How the image's digest was checked (`None` with `--root-fs`).
    pub verified: Option<Verified>,
    /// The composefs overlay got `verity=require`.
    pub verity_require: bool,
    /// The loop device erofs reads the image through, if any.
    pub loop_device: Option<String>,
    /// The event the plan's measurement stands for (`composefs-insecure:<hex>` for an
    /// insecure root without `verity=require`), and the measurement or why there is none
    /// (`None`: not planned).
    pub tpm: Option<(String, Result<tpm::Measurement, String>)>,
    /// Each step's short name and duration in microseconds, in order.
    pub timings: Vec<(&'static str, u64)>,
}

/// Carries out `plan`. `image` is the repository and the image the plan names (none with
/// `--root-fs`); `sysroot` the physical root, opened (`O_PATH`). On error, undoes what was
/// done and says which step failed.
pub fn execute(
    plan: &Plan,
    sysroot: OwnedFd,
    image: Option<(Repository, ImageFile)>,
) -> Result<Report, Box<StepError>> {
    for warning in &plan.warnings {
        log::warn!("{warning}");
    }
    let mut undo = Undo::new(plan.staging.clone());
    let mut steps = Steps {
        lines: plan.lines().into_iter(),
        ..Steps::default()
    };
    // Every handle `assemble` made is closed when it returns: the guards then run on a tree
    // nothing of ours holds open (a removed directory still open keeps a remount to
    // read-only busy).
    // The loop device (if any) is closed last: with autoclear, our close is then the last
    // one and releases the device at once, wherever the erofs superblock went.
    let mut loop_device = None;
    let result = assemble(
        plan,
        sysroot.as_fd(),
        image,
        &mut loop_device,
        &mut steps,
        &mut undo,
    );
    let result = match result {
        Ok(mut report) => {
            undo.disarm();
            report.timings = steps.timings;
            Ok(report)
        }
        Err(cause) => Err(Box::new(StepError {
            number: steps.number,
            step: steps.current,
            cause,
            undo_failures: undo.unwind(),
        })),
    };
    drop(loop_device);
    result
}

/// The steps, in order: each takes the handles it needs and returns the ones it makes.
/// (The step functions called only from here are `#[inline(always)]`: as separate functions
/// each would cost its own prologue and moves of the error, and the static binary grew.)
fn assemble(
    plan: &Plan,
    sysroot: BorrowedFd<'_>,
    image: Option<(Repository, ImageFile)>,
    loop_device: &mut Option<LoopDevice>,
    steps: &mut Steps,
    undo: &mut Undo,
) -> Result<Report, ExecError> {
    let strategy = plan.strategy;
    let mut report = Report::default();
    let (tree, root) = match (&plan.image, image) {
        (ImageSource::Composefs(verify_as, erofs_as, composefs_as), Some((repo, file))) => {
            steps.next("verify")?;
            let image = verify(file, verify_as)?;
            steps.next("mount-erofs")?;
            let mut erofs = mount_erofs(image, erofs_as, undo)?;
            *loop_device = erofs.loop_device.take();
            report.loop_device = loop_device.as_ref().map(|d| d.path().to_string());
            steps.next("mount-composefs")?;
            mount_composefs(erofs, &repo, composefs_as, strategy)?
        }
        (ImageSource::Tree(path), _) => {
            steps.next("clone-root-tree")?;
            clone_tree(path)?
        }
        (ImageSource::Composefs(verify_as, ..), None) => {
            return Err(ExecError::Repo(RepoError::Open {
                path: verify_as.path.clone(),
                errno: Errno::NOENT,
            }));
        }
    };
    steps.next("clone-physical-root")?;
    let physical = clone_physical_root(sysroot, plan.physical_readonly)?;
    if plan.remount_writable {
        steps.next("remount-physical-root-rw")?;
        remount_writable(sysroot, &plan.sysroot, undo)?;
    }
    let mut view = None;
    if let Some(staging) = &plan.state_view {
        steps.next("open-state-view")?;
        view = Some(open_state_view(
            sysroot,
            &plan.sysroot,
            staging.as_deref(),
            undo,
        )?);
    }
    // Attach-first paths put the root in place now and mount beneath it by path; the
    // detached path builds the whole tree first and attaches it last, in one move.
    let mut attached = None;
    if plan.attach_first() {
        steps.next("attach-root")?;
        attached = Some(attach_root(&root, &plan.target, undo)?);
    }
    let root = match &plan.transient_root {
        Some(source) => {
            steps.next("transient-root")?;
            transient_root(root, source, plan, undo)?
        }
        None => root,
    };
    steps.next("mount-physical-root")?;
    let target = plan.target.join("sysroot");
    attach_beneath(&root, physical.0, "sysroot", &target, plan, undo)
        .map_err(|e| hint(e, "does the image have a /sysroot directory?"))?;
    for state in plan.etc.iter().chain(&plan.var) {
        for dir in &state.dirs {
            steps.next("create-state-dir")?;
            ensure_state_dir(view.as_ref(), state.name, dir, undo)?;
        }
        steps.next(if state.name == "etc" {
            "mount-etc"
        } else {
            "mount-var"
        })?;
        mount_state(&root, &tree, view.as_ref(), state, plan, undo)?;
    }
    let attached = match attached {
        Some(attached) => attached,
        None => {
            steps.next("attach-root")?;
            attach_root(&root, &plan.target, undo)?
        }
    };
    if let Some((link, target)) = &plan.volatile_root {
        steps.next("volatile-root-link")?;
        if let Err(e) = volatile_root_link(link, target, undo) {
            log::warn!("could not create {}: {e}", link.display());
        }
    }
    report.verified = tree.verified;
    report.verity_require = tree.verity_require;
    if let Some(measure) = &plan.measure {
        steps.next("tpm-measure")?;
        report.tpm = Some(measure_image(&attached, &tree, measure)?);
    }
    steps.done();
    Ok(report)
}

/// The one helper every step starts with: numbers it, logs its line (the plan's), times the
/// step before it, and (test-only) fails it on request. A failure is the current step's.
#[derive(Default)]
struct Steps {
    /// The plan's lines, one per step, in order.
    lines: std::vec::IntoIter<String>,
    number: usize,
    current: String,
    started: Option<(&'static str, std::time::Instant)>,
    timings: Vec<(&'static str, u64)>,
}

impl Steps {
    fn next(&mut self, name: &'static str) -> Result<(), ExecError> {
        self.done();
        self.number += 1;
        self.current = self.lines.next().unwrap_or_default();
        log::info!("step {}: {}", self.number, self.current);
        self.started = Some((name, std::time::Instant::now()));
        injected(self.number)
    }

    /// Records how long the current step took.
    fn done(&mut self) {
        if let Some((name, started)) = self.started.take() {
            let usec = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.timings.push((name, usec));
        }
    }
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

/// A detached erofs superblock over a verified image.
pub struct ErofsMount {
    mount: Mount,
    verified: Verified,
    loop_device: Option<LoopDevice>,
}

/// The image's own tree (the composefs overlay, or the `--root-fs` clone): the lower layer
/// of `/etc` and `/var` overlays.
pub struct ImageTree {
    mount: Mount,
    verified: Option<Verified>,
    verity_require: bool,
}

/// The mount that becomes `/`: the image tree, or a transient overlay over it.
pub struct Root(Mount);

/// The physical root's private clone, for `<root>/sysroot`.
pub struct PhysicalClone(Mount);

/// The writable view of the physical root, and the state directory beneath it.
pub struct StateView {
    _view: Mount,
    dir: StateDir,
}

/// Proof that the new root is attached at its target.
pub struct Attached(());

#[inline(always)]
fn mount_erofs(
    image: VerifiedImage,
    how: &plan::Erofs,
    undo: &mut Undo,
) -> Result<ErofsMount, ExecError> {
    let from_file = || erofs_superblock(&proc_fd_path(image.file.as_fd()));
    let from_loop = || -> Result<(Mount, Option<LoopDevice>), ExecError> {
        let dev = LoopDevice::attach(image.file.as_fd())?;
        log::info!("bound {} to the image", dev.path());
        // Autoclear releases the device once the erofs superblock is gone.
        Ok((erofs_superblock(dev.path())?, Some(dev)))
    };
    let (mount, loop_device) = match how.backing {
        ErofsBacking::File => (from_file()?, None),
        ErofsBacking::Loop => from_loop()?,
        // The kernel is the probe: before 6.12 it looks for a block device (ENOTBLK).
        ErofsBacking::FileOrLoop => match from_file() {
            Err(ExecError::Mount(e)) if e.errno() == Errno::NOTBLK => {
                log::info!(
                    "erofs cannot read the image file itself (a kernel before 6.12, or \
                     a filesystem such as tmpfs): using a loop device"
                );
                from_loop()?
            }
            other => (other?, None),
        },
    };
    undo.stage(&mount, "erofs", "the erofs mount")?;
    Ok(ErofsMount {
        mount,
        verified: image.verified,
        loop_device,
    })
}

#[inline(always)]
fn mount_composefs(
    erofs: ErofsMount,
    repo: &Repository,
    how: &plan::Composefs,
    strategy: MountStrategy,
) -> Result<(ImageTree, Root), ExecError> {
    let objects = repo.open_objects()?;
    let ctx = FsContext::new("overlay")?;
    ctx.set_string("source", &how.source)?;
    set_layers(
        strategy,
        &ctx,
        Layers {
            lower: erofs.mount.as_fd(),
            data: Some(objects.as_fd()),
            upper: None,
        },
    )?;
    ctx.set_string("metacopy", "on")?;
    ctx.set_string("redirect_dir", "on")?;
    let verity_require = overlay_requires_verity(how.verity, erofs.verified);
    if verity_require {
        ctx.set_string("verity", "require")?;
    }
    let mount = ctx.mount(MountAttrFlags::MOUNT_ATTR_RDONLY)?;
    let root = Root(clone_handle(&mount, "the composefs overlay")?);
    let tree = ImageTree {
        mount,
        verified: Some(erofs.verified),
        verity_require,
    };
    Ok((tree, root))
}

#[inline(always)]
fn clone_tree(path: &Path) -> Result<(ImageTree, Root), ExecError> {
    let what = path.display().to_string();
    let mount = Mount::clone_of(CWD, path_str(path)?, &what)?;
    mount.set_readonly(&what)?;
    let root = Root(clone_handle(&mount, &what)?);
    let tree = ImageTree {
        mount,
        verified: None,
        verity_require: false,
    };
    Ok((tree, root))
}

#[inline(always)]
fn clone_physical_root(
    sysroot: BorrowedFd<'_>,
    readonly: bool,
) -> Result<PhysicalClone, ExecError> {
    let m = Mount::clone_tree(sysroot, "", true, "the physical root")?;
    let attrs = MountAttributes {
        set: if readonly {
            MountAttrFlags::MOUNT_ATTR_RDONLY
        } else {
            MountAttrFlags::empty()
        },
        private: true,
        ..MountAttributes::default()
    };
    m.set_attributes(attrs, true, "the physical root's clone")?;
    Ok(PhysicalClone(m))
}

/// Makes the physical root's filesystem writable, as `rw` on the command line would have;
/// the guard makes it read-only again.
#[inline(always)]
fn remount_writable(
    sysroot: BorrowedFd<'_>,
    path: &Path,
    undo: &mut Undo,
) -> Result<(), ExecError> {
    let root = dup(sysroot, path)?;
    reconfigure_superblock(sysroot, false, &path.display().to_string()).map_err(|e| {
        hint(
            e.into(),
            "is the disk write-protected? boot with `rw`, or use transient /etc and /var",
        )
    })?;
    undo.push(Guard::RestoreReadOnly {
        root,
        path: path.to_path_buf(),
    });
    Ok(())
}

/// A private, writable, detached clone of the physical root (whatever the flags of
/// `/sysroot`'s own mount), and `state` beneath it, created when missing.
#[inline(always)]
fn open_state_view(
    sysroot: BorrowedFd<'_>,
    path: &Path,
    staged: Option<&Path>,
    undo: &mut Undo,
) -> Result<StateView, ExecError> {
    let view = Mount::clone_tree(sysroot, "", true, "the physical root (state view)")?;
    let attrs = MountAttributes {
        clear: MountAttrFlags::MOUNT_ATTR_RDONLY,
        private: true,
        ..MountAttributes::default()
    };
    view.set_attributes(attrs, true, "the state view")?;
    if staged.is_some() {
        // Kernels before 6.15 take overlay layers and bind sources from attached mounts only.
        undo.stage(&view, "state", "the state view")?;
    }
    let (dir, created) = StateDir::create(view.as_fd(), path)?;
    if let Some(dir) = created {
        undo.push(Guard::RemoveDir { dir, staged: false });
    }
    Ok(StateView { _view: view, dir })
}

fn attach_root(root: &Root, target: &Path, undo: &mut Undo) -> Result<Attached, ExecError> {
    root.0
        .attach(CWD, path_str(target)?, &target.display().to_string())?;
    undo.push(Guard::Unmount {
        mount: clone_handle(&root.0, "the new root")?,
        at: target.to_path_buf(),
        staged: false,
    });
    Ok(Attached(()))
}

/// A tmpfs-upper overlay over `root`, which becomes the root (stacked over it at the target
/// on attach-first paths).
#[inline(always)]
fn transient_root(
    root: Root,
    source: &str,
    plan: &Plan,
    undo: &mut Undo,
) -> Result<Root, ExecError> {
    let overlay = transient_overlay(root.0.as_fd(), "root", source, plan.strategy, undo)?;
    if plan.attach_first() {
        let target = &plan.target;
        overlay.attach(CWD, path_str(target)?, &target.display().to_string())?;
        undo.push(Guard::Unmount {
            mount: clone_handle(&overlay, "the transient root")?,
            at: target.clone(),
            staged: false,
        });
    }
    Ok(Root(overlay))
}

/// An overlay of `lower` with a fresh tmpfs as upper (changes are lost at reboot).
fn transient_overlay(
    lower: BorrowedFd<'_>,
    what: &str,
    source: &str,
    strategy: MountStrategy,
    undo: &mut Undo,
) -> Result<Mount, ExecError> {
    let tmpfs = FsContext::new("tmpfs")?;
    tmpfs.set_string("mode", "0755")?;
    let tmpfs = tmpfs.mount(MountAttrFlags::empty())?;
    undo.stage(&tmpfs, &format!("transient-{what}"), "the transient tmpfs")?;
    let upper = make_tmpfs_dir(tmpfs.as_fd(), "upper", 0o755)?;
    let work = make_tmpfs_dir(tmpfs.as_fd(), "work", 0o700)?;
    let ctx = FsContext::new("overlay")?;
    ctx.set_string("source", source)?;
    set_layers(
        strategy,
        &ctx,
        Layers {
            lower,
            data: None,
            upper: Some((upper.as_fd(), work.as_fd())),
        },
    )?;
    Ok(ctx.mount(MountAttrFlags::empty())?)
}

/// Attaches `mount` at `name` inside the new root; the guard unmounts it on attach-first
/// paths, where the root is already visible (a detached root takes it along when it goes).
fn attach_beneath(
    root: &Root,
    mount: Mount,
    name: &str,
    target: &Path,
    plan: &Plan,
    undo: &mut Undo,
) -> Result<(), ExecError> {
    mount.attach(root.0.as_fd(), name, &target.display().to_string())?;
    if plan.attach_first() {
        undo.push(Guard::Unmount {
            mount,
            at: target.to_path_buf(),
            staged: false,
        });
    }
    Ok(())
}

/// The state view the plan opens whenever /etc or /var comes from the state directory.
fn state_view<'v>(
    view: Option<&'v StateView>,
    name: &'static str,
) -> Result<&'v StateView, ExecError> {
    view.ok_or(ExecError::NoStateView { name })
}

#[inline(always)]
fn ensure_state_dir(
    view: Option<&StateView>,
    name: &'static str,
    dir: &plan::StateDir,
    undo: &mut Undo,
) -> Result<(), ExecError> {
    let created = state_view(view, name)?
        .dir
        .create_dirs(&dir.path, dir.mode)?;
    for dir in created {
        undo.push(Guard::RemoveDir { dir, staged: false });
    }
    Ok(())
}

#[inline(always)]
fn mount_state(
    root: &Root,
    tree: &ImageTree,
    view: Option<&StateView>,
    state: &plan::State,
    plan: &Plan,
    undo: &mut Undo,
) -> Result<(), ExecError> {
    let name = state.name;
    let image_dir = || {
        rustix::fs::openat(
            tree.mount.as_fd(),
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| ExecError::Io {
            what: "open the image's directory",
            path: plan.target.join(name),
            errno,
        })
    };
    let mount = match &state.how {
        StateMount::Bind { source } => {
            let dir = &state_view(view, name)?.dir;
            let what = dir.path().join(source).display().to_string();
            Mount::clone_of(dir.open_dir(source)?.as_fd(), "", &what)?
        }
        StateMount::Overlay { upper, work } => {
            let lower = image_dir()?;
            let dir = &state_view(view, name)?.dir;
            let (upper, work) = (dir.open_dir(upper)?, dir.open_dir(work)?);
            let ctx = FsContext::new("overlay")?;
            ctx.set_string("source", &format!("composefs-{name}"))?;
            set_layers(
                plan.strategy,
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
            let lower = image_dir()?;
            let source = format!("transient-{name}");
            transient_overlay(lower.as_fd(), name, &source, plan.strategy, undo)?
        }
    };
    attach_beneath(root, mount, name, &state.target, plan, undo)
}

/// Points `/run/systemd/volatile-root` at the physical root's device (systemd#35017), best
/// effort. A link that exists already (another tool made it) is accepted as it is.
#[inline(always)]
fn volatile_root_link(link: &Path, target: &str, undo: &mut Undo) -> Result<(), ExecError> {
    let (parent, name) = split(link);
    let _ = std::fs::create_dir_all(parent);
    let dir = open_dir(parent)?;
    match rustix::fs::symlinkat(target, &dir, name) {
        Ok(()) => undo.push(Guard::RemoveLink {
            dir,
            path: link.to_path_buf(),
        }),
        Err(Errno::EXIST) => {}
        Err(errno) => {
            return Err(ExecError::Io {
                what: "create the link",
                path: link.to_path_buf(),
                errno,
            });
        }
    }
    Ok(())
}

/// Extends the PCR with the image's identity (what the kernel enforces decides which), and
/// logs the event. Without a TPM or on a TPM error: a warning (auto) or a refusal (required,
/// undone like any failed step).
#[inline(always)]
fn measure_image(
    _attached: &Attached,
    tree: &ImageTree,
    how: &plan::Measure,
) -> Result<(String, Result<tpm::Measurement, String>), ExecError> {
    let (pcr, event) = (how.pcr, how.event(tree.verity_require));
    tpm::wait_for_device(&how.device);
    let measured = match tpm::measure_and_log(&how.device, &tpm::event_log_path(), pcr, event) {
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
            Ok(m)
        }
        Err(e) if how.required => return Err(e.into()),
        Err(e) => {
            log::warn!(
                "{e}; the image is not measured into PCR {pcr} (as {event}), the boot goes on ([tpm] measure = \"auto\")"
            );
            Err(e.to_string())
        }
    };
    Ok((event.to_string(), measured))
}

/// The layers of one overlay, as fds; passed to the kernel as the strategy says.
struct Layers<'a> {
    lower: BorrowedFd<'a>,
    data: Option<BorrowedFd<'a>>,
    upper: Option<(BorrowedFd<'a>, BorrowedFd<'a>)>,
}

/// Passes an overlay's layers as the strategy says: fds, `lowerdir+` paths, or one legacy
/// `lowerdir=` string.
fn set_layers(s: MountStrategy, ctx: &FsContext, layers: Layers<'_>) -> Result<(), ExecError> {
    if s.fd_layers {
        ctx.set_fd("lowerdir+", layers.lower, "lower layer")?;
        if let Some(data) = layers.data {
            ctx.set_fd("datadir+", data, "objects")?;
        }
        if let Some((upper, work)) = layers.upper {
            ctx.set_fd("upperdir", upper, "upper")?;
            ctx.set_fd("workdir", work, "work")?;
        }
        return Ok(());
    }
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
    Ok(())
}

/// A read-only erofs superblock over `source`, as a detached mount.
fn erofs_superblock(source: &str) -> Result<Mount, ExecError> {
    let ctx = FsContext::new("erofs")?;
    ctx.set_string("source", source)?;
    // A read-only superblock: else the kernel opens a loop device for writing (EACCES).
    ctx.set_flag("ro")?;
    Ok(ctx.mount(MountAttrFlags::MOUNT_ATTR_RDONLY)?)
}

fn make_tmpfs_dir(dir: BorrowedFd<'_>, name: &str, mode: u32) -> Result<OwnedFd, ExecError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::undo::clone_error;

    #[test]
    fn an_existing_volatile_root_link_is_accepted_as_it_is() {
        let dir = std::env::temp_dir().join(format!("cfs-exec-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("volatile-root");
        std::os::unix::fs::symlink("/dev/block/8:1", &link).unwrap();
        let mut undo = Undo::new(None);
        volatile_root_link(&link, "/dev/block/259:3", &mut undo).expect("accepted");
        assert!(undo.guards.is_empty(), "a guard for a link we did not make");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/dev/block/8:1")
        );
        // A new one is made, and its guard removes it again.
        std::fs::remove_file(&link).unwrap();
        volatile_root_link(&link, "/dev/block/259:3", &mut undo).expect("made");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/dev/block/259:3")
        );
        assert!(undo.unwind().is_empty());
        assert!(std::fs::symlink_metadata(&link).is_err(), "the link stays");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_dup_names_the_mount() {
        let e = clone_error("the erofs mount", &std::io::Error::from_raw_os_error(24));
        assert!(e.to_string().contains("the erofs mount"), "{e}");
        assert!(!e.to_string().contains("composefs"), "{e}");
    }
}
