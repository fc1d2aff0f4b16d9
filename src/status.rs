//! The status record: what the last successful setup did, for userspace.
//!
//! Written to `/run/cfs-setup-root/status.json` at the end of a successful setup (at boot,
//! or when a soft reboot was staged with `--target`). It is JSON written by hand (no serde in
//! the initramfs); the schema is in the README and its field names are stable: new fields may
//! be added, none is renamed or removed without raising `schema`.
//!
//! `cfs-setup-root --status` prints it for a person, `--status --json` as it is.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::execute::Report;
use crate::json::{self, Value};
use crate::plan::{Plan, StateMount, state_path};
use crate::verdict::Verified;

/// Where the record is written.
pub const PATH: &str = "/run/cfs-setup-root/status.json";
/// The record of the running root, kept when a soft reboot is staged.
pub const PREVIOUS: &str = "/run/cfs-setup-root/previous.json";
/// The schema version (raised only when a field changes meaning or goes away).
pub const SCHEMA: u32 = 1;

/// What kind of setup wrote the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// In the initramfs, at boot.
    Boot,
    /// From a running system, for `systemctl soft-reboot` (`--target`).
    SoftReboot,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Boot => "boot",
            Setup::SoftReboot => "soft-reboot",
        }
    }
}

/// How /etc or /var was provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    /// `none`, `bind`, `overlay` or `transient`.
    pub mode: String,
    /// The bind source or overlay upper, relative to the physical root.
    pub source: Option<String>,
    /// The overlay work directory, relative to the physical root.
    pub work: Option<String>,
    /// Where it is mounted.
    pub target: Option<String>,
}

/// The TPM measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmInfo {
    /// `[tpm] measure`.
    pub policy: String,
    /// Whether PCR `pcr` was extended.
    pub measured: bool,
    /// The PCR.
    pub pcr: u32,
    /// The measured string.
    pub event: String,
    /// The banks extended (`sha256`...).
    pub banks: Vec<String>,
    /// Whether the event is in the event log.
    pub logged: bool,
    /// Why it was not measured (policy `off`, no TPM, a TPM error).
    pub reason: Option<String>,
}

/// A phase of the run and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// Short name (`verify`, `mount-erofs`...).
    pub name: String,
    /// Microseconds.
    pub usec: u64,
}

/// The whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The tool's version.
    pub version: String,
    /// Boot or soft reboot.
    pub setup: Setup,
    /// Where the new root was set up (`/sysroot`, or the `--target`).
    pub root: PathBuf,
    /// The image's digest (hex).
    pub digest: String,
    /// `sha256` or `sha512`.
    pub algorithm: String,
    /// The command-line argument that named it.
    pub argument: String,
    /// `composefs=?...`: insecure.
    pub insecure: bool,
    /// The image file.
    pub image_path: String,
    /// Its size in bytes.
    pub image_size: u64,
    /// The image's kernel fs-verity digest was measured and matched.
    pub kernel_fsverity: bool,
    /// The image's digest was computed in userspace and matched.
    pub userspace_digest: bool,
    /// The composefs overlay has `verity=require`.
    pub verity_require: bool,
    /// Selectors passed over: (argument, reason).
    pub skipped: Vec<(String, String)>,
    /// The overlay's source, `composefs:<hex>`.
    pub source: String,
    /// `detached`, `attach-first` or `string-lowerdir`.
    pub assembly: String,
    /// `file` or `loop`.
    pub erofs: String,
    /// The loop device, when erofs reads through one.
    pub loop_device: Option<String>,
    /// A transient overlay over the root.
    pub transient_root: bool,
    /// /etc.
    pub etc: StateInfo,
    /// /var.
    pub var: StateInfo,
    /// Where the physical root is reachable in the new root.
    pub physical_root: String,
    /// Whether it is read-only there.
    pub physical_root_readonly: bool,
    /// The TPM measurement.
    pub tpm: TpmInfo,
    /// Each phase's time, in order.
    pub phases: Vec<Phase>,
}

fn opt(s: &Option<String>) -> String {
    s.as_deref()
        .map_or_else(|| "null".to_string(), json::string)
}

fn strings(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| json::string(s)).collect();
    format!("[{}]", items.join(","))
}

impl StateInfo {
    fn json(&self) -> String {
        format!(
            "{{\"mode\":{},\"source\":{},\"work\":{},\"target\":{}}}",
            json::string(&self.mode),
            opt(&self.source),
            opt(&self.work),
            opt(&self.target)
        )
    }
}

impl Status {
    /// The record as JSON (one object, pretty enough to read with `cat`).
    pub fn to_json(&self) -> String {
        let skipped: Vec<String> = self
            .skipped
            .iter()
            .map(|(a, r)| {
                format!(
                    "{{\"argument\":{},\"reason\":{}}}",
                    json::string(a),
                    json::string(r)
                )
            })
            .collect();
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|p| format!("{{\"name\":{},\"usec\":{}}}", json::string(&p.name), p.usec))
            .collect();
        let total: u64 = self.phases.iter().map(|p| p.usec).sum();
        let t = &self.tpm;
        let mut out = String::new();
        let mut field = |name: &str, value: String| {
            let sep = if out.is_empty() { "{\n" } else { ",\n" };
            let _ = write!(out, "{sep}  \"{name}\": {value}");
        };
        field("schema", SCHEMA.to_string());
        field("tool", json::string("cfs-setup-root"));
        field("version", json::string(&self.version));
        field("setup", json::string(self.setup.name()));
        field("root", json::string(&self.root.display().to_string()));
        field(
            "image",
            format!(
                "{{\"digest\":{},\"algorithm\":{},\"argument\":{},\"insecure\":{},\"path\":{},\"size\":{}}}",
                json::string(&self.digest),
                json::string(&self.algorithm),
                json::string(&self.argument),
                self.insecure,
                json::string(&self.image_path),
                self.image_size
            ),
        );
        field(
            "checks",
            format!(
                "{{\"kernel_fsverity\":{},\"userspace_digest\":{},\"verity_require\":{}}}",
                self.kernel_fsverity, self.userspace_digest, self.verity_require
            ),
        );
        field("skipped", format!("[{}]", skipped.join(",")));
        field(
            "mount",
            format!(
                "{{\"source\":{},\"assembly\":{},\"erofs\":{},\"loop_device\":{},\"transient_root\":{}}}",
                json::string(&self.source),
                json::string(&self.assembly),
                json::string(&self.erofs),
                opt(&self.loop_device),
                self.transient_root
            ),
        );
        field("etc", self.etc.json());
        field("var", self.var.json());
        field(
            "physical_root",
            format!(
                "{{\"path\":{},\"readonly\":{}}}",
                json::string(&self.physical_root),
                self.physical_root_readonly
            ),
        );
        field(
            "tpm",
            format!(
                "{{\"policy\":{},\"measured\":{},\"pcr\":{},\"event\":{},\"banks\":{},\"logged\":{},\"reason\":{}}}",
                json::string(&t.policy),
                t.measured,
                t.pcr,
                json::string(&t.event),
                strings(&t.banks),
                t.logged,
                opt(&t.reason)
            ),
        );
        field("phases", format!("[{}]", phases.join(",")));
        field("total_usec", total.to_string());
        out.push_str("\n}\n");
        out
    }

    /// Writes the record atomically (a temporary file renamed over it: a reader sees the old
    /// record or the new one, never half of one). Not synced: it lives in `/run`, which does
    /// not outlive the boot, and an fsync there only costs time (0.3 ms on a disk-backed
    /// `/run`, a third of what the mounts take). With `keep_previous` (a staged soft reboot),
    /// the record of the running root is kept as [`PREVIOUS`].
    pub fn write(&self, path: &Path, keep_previous: Option<&Path>) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_json().as_bytes())?;
        }
        if let Some(previous) = keep_previous {
            match std::fs::rename(path, previous) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&tmp, path)
    }
}

/// What the record is made from, besides the plan and the report.
#[derive(Debug)]
pub struct Facts<'a> {
    /// Boot or soft reboot.
    pub setup: Setup,
    /// The selector booted.
    pub selector: &'a crate::cmdline::ImageSelector,
    /// The image file.
    pub image_path: &'a Path,
    /// Its size.
    pub image_size: u64,
    /// Selectors passed over: (argument, reason).
    pub skipped: Vec<(String, String)>,
    /// `[tpm] measure`.
    pub tpm_policy: crate::config::TpmMeasure,
    /// Microseconds spent before the first step (reading the command line, the config, the
    /// repository; probing the kernel).
    pub survey_usec: u64,
}

/// The record of a successful run: the plan's decisions and what the steps returned.
pub fn build(plan: &Plan, report: &Report, facts: &Facts<'_>) -> Status {
    let hex = plan.digest.to_hex();
    // Plan paths are relative to the state directory; the record's to the physical root,
    // as the plan's lines print them.
    let info = |state: &crate::plan::State| {
        let (mode, source, work) = match &state.how {
            StateMount::Bind { source } => ("bind", Some(source), None),
            StateMount::Overlay { upper, work } => ("overlay", Some(upper), Some(work)),
            StateMount::Transient => ("transient", None, None),
        };
        StateInfo {
            mode: mode.to_string(),
            source: source.map(|p| state_path(p)),
            work: work.map(|p| state_path(p)),
            target: Some(state.target.display().to_string()),
        }
    };
    let etc = plan.etc.as_ref().map(info);
    let var = plan.var.as_ref().map(info);
    let none = || StateInfo {
        mode: "none".into(),
        source: None,
        work: None,
        target: None,
    };
    let policy = facts.tpm_policy.to_string();
    let tpm = match &report.tpm {
        Some((_, Ok(m))) => TpmInfo {
            policy,
            measured: true,
            pcr: m.pcr,
            event: m.event.clone(),
            banks: m.digests.iter().map(|d| d.alg.to_string()).collect(),
            logged: m.logged,
            reason: None,
        },
        Some((event, Err(why))) => TpmInfo {
            policy,
            measured: false,
            pcr: crate::tpm::IMAGE_PCR,
            event: event.clone(),
            banks: Vec::new(),
            logged: false,
            reason: Some(why.clone()),
        },
        None => TpmInfo {
            policy,
            measured: false,
            pcr: crate::tpm::IMAGE_PCR,
            event: format!("composefs:{hex}"),
            banks: Vec::new(),
            logged: false,
            reason: Some("[tpm] measure = \"off\"".to_string()),
        },
    };
    let mut phases = vec![Phase {
        name: "survey".into(),
        usec: facts.survey_usec,
    }];
    phases.extend(report.timings.iter().map(|(name, usec)| Phase {
        name: (*name).to_string(),
        usec: *usec,
    }));
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        setup: facts.setup,
        root: plan.target.clone(),
        digest: hex.clone(),
        algorithm: plan.digest.algorithm().to_string(),
        argument: facts.selector.arg.clone(),
        insecure: facts.selector.insecure,
        image_path: facts.image_path.display().to_string(),
        image_size: facts.image_size,
        kernel_fsverity: report.verified == Some(Verified::ByKernel),
        userspace_digest: report.verified == Some(Verified::ByComputation),
        verity_require: report.verity_require,
        skipped: facts.skipped.clone(),
        source: format!("composefs:{hex}"),
        assembly: plan.strategy.assembly.name().to_string(),
        erofs: if report.loop_device.is_some() {
            "loop".into()
        } else {
            "file".into()
        },
        loop_device: report.loop_device.clone(),
        transient_root: plan.transient_root.is_some(),
        etc: etc.unwrap_or_else(none),
        var: var.unwrap_or_else(none),
        physical_root: plan.target.join("sysroot").display().to_string(),
        physical_root_readonly: plan.physical_readonly,
        tpm,
        phases,
    }
}

/// Why `--status` has nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No record.
    #[error("this system was not set up by cfs-setup-root ({path} does not exist)")]
    Missing {
        /// The record's path.
        path: PathBuf,
    },
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The record's path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not JSON.
    #[error("{path} is not a status record: {why}")]
    Parse {
        /// The record's path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Reads the record (for `--status`).
pub fn read(path: &Path) -> Result<(String, Value), StatusError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StatusError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(StatusError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let value = json::parse(&text).map_err(|why| StatusError::Parse {
        path: path.to_path_buf(),
        why,
    })?;
    if value.get("schema").and_then(Value::u64).is_none() {
        return Err(StatusError::Parse {
            path: path.to_path_buf(),
            why: "no \"schema\" number".into(),
        });
    }
    Ok((text, value))
}

/// `s` with control characters shown as escapes (a record may quote a hostile argument).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn usec_text(usec: u64) -> String {
    if usec >= 10_000 {
        format!("{} ms", usec / 1000)
    } else {
        format!("{}.{} ms", usec / 1000, (usec % 1000) / 100)
    }
}

/// The record for a person: one line per topic, aligned. `running_root` is the source of
/// the mount at `/` (to say whether a staged record is already the running root).
pub fn human(v: &Value, running_root: Option<&str>) -> String {
    // Strings from the record are printed without their control characters.
    let s = |v: &Value, k: &str| printable(v.get(k).and_then(Value::str).unwrap_or("?"));
    let b = |v: &Value, k: &str| v.get(k).and_then(Value::bool).unwrap_or(false);
    let null = Value::Null;
    let image = v.get("image").unwrap_or(&null);
    let checks = v.get("checks").unwrap_or(&null);
    let mount = v.get("mount").unwrap_or(&null);
    let phys = v.get("physical_root").unwrap_or(&null);
    let tpm = v.get("tpm").unwrap_or(&null);
    let mut lines: Vec<(&str, String)> = Vec::new();

    let setup = s(v, "setup");
    let root = s(v, "root");
    let source = s(mount, "source");
    let mut how = if setup == "soft-reboot" {
        format!("set up at {root} for a soft reboot")
    } else {
        format!("set up at {root} in the initramfs")
    };
    if let Some(running) = running_root {
        if running == source {
            how.push_str("; it is the running root");
        } else if setup == "soft-reboot" {
            how.push_str(&format!(
                "; not running yet (/ is {running}): systemctl soft-reboot switches to it"
            ));
        } else {
            how.push_str(&format!("; but / is {running} now"));
        }
    }
    lines.push((
        "setup",
        format!("{how} (cfs-setup-root {})", s(v, "version")),
    ));
    lines.push((
        "image",
        format!(
            "{}:{} ({})",
            s(image, "algorithm"),
            s(image, "digest"),
            s(image, "argument")
        ),
    ));
    lines.push((
        "file",
        format!(
            "{}, {} bytes",
            s(image, "path"),
            image.get("size").and_then(Value::u64).unwrap_or(0)
        ),
    ));
    let mut checked = Vec::new();
    if b(checks, "kernel_fsverity") {
        checked.push("kernel fs-verity digest matched");
    }
    if b(checks, "userspace_digest") {
        checked.push("digest computed in userspace matched");
    }
    if !b(checks, "kernel_fsverity") && !b(checks, "userspace_digest") {
        checked.push("image digest NOT checked");
    }
    checked.push(if b(checks, "verity_require") {
        "overlay verity=require"
    } else {
        "overlay without verity=require"
    });
    lines.push((
        "mode",
        format!(
            "{}: {}",
            if b(image, "insecure") {
                "insecure"
            } else {
                "secure"
            },
            checked.join(", ")
        ),
    ));
    let digest = s(image, "digest");
    let short = |p: &str| p.replace(&digest, "<digest>");
    for skip in v.get("skipped").map(Value::items).unwrap_or(&[]) {
        lines.push((
            "skipped",
            format!("{}: {}", s(skip, "argument"), s(skip, "reason")),
        ));
    }
    let erofs = match mount.get("loop_device").and_then(Value::str) {
        Some(dev) => format!("erofs through {}", printable(dev)),
        None if s(mount, "erofs") == "file" => "erofs from the image file".to_string(),
        None => format!("erofs {}", s(mount, "erofs")),
    };
    lines.push((
        "mount",
        format!(
            "{source}, {} assembly, {erofs}{}",
            s(mount, "assembly"),
            if b(mount, "transient_root") {
                ", transient root"
            } else {
                ""
            }
        ),
    ));
    for name in ["etc", "var"] {
        let st = v.get(name).unwrap_or(&null);
        let mode = s(st, "mode");
        let text = match (st.get("source").and_then(Value::str), mode.as_str()) {
            (Some(src), "overlay") => format!(
                "overlay, upper {}, work {}",
                short(&printable(src)),
                short(&s(st, "work"))
            ),
            (Some(src), _) => format!("{mode} of {}", short(&printable(src))),
            (None, _) => mode,
        };
        lines.push((if name == "etc" { "/etc" } else { "/var" }, text));
    }
    lines.push((
        "physical root",
        format!(
            "{}, {}",
            s(phys, "path"),
            if b(phys, "readonly") {
                "read-only"
            } else {
                "writable"
            }
        ),
    ));
    let banks: Vec<&str> = tpm
        .get("banks")
        .map(Value::items)
        .unwrap_or(&[])
        .iter()
        .filter_map(Value::str)
        .collect();
    let tpm_text = if b(tpm, "measured") {
        format!(
            "PCR {} extended with {} (banks {}){}",
            tpm.get("pcr").and_then(Value::u64).unwrap_or(0),
            s(tpm, "event"),
            banks.join(", "),
            if b(tpm, "logged") {
                ", in the event log"
            } else {
                ", NOT in the event log"
            }
        )
    } else {
        format!(
            "not measured ({}; [tpm] measure = {})",
            tpm.get("reason").and_then(Value::str).unwrap_or("?"),
            s(tpm, "policy")
        )
    };
    lines.push(("tpm", tpm_text));
    let phases: Vec<String> = v
        .get("phases")
        .map(Value::items)
        .unwrap_or(&[])
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                s(p, "name"),
                usec_text(p.get("usec").and_then(Value::u64).unwrap_or(0))
            )
        })
        .collect();
    lines.push((
        "time",
        format!(
            "{} in all",
            usec_text(v.get("total_usec").and_then(Value::u64).unwrap_or(0))
        ),
    ));
    // Phases wrapped to lines of about 90 columns.
    let mut line = String::new();
    for p in phases {
        if !line.is_empty() && line.len() + p.len() > 88 {
            lines.push(("", std::mem::take(&mut line)));
        }
        if !line.is_empty() {
            line.push_str(", ");
        }
        line.push_str(&p);
    }
    if !line.is_empty() {
        lines.push(("", line));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, text) in lines {
        let _ = writeln!(out, "{k:width$}  {text}");
    }
    out
}

/// The source of the mount at `/` (e.g. `composefs:<hex>`), from mountinfo.
pub fn running_root_source() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    source_at(&info, Path::new("/"))
}

/// The source of the topmost mount at `mount_point` in `mountinfo` text (the format of
/// `/proc/self/mountinfo`).
pub fn source_at(mountinfo: &str, mount_point: &Path) -> Option<String> {
    let want = mount_point.to_str()?;
    let mut mounts = crate::physroot::mountinfo(mountinfo).filter(|m| m.mount_point == want);
    mounts.next_back().map(|m| m.source)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Status {
        let hex = "ab".repeat(32);
        Status {
            version: "0.1.0".into(),
            setup: Setup::Boot,
            root: PathBuf::from("/sysroot"),
            digest: hex.clone(),
            algorithm: "sha256".into(),
            argument: format!("composefs={hex}"),
            insecure: false,
            image_path: format!("/sysroot/composefs/images/{hex}"),
            image_size: 12345,
            kernel_fsverity: true,
            userspace_digest: false,
            verity_require: true,
            skipped: vec![("composefs=\"odd\\arg\n".into(), "malformed: not hex".into())],
            source: format!("composefs:{hex}"),
            assembly: "detached".into(),
            erofs: "file".into(),
            loop_device: None,
            transient_root: false,
            etc: StateInfo {
                mode: "overlay".into(),
                source: Some(format!("state/deploy/{hex}/etc/upper")),
                work: Some(format!("state/deploy/{hex}/etc/work")),
                target: Some("/sysroot/etc".into()),
            },
            var: StateInfo {
                mode: "bind".into(),
                source: Some(format!("state/deploy/{hex}/var")),
                work: None,
                target: Some("/sysroot/var".into()),
            },
            physical_root: "/sysroot/sysroot".into(),
            physical_root_readonly: true,
            tpm: TpmInfo {
                policy: "auto".into(),
                measured: true,
                pcr: 15,
                event: format!("composefs:{hex}"),
                banks: vec!["sha1".into(), "sha256".into()],
                logged: true,
                reason: None,
            },
            phases: vec![
                Phase {
                    name: "survey".into(),
                    usec: 1500,
                },
                Phase {
                    name: "verify".into(),
                    usec: 25_000,
                },
            ],
        }
    }

    #[test]
    fn json_parses_with_serde_and_with_ours() {
        let st = sample();
        let text = st.to_json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["image"]["digest"], st.digest);
        assert_eq!(v["checks"]["kernel_fsverity"], true);
        assert_eq!(v["skipped"][0]["argument"], "composefs=\"odd\\arg\n");
        assert_eq!(v["mount"]["loop_device"], serde_json::Value::Null);
        assert_eq!(
            v["etc"]["work"],
            format!("state/deploy/{}/etc/work", st.digest)
        );
        assert_eq!(v["var"]["work"], serde_json::Value::Null);
        assert_eq!(v["tpm"]["banks"][1], "sha256");
        assert_eq!(v["phases"][1]["usec"], 25_000);
        assert_eq!(v["total_usec"], 26_500);
        let ours = json::parse(&text).unwrap();
        assert_eq!(
            ours.get("image")
                .and_then(|i| i.get("argument"))
                .and_then(Value::str),
            Some(st.argument.as_str())
        );
    }

    #[test]
    fn stable_field_names() {
        // The README documents these; renaming one breaks users.
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "checks",
                "etc",
                "image",
                "mount",
                "phases",
                "physical_root",
                "root",
                "schema",
                "setup",
                "skipped",
                "tool",
                "total_usec",
                "tpm",
                "var",
                "version"
            ]
        );
    }

    #[test]
    fn human_output() {
        let st = sample();
        let v = json::parse(&st.to_json()).unwrap();
        let out = human(&v, Some(&st.source));
        assert!(out.lines().count() <= 24, "{out}");
        let hex = &st.digest;
        assert!(out.contains(&format!("image          sha256:{hex} (composefs={hex})")));
        assert!(
            out.contains(
                "mode           secure: kernel fs-verity digest matched, overlay verity=require"
            ),
            "{out}"
        );
        assert!(out.contains("it is the running root"));
        assert!(out.contains("tpm            PCR 15 extended with composefs:"));
        assert!(out.contains("physical root  /sysroot/sysroot, read-only"));
        assert!(out.contains("survey 1.5 ms, verify 25 ms"), "{out}");
        assert!(
            out.contains("skipped        composefs=\"odd\\arg\\n: malformed"),
            "{out}"
        );
        assert!(
            out.contains("/var           bind of state/deploy/<digest>/var"),
            "{out}"
        );
        // A staged record while another root runs.
        let mut staged = st.clone();
        staged.setup = Setup::SoftReboot;
        staged.root = PathBuf::from("/run/nextroot");
        let v = json::parse(&staged.to_json()).unwrap();
        let out = human(&v, Some("composefs:other"));
        assert!(
            out.contains("set up at /run/nextroot for a soft reboot; not running yet"),
            "{out}"
        );
        // Not measured.
        let mut off = st;
        off.tpm.measured = false;
        off.tpm.reason = Some("no TPM".into());
        let v = json::parse(&off.to_json()).unwrap();
        assert!(human(&v, None).contains("not measured (no TPM; [tpm] measure = auto)"));
    }

    #[test]
    fn mount_sources_from_mountinfo() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:40 / / ro - overlay composefs:aa ro,verity=require
31 22 8:1 / /run/next\\040root rw - overlay composefs:bb ro
32 22 8:1 /x /sysroot ro - ext4 /dev/vda ro
";
        assert_eq!(
            source_at(info, Path::new("/")).as_deref(),
            Some("composefs:aa")
        );
        assert_eq!(
            source_at(info, Path::new("/run/next root")).as_deref(),
            Some("composefs:bb")
        );
        assert_eq!(source_at(info, Path::new("/run")), None);
    }

    #[test]
    fn write_read_and_keep_previous() {
        let dir = std::env::temp_dir().join(format!("cfs-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("run/status.json");
        let prev = dir.join("run/previous.json");
        assert!(matches!(read(&path), Err(StatusError::Missing { .. })));
        assert!(
            read(&path)
                .unwrap_err()
                .to_string()
                .starts_with("this system was not set up by cfs-setup-root")
        );
        let a = sample();
        a.write(&path, None).unwrap();
        let mut b = sample();
        b.digest = "cd".repeat(32);
        b.write(&path, Some(&prev)).unwrap();
        let (_, v) = read(&path).unwrap();
        assert_eq!(
            v.get("image")
                .and_then(|i| i.get("digest"))
                .and_then(Value::str),
            Some(b.digest.as_str())
        );
        let (_, p) = read(&prev).unwrap();
        assert_eq!(
            p.get("image")
                .and_then(|i| i.get("digest"))
                .and_then(Value::str),
            Some(a.digest.as_str())
        );
        std::fs::write(&path, "{\"x\":1}").unwrap();
        assert!(matches!(read(&path), Err(StatusError::Parse { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
