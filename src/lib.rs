//! cfs-setup-root: turn `/sysroot` into a verified composefs root in the initramfs.
//!
//! Data flows one way: the command line and the config become selectors and settings,
//! the repository and the kernel are surveyed, `plan` turns all of it into decisions
//! without touching anything, and `execute` carries them out, step by typed step, with an
//! undo stack. See
//! `design.md` in the project's shared notes for the picture.

#![warn(missing_docs)]

pub mod cli;
pub mod cmdline;
pub mod config;
pub mod digest;
pub mod execute;
pub mod features;
mod json;
pub mod log;
pub mod loopdev;
pub mod mount;
pub mod physroot;
pub mod plan;
pub mod repo;
pub mod status;
pub mod tpm;
mod undo;
pub mod verdict;
pub mod verify;
pub mod verity;

use std::path::{Path, PathBuf};

use crate::features::{KernelFeatures, Overrides};
use crate::plan::SkipReason;

/// Process exit codes (also in `--help` and the README).
pub mod exit {
    /// Done, or no composefs argument (nothing to do).
    pub const OK: u8 = 0;
    /// Bad usage, unreadable command line or bad config file.
    pub const USAGE: u8 = 2;
    /// No selector names an image the repository has (or no repository).
    pub const NO_IMAGE: u8 = 3;
    /// The image was refused: digest mismatch, no fs-verity in secure mode, larger than
    /// `[image] max-size`, or an entry that leads out of the repository or the state
    /// directory.
    pub const REFUSED: u8 = 4;
    /// A mount step failed, the kernel lacks a needed feature, or the state directory,
    /// `--target` or the mount table could not be read; everything was undone.
    pub const MOUNT: u8 = 5;
    /// `[tpm] measure = "required"` and the image could not be measured (no TPM, or a TPM
    /// error); everything was undone.
    pub const TPM: u8 = 6;
    /// `--status`: there is no status record (this system was not set up by us).
    pub const NO_STATUS: u8 = 1;

    /// Every exit code with its constant's name, in the order of the man page's EXIT STATUS
    /// section (cfs-setup-root(8); `tests/manpages.rs` checks that it lists exactly these).
    pub const ALL: &[(u8, &str)] = &[
        (OK, "OK"),
        (NO_STATUS, "NO_STATUS"),
        (USAGE, "USAGE"),
        (NO_IMAGE, "NO_IMAGE"),
        (REFUSED, "REFUSED"),
        (MOUNT, "MOUNT"),
        (TPM, "TPM"),
    ];
}

/// What the command line of the binary asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The physical root (`/sysroot`).
    pub sysroot: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// The kernel command line, if given (else `/proc/cmdline` is read).
    pub cmdline: Option<String>,
    /// `--target`: where the new root goes, instead of over the sysroot (which is left alone).
    pub target: Option<PathBuf>,
    /// `--root-fs`: a tree to use as the root instead of the composefs image.
    pub root_fs: Option<PathBuf>,
    /// Print the plan, mount nothing.
    pub dry_run: bool,
    /// Where the status record is written.
    pub status_path: PathBuf,
    /// The TPM device (test-only `--tpm-device`; [`tpm::DEVICE`] otherwise).
    pub tpm_device: PathBuf,
    /// Test-only mount-path overrides.
    pub overrides: Overrides,
}

/// Why a run failed; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `/proc/cmdline` unreadable.
    #[error("cannot read the kernel command line from {path}: {source}")]
    Cmdline {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Bad config file.
    #[error("config {path}: {source}")]
    Config {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: config::ConfigError,
    },
    /// No usable selector.
    #[error("no usable composefs image: {}", list(.0))]
    NoUsableImage(Vec<(String, SkipReason)>),
    /// The repository could not be opened or read.
    #[error("{0}")]
    Repository(repo::RepoError),
    /// The repository refused the chosen image.
    #[error("{0}")]
    Refused(repo::RepoError),
    /// The kernel lacks a feature.
    #[error("{0}")]
    Feature(#[from] features::FeatureError),
    /// The kernel could not be probed.
    #[error(
        "cannot probe the kernel's mount features: {0} (cfs-setup-root must run as root, with CAP_SYS_ADMIN)"
    )]
    Probe(std::io::Error),
    /// The state directory could not be opened (for another reason than an entry leading
    /// out of it, which is [`RunError::Refused`]).
    #[error("{0} (check the physical root's state directory)")]
    State(repo::RepoError),
    /// The mount table could not be read (for the `--target` busy check).
    #[error("cannot read {}: {source} (is /proc mounted?)", path.display())]
    Mountinfo {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `--target` already has a root mounted on it.
    #[error(
        "{} already has {mounted} mounted on it (a soft reboot staged earlier?): `systemctl soft-reboot` switches to it, `umount -R {}` drops it; then stage again",
        target.display(),
        target.display()
    )]
    TargetBusy {
        /// The target.
        target: PathBuf,
        /// What is mounted there.
        mounted: String,
    },
    /// `--target` is not a directory and cannot be made one.
    #[error("--target {}: {source} (give a directory, e.g. /run/nextroot for systemctl soft-reboot)", target.display())]
    TargetDir {
        /// The target.
        target: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A step failed (and was undone).
    #[error("{0}")]
    Step(#[from] Box<execute::StepError>),
}

fn list(skipped: &[(String, SkipReason)]) -> String {
    if skipped.is_empty() {
        return "the command line has no composefs= argument".into();
    }
    skipped
        .iter()
        .map(|(arg, why)| format!("{arg}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl RunError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Cmdline { .. } | RunError::Config { .. } => exit::USAGE,
            RunError::NoUsableImage(_) | RunError::Repository(_) => exit::NO_IMAGE,
            RunError::Refused(_) => exit::REFUSED,
            RunError::Feature(_)
            | RunError::Probe(_)
            | RunError::State(_)
            | RunError::Mountinfo { .. }
            | RunError::TargetBusy { .. }
            | RunError::TargetDir { .. } => exit::MOUNT,
            RunError::Step(e) if e.cause.is_refusal() => exit::REFUSED,
            RunError::Step(e) if matches!(e.cause, execute::ExecError::Tpm(_)) => exit::TPM,
            RunError::Step(_) => exit::MOUNT,
        }
    }
}

/// The result of a successful run.
#[derive(Debug)]
pub enum Outcome {
    /// No composefs argument: nothing was touched.
    NothingToDo,
    /// `--dry-run`: the plan that would have run.
    DryRun(plan::Plan),
    /// The new root is in place.
    Done(plan::Plan),
}

/// Runs the whole setup.
pub fn run(opts: &Options) -> Result<Outcome, RunError> {
    if opts.dry_run {
        // A dry run changes nothing, the kernel log included.
        log::kernel_log_off();
    }
    let started = std::time::Instant::now();
    let text = match &opts.cmdline {
        Some(text) => text.clone(),
        None => {
            let path = PathBuf::from("/proc/cmdline");
            let bytes =
                std::fs::read(&path).map_err(|source| RunError::Cmdline { path, source })?;
            cmdline::text_from_bytes(&bytes)
        }
    };
    let kargs = cmdline::parse(&text);
    if kargs.selectors.is_empty() && kargs.rejected.is_empty() {
        ::log::info!("no composefs= argument on the command line: nothing to do");
        return Ok(Outcome::NothingToDo);
    }
    for r in &kargs.rejected {
        ::log::warn!("ignoring {}: {}", r.arg, r.reason);
    }
    let (config, warnings) = config::load(&opts.config).map_err(|source| RunError::Config {
        path: opts.config.clone(),
        source,
    })?;
    for w in &warnings {
        ::log::warn!(
            "config {} line {}: {}",
            opts.config.display(),
            w.line,
            w.message
        );
    }
    let malformed = || {
        kargs
            .rejected
            .iter()
            .map(|r| (r.arg.clone(), SkipReason::Malformed(r.reason.to_string())))
            .collect::<Vec<_>>()
    };
    if kargs.selectors.is_empty() {
        return Err(RunError::NoUsableImage(malformed()));
    }

    // `--root-fs`: the tree stands in for the image, and the first composefs argument names
    // the deployment (the peer's meaning); no repository is opened.
    let (repo, image, index, skipped) = match &opts.root_fs {
        Some(tree) => {
            ::log::info!(
                "booting the tree {} ({}, --root-fs)",
                tree.display(),
                kargs.selectors[0].arg
            );
            (None, None, 0, Vec::new())
        }
        None => {
            let (repo, image, index, skipped) =
                open_chosen_image(opts, &kargs.selectors, malformed)?;
            (Some(repo), Some(image), index, skipped)
        }
    };
    let selector = &kargs.selectors[index];

    let features = match features::probe() {
        Ok(f) => f,
        Err(e) if opts.dry_run => {
            ::log::warn!("cannot probe the kernel ({e}); the plan assumes a current kernel");
            KernelFeatures::ALL
        }
        Err(e) => return Err(RunError::Probe(e)),
    };
    ::log::info!("kernel: {features}");
    let strategy = features.strategy(opts.overrides)?;

    let sysroot_fd = repo::open_sysroot(&opts.sysroot).map_err(RunError::Repository)?;
    let deploy = Path::new(repo::DEPLOY_DIR).join(selector.digest.to_hex());
    let etc_state = match repo::StateDir::open(sysroot_fd.as_fd(), &opts.sysroot) {
        Ok(Some(state)) => state.etc_state(&deploy),
        Ok(None) => repo::EtcState::Missing,
        Err(e) if e.is_escape() => return Err(RunError::Refused(e)),
        Err(e) => return Err(RunError::State(e)),
    };
    let physical = physroot::survey(sysroot_fd.as_fd());
    ::log::info!("physical root {}: {physical}", opts.sysroot.display());
    let target = opts.target.as_deref().unwrap_or(&opts.sysroot);
    let inputs = plan::Inputs {
        sysroot: &opts.sysroot,
        target,
        root_fs: opts.root_fs.as_deref(),
        selector,
        image_path: image
            .as_ref()
            .map(|i| i.path().to_path_buf())
            .unwrap_or_default(),
        objects_path: repo
            .as_ref()
            .map(|r| r.path().join("objects"))
            .unwrap_or_default(),
        config: &config,
        strategy,
        etc_state,
        physical,
        volatile_state: kargs.volatile_state,
        gpt_auto_root: gpt_auto_root(Path::new(GPT_AUTO_ROOT)),
        staging: staging_dir(),
        tpm_device: opts.tpm_device.clone(),
    };
    let plan = plan::plan(&inputs);
    if opts.dry_run {
        return Ok(Outcome::DryRun(plan));
    }
    ::log::info!("plan: {} steps, {}", plan.lines().len(), plan.strategy);
    // `--target`: a free directory, created when missing (and removed again on failure).
    let created_target = match &opts.target {
        Some(target) => prepare_target(target, Path::new(MOUNTINFO))?,
        None => None,
    };
    let (image_path, image_size) = match (&image, &opts.root_fs) {
        (Some(image), _) => (image.path().to_path_buf(), image.size()),
        (None, Some(tree)) => (tree.clone(), 0),
        (None, None) => (PathBuf::new(), 0),
    };
    let survey_usec = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let report = match execute::execute(&plan, sysroot_fd, repo.zip(image)) {
        Ok(report) => report,
        Err(e) => {
            if let Some(dir) = created_target {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e.into());
        }
    };
    // A staged soft reboot: the record becomes the staged root's, the running root's is
    // kept beside it (`/run` survives the soft reboot, so afterwards the record is right).
    let (setup, previous) = match &opts.target {
        Some(_) => (
            status::Setup::SoftReboot,
            Some(opts.status_path.with_file_name("previous.json")),
        ),
        None => (status::Setup::Boot, None),
    };
    let facts = status::Facts {
        setup,
        selector,
        image_path: &image_path,
        image_size,
        skipped,
        tpm_policy: config.tpm_measure,
        survey_usec,
    };
    let record = status::build(&plan, &report, &facts);
    match record.write(&opts.status_path, previous.as_deref()) {
        Ok(()) => ::log::info!("status record: {}", opts.status_path.display()),
        Err(e) => ::log::warn!(
            "could not write the status record {}: {e}",
            opts.status_path.display()
        ),
    }
    ::log::info!(
        "done: {} is the composefs root {}, ready for switch_root",
        target.display(),
        plan.digest
    );
    Ok(Outcome::Done(plan))
}

/// The repository, the chosen image, its selector's index, and the selectors passed over
/// (argument, reason).
type ChosenImage = (
    repo::Repository,
    repo::ImageFile,
    usize,
    Vec<(String, String)>,
);

/// Opens the repository and the image of the first selector it has.
fn open_chosen_image(
    opts: &Options,
    selectors: &[cmdline::ImageSelector],
    malformed: impl Fn() -> Vec<(String, SkipReason)>,
) -> Result<ChosenImage, RunError> {
    let repo = repo::Repository::open(&opts.sysroot).map_err(RunError::Repository)?;
    match repo.algorithm() {
        Some(a) => ::log::info!("repository {} uses fsverity-{a}-12", repo.path().display()),
        None => ::log::info!(
            "repository {} has no meta.json: taking the algorithm from the argument",
            repo.path().display()
        ),
    }
    let plan::Chosen {
        index,
        found: image,
        skipped,
    } = match plan::choose_image(selectors, repo.algorithm(), |d| match repo.open_image(d) {
        repo::ImageLookup::Found(image) => plan::Lookup::Found(image),
        repo::ImageLookup::Absent => {
            plan::Lookup::Absent(repo.image_path(d), repo.path().to_path_buf())
        }
        repo::ImageLookup::Unusable(e) => plan::Lookup::Unusable(e.to_string()),
        repo::ImageLookup::Escapes(e) => plan::Lookup::Refused(e),
    }) {
        Ok(chosen) => chosen,
        Err(plan::ChooseError::NoneUsable(mut skipped)) => {
            skipped.extend(malformed());
            return Err(RunError::NoUsableImage(skipped));
        }
        Err(plan::ChooseError::Refused(e)) => return Err(RunError::Refused(e)),
    };
    for (arg, why) in &skipped {
        ::log::info!("skipping {arg}: {why}");
    }
    let selector = &selectors[index];
    ::log::info!(
        "booting {} ({}, {} bytes){}",
        image.path().display(),
        selector.arg,
        image.size(),
        if selector.insecure { ", insecure" } else { "" }
    );
    let skipped = skipped
        .iter()
        .map(|(arg, why)| (arg.clone(), why.to_string()))
        .collect();
    Ok((repo, image, index, skipped))
}

use std::os::fd::AsFd;

/// `--target`: refuses a directory that already has a root mounted on it (an earlier staging
/// not yet switched to), rather than stacking a second root over it; creates a missing one
/// (`/run/nextroot` does not exist until something stages a soft reboot) and returns it.
fn prepare_target(target: &Path, mountinfo: &Path) -> Result<Option<PathBuf>, RunError> {
    let info = std::fs::read_to_string(mountinfo).map_err(|source| RunError::Mountinfo {
        path: mountinfo.to_path_buf(),
        source,
    })?;
    if let Some(mounted) = status::source_at(&info, target) {
        return Err(RunError::TargetBusy {
            target: target.to_path_buf(),
            mounted,
        });
    }
    match std::fs::create_dir(target) {
        Ok(()) => Ok(Some(target.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() => Ok(None),
        Err(source) => Err(RunError::TargetDir {
            target: target.to_path_buf(),
            source,
        }),
    }
}

/// The mount table read for the `--target` busy check.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The link systemd's gpt-auto-generator makes to the physical root's block device.
const GPT_AUTO_ROOT: &str = "/dev/gpt-auto-root";

/// The block device `link` (`/dev/gpt-auto-root`) names, as (major, minor), for
/// `/run/systemd/volatile-root` (systemd#35017). The device itself: the `st_dev` of a
/// mounted btrfs is an anonymous device that names no block device.
fn gpt_auto_root(link: &Path) -> Option<(u32, u32)> {
    let st = rustix::fs::stat(link).ok()?;
    let is_block =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::BlockDevice;
    is_block.then(|| (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)))
}

/// A private, per-process directory for attach-first staging mounts.
fn staging_dir() -> PathBuf {
    let base = if Path::new("/run").is_dir() {
        "/run"
    } else {
        "/tmp"
    };
    PathBuf::from(format!("{base}/cfs-setup-root.{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cfs-lib-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn volatile_root_names_the_device_gpt_auto_root_points_at() {
        // The device node's own numbers (st_rdev), not the st_dev of the filesystem it is
        // in (nor of the mounted root: an anonymous device on btrfs).
        let dir = scratch("gpt");
        let dev = dir.join("gpt-auto-root");
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            &dev,
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(259, 3),
        );
        if made.is_err() {
            eprintln!("skipped: cannot make a block device node here ({made:?}; needs root)");
            return;
        }
        let link = dir.join("link");
        std::os::unix::fs::symlink(&dev, &link).unwrap();
        assert_eq!(gpt_auto_root(&link), Some((259, 3)));
        // Not a block device, or absent: no link.
        assert_eq!(gpt_auto_root(Path::new("/dev/null")), None);
        assert_eq!(gpt_auto_root(&dir.join("absent")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_mount_table_fails_the_target_check() {
        let dir = scratch("target");
        let target = dir.join("next");
        let e = prepare_target(&target, &dir.join("no-mountinfo")).expect_err("no mount table");
        assert!(matches!(e, RunError::Mountinfo { .. }), "{e}");
        assert_eq!(e.exit_code(), exit::MOUNT);
        assert!(e.to_string().contains("no-mountinfo"), "{e}");
        assert!(!target.exists(), "the target was created");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
