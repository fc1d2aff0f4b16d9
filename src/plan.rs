//! From inputs to decisions, with no syscalls: which image and how it is verified, how the
//! root is assembled, where /etc and /var come from, what is measured. A plan reads as the
//! log of a boot: its `Display` prints one numbered line per step, in the order `execute`
//! runs them, and each line is also the kernel-log line written when that step runs.

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

/// Measure the image and compare its digest with the selector's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// Image path, for messages.
    pub path: PathBuf,
    /// The digest from the command line.
    pub expected: Digest,
    /// How.
    pub mode: VerifyMode,
    /// The largest image accepted (`[image] max-size`), in bytes.
    pub max_size: u64,
}

/// The erofs superblock over the image (read-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erofs {
    /// File-backed or loop device.
    pub backing: ErofsBacking,
    /// Attach-first paths: where it is attached while the overlay is built.
    pub staging: Option<PathBuf>,
}

/// The composefs overlay: erofs below, `objects/` as data-only layer, read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composefs {
    /// The overlay's `source`: `composefs:<hex>`.
    pub source: String,
    /// `verity=require` policy.
    pub verity: OverlayVerity,
    /// The repository's objects directory, for messages.
    pub objects: PathBuf,
}

/// What the root is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The composefs image: verified, mounted as erofs, assembled into an overlay.
    Composefs(Verify, Erofs, Composefs),
    /// `--root-fs`: a read-only clone of this directory tree stands in for the image.
    Tree(PathBuf),
}

/// How /etc or /var is provided. Paths are relative to the state directory
/// `<sysroot>/state`, beneath which they must resolve.
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

/// A state directory to create (with parents) beneath `<sysroot>/state` when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    /// Path relative to `<sysroot>/state`.
    pub path: PathBuf,
    /// Its mode.
    pub mode: u32,
}

/// Where /etc or /var comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// "etc" or "var".
    pub name: &'static str,
    /// The state directories it needs, created first.
    pub dirs: Vec<StateDir>,
    /// How it is mounted.
    pub how: StateMount,
    /// Final path, for messages.
    pub target: PathBuf,
}

/// The TPM measurement. Always the last step: a PCR cannot be un-extended, so it is measured
/// only once nothing else can fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measure {
    /// The TPM device.
    pub device: PathBuf,
    /// The PCR.
    pub pcr: u32,
    /// The measured string, `composefs:<hex>`.
    pub event: String,
    /// Insecure selectors: what is measured instead when the root did not get
    /// `verity=require` (`composefs-insecure:<hex>`): an image whose objects the kernel
    /// does not check must not share the verified image's PCR value.
    pub unverified_event: Option<String>,
    /// `[tpm] measure = "required"`: no TPM or a TPM error refuses the boot.
    pub required: bool,
}

impl Measure {
    /// The string extended into the PCR, given whether the root got `verity=require`.
    pub fn event(&self, verity_require: bool) -> &str {
        match &self.unverified_event {
            Some(other) if !verity_require => other,
            _ => &self.event,
        }
    }
}

/// The decisions for one boot.
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
    /// The private directory attach-first paths stage mounts in, if any.
    pub staging: Option<PathBuf>,
    /// The image, its verification and its overlay.
    pub image: ImageSource,
    /// The physical root's clone (at `<root>/sysroot`) is read-only.
    pub physical_readonly: bool,
    /// The physical root's superblock is read-only (`ro`) and the state needs it writable.
    pub remount_writable: bool,
    /// The state directories are needed: a writable view of the physical root is opened
    /// (staged here on attach-first paths).
    pub state_view: Option<Option<PathBuf>>,
    /// A tmpfs-upper overlay over the root, with this `source` (`transient:composefs=<hex>`).
    pub transient_root: Option<String>,
    /// /etc, unless left to the image.
    pub etc: Option<State>,
    /// /var, unless left to the image.
    pub var: Option<State>,
    /// `/run/systemd/volatile-root` and its target `/dev/block/MAJ:MIN`.
    pub volatile_root: Option<(PathBuf, String)>,
    /// The TPM measurement, if any.
    pub measure: Option<Measure>,
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

/// Makes the decisions.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let cfg = inputs.config;
    let digest = inputs.selector.digest;
    let insecure = inputs.selector.insecure;
    let hex = digest.to_hex();
    let attach_first = inputs.strategy.assembly != Assembly::Detached;
    let staging = attach_first.then(|| inputs.staging.clone());
    let staged = |name: &str| staging.as_ref().map(|s| s.join(name));
    let mut warnings = Vec::new();

    let image = match inputs.root_fs {
        Some(tree) => ImageSource::Tree(tree.to_path_buf()),
        None => ImageSource::Composefs(
            Verify {
                path: inputs.image_path.clone(),
                expected: digest,
                mode: match (insecure, cfg.check_digest) {
                    (false, _) => VerifyMode::KernelRequired,
                    (true, true) => VerifyMode::KernelOrComputed,
                    (true, false) => VerifyMode::KernelIfPresent,
                },
                max_size: cfg.max_image_size,
            },
            Erofs {
                backing: inputs.strategy.erofs,
                staging: staged("erofs"),
            },
            Composefs {
                source: format!("composefs:{hex}"),
                verity: if insecure {
                    OverlayVerity::IfImageHasVerity
                } else {
                    OverlayVerity::Require
                },
                objects: inputs.objects_path.clone(),
            },
        ),
    };

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
    let mut remount_writable = false;
    let mut state_view = None;
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
            remount_writable = inputs.physical.superblock_readonly;
            state_view = Some(staged("state"));
        }
    }
    let deploy = Path::new(DEPLOY_DIR).join(&hex);
    let state = |name, mode| state(name, mode, &deploy, inputs.target.join(name));

    let measure = match cfg.tpm_measure {
        TpmMeasure::Off => None,
        // The tree is not the image: measuring the image's name would lie.
        _ if inputs.root_fs.is_some() => {
            warnings.push(format!(
                "--root-fs: nothing is measured into TPM PCR {} ([tpm] measure = \"{}\"): the tree is not the image composefs:{hex}",
                crate::tpm::IMAGE_PCR,
                cfg.tpm_measure
            ));
            None
        }
        policy => Some(Measure {
            device: inputs.tpm_device.clone(),
            pcr: crate::tpm::IMAGE_PCR,
            event: format!("composefs:{hex}"),
            unverified_event: insecure.then(|| format!("composefs-insecure:{hex}")),
            required: policy == TpmMeasure::Required,
        }),
    };
    Plan {
        sysroot: inputs.sysroot.to_path_buf(),
        target: inputs.target.to_path_buf(),
        digest,
        strategy: inputs.strategy,
        image,
        physical_readonly: cfg.sysroot_readonly,
        remount_writable,
        state_view,
        transient_root: cfg
            .root_transient
            .then(|| format!("transient:composefs={hex}")),
        etc: state("etc", etc),
        var: state("var", var),
        volatile_root: inputs.gpt_auto_root.map(|(major, minor)| {
            (
                PathBuf::from("/run/systemd/volatile-root"),
                format!("/dev/block/{major}:{minor}"),
            )
        }),
        measure,
        staging,
        warnings,
    }
}

fn state(name: &'static str, mode: MountMode, deploy: &Path, target: PathBuf) -> Option<State> {
    let dir = deploy.join(name);
    let dir_of = |path: PathBuf, mode| StateDir { path, mode };
    let (dirs, how) = match mode {
        MountMode::None => return None,
        MountMode::Transient => (Vec::new(), StateMount::Transient),
        // Created when missing, so a first boot works; an existing entry (bootc's relative
        // `var` link) is followed beneath the state directory.
        MountMode::Bind => (
            vec![dir_of(dir.clone(), 0o755)],
            StateMount::Bind { source: dir },
        ),
        MountMode::Overlay => {
            let (upper, work) = (dir.join("upper"), dir.join("work"));
            (
                vec![dir_of(upper.clone(), 0o755), dir_of(work.clone(), 0o700)],
                StateMount::Overlay { upper, work },
            )
        }
    };
    Some(State {
        name,
        dirs,
        how,
        target,
    })
}

/// A path relative to the state directory, as the admin sees it (`state/deploy/...`).
pub fn state_path(rel: &Path) -> String {
    Path::new(STATE_DIR).join(rel).display().to_string()
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
    NotInRepository {
        /// The image path looked up.
        image: PathBuf,
        /// The repository.
        repository: PathBuf,
    },
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
            SkipReason::NotInRepository { image, repository } => write!(
                f,
                "no such image in the repository {} ({} does not exist): boot an older boot entry, and check that this repository is the one on this disk",
                repository.display(),
                image.display()
            ),
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
    /// No such image: its path, and the repository's.
    Absent(PathBuf, PathBuf),
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
            Lookup::Absent(image, repository) => skipped.push((
                sel.arg.clone(),
                SkipReason::NotInRepository { image, repository },
            )),
            Lookup::Unusable(why) => skipped.push((sel.arg.clone(), SkipReason::Unusable(why))),
            Lookup::Refused(e) => return Err(ChooseError::Refused(e)),
        }
    }
    Err(ChooseError::NoneUsable(skipped))
}

fn staged_at(f: &mut fmt::Formatter<'_>, staging: &Option<PathBuf>) -> fmt::Result {
    match staging {
        Some(s) => write!(f, ", staged at {}", s.display()),
        None => Ok(()),
    }
}

impl fmt::Display for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.mode {
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
            "verify image {}: at most {} bytes, digest must equal {}:{} ({how})",
            self.path.display(),
            self.max_size,
            self.expected.algorithm(),
            self.expected
        )
    }
}

impl fmt::Display for Erofs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.backing {
            ErofsBacking::FileOrLoop => {
                "mount erofs read-only from the image file (a read-only loop device if the kernel cannot mount files)"
            }
            ErofsBacking::File => "mount erofs read-only from the image file",
            ErofsBacking::Loop => "mount erofs read-only through a read-only loop device",
        })?;
        staged_at(f, &self.staging)
    }
}

impl fmt::Display for Composefs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mount overlay {} read-only: erofs lower, data-only layer {}, metacopy=on, redirect_dir=on, {}",
            self.source,
            self.objects.display(),
            match self.verity {
                OverlayVerity::Require => "verity=require",
                OverlayVerity::IfImageHasVerity => "verity=require if the image has fs-verity",
            }
        )
    }
}

impl fmt::Display for StateDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ensure state directory {} exists (mode {:04o} if created)",
            state_path(&self.path),
            self.mode
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name;
        write!(f, "mount /{name} on {}: ", self.target.display())?;
        match &self.how {
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
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "measure {}", self.event)?;
        if let Some(other) = &self.unverified_event {
            write!(f, " ({other} if the root lacks verity=require)")?;
        }
        write!(
            f,
            " into TPM PCR {} through {}, every bank, and log it ({})",
            self.pcr,
            self.device.display(),
            if self.required {
                "required: no TPM or a TPM error refuses the boot"
            } else {
                "auto: without a TPM, or on a TPM error, one warning and the boot goes on"
            }
        )
    }
}

impl Plan {
    /// Whether the root is attached first and mounted beneath by path (kernels without
    /// detached mount trees), rather than built whole and attached last.
    pub fn attach_first(&self) -> bool {
        self.strategy.assembly != Assembly::Detached
    }

    /// Every step's line, in the order `execute` runs them (and logs them).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        self.each_line(&mut |line| lines.push(line.to_string()));
        lines
    }

    /// Calls `out` with every step's line, in order.
    fn each_line(&self, out: &mut dyn FnMut(fmt::Arguments<'_>)) {
        let (sysroot, target) = (self.sysroot.display(), self.target.display());
        match &self.image {
            ImageSource::Composefs(verify, erofs, composefs) => {
                out(format_args!("{verify}"));
                out(format_args!("{erofs}"));
                out(format_args!("{composefs}"));
            }
            ImageSource::Tree(tree) => out(format_args!(
                "clone the tree {} read-only as the root (--root-fs: no image, nothing verified)",
                tree.display()
            )),
        }
        let ro = if self.physical_readonly {
            "read-only"
        } else {
            "writable"
        };
        out(format_args!(
            "clone the physical root {sysroot} with the mounts beneath it ({ro}, private)"
        ));
        if self.remount_writable {
            out(format_args!(
                "remount the physical root's filesystem {sysroot} read-write (it is read-only: `ro`), for the state"
            ));
        }
        if let Some(staging) = &self.state_view {
            let (at, staged) = match staging {
                Some(s) => (", staged at ", s.display()),
                None => ("", Path::new("").display()),
            };
            out(format_args!(
                "open a writable, private view of {sysroot} for the state directories{at}{staged}"
            ));
        }
        if self.attach_first() {
            out(format_args!("attach the new root on {target}"));
        }
        if let Some(source) = &self.transient_root {
            out(format_args!(
                "mount a transient overlay {source} over the root (tmpfs upper, lost at reboot)"
            ));
        }
        let physical = self.target.join("sysroot");
        out(format_args!(
            "mount the physical root at {}",
            physical.display()
        ));
        for state in self.etc.iter().chain(&self.var) {
            for dir in &state.dirs {
                out(format_args!("{dir}"));
            }
            out(format_args!("{state}"));
        }
        if !self.attach_first() {
            out(format_args!("attach the new root on {target}"));
        }
        if let Some((link, to)) = &self.volatile_root {
            out(format_args!(
                "link {} -> {to} (best effort)",
                link.display()
            ));
        }
        if let Some(measure) = &self.measure {
            out(format_args!("{measure}"));
        }
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
        let mut number = 0;
        let mut result = Ok(());
        self.each_line(&mut |line| {
            number += 1;
            result = result.and_then(|()| writeln!(f, "step {number}: {line}"));
        });
        result?;
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
        let measure = |unverified_event| Measure {
            device: PathBuf::from("/dev/tpmrm0"),
            pcr: 15,
            event: "composefs:H".into(),
            unverified_event,
            required: false,
        };
        let secure = measure(None);
        let insecure = measure(Some("composefs-insecure:H".to_string()));
        assert_eq!(secure.event(true), "composefs:H");
        assert_eq!(insecure.event(true), "composefs:H");
        assert_eq!(insecure.event(false), "composefs-insecure:H");
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
                Lookup::Absent("/i".into(), "/r".into())
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
        let none = choose_image(&sels, Some(Algorithm::Sha256), |_| {
            Lookup::<(), ()>::Absent("/i".into(), "/r".into())
        });
        assert!(matches!(none, Err(ChooseError::NoneUsable(ref s)) if s.len() == 3));
        // A refused entry stops the search.
        let refused = choose_image(&sels, None, |_| Lookup::<(), _>::Refused("escapes"));
        assert!(matches!(refused, Err(ChooseError::Refused("escapes"))));
    }
}
