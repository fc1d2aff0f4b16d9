//! From inputs to steps, with no syscalls: which image, how to verify it, and every mount
//! in order. A plan reads as the log of a boot: each step's `Display` is both its
//! `--dry-run` line and the kernel-log line written when it runs.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cmdline::ImageSelector;
use crate::config::{Config, EtcMode, MountMode, TpmMeasure};
use crate::digest::{Algorithm, Digest};
use crate::features::{Assembly, ErofsBacking, MountStrategy};
use crate::physroot::PhysicalRoot;
use crate::repo::{DEPLOY_DIR, EtcState, STATE_DIR};

/// How the image's digest is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Secure: the image must have kernel fs-verity and its digest must match.
    KernelRequired,
    /// Insecure: a kernel digest must match; without one, the digest computed in
    /// userspace must match.
    KernelOrComputed,
    /// Insecure with `[image] check-digest = false`: a kernel digest must match; without
    /// one the image is not checked.
    KernelIfPresent,
}

/// When the composefs overlay gets `verity=require`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayVerity {
    /// Always (secure mode).
    Require,
    /// Only if the image turned out to have kernel fs-verity (insecure mode).
    IfImageHasVerity,
}

/// How /etc or /var is provided, resolved from the config and the state layout. Paths are
/// relative to the state directory `<sysroot>/state`, beneath which they must resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateMount {
    /// Bind-mount `source`.
    Bind {
        /// The state directory, relative to `<sysroot>/state`.
        source: PathBuf,
    },
    /// Overlay with the image's directory below and `upper` / `work` above.
    Overlay {
        /// Upper directory, relative to `<sysroot>/state`.
        upper: PathBuf,
        /// Work directory, relative to `<sysroot>/state`.
        work: PathBuf,
    },
    /// Overlay with the image's directory below and a fresh tmpfs above.
    Transient,
}

/// One thing to do. The order of a plan's steps is the order they run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Measure the image and compare its digest with the selector's.
    VerifyImage {
        /// Image path, for messages.
        path: PathBuf,
        /// The digest from the command line.
        expected: Digest,
        /// How.
        mode: VerifyMode,
        /// The largest image accepted (`[image] max-size`), in bytes.
        max_size: u64,
    },
    /// Create the erofs superblock over the image (read-only).
    MountErofs {
        /// File-backed or loop device.
        backing: ErofsBacking,
        /// Attach-first paths: the private directory it is attached to while the overlay
        /// is built.
        staging: Option<PathBuf>,
    },
    /// `--root-fs`: a read-only clone of a directory tree stands in for the composefs image.
    CloneRootTree {
        /// The tree.
        path: PathBuf,
    },
    /// Create the composefs overlay: erofs below, `objects/` as data-only layer, read-only.
    MountComposefs {
        /// The overlay's `source`: `composefs:<hex>`.
        source: String,
        /// `verity=require` policy.
        verity: OverlayVerity,
        /// The repository's objects directory.
        objects: PathBuf,
    },
    /// Clone the physical root's mount with the mounts beneath it (`/boot`...), private,
    /// to reach it from the new root.
    ClonePhysicalRoot {
        /// The physical root.
        sysroot: PathBuf,
        /// Make the clone (and every mount in it) read-only.
        readonly: bool,
    },
    /// Make the physical root's filesystem writable, as `rw` on the command line would have
    /// (its superblock is read-only: `ro`); undone on failure.
    RemountPhysicalRootWritable {
        /// The physical root.
        sysroot: PathBuf,
    },
    /// A private, writable, detached clone of the physical root, through which the state
    /// directories are created and mounted (whatever the flags of `/sysroot`'s own mount).
    OpenStateView {
        /// The physical root.
        sysroot: PathBuf,
        /// Attach-first paths: where it is attached while the state is mounted (kernels
        /// before 6.15 take overlay layers and bind sources from attached mounts only).
        staging: Option<PathBuf>,
    },
    /// Attach the new root onto the sysroot mount point (stacked over the physical root).
    AttachRoot {
        /// The sysroot path.
        target: PathBuf,
    },
    /// A tmpfs-upper overlay over the composefs root.
    TransientRoot {
        /// The overlay's `source`: `transient:composefs=<hex>`, which bootc reads back.
        source: String,
    },
    /// Attach the physical root's clone at `<new root>/sysroot`.
    MountPhysicalRoot {
        /// Final path, for messages.
        target: PathBuf,
    },
    /// Create a state directory (and parents) beneath `<sysroot>/state`; removed again
    /// if the run fails.
    CreateStateDir {
        /// Path relative to `<sysroot>/state`.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// Mount /etc or /var.
    MountState {
        /// "etc" or "var".
        name: &'static str,
        /// How.
        how: StateMount,
        /// Final path, for messages.
        target: PathBuf,
    },
    /// Extend a TPM PCR with the image's identity, and log the event. Always the last step:
    /// a PCR cannot be un-extended, so it is measured only once nothing else can fail.
    MeasureImage {
        /// The TPM device.
        device: PathBuf,
        /// The PCR.
        pcr: u32,
        /// The measured string, `composefs:<hex>`.
        event: String,
        /// Insecure selectors: what is measured instead when the root did not get
        /// `verity=require` (`composefs-insecure:<hex>`): an image whose objects the kernel
        /// does not check must not share the verified image's PCR value.
        unverified_event: Option<String>,
        /// `[tpm] measure = "required"`: no TPM or a TPM error refuses the boot.
        required: bool,
    },
    /// Point `/run/systemd/volatile-root` at the physical root's block device.
    VolatileRootLink {
        /// The link to create.
        link: PathBuf,
        /// Its target, `/dev/block/MAJ:MIN`.
        target: String,
    },
}

/// A complete plan: the image chosen, the mount path, and the steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The physical root.
    pub sysroot: PathBuf,
    /// Where the new root is attached: the sysroot, or `--target`.
    pub target: PathBuf,
    /// The image's digest.
    pub digest: Digest,
    /// The mount path.
    pub strategy: MountStrategy,
    /// The private directory attach-first paths stage mounts in (created and removed by
    /// execute), if any.
    pub staging: Option<PathBuf>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// What the plan had to give up, for the log (one warning each).
    pub warnings: Vec<String>,
}

/// Facts gathered before planning (by `lib::run`, or by hand in tests).
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The physical root, e.g. `/sysroot`.
    pub sysroot: &'a Path,
    /// Where the new root goes: the sysroot (over the physical root), or `--target`.
    pub target: &'a Path,
    /// `--root-fs`: a tree used as the root instead of the image.
    pub root_fs: Option<&'a Path>,
    /// The chosen selector.
    pub selector: &'a ImageSelector,
    /// The image path, for messages.
    pub image_path: PathBuf,
    /// The objects directory, for messages.
    pub objects_path: PathBuf,
    /// The configuration.
    pub config: &'a Config,
    /// The mount path.
    pub strategy: MountStrategy,
    /// What `state/deploy/<hex>/etc` holds.
    pub etc_state: EtcState,
    /// `systemd.volatile=state` is on the command line.
    pub volatile_state: bool,
    /// `/dev/gpt-auto-root` exists: the physical root's (major, minor).
    pub gpt_auto_root: Option<(u32, u32)>,
    /// What the physical root's filesystem allows.
    pub physical: PhysicalRoot,
    /// Where attach-first paths may create their private staging directory.
    pub staging: PathBuf,
    /// The TPM device ([`crate::tpm::DEVICE`]; tests name another).
    pub tpm_device: PathBuf,
}

/// Builds the plan.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let cfg = inputs.config;
    let digest = inputs.selector.digest;
    let hex = digest.to_hex();
    let attach_first = inputs.strategy.assembly != Assembly::Detached;
    let staging = attach_first.then(|| inputs.staging.clone());
    let deploy = Path::new(DEPLOY_DIR).join(&hex);
    let in_root = |rel: &str| inputs.target.join(rel);
    let mut steps = Vec::new();
    let mut warnings = Vec::new();

    if let Some(tree) = inputs.root_fs {
        steps.push(Step::CloneRootTree {
            path: tree.to_path_buf(),
        });
    } else {
        let mode = match (inputs.selector.insecure, cfg.check_digest) {
            (false, _) => VerifyMode::KernelRequired,
            (true, true) => VerifyMode::KernelOrComputed,
            (true, false) => VerifyMode::KernelIfPresent,
        };
        steps.push(Step::VerifyImage {
            path: inputs.image_path.clone(),
            expected: digest,
            mode,
            max_size: cfg.max_image_size,
        });
        steps.push(Step::MountErofs {
            backing: inputs.strategy.erofs,
            staging: staging.as_ref().map(|s| s.join("erofs")),
        });
        steps.push(Step::MountComposefs {
            source: format!("composefs:{hex}"),
            verity: if inputs.selector.insecure {
                OverlayVerity::IfImageHasVerity
            } else {
                OverlayVerity::Require
            },
            objects: inputs.objects_path.clone(),
        });
    }
    steps.push(Step::ClonePhysicalRoot {
        sysroot: inputs.sysroot.to_path_buf(),
        readonly: cfg.sysroot_readonly,
    });

    let mut etc = match cfg.etc {
        EtcMode::Fixed(m) => m,
        EtcMode::Auto => match inputs.etc_state {
            EtcState::Populated => MountMode::Bind,
            EtcState::Missing | EtcState::Empty | EtcState::OverlayDirs => MountMode::Overlay,
        },
    };
    let mut var = if inputs.volatile_state {
        MountMode::None
    } else {
        cfg.var
    };
    let writes = |m: MountMode| matches!(m, MountMode::Bind | MountMode::Overlay);
    if writes(etc) || writes(var) {
        if inputs.physical.superblock_readonly && inputs.physical.device_readonly {
            // Nothing can make the state writable: keep the boot, lose the changes.
            for (name, mode) in [("etc", &mut etc), ("var", &mut var)] {
                if writes(*mode) {
                    *mode = MountMode::Transient;
                    warnings.push(format!(
                        "the physical root's device is read-only: /{name} is transient \
                         (changes are lost at reboot) instead of the deployment's state"
                    ));
                }
            }
        } else {
            if inputs.physical.superblock_readonly {
                steps.push(Step::RemountPhysicalRootWritable {
                    sysroot: inputs.sysroot.to_path_buf(),
                });
            }
            // Cloned, like the physical root above, before anything of ours is stacked on
            // the sysroot: a recursive clone would carry it along.
            steps.push(Step::OpenStateView {
                sysroot: inputs.sysroot.to_path_buf(),
                staging: staging.as_ref().map(|s| s.join("state")),
            });
        }
    }

    // Attach-first paths put the root in place now and mount beneath it by path; the
    // detached path builds the whole tree first and attaches it last, in one move.
    let attach = Step::AttachRoot {
        target: inputs.target.to_path_buf(),
    };
    if attach_first {
        steps.push(attach.clone());
    }
    if cfg.root_transient {
        steps.push(Step::TransientRoot {
            source: format!("transient:composefs={hex}"),
        });
    }
    steps.push(Step::MountPhysicalRoot {
        target: in_root("sysroot"),
    });
    state_steps(&mut steps, "etc", etc, &deploy, in_root("etc"));
    state_steps(&mut steps, "var", var, &deploy, in_root("var"));
    if !attach_first {
        steps.push(attach);
    }
    if let Some((major, minor)) = inputs.gpt_auto_root {
        steps.push(Step::VolatileRootLink {
            link: PathBuf::from("/run/systemd/volatile-root"),
            target: format!("/dev/block/{major}:{minor}"),
        });
    }
    if cfg.tpm_measure != TpmMeasure::Off && inputs.root_fs.is_some() {
        // The tree is not the image: measuring the image's name would lie.
        warnings.push(format!(
            "--root-fs: nothing is measured into TPM PCR {} ([tpm] measure = \"{}\"): the tree is not the image composefs:{hex}",
            crate::tpm::IMAGE_PCR,
            cfg.tpm_measure
        ));
    } else if cfg.tpm_measure != TpmMeasure::Off {
        steps.push(Step::MeasureImage {
            device: inputs.tpm_device.clone(),
            pcr: crate::tpm::IMAGE_PCR,
            event: format!("composefs:{hex}"),
            unverified_event: inputs
                .selector
                .insecure
                .then(|| format!("composefs-insecure:{hex}")),
            required: cfg.tpm_measure == TpmMeasure::Required,
        });
    }
    Plan {
        sysroot: inputs.sysroot.to_path_buf(),
        target: inputs.target.to_path_buf(),
        digest,
        strategy: inputs.strategy,
        staging,
        steps,
        warnings,
    }
}

fn state_steps(
    steps: &mut Vec<Step>,
    name: &'static str,
    mode: MountMode,
    deploy: &Path,
    target: PathBuf,
) {
    let dir = deploy.join(name);
    let how = match mode {
        MountMode::None => return,
        MountMode::Transient => StateMount::Transient,
        MountMode::Bind => {
            // Created when missing, so a first boot works; an existing entry (bootc's
            // relative `var` link) is followed beneath the state directory.
            steps.push(Step::CreateStateDir {
                path: dir.clone(),
                mode: 0o755,
            });
            StateMount::Bind { source: dir }
        }
        MountMode::Overlay => {
            let upper = dir.join("upper");
            let work = dir.join("work");
            steps.push(Step::CreateStateDir {
                path: upper.clone(),
                mode: 0o755,
            });
            steps.push(Step::CreateStateDir {
                path: work.clone(),
                mode: 0o700,
            });
            StateMount::Overlay { upper, work }
        }
    };
    steps.push(Step::MountState { name, how, target });
}

/// A path relative to the state directory, as the admin sees it (`state/deploy/...`).
fn state_path(rel: &Path) -> String {
    Path::new(STATE_DIR).join(rel).display().to_string()
}

/// The string a [`Step::MeasureImage`] extends the PCR with: what the kernel enforces decides
/// the identity measured (an insecure root without `verity=require` gets its own name).
pub fn measured_event<'a>(
    event: &'a str,
    unverified_event: &'a Option<String>,
    verity_require: bool,
) -> &'a str {
    match unverified_event {
        Some(other) if !verity_require => other,
        _ => event,
    }
}

/// Why the command line named no image we can boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The selector's algorithm is not the repository's.
    OtherAlgorithm {
        /// The repository's algorithm.
        repository: Algorithm,
    },
    /// No `images/<hex>` in the repository.
    NotInRepository,
    /// An `images/<hex>` entry that cannot be an image (why, with its path).
    Unusable(String),
    /// The argument was malformed.
    Malformed(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::OtherAlgorithm { repository } => {
                write!(f, "the repository uses {repository}")
            }
            SkipReason::NotInRepository => f.write_str("no such image in the repository"),
            SkipReason::Unusable(why) => f.write_str(why),
            SkipReason::Malformed(why) => write!(f, "malformed: {why}"),
        }
    }
}

/// Selectors passed over, as written, with the reason.
pub type Skipped = Vec<(String, SkipReason)>;

/// What looking a selector's image up found.
#[derive(Debug)]
pub enum Lookup<T, E> {
    /// The image.
    Found(T),
    /// No such image.
    Absent,
    /// An entry that is no usable image (the reason, naming the path): try the next.
    Unusable(String),
    /// An entry that means tampering: stop the search.
    Refused(E),
}

/// The selector chosen and what was passed over before it.
#[derive(Debug)]
pub struct Chosen<T> {
    /// Index of the chosen selector.
    pub index: usize,
    /// What `lookup` returned for it.
    pub found: T,
    /// Selectors passed over before it.
    pub skipped: Skipped,
}

/// Why no selector was chosen.
#[derive(Debug)]
pub enum ChooseError<E> {
    /// No selector names an image the repository has.
    NoneUsable(Skipped),
    /// The repository refused an image entry; the search stops there.
    Refused(E),
}

/// The first selector whose image exists and opens in a repository of its algorithm, and
/// the selectors passed over before it. Absent and unusable entries fall through to the
/// next selector; a refused one (an entry leading out of the repository) stops the search.
pub fn choose_image<T, E>(
    selectors: &[ImageSelector],
    repository: Option<Algorithm>,
    mut lookup: impl FnMut(&Digest) -> Lookup<T, E>,
) -> Result<Chosen<T>, ChooseError<E>> {
    let mut skipped = Vec::new();
    for (index, sel) in selectors.iter().enumerate() {
        if let Some(repo_alg) = repository.filter(|&a| a != sel.digest.algorithm()) {
            skipped.push((
                sel.arg.clone(),
                SkipReason::OtherAlgorithm {
                    repository: repo_alg,
                },
            ));
            continue;
        }
        match lookup(&sel.digest) {
            Lookup::Found(found) => {
                return Ok(Chosen {
                    index,
                    found,
                    skipped,
                });
            }
            Lookup::Absent => skipped.push((sel.arg.clone(), SkipReason::NotInRepository)),
            Lookup::Unusable(why) => skipped.push((sel.arg.clone(), SkipReason::Unusable(why))),
            Lookup::Refused(e) => return Err(ChooseError::Refused(e)),
        }
    }
    Err(ChooseError::NoneUsable(skipped))
}

fn perm(mode: u32) -> String {
    format!("{mode:04o}")
}

impl Step {
    /// A short name, for the status record's phases.
    pub fn name(&self) -> &'static str {
        match self {
            Step::VerifyImage { .. } => "verify",
            Step::MountErofs { .. } => "mount-erofs",
            Step::MountComposefs { .. } => "mount-composefs",
            Step::ClonePhysicalRoot { .. } => "clone-physical-root",
            Step::RemountPhysicalRootWritable { .. } => "remount-physical-root-rw",
            Step::OpenStateView { .. } => "open-state-view",
            Step::AttachRoot { .. } => "attach-root",
            Step::CloneRootTree { .. } => "clone-root-tree",
            Step::TransientRoot { .. } => "transient-root",
            Step::MountPhysicalRoot { .. } => "mount-physical-root",
            Step::CreateStateDir { .. } => "create-state-dir",
            Step::MountState { name: "etc", .. } => "mount-etc",
            Step::MountState { .. } => "mount-var",
            Step::VolatileRootLink { .. } => "volatile-root-link",
            Step::MeasureImage { .. } => "tpm-measure",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::VerifyImage {
                path,
                expected,
                mode,
                max_size,
            } => {
                let how = match mode {
                    VerifyMode::KernelRequired => "kernel fs-verity digest required",
                    VerifyMode::KernelOrComputed => {
                        "insecure: kernel fs-verity digest, else computed in userspace"
                    }
                    VerifyMode::KernelIfPresent => {
                        "insecure: kernel fs-verity digest if present, else unchecked (check-digest = false)"
                    }
                };
                write!(
                    f,
                    "verify image {}: at most {max_size} bytes, digest must equal {}:{expected} ({how})",
                    path.display(),
                    expected.algorithm()
                )
            }
            Step::MountErofs { backing, staging } => {
                let backing = match backing {
                    ErofsBacking::FileOrLoop => {
                        "from the image file (a read-only loop device if the kernel cannot mount files)"
                    }
                    ErofsBacking::File => "from the image file",
                    ErofsBacking::Loop => "through a read-only loop device",
                };
                write!(f, "mount erofs read-only {backing}")?;
                if let Some(s) = staging {
                    write!(f, ", staged at {}", s.display())?;
                }
                Ok(())
            }
            Step::MountComposefs {
                source,
                verity,
                objects,
            } => {
                let verity = match verity {
                    OverlayVerity::Require => "verity=require",
                    OverlayVerity::IfImageHasVerity => "verity=require if the image has fs-verity",
                };
                write!(
                    f,
                    "mount overlay {source} read-only: erofs lower, data-only layer {}, metacopy=on, redirect_dir=on, {verity}",
                    objects.display()
                )
            }
            Step::ClonePhysicalRoot { sysroot, readonly } => write!(
                f,
                "clone the physical root {} with the mounts beneath it ({}, private)",
                sysroot.display(),
                if *readonly { "read-only" } else { "writable" }
            ),
            Step::RemountPhysicalRootWritable { sysroot } => write!(
                f,
                "remount the physical root's filesystem {} read-write (it is read-only: `ro`), for the state",
                sysroot.display()
            ),
            Step::OpenStateView { sysroot, staging } => {
                write!(
                    f,
                    "open a writable, private view of {} for the state directories",
                    sysroot.display()
                )?;
                if let Some(s) = staging {
                    write!(f, ", staged at {}", s.display())?;
                }
                Ok(())
            }
            Step::AttachRoot { target } => {
                write!(f, "attach the new root on {}", target.display())
            }
            Step::CloneRootTree { path } => write!(
                f,
                "clone the tree {} read-only as the root (--root-fs: no image, nothing verified)",
                path.display()
            ),
            Step::TransientRoot { source } => write!(
                f,
                "mount a transient overlay {source} over the root (tmpfs upper, lost at reboot)"
            ),
            Step::MountPhysicalRoot { target } => {
                write!(f, "mount the physical root at {}", target.display())
            }
            Step::CreateStateDir { path, mode } => write!(
                f,
                "ensure state directory {} exists (mode {} if created)",
                state_path(path),
                perm(*mode)
            ),
            Step::MountState { name, how, target } => {
                write!(f, "mount /{name} on {}: ", target.display())?;
                match how {
                    StateMount::Bind { source } => write!(f, "bind of {}", state_path(source)),
                    StateMount::Overlay { upper, work } => write!(
                        f,
                        "overlay of the image's /{name}, upper {}, work {}",
                        state_path(upper),
                        state_path(work)
                    ),
                    StateMount::Transient => write!(
                        f,
                        "transient overlay of the image's /{name} (tmpfs upper, lost at reboot)"
                    ),
                }
            }
            Step::VolatileRootLink { link, target } => {
                write!(f, "link {} -> {target} (best effort)", link.display())
            }
            Step::MeasureImage {
                device,
                pcr,
                event,
                unverified_event,
                required,
            } => write!(
                f,
                "measure {event}{} into TPM PCR {pcr} through {}, every bank, and log it ({})",
                match unverified_event {
                    Some(other) => format!(" ({other} if the root lacks verity=require)"),
                    None => String::new(),
                },
                device.display(),
                if *required {
                    "required: no TPM or a TPM error refuses the boot"
                } else {
                    "auto: without a TPM, or on a TPM error, one warning and the boot goes on"
                }
            ),
        }
    }
}

impl Plan {
    /// Whether every step finds the handles it needs ([`crate::dataflow::check`]); the
    /// handles available after each step.
    pub fn check_order(
        &self,
    ) -> Result<Vec<crate::dataflow::Handles>, crate::dataflow::OrderError> {
        crate::dataflow::check(&self.steps)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plan for {}", self.sysroot.display())?;
        if self.target != self.sysroot {
            write!(f, " at {}", self.target.display())?;
        }
        writeln!(
            f,
            ": image {}:{}, {}",
            self.digest.algorithm(),
            self.digest,
            self.strategy
        )?;
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "step {}: {step}", i + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::KernelFeatures;

    const HEX: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn selector(insecure: bool) -> ImageSelector {
        ImageSelector {
            digest: Digest::from_hex(HEX).unwrap(),
            insecure,
            arg: format!("composefs={}{HEX}", if insecure { "?" } else { "" }),
        }
    }

    fn render(
        sel: &ImageSelector,
        config: &Config,
        kernel: KernelFeatures,
        etc: EtcState,
        f: impl Fn(&mut Inputs<'_>),
    ) -> String {
        let mut inputs = Inputs {
            sysroot: Path::new("/sysroot"),
            target: Path::new("/sysroot"),
            root_fs: None,
            selector: sel,
            image_path: PathBuf::from(format!("/sysroot/composefs/images/{HEX}")),
            objects_path: PathBuf::from("/sysroot/composefs/objects"),
            config,
            strategy: kernel.strategy(Default::default()).unwrap(),
            etc_state: etc,
            volatile_state: false,
            gpt_auto_root: None,
            physical: PhysicalRoot::default(),
            staging: PathBuf::from("/run/cfs-setup-root.1"),
            tpm_device: PathBuf::from("/dev/tpmrm0"),
        };
        f(&mut inputs);
        plan(&inputs).to_string().replace(HEX, "H")
    }

    #[test]
    fn golden_default_secure_detached() {
        let got = render(
            &selector(false),
            &Config::default(),
            KernelFeatures::ALL,
            EtcState::OverlayDirs,
            |_| {},
        );
        let want = "\
plan for /sysroot: image sha256:H, detached assembly, file-backed erofs (loop device fallback), layers as fds
step 1: verify image /sysroot/composefs/images/H: at most 1073741824 bytes, digest must equal sha256:H (kernel fs-verity digest required)
step 2: mount erofs read-only from the image file (a read-only loop device if the kernel cannot mount files)
step 3: mount overlay composefs:H read-only: erofs lower, data-only layer /sysroot/composefs/objects, metacopy=on, redirect_dir=on, verity=require
step 4: clone the physical root /sysroot with the mounts beneath it (read-only, private)
step 5: open a writable, private view of /sysroot for the state directories
step 6: mount the physical root at /sysroot/sysroot
step 7: ensure state directory state/deploy/H/etc/upper exists (mode 0755 if created)
step 8: ensure state directory state/deploy/H/etc/work exists (mode 0700 if created)
step 9: mount /etc on /sysroot/etc: overlay of the image's /etc, upper state/deploy/H/etc/upper, work state/deploy/H/etc/work
step 10: ensure state directory state/deploy/H/var exists (mode 0755 if created)
step 11: mount /var on /sysroot/var: bind of state/deploy/H/var
step 12: attach the new root on /sysroot
step 13: measure composefs:H into TPM PCR 15 through /dev/tpmrm0, every bank, and log it (auto: without a TPM, or on a TPM error, one warning and the boot goes on)
";
        assert_eq!(got, want);
    }

    #[test]
    fn golden_kernel_6_12_transient_root_insecure() {
        let k = KernelFeatures {
            detached_trees: false,
            fd_layers: false,
            ..KernelFeatures::ALL
        };
        let config = Config {
            root_transient: true,
            sysroot_readonly: false,
            ..Config::default()
        };
        let got = render(&selector(true), &config, k, EtcState::Missing, |i| {
            i.gpt_auto_root = Some((259, 3));
        });
        let want = "\
plan for /sysroot: image sha256:H, attach-first assembly, file-backed erofs (loop device fallback), layers as paths
step 1: verify image /sysroot/composefs/images/H: at most 1073741824 bytes, digest must equal sha256:H (insecure: kernel fs-verity digest, else computed in userspace)
step 2: mount erofs read-only from the image file (a read-only loop device if the kernel cannot mount files), staged at /run/cfs-setup-root.1/erofs
step 3: mount overlay composefs:H read-only: erofs lower, data-only layer /sysroot/composefs/objects, metacopy=on, redirect_dir=on, verity=require if the image has fs-verity
step 4: clone the physical root /sysroot with the mounts beneath it (writable, private)
step 5: open a writable, private view of /sysroot for the state directories, staged at /run/cfs-setup-root.1/state
step 6: attach the new root on /sysroot
step 7: mount a transient overlay transient:composefs=H over the root (tmpfs upper, lost at reboot)
step 8: mount the physical root at /sysroot/sysroot
step 9: ensure state directory state/deploy/H/etc/upper exists (mode 0755 if created)
step 10: ensure state directory state/deploy/H/etc/work exists (mode 0700 if created)
step 11: mount /etc on /sysroot/etc: overlay of the image's /etc, upper state/deploy/H/etc/upper, work state/deploy/H/etc/work
step 12: ensure state directory state/deploy/H/var exists (mode 0755 if created)
step 13: mount /var on /sysroot/var: bind of state/deploy/H/var
step 14: link /run/systemd/volatile-root -> /dev/block/259:3 (best effort)
step 15: measure composefs:H (composefs-insecure:H if the root lacks verity=require) into TPM PCR 15 through /dev/tpmrm0, every bank, and log it (auto: without a TPM, or on a TPM error, one warning and the boot goes on)
";
        assert_eq!(got, want);
    }

    #[test]
    fn golden_old_kernel_bootc_layout_volatile_state() {
        let k = KernelFeatures {
            detached_trees: false,
            fd_layers: false,
            lowerdir_plus: false,
            ..KernelFeatures::ALL
        };
        let config = Config {
            check_digest: false,
            tpm_measure: TpmMeasure::Required,
            ..Config::default()
        };
        let got = render(&selector(true), &config, k, EtcState::Populated, |i| {
            i.volatile_state = true;
        });
        let want = "\
plan for /sysroot: image sha256:H, string-lowerdir assembly, file-backed erofs (loop device fallback), layers as paths
step 1: verify image /sysroot/composefs/images/H: at most 1073741824 bytes, digest must equal sha256:H (insecure: kernel fs-verity digest if present, else unchecked (check-digest = false))
step 2: mount erofs read-only from the image file (a read-only loop device if the kernel cannot mount files), staged at /run/cfs-setup-root.1/erofs
step 3: mount overlay composefs:H read-only: erofs lower, data-only layer /sysroot/composefs/objects, metacopy=on, redirect_dir=on, verity=require if the image has fs-verity
step 4: clone the physical root /sysroot with the mounts beneath it (read-only, private)
step 5: open a writable, private view of /sysroot for the state directories, staged at /run/cfs-setup-root.1/state
step 6: attach the new root on /sysroot
step 7: mount the physical root at /sysroot/sysroot
step 8: ensure state directory state/deploy/H/etc exists (mode 0755 if created)
step 9: mount /etc on /sysroot/etc: bind of state/deploy/H/etc
step 10: measure composefs:H (composefs-insecure:H if the root lacks verity=require) into TPM PCR 15 through /dev/tpmrm0, every bank, and log it (required: no TPM or a TPM error refuses the boot)
";
        assert_eq!(got, want);
    }

    #[test]
    fn golden_target_and_root_fs_on_6_12() {
        // --target: the same plan with another destination; --root-fs: a tree for the image.
        let k = KernelFeatures {
            detached_trees: false,
            fd_layers: false,
            ..KernelFeatures::ALL
        };
        let config = Config {
            root_transient: true,
            ..Config::default()
        };
        let got = render(&selector(false), &config, k, EtcState::OverlayDirs, |i| {
            i.target = Path::new("/run/next");
            i.root_fs = Some(Path::new("/srv/tree"));
        });
        let want = "\
plan for /sysroot at /run/next: image sha256:H, attach-first assembly, file-backed erofs (loop device fallback), layers as paths
warning: --root-fs: nothing is measured into TPM PCR 15 ([tpm] measure = \"auto\"): the tree is not the image composefs:H
step 1: clone the tree /srv/tree read-only as the root (--root-fs: no image, nothing verified)
step 2: clone the physical root /sysroot with the mounts beneath it (read-only, private)
step 3: open a writable, private view of /sysroot for the state directories, staged at /run/cfs-setup-root.1/state
step 4: attach the new root on /run/next
step 5: mount a transient overlay transient:composefs=H over the root (tmpfs upper, lost at reboot)
step 6: mount the physical root at /run/next/sysroot
step 7: ensure state directory state/deploy/H/etc/upper exists (mode 0755 if created)
step 8: ensure state directory state/deploy/H/etc/work exists (mode 0700 if created)
step 9: mount /etc on /run/next/etc: overlay of the image's /etc, upper state/deploy/H/etc/upper, work state/deploy/H/etc/work
step 10: ensure state directory state/deploy/H/var exists (mode 0755 if created)
step 11: mount /var on /run/next/var: bind of state/deploy/H/var
";
        assert_eq!(got, want);
        // Detached: the whole tree is built first and attached at the target last.
        let got = render(
            &selector(false),
            &Config::default(),
            KernelFeatures::ALL,
            EtcState::OverlayDirs,
            |i| i.target = Path::new("/run/next"),
        );
        let last: Vec<&str> = got.lines().rev().take(2).collect();
        assert!(
            last[1].ends_with(": attach the new root on /run/next"),
            "{got}"
        );
        // A staged root is measured like a booted one (the soft reboot resets no PCR).
        assert!(
            last[0].contains("measure composefs:H into TPM PCR 15"),
            "{got}"
        );
        assert!(!got.contains("on /sysroot"), "{got}");
    }

    #[test]
    fn insecure_roots_without_verity_are_measured_as_such() {
        let secure = None;
        let insecure = Some("composefs-insecure:H".to_string());
        assert_eq!(measured_event("composefs:H", &secure, true), "composefs:H");
        assert_eq!(
            measured_event("composefs:H", &insecure, true),
            "composefs:H"
        );
        assert_eq!(
            measured_event("composefs:H", &insecure, false),
            "composefs-insecure:H"
        );
    }

    #[test]
    fn fixed_modes_none_and_transient() {
        let config = Config {
            etc: EtcMode::Fixed(MountMode::Transient),
            var: MountMode::None,
            tpm_measure: TpmMeasure::Off,
            ..Config::default()
        };
        let got = render(
            &selector(false),
            &config,
            KernelFeatures::ALL,
            EtcState::Populated,
            |_| {},
        );
        assert!(got.contains("mount /etc on /sysroot/etc: transient overlay of the image's /etc"));
        assert!(!got.contains("/var"), "{got}");
        assert!(!got.contains("state directory"), "{got}");
        assert!(!got.contains("TPM"), "{got}");
    }

    #[test]
    fn read_only_physical_root_is_remounted_for_the_state() {
        let sel = selector(false);
        let ro = |device_readonly| {
            move |i: &mut Inputs<'_>| {
                i.physical = PhysicalRoot {
                    superblock_readonly: true,
                    device_readonly,
                }
            }
        };
        let got = render(
            &sel,
            &Config::default(),
            KernelFeatures::ALL,
            EtcState::OverlayDirs,
            ro(false),
        );
        let remount = got
            .lines()
            .position(|l| l.contains("remount the physical root's filesystem /sysroot read-write"))
            .unwrap_or_else(|| panic!("{got}"));
        let first_state = got
            .lines()
            .position(|l| l.contains("state directory"))
            .unwrap();
        assert!(remount < first_state, "{got}");
        assert!(!got.contains("warning:"), "{got}");
        // Nothing to write: no remount.
        let none = Config {
            etc: EtcMode::Fixed(MountMode::Transient),
            var: MountMode::None,
            ..Config::default()
        };
        let got = render(
            &sel,
            &none,
            KernelFeatures::ALL,
            EtcState::OverlayDirs,
            ro(false),
        );
        assert!(!got.contains("remount") && !got.contains("view"), "{got}");
    }

    #[test]
    fn read_only_device_falls_back_to_transient_state() {
        let got = render(
            &selector(false),
            &Config::default(),
            KernelFeatures::ALL,
            EtcState::OverlayDirs,
            |i| {
                i.physical = PhysicalRoot {
                    superblock_readonly: true,
                    device_readonly: true,
                }
            },
        );
        assert!(
            got.contains("mount /etc on /sysroot/etc: transient overlay"),
            "{got}"
        );
        assert!(
            got.contains("mount /var on /sysroot/var: transient overlay"),
            "{got}"
        );
        assert!(
            !got.contains("remount") && !got.contains("state directory"),
            "{got}"
        );
        assert_eq!(
            got.matches("warning: the physical root's device is read-only")
                .count(),
            2
        );
        // A writable filesystem on a read-only device is left alone (it cannot be).
        let got = render(
            &selector(false),
            &Config::default(),
            KernelFeatures::ALL,
            EtcState::OverlayDirs,
            |i| {
                i.physical = PhysicalRoot {
                    superblock_readonly: false,
                    device_readonly: true,
                }
            },
        );
        assert!(got.contains("overlay of the image's /etc, upper"), "{got}");
    }

    #[test]
    fn choose_first_existing_of_matching_algorithm() {
        let sha512 = ImageSelector {
            digest: Digest::from_hex(&"2".repeat(128)).unwrap(),
            insecure: false,
            arg: "composefs=sha512:2...".into(),
        };
        let missing = ImageSelector {
            digest: Digest::from_hex(&"3".repeat(64)).unwrap(),
            insecure: false,
            arg: "composefs=333...".into(),
        };
        let present = selector(false);
        let sels = [sha512, missing, present];
        let got = choose_image(&sels, Some(Algorithm::Sha256), |d| {
            if d.to_hex() == HEX {
                Lookup::<_, ()>::Found("image")
            } else if d.to_hex().starts_with('3') {
                Lookup::Unusable("images/333... is a FIFO, not a regular file".into())
            } else {
                Lookup::Absent
            }
        });
        let Ok(Chosen {
            index,
            found,
            skipped,
        }) = got
        else {
            panic!("{got:?}")
        };
        assert_eq!((index, found), (2, "image"));
        assert_eq!(
            skipped[0].1,
            SkipReason::OtherAlgorithm {
                repository: Algorithm::Sha256
            }
        );
        assert!(matches!(skipped[1].1, SkipReason::Unusable(ref why) if why.contains("FIFO")));
        // Nothing found: every selector is listed with its reason.
        let none = choose_image(&sels, Some(Algorithm::Sha256), |_| Lookup::<(), ()>::Absent);
        assert!(matches!(none, Err(ChooseError::NoneUsable(ref s)) if s.len() == 3));
        // A refused entry stops the search.
        let refused = choose_image(&sels, None, |_| Lookup::<(), _>::Refused("escapes"));
        assert!(matches!(refused, Err(ChooseError::Refused("escapes"))));
    }

    /// Every plan the planner can make, for every combination of the inputs that shape it,
    /// gives each step the handles it needs: a wrong order is caught here, not in a boot.
    #[test]
    fn every_plan_is_in_an_order_its_steps_can_run() {
        use crate::features::{ErofsBacking, MountStrategy};
        let modes = [
            MountMode::None,
            MountMode::Bind,
            MountMode::Overlay,
            MountMode::Transient,
        ];
        let mut etc_modes = vec![EtcMode::Auto];
        etc_modes.extend(modes.iter().map(|m| EtcMode::Fixed(*m)));
        let strategies = [
            (Assembly::Detached, true),
            (Assembly::AttachFirst, true),
            (Assembly::AttachFirst, false),
            (Assembly::StringLowerdir, false),
        ];
        let physical = [(false, false), (true, false), (true, true), (false, true)];
        let etc_states = [
            EtcState::Missing,
            EtcState::Empty,
            EtcState::OverlayDirs,
            EtcState::Populated,
        ];
        let mut checked = 0;
        for insecure in [false, true] {
            let sel = selector(insecure);
            for &etc in &etc_modes {
                for var in modes {
                    for root_transient in [false, true] {
                        for tpm_measure in [TpmMeasure::Auto, TpmMeasure::Required, TpmMeasure::Off]
                        {
                            let config = Config {
                                etc,
                                var,
                                root_transient,
                                tpm_measure,
                                ..Config::default()
                            };
                            for (assembly, fd_layers) in strategies {
                                for (superblock_readonly, device_readonly) in physical {
                                    for etc_state in etc_states {
                                        for (root_fs, target, volatile_state) in [
                                            (None, "/sysroot", false),
                                            (Some(Path::new("/tree")), "/run/nextroot", false),
                                            (None, "/run/nextroot", true),
                                        ] {
                                            let inputs = Inputs {
                                                sysroot: Path::new("/sysroot"),
                                                target: Path::new(target),
                                                root_fs,
                                                selector: &sel,
                                                image_path: PathBuf::from("/i"),
                                                objects_path: PathBuf::from("/o"),
                                                config: &config,
                                                strategy: MountStrategy {
                                                    assembly,
                                                    erofs: ErofsBacking::FileOrLoop,
                                                    fd_layers,
                                                },
                                                etc_state,
                                                volatile_state,
                                                gpt_auto_root: volatile_state.then_some((8, 1)),
                                                physical: PhysicalRoot {
                                                    superblock_readonly,
                                                    device_readonly,
                                                },
                                                staging: PathBuf::from("/run/s"),
                                                tpm_device: PathBuf::from("/dev/tpmrm0"),
                                            };
                                            let p = plan(&inputs);
                                            if let Err(e) = p.check_order() {
                                                panic!("{e}\n{p}");
                                            }
                                            checked += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 5 * 4 * 2 * 3 * 4 * 4 * 4 * 3);
    }
}
