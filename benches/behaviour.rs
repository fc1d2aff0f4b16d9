//! Side by side: what cfs-setup-root and composefs-setup-root 0.9.4 do with the boot
//! environments and hostile disks of the README's comparison table.
//!
//! Not a test (the host tests hold our behaviour to account): a record. Each case is set up
//! afresh for each tool in a private mount namespace (the host tests' fixtures), the tool runs
//! with the same config and command line, and what a user would see is read back from the
//! namespace: the exit code, the mount table, and files written and read through the new
//! root. One markdown row per case.
//!
//!     cargo bench --bench behaviour -- --peer PATH [--out FILE.md]
//!
//! (`benches/run` runs it with the peer it installs.)

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::*;

/// The config both tools get: the peer's defaults, written out.
const CONFIG: &str = "[etc]\nmount = \"overlay\"\n[var]\nmount = \"bind\"\n";

/// A hang is cut after this long (the peer opens whatever `images/<hex>` is).
const TIMEOUT_SECONDS: &str = "20";

#[derive(Clone, Copy)]
enum Tool<'a> {
    Ours,
    Peer(&'a Path),
}

/// What one run gave.
struct Outcome {
    code: Option<i32>,
    error: String,
}

impl Outcome {
    fn summary(&self) -> String {
        match self.code {
            Some(0) => "exit 0".to_string(),
            Some(124) => format!("hung: killed after {TIMEOUT_SECONDS} s"),
            Some(c) => format!("exit {c}: {}", self.error),
            None => "killed by a signal".to_string(),
        }
    }
}

/// A sysroot for `repo` with the deployment state both tools expect
/// (`state/deploy/<hex>/{etc/upper,etc/work,var}`) and the config beside it.
fn prepared(repo: &Repo) -> (Sysroot, PathBuf) {
    let s = Sysroot::new(repo);
    let deploy = s.deploy(&repo.hex);
    for d in ["etc/upper", "etc/work", "var"] {
        fs::create_dir_all(deploy.join(d)).unwrap();
    }
    let cfg = s.path.with_extension("toml");
    fs::write(&cfg, CONFIG).unwrap();
    (s, cfg)
}

/// Runs `tool` in `ns` on the sysroot at `sysroot` (with `cmdline`, or `/proc/cmdline` when
/// `None`).
fn run(
    tool: Tool<'_>,
    ns: &Namespace,
    sysroot: &Path,
    cfg: &Path,
    cmdline: Option<&str>,
) -> Outcome {
    let (bin, mut args): (PathBuf, Vec<String>) = match tool {
        Tool::Ours => (
            PathBuf::from(BIN),
            vec![
                "--tpm-device".into(),
                sysroot.with_extension("no-tpm").display().to_string(),
                "--status-file".into(),
                sysroot.with_extension("status.json").display().to_string(),
            ],
        ),
        Tool::Peer(p) => (p.to_path_buf(), Vec::new()),
    };
    args.extend([
        "--sysroot".to_string(),
        sysroot.display().to_string(),
        "--config".to_string(),
        cfg.display().to_string(),
    ]);
    if let Some(c) = cmdline {
        args.extend(["--cmdline".to_string(), c.to_string()]);
    }
    let mut all = vec![TIMEOUT_SECONDS.to_string(), bin.display().to_string()];
    all.extend(args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = ns
        .command("timeout", &all)
        .env("CFS_SETUP_ROOT_LOG", "stderr")
        .output()
        .expect("run a tool");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.to_lowercase().contains("error"))
        .or_else(|| stderr.lines().last())
        .unwrap_or("")
        .trim();
    // Ours names the step, then the cause: keep the cause.
    let cause = line.rsplit_once(") failed: ").map_or(line, |(_, c)| c);
    let cause = cause.split("; everything done").next().unwrap_or(cause);
    let error = tidy(cause, sysroot).chars().take(160).collect();
    Outcome {
        code: out.status.code(),
        error,
    }
}

/// `text` with the scratch sysroot's path written `<sysroot>` and every digest `<hex>`.
fn tidy(text: &str, sysroot: &Path) -> String {
    let text = text.replace(&sysroot.display().to_string(), "<sysroot>");
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 64 { "<hex>" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// The mount on top at `path`, if any.
fn top(ns: &Namespace, path: &Path) -> Option<MountEntry> {
    let p = path.to_str()?;
    ns.mounts().into_iter().rev().find(|m| m.target == p)
}

/// Which image is the root at `sysroot`, by its overlay's source.
fn booted(ns: &Namespace, sysroot: &Path, names: &[(&str, &str)]) -> String {
    match top(ns, sysroot) {
        Some(m) if m.fstype == "overlay" => names
            .iter()
            .find(|(hex, _)| m.source.ends_with(hex))
            .map(|(_, name)| format!("booted {name}"))
            .unwrap_or_else(|| format!("root {}", m.source)),
        _ => "nothing booted".to_string(),
    }
}

/// `ro`: the physical root mounted read-only, as `ro` on the command line leaves it.
fn case_ro(tool: Tool<'_>, repo: &Repo) -> String {
    let (s, cfg) = prepared(repo);
    let ext4 = Ext4Root::new(&s);
    let mp = ext4.mountpoint.clone();
    let ns = ext4.mount_readonly(false);
    let karg = format!("composefs=?{} ro", repo.hex);
    let o = run(tool, &ns, &mp, &cfg, Some(&karg));
    let mut cell = o.summary();
    if o.code == Some(0) {
        let root = ns.path(&mp);
        let etc = fs::write(root.join("etc/probe"), b"x").is_ok();
        let var = fs::write(root.join("var/probe"), b"x").is_ok();
        let on_disk = root
            .join("sysroot/state/deploy")
            .join(&repo.hex)
            .join("etc/upper/probe")
            .exists();
        cell.push_str(&format!(
            "; /etc {}, /var {}{}",
            if etc { "writable" } else { "read-only" },
            if var { "writable" } else { "read-only" },
            if etc && on_disk {
                ", /etc writes on the disk"
            } else {
                ""
            }
        ));
    }
    ext4.unmount(ns);
    cell
}

/// `composefs=?A composefs=?B` with `images/A` made unusable by `make`.
fn case_fallback(tool: Tool<'_>, repo: &Repo, make: &dyn Fn(&Path)) -> String {
    let (s, cfg) = prepared(repo);
    let first = "cd".repeat(32);
    make(&s.image(&first));
    let ns = Namespace::new(&s.path);
    let karg = format!("composefs=?{first} composefs=?{}", repo.hex);
    let o = run(tool, &ns, &s.path, &cfg, Some(&karg));
    format!(
        "{}; {}",
        o.summary(),
        booted(&ns, &s.path, &[(&first, "A"), (&repo.hex, "B")])
    )
}

/// `state/deploy/<hex>/var -> ../../..`: a state link that leads to the physical root's top.
fn case_state_escape(tool: Tool<'_>, repo: &Repo) -> String {
    let (s, cfg) = prepared(repo);
    let var = s.deploy(&repo.hex).join("var");
    fs::remove_dir(&var).unwrap();
    symlink("../../..", &var).unwrap();
    let ns = Namespace::new(&s.path);
    let karg = format!("composefs=?{}", repo.hex);
    let o = run(tool, &ns, &s.path, &cfg, Some(&karg));
    let mut cell = o.summary();
    if o.code == Some(0) {
        let exposed = ns.path(&s.path).join("var/composefs").exists();
        cell.push_str(&match top(&ns, &s.path.join("var")) {
            Some(m) => format!(
                "; /var is a {} mount of {}{}",
                if m.readonly() {
                    "read-only"
                } else {
                    "writable"
                },
                if exposed {
                    "the whole physical root".to_string()
                } else if m.source.starts_with("composefs:") {
                    "the image's root".to_string()
                } else {
                    format!("{} {}", m.fstype, m.root)
                },
                if m.source.starts_with("composefs:") || exposed {
                    ", not the deployment's state"
                } else {
                    ""
                }
            ),
            None => "; nothing is mounted at /var".to_string(),
        });
    }
    cell
}

/// A mount beneath the physical root (`/sysroot/boot`) before the tool runs.
fn case_submount(tool: Tool<'_>, repo: &Repo) -> String {
    let (s, cfg) = prepared(repo);
    fs::create_dir_all(s.path.join("boot")).unwrap();
    let ns = Namespace::new(&s.path);
    let boot = s.path.join("boot");
    let (code, out) = ns.shell(&format!(
        "mount -t tmpfs boot {b} && echo kernel > {b}/marker",
        b = boot.display()
    ));
    assert_eq!(code, Some(0), "{out}");
    let karg = format!("composefs=?{}", repo.hex);
    let o = run(tool, &ns, &s.path, &cfg, Some(&karg));
    let mut cell = o.summary();
    if o.code == Some(0) {
        let seen = ns.path(&s.path).join("sysroot/boot/marker").exists();
        cell.push_str(if seen {
            "; /sysroot/boot shows the boot partition"
        } else {
            "; /sysroot/boot is empty (the submount is missing)"
        });
    }
    cell
}

/// Propagation: is `<root>/sysroot` a peer of the physical root hidden below the new root?
fn case_propagation(tool: Tool<'_>, repo: &Repo) -> String {
    let (s, cfg) = prepared(repo);
    let ns = Namespace::new(&s.path);
    let hidden = top(&ns, &s.path).and_then(|m| m.peer_group().map(str::to_string));
    let karg = format!("composefs=?{}", repo.hex);
    let o = run(tool, &ns, &s.path, &cfg, Some(&karg));
    let mut cell = o.summary();
    if o.code == Some(0) {
        let clone = top(&ns, &s.path.join("sysroot"));
        let group = clone
            .as_ref()
            .and_then(|m| m.peer_group().map(str::to_string));
        cell.push_str(match (&group, &hidden) {
            (Some(g), Some(h)) if g == h => {
                "; /sysroot/sysroot is a peer of the hidden physical root (mounts propagate between them)"
            }
            (Some(_), _) => "; /sysroot/sysroot is shared in a peer group of its own",
            (None, _) => "; /sysroot/sysroot is private",
        });
    }
    cell
}

/// A failure after the root is mounted: `/etc`'s upper directory is a regular file.
fn case_failure_midway(tool: Tool<'_>, repo: &Repo) -> String {
    let (s, cfg) = prepared(repo);
    let upper = s.deploy(&repo.hex).join("etc/upper");
    fs::remove_dir(&upper).unwrap();
    fs::write(&upper, b"not a directory").unwrap();
    let ns = Namespace::new(&s.path);
    let before = ns.mounts_under(&s.path).len();
    let karg = format!("composefs=?{}", repo.hex);
    let o = run(tool, &ns, &s.path, &cfg, Some(&karg));
    let left = ns.mounts_under(&s.path).len().saturating_sub(before);
    format!(
        "{}; {}",
        o.summary(),
        if left == 0 {
            "nothing left mounted".to_string()
        } else {
            format!("{left} mounts left on the sysroot")
        }
    )
}

/// `/proc/cmdline` with another program's argument in Latin-1 (not UTF-8).
fn case_non_utf8(tool: Tool<'_>, repo: &Repo) -> String {
    let (s, cfg) = prepared(repo);
    let ns = Namespace::new(&s.path);
    let mut line = b"quiet splash=\xe9t\xe9 ".to_vec();
    line.extend_from_slice(format!("composefs=?{}\n", repo.hex).as_bytes());
    ns.fake_proc_cmdline(&s.path, &line);
    let o = run(tool, &ns, &s.path, &cfg, None);
    format!(
        "{}; {}",
        o.summary(),
        booted(&ns, &s.path, &[(&repo.hex, "the image")])
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut peer = None;
    let mut out = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--peer" => peer = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from),
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    let Some(peer) = peer else {
        eprintln!(
            "behaviour: no --peer PATH given (benches/run passes the peer it installs): nothing to compare"
        );
        std::process::exit(2);
    };
    if !root_or_skip("behaviour") {
        std::process::exit(2);
    }
    let repo = repo256();
    type Case<'a> = (&'a str, Box<dyn Fn(Tool<'_>) -> String + 'a>);
    let cases: Vec<Case<'_>> = vec![
        (
            "`ro`: the physical root mounted read-only",
            Box::new(|t| case_ro(t, repo)),
        ),
        (
            "`composefs=A composefs=B`, `images/A` a dangling link",
            Box::new(|t| {
                case_fallback(t, repo, &|p: &Path| {
                    symlink("../objects/00/missing", p).unwrap()
                })
            }),
        ),
        (
            "the same, `images/A` a directory",
            Box::new(|t| case_fallback(t, repo, &|p: &Path| fs::create_dir(p).unwrap())),
        ),
        (
            "the same, `images/A` a FIFO",
            Box::new(|t| case_fallback(t, repo, &|p: &Path| mkfifo(p))),
        ),
        (
            "a state link out of `state/` (`var -> ../../..`)",
            Box::new(|t| case_state_escape(t, repo)),
        ),
        (
            "a mount beneath the physical root (`/sysroot/boot`)",
            Box::new(|t| case_submount(t, repo)),
        ),
        (
            "propagation of `/sysroot/sysroot` (`/sysroot` shared, as in a systemd initrd)",
            Box::new(|t| case_propagation(t, repo)),
        ),
        (
            "a failure after the root is mounted (`etc/upper` a file)",
            Box::new(|t| case_failure_midway(t, repo)),
        ),
        (
            "`/proc/cmdline` with a byte that is not UTF-8",
            Box::new(|t| case_non_utf8(t, repo)),
        ),
    ];
    let mut md =
        String::from("| case | cfs-setup-root | composefs-setup-root 0.9.4 |\n|---|---|---|\n");
    for (name, case) in &cases {
        let ours = case(Tool::Ours);
        let theirs = case(Tool::Peer(&peer));
        eprintln!("behaviour: {name}: ours: {ours}; peer: {theirs}");
        md.push_str(&format!(
            "| {name} | {} | {} |\n",
            ours.replace('|', "\\|"),
            theirs.replace('|', "\\|")
        ));
    }
    print!("{md}");
    if let Some(out) = out {
        fs::write(&out, &md).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    }
}
