//! Shared fixtures for the host tests: a rich source tree, repositories made by cfsctl,
//! fake sysroots, and private mount namespaces to run the binary in.
//!
//! Each test gets its own mount namespace: a `sleep` started by `unshare --mount
//! --propagation private` holds it, the binary runs in it through `nsenter`, and the test
//! looks at the result through `/proc/<holder>/root/...` and `/proc/<holder>/mountinfo`.
//! Killing the holder tears the namespace down with everything mounted in it, so no test
//! can leave a mount on the host, whatever it asserts.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cfs-setup-root");

/// True when the tests can mount; otherwise reports the test as skipped ([`skip`]).
pub fn root_or_skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        true
    } else {
        skip(test, "needs root (mounts in a private mount namespace)");
        false
    }
}

/// Reports a test that returns without running: libtest has no skip at run time and would
/// count it as passed, so the test says so itself. It prints `SKIPPED <test>: <reason>` to
/// stderr (shown with `--nocapture`), appends the line to the file `$CFS_TESTS_SKIP_FILE` when
/// that is set (the test command lists and counts them), and, when `CFS_TESTS_REQUIRE_ALL=1`
/// (a run that has root and every tool, as the test command's is), fails the test instead: a
/// skip there is a broken set-up, not a pass.
pub fn skip(test: &str, reason: &str) {
    let file = std::env::var_os("CFS_TESTS_SKIP_FILE").map(PathBuf::from);
    let require_all = std::env::var_os("CFS_TESTS_REQUIRE_ALL").is_some_and(|v| v == "1");
    skip_with(test, reason, file.as_deref(), require_all);
}

/// [`skip`] with its environment given: the skip file, and whether every test must run.
pub fn skip_with(test: &str, reason: &str, file: Option<&Path>, require_all: bool) {
    let line = format!("SKIPPED {test}: {reason}");
    eprintln!("{line}");
    if let Some(path) = file {
        use std::io::Write as _;
        let appended = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(e) = appended {
            panic!("{line}; and cannot record it in {}: {e}", path.display());
        }
    }
    if require_all {
        panic!("{line} (CFS_TESTS_REQUIRE_ALL=1: every test must run in this run)");
    }
}

/// cfsctl 0.9.4: `$CFSCTL`, the cache the test command installs it to, or `$PATH`.
pub fn cfsctl() -> PathBuf {
    if let Some(p) = std::env::var_os("CFSCTL") {
        return PathBuf::from(p);
    }
    let cached = tools_bin().join("cfsctl");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("cfsctl")
}

/// C mkcomposefs (composefs 1.0.8): `$MKCOMPOSEFS`, the cache `tests/tools/build-mkcomposefs`
/// installs it to, or `$PATH`. There is no Debian package for it here, so a missing one is
/// a failure that says how to get it, not a skip.
pub fn mkcomposefs() -> PathBuf {
    if let Some(p) = std::env::var_os("MKCOMPOSEFS") {
        return PathBuf::from(p);
    }
    let cached = tools_bin().join("mkcomposefs");
    if cached.exists() {
        return cached;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|d| d.join("mkcomposefs"))
        .find(|p| p.is_file())
    {
        return found;
    }
    // Why it is missing, when the test command knows (its build of mkcomposefs failed).
    let why = std::env::var("CFS_MKCOMPOSEFS_MISSING")
        .map(|w| format!("; {w}"))
        .unwrap_or_default();
    panic!(
        "cannot run: C mkcomposefs not found ($MKCOMPOSEFS unset, not in {} nor on $PATH){why}. \
         Run tests/tools/build-mkcomposefs (bash tests/run does), or set MKCOMPOSEFS",
        cached.display()
    );
}

/// Where the test command installs its tools.
fn tools_bin() -> PathBuf {
    dirs_home().join(".cache/cfs-setup-root/tools/bin")
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

/// A fresh directory under cargo's per-target temp dir (on a real filesystem: erofs cannot
/// mount a file kept on tmpfs).
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The source tree every image is made from: content, modes, owners, links, a device
/// node, a FIFO and a kept xattr.
pub fn build_tree(dir: &Path) {
    let w = |p: &str, data: &[u8], mode: u32| {
        let path = dir.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    for d in [
        "usr/bin",
        "usr/lib",
        "usr/share/doc",
        "etc",
        "var/lib/app",
        "sysroot",
        "boot",
        "dev",
        "run",
        "tmp",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    w(
        "usr/bin/hello",
        b"#!/bin/sh\necho hello from composefs\n",
        0o755,
    );
    // Large enough to be an external object (more than 64 bytes), with a known pattern.
    w("usr/lib/big.bin", &pattern(300_000), 0o644);
    w("usr/share/doc/small", b"tiny", 0o644); // inline in the image
    w(
        "usr/bin/setuid",
        &object_text("pretend setuid binary"),
        0o4755,
    );
    w("usr/lib/owned", &object_text("owned by 1234:5678"), 0o640);
    std::os::unix::fs::chown(dir.join("usr/lib/owned"), Some(1234), Some(5678)).unwrap();
    w("usr/bin/hard1", &object_text("hard-linked content"), 0o755);
    fs::hard_link(dir.join("usr/bin/hard1"), dir.join("usr/bin/hard2")).unwrap();
    symlink("hello", dir.join("usr/bin/link-to-hello")).unwrap();
    symlink("/usr/lib/big.bin", dir.join("usr/lib/abs-link")).unwrap();
    w(
        "usr/bin/capable",
        &object_text("a file with a security.capability xattr, kept by cfsctl"),
        0o755,
    );
    // VFS_CAP_REVISION_2, cap_net_bind_service (bit 10) permitted.
    let cap: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    rustix::fs::setxattr(
        dir.join("usr/bin/capable"),
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    sh(Command::new("mknod")
        .arg(dir.join("usr/lib/null"))
        .args(["c", "1", "3"]));
    sh(Command::new("mkfifo").arg(dir.join("usr/lib/fifo")));
    w("etc/hostname", b"composefs-test\n", 0o644);
    w("etc/app.conf", b"setting = from-image\n", 0o644);
    w("var/lib/app/state", b"image var content\n", 0o644);
}

/// `label` and a newline, padded with dots to 128 bytes: past the 64 bytes up to which both
/// cfsctl and mkcomposefs keep a file's content inline in the image, so the file is an
/// external object (metacopy + redirect) and its metadata checks go through overlayfs.
pub fn object_text(label: &str) -> Vec<u8> {
    let mut text = format!("{label}\n").into_bytes();
    assert!(text.len() <= 128);
    text.resize(128, b'.');
    text
}

/// Deterministic bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// A repository made by cfsctl, and the image in it.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The repository directory.
    pub dir: PathBuf,
    /// "sha256" or "sha512".
    pub algorithm: &'static str,
    /// The image's digest, hex.
    pub hex: String,
}

/// Makes a repository (insecure: this host has no fs-verity) holding one image of the tree.
pub fn make_repo(algorithm: &'static str, erofs_version: &str) -> Repo {
    let base = scratch(&format!("repo-{algorithm}-v{erofs_version}"));
    let tree = base.join("tree");
    build_tree(&tree);
    cfsctl_repo(&tree, &base.join("repo"), algorithm, erofs_version, &[])
}

/// Makes a repository at `dir` with cfsctl holding one image of `tree`
/// (`cfsctl create-image CREATE_FLAGS TREE`).
pub fn cfsctl_repo(
    tree: &Path,
    dir: &Path,
    algorithm: &'static str,
    erofs_version: &str,
    create_flags: &[&str],
) -> Repo {
    sh(Command::new(cfsctl())
        .args(["init", "--insecure", "--algorithm"])
        .arg(format!("fsverity-{algorithm}-12"))
        .arg("--erofs-version")
        .arg(erofs_version)
        .arg(dir));
    let out = sh(Command::new(cfsctl())
        .arg("--repo")
        .arg(dir)
        .arg("create-image")
        .args(create_flags)
        .arg(tree));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let hex = printed
        .strip_prefix(&format!("{algorithm}:"))
        .unwrap_or_else(|| panic!("unexpected create-image output {printed:?}"))
        .to_string();
    Repo {
        dir: dir.to_path_buf(),
        algorithm,
        hex,
    }
}

/// The shared sha256 (V1 EROFS) repository; tests copy it when they need to damage it.
pub fn repo256() -> &'static Repo {
    static R: OnceLock<Repo> = OnceLock::new();
    R.get_or_init(|| make_repo("sha256", "1"))
}

/// A fake physical root: `composefs/` (the repository) and `state/`.
pub struct Sysroot {
    /// Its path on the host (and in the namespace).
    pub path: PathBuf,
    /// Where the binary writes its status record.
    pub status: PathBuf,
    /// The TPM device the binary is pointed at (absent).
    pub no_tpm: PathBuf,
}

impl Sysroot {
    /// A sysroot whose `composefs` is a copy of `repo` (hard links for objects: cheap, and
    /// damage to an image is done by replacing files, never by writing through a link).
    pub fn new(repo: &Repo) -> Sysroot {
        let path = scratch("sysroot");
        sh(Command::new("cp")
            .arg("-al")
            .arg(&repo.dir)
            .arg(path.join("composefs")));
        Sysroot {
            status: path.with_extension("status.json"),
            no_tpm: path.with_extension("no-tpm"),
            path,
        }
    }

    /// `<sysroot>/composefs/images/<hex>`.
    pub fn image(&self, hex: &str) -> PathBuf {
        self.path.join("composefs/images").join(hex)
    }

    /// Replaces the image's object by a private copy (so it can be damaged) and returns it.
    pub fn private_image_object(&self, hex: &str) -> PathBuf {
        let link = self.image(hex);
        let object = link.parent().unwrap().join(fs::read_link(&link).unwrap());
        let data = fs::read(&object).unwrap();
        fs::remove_file(&object).unwrap();
        fs::write(&object, data).unwrap();
        object
    }

    /// The binary's arguments for this sysroot: `--sysroot`, `--cmdline karg`, the status
    /// record beside the sysroot and a TPM that does not exist (a host test never extends
    /// the host's PCRs), then `extra`.
    pub fn args<'a>(&'a self, karg: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--sysroot", self.path.to_str().unwrap(), "--cmdline", karg];
        args.extend_from_slice(&["--status-file", self.status.to_str().unwrap()]);
        args.extend_from_slice(&["--tpm-device", self.no_tpm.to_str().unwrap()]);
        args.extend_from_slice(extra);
        args
    }

    /// `state/deploy/<hex>`.
    pub fn deploy(&self, hex: &str) -> PathBuf {
        self.path.join("state/deploy").join(hex)
    }
}

/// A private mount namespace held open by a `sleep`.
pub struct Namespace {
    holder: Child,
}

impl Namespace {
    /// A new namespace in which `sysroot` is a mount point (bound on itself), shared like
    /// `/` in a systemd initrd.
    pub fn new(sysroot: &Path) -> Namespace {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        let ns = Namespace { holder };
        let me = fs::read_link("/proc/self/ns/mnt").unwrap();
        for _ in 0..500 {
            if fs::read_link(format!("/proc/{}/ns/mnt", ns.pid())).is_ok_and(|theirs| theirs != me)
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let s = sysroot.to_str().unwrap();
        sh(&mut ns.command("mount", &["--bind", s, s]));
        sh(&mut ns.command("mount", &["--make-shared", s]));
        ns
    }

    /// The holder's pid.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .args(["-m", "--"])
            .arg(prog)
            .args(args);
        c
    }

    /// Runs the binary in the namespace with `args` (and logs to stderr).
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// As `run`, with extra environment.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(BIN, args);
        c.env("CFS_SETUP_ROOT_LOG", "stderr");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run cfs-setup-root");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A host path that resolves inside the namespace.
    pub fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        let p = p.as_ref();
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(p.strip_prefix("/").unwrap_or(p))
    }

    /// The namespace's mount table (id, parent, major:minor, root, target, options, fstype,
    /// source, super options), one `Mount` per line.
    pub fn mounts(&self) -> Vec<MountEntry> {
        let text = fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap();
        text.lines().filter_map(MountEntry::parse).collect()
    }

    /// The mounts at or beneath `dir`, in mount order.
    pub fn mounts_under(&self, dir: &Path) -> Vec<MountEntry> {
        let dir = dir.to_str().unwrap();
        self.mounts()
            .into_iter()
            .filter(|m| m.target == dir || m.target.starts_with(&format!("{dir}/")))
            .collect()
    }

    /// Makes `/proc/cmdline` read as `line` inside the namespace (a file beside `sysroot`,
    /// bound over it).
    pub fn fake_proc_cmdline(&self, sysroot: &Path, line: &[u8]) {
        let fake = sysroot.with_extension("cmdline");
        fs::write(&fake, line).unwrap();
        let (code, out) = self.shell(&format!("mount --bind {} /proc/cmdline", fake.display()));
        assert_eq!(code, Some(0), "{out}");
    }

    /// Runs a shell snippet inside the namespace; returns (exit code, stdout+stderr).
    pub fn shell(&self, script: &str) -> (Option<i32>, String) {
        let out = self.command("sh", &["-c", script]).output().unwrap();
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code(), s)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount point.
    pub target: String,
    /// Per-mount options (ro/rw...).
    pub mount_options: String,
    /// Filesystem type.
    pub fstype: String,
    /// Source.
    pub source: String,
    /// Superblock options.
    pub super_options: String,
    /// Root of the mount within its filesystem.
    pub root: String,
    /// Optional fields: propagation (`shared:N`, `master:N`...).
    pub optional: Vec<String>,
}

impl MountEntry {
    fn parse(line: &str) -> Option<MountEntry> {
        let (left, right) = line.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let unescape = |s: &str| {
            s.replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\012", "\n")
                .replace("\\134", "\\")
        };
        Some(MountEntry {
            root: unescape(l.get(3)?),
            target: unescape(l.get(4)?),
            mount_options: l.get(5)?.to_string(),
            fstype: r.first()?.to_string(),
            source: unescape(r.get(1)?),
            super_options: r.get(2).unwrap_or(&"").to_string(),
            optional: l.iter().skip(6).map(|f| f.to_string()).collect(),
        })
    }

    /// Mounted read-only (this mount, not necessarily the superblock).
    pub fn readonly(&self) -> bool {
        self.mount_options.split(',').any(|o| o == "ro")
    }

    /// The peer group this mount shares propagation with (`shared:N`), if any.
    pub fn peer_group(&self) -> Option<&str> {
        self.optional.iter().find_map(|o| o.strip_prefix("shared:"))
    }

    /// Has superblock option `opt`.
    pub fn has_super_option(&self, opt: &str) -> bool {
        self.super_options.split(',').any(|o| o == opt)
    }
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: Option<i32>,
    /// stdout.
    pub stdout: String,
    /// stderr (the log, with CFS_SETUP_ROOT_LOG=stderr).
    pub stderr: String,
}

impl Run {
    /// Asserts success.
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success:\n{}{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts exit code `code` and that stderr has an error line containing each of
    /// `needles`.
    pub fn fails(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}:\n{}{}",
            self.stdout,
            self.stderr
        );
        let line = self
            .stderr
            .lines()
            .find(|l| l.contains("error:"))
            .unwrap_or_else(|| panic!("no error line in:\n{}", self.stderr));
        for n in needles {
            assert!(line.contains(n), "error line lacks {n:?}:\n{line}");
        }
        self
    }
}

/// Sets up a sysroot holding `repo`, and runs the binary on it in a new namespace with the
/// kernel command line `karg`, `extra` flags and `config` (empty when `None`).
pub fn boot(
    repo: &Repo,
    karg: &str,
    extra: &[&str],
    config: Option<&str>,
) -> (Sysroot, Namespace, Run) {
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let cfg = sysroot.path.with_extension("toml");
    fs::write(&cfg, config.unwrap_or("")).unwrap();
    let mut args = sysroot.args(karg, &["--config", cfg.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let run = ns.run(&args);
    (sysroot, ns, run)
}

/// How the tree's hard links (`usr/bin/hard1`, `usr/bin/hard2`) are in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardLinks {
    /// One inode with two names (cfsctl; mkcomposefs from a dump file).
    Kept,
    /// Two inodes of one link each, both redirected to the same object (mkcomposefs 1.0.8
    /// reading a directory: `lcfs_build` does not look at inode numbers).
    Split,
}

/// Everything a user of the booted root relies on, checked through the namespace.
pub fn check_root(repo: &Repo, sysroot: &Sysroot, ns: &Namespace, path_name: &str) {
    check_root_with(repo, sysroot, ns, path_name, HardLinks::Kept);
}

/// [`check_root`] for an image whose hard links are as `hard_links` says.
pub fn check_root_with(
    repo: &Repo,
    sysroot: &Sysroot,
    ns: &Namespace,
    path_name: &str,
    hard_links: HardLinks,
) {
    let root = ns.path(&sysroot.path);
    let r = |p: &str| root.join(p);
    let ctx = |what: &str| format!("[{path_name}] {what}");

    // Content: inline files, external objects, a 300 KB file byte for byte.
    assert_eq!(
        fs::read(r("usr/share/doc/small")).unwrap(),
        b"tiny",
        "{}",
        ctx("inline file")
    );
    assert_eq!(
        fs::read_to_string(r("usr/bin/hello")).unwrap(),
        "#!/bin/sh\necho hello from composefs\n",
        "{}",
        ctx("inline script")
    );
    assert_eq!(
        fs::read(r("usr/bin/hard2")).unwrap(),
        object_text("hard-linked content"),
        "{}",
        ctx("object file, through its second link")
    );
    assert!(
        fs::read(r("usr/lib/big.bin")).unwrap() == pattern(300_000),
        "{}",
        ctx("big file content")
    );
    // Modes and owners.
    let m = fs::metadata(r("usr/bin/setuid")).unwrap();
    assert_eq!(
        m.permissions().mode() & 0o7777,
        0o4755,
        "{}",
        ctx("setuid mode")
    );
    let m = fs::metadata(r("usr/lib/owned")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o777),
        (1234, 5678, 0o640),
        "{}",
        ctx("owner")
    );
    // Symlinks, relative and absolute, kept as links.
    assert_eq!(
        fs::read_link(r("usr/bin/link-to-hello")).unwrap(),
        Path::new("hello")
    );
    assert_eq!(
        fs::read_link(r("usr/lib/abs-link")).unwrap(),
        Path::new("/usr/lib/big.bin")
    );
    // Hard links share an inode (or, split, are two files of the same content).
    let (ino1, ino2) = (ino(&r("usr/bin/hard1")), ino(&r("usr/bin/hard2")));
    let nlink = fs::metadata(r("usr/bin/hard1")).unwrap().nlink();
    match hard_links {
        HardLinks::Kept => {
            assert_eq!(ino1, ino2, "{}", ctx("hardlink"));
            assert_eq!(nlink, 2, "{}", ctx("hardlink count"));
        }
        HardLinks::Split => {
            assert_ne!(ino1, ino2, "{}", ctx("split hardlink"));
            assert_eq!(nlink, 1, "{}", ctx("split hardlink count"));
            assert_eq!(
                fs::read(r("usr/bin/hard1")).unwrap(),
                fs::read(r("usr/bin/hard2")).unwrap(),
                "{}",
                ctx("split hardlink content")
            );
        }
    }
    // Device node and FIFO.
    let m = fs::symlink_metadata(r("usr/lib/null")).unwrap();
    assert!(m.file_type().is_char_device(), "{}", ctx("char device"));
    assert_eq!(
        (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())),
        (1, 3)
    );
    assert!(
        fs::symlink_metadata(r("usr/lib/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // The kept xattr.
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(r("usr/bin/capable"), "security.capability", &mut buf)
        .unwrap_or_else(|e| panic!("{}: {e}", ctx("security.capability")));
    assert_eq!(&buf[..4], &[0, 0, 0, 2], "{}", ctx("capability revision"));
    assert_eq!(n, 20);

    // The mount table: composefs overlay on the sysroot, read-only, with its source.
    let mounts = ns.mounts_under(&sysroot.path);
    let s = sysroot.path.to_str().unwrap();
    let top = mounts.iter().rev().find(|m| m.target == s).unwrap();
    assert_eq!(top.fstype, "overlay");
    let cfs = mounts
        .iter()
        .find(|m| m.target == s && m.source == format!("composefs:{}", repo.hex))
        .unwrap_or_else(|| panic!("{}: no composefs overlay in {mounts:#?}", ctx("mounts")));
    assert!(cfs.readonly(), "{}", ctx("composefs root is read-only"));
    assert!(cfs.has_super_option("metacopy=on") && cfs.has_super_option("redirect_dir=on"));
    // The root cannot be written.
    let err = fs::write(r("usr/new-file"), b"x").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc_erofs()),
        "{}",
        ctx("write to /usr")
    );

    // The physical root at sysroot/sysroot, read-only, showing the repository.
    let phys = mounts
        .iter()
        .find(|m| m.target == format!("{s}/sysroot"))
        .unwrap();
    assert!(phys.readonly(), "{}", ctx("physical root read-only"));
    // (`images/`, not `meta.json`: C mkcomposefs' layout has none.)
    assert!(r("sysroot/composefs/images").is_dir());
    assert_eq!(
        fs::write(r("sysroot/x"), b"x").unwrap_err().raw_os_error(),
        Some(libc_erofs())
    );
}

/// EROFS, the errno of a write to a read-only mount.
pub fn libc_erofs() -> i32 {
    rustix::io::Errno::ROFS.raw_os_error()
}

/// Loop devices currently bound to `file` (by its backing-file name).
pub fn loops_backing(file: &Path) -> Vec<String> {
    let want = fs::canonicalize(file).unwrap_or(file.to_path_buf());
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir("/sys/block") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            if fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|b| Path::new(b.trim()) == want)
            {
                found.push(name);
            }
        }
    }
    found
}

/// The inode number of a path (through the namespace).
pub fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

/// Staging directories (`/run/cfs-setup-root.<pid>`) of runs that are over: leftovers.
/// (Those of runs still going, other tests in parallel, are not.)
pub fn staging_leftovers() -> Vec<PathBuf> {
    fs::read_dir("/run")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let pid = name
                        .strip_prefix("cfs-setup-root.")
                        .and_then(|p| p.parse::<u32>().ok());
                    pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// A physical root on a real ext4 filesystem: `dir`'s content (a sysroot) copied into an
/// image file by `mkfs.ext4 -d`.
pub struct Ext4Root {
    /// The filesystem image.
    pub image: PathBuf,
    /// Where it is mounted (in a test's namespace): the sysroot path.
    pub mountpoint: PathBuf,
}

impl Ext4Root {
    /// Makes the filesystem from `sysroot`'s content.
    pub fn new(sysroot: &Sysroot) -> Ext4Root {
        let base = scratch("ext4root");
        let image = base.join("root.ext4");
        sh(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-d"])
            .arg(&sysroot.path)
            .arg(&image)
            .arg("64M"));
        let mountpoint = base.join("sysroot");
        fs::create_dir_all(&mountpoint).unwrap();
        Ext4Root { image, mountpoint }
    }

    /// A namespace with the filesystem mounted read-only (superblock and mount: the kernel's
    /// `ro` argument) at the mount point, shared as in a systemd initrd. The loop device is
    /// read-only too when `device_readonly`; it is released when the mount goes.
    pub fn mount_readonly(&self, device_readonly: bool) -> Namespace {
        let ns = Namespace::new(&self.mountpoint);
        let img = self.image.to_str().unwrap();
        let mp = self.mountpoint.to_str().unwrap();
        let ro = if device_readonly { "-r" } else { "" };
        let (code, out) = ns.shell(&format!(
            "set -e; dev=$(losetup {ro} --find --show {img}); mount -o ro \"$dev\" {mp}; \
             mount --make-shared {mp}; losetup -d \"$dev\""
        ));
        assert_eq!(code, Some(0), "mounting {img}: {out}");
        ns
    }

    /// Unmounts everything at the mount point in `ns` and waits until the loop device is
    /// gone, so that the filesystem can be mounted again.
    pub fn unmount(&self, ns: Namespace) {
        let mp = self.mountpoint.to_str().unwrap();
        let (code, out) = ns.shell(&format!(
            "umount -R {mp} && umount -R {mp} 2>/dev/null; true"
        ));
        assert_eq!(code, Some(0), "{out}");
        drop(ns);
        for _ in 0..500 {
            if loops_backing(&self.image).is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the loop device over {} stays bound", self.image.display());
    }
}
