//! Host tests, positive: cfsctl-made images mounted end to end on a fake sysroot in a
//! private mount namespace, on every mount path, and read back.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

/// The mount paths the binary can take; each positive test runs on all of them.
const PATHS: &[(&str, &[&str])] = &[
    ("detached", &["--force-overlay", "detached"]),
    ("attach-first", &["--force-overlay", "attach-first"]),
    ("string-lowerdir", &["--force-overlay", "string-lowerdir"]),
    ("loop", &["--force-erofs", "loop"]),
    (
        "loop+string-lowerdir",
        &[
            "--force-erofs",
            "loop",
            "--force-overlay",
            "string-lowerdir",
        ],
    ),
];

/// The default /etc (overlay on state) and /var (bind of state) behave as state.
fn check_default_state(repo: &Repo, sysroot: &Sysroot, ns: &Namespace) {
    let root = ns.path(&sysroot.path);
    let deploy = sysroot.deploy(&repo.hex);
    // /etc shows the image's files and takes writes into the deployment's upper dir.
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "composefs-test\n"
    );
    fs::write(root.join("etc/new.conf"), b"written at runtime").unwrap();
    assert_eq!(
        fs::read(deploy.join("etc/upper/new.conf")).unwrap(),
        b"written at runtime"
    );
    // The state dirs were created with the documented modes.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&deploy.join("etc/upper")), 0o755);
    assert_eq!(mode(&deploy.join("etc/work")), 0o700);
    // /var is the deployment's own directory.
    fs::write(root.join("var/log-entry"), b"v").unwrap();
    assert_eq!(fs::read(deploy.join("var/log-entry")).unwrap(), b"v");
    assert!(
        !root.join("var/lib/app/state").exists(),
        "/var must be the state dir, not the image's"
    );
    let s = sysroot.path.to_str().unwrap();
    let mounts = ns.mounts_under(&sysroot.path);
    let etc = mounts
        .iter()
        .find(|m| m.target == format!("{s}/etc"))
        .unwrap();
    assert_eq!(etc.fstype, "overlay");
    assert!(!etc.readonly());
}

#[test]
fn sha256_image_boots_on_every_mount_path() {
    if !root_or_skip("sha256_image_boots_on_every_mount_path") {
        return;
    }
    let repo = repo256();
    for (name, flags) in PATHS {
        let (sysroot, ns, run) = boot(repo, &format!("composefs=?{}", repo.hex), flags, None);
        run.ok();
        check_root(repo, &sysroot, &ns, name);
        check_default_state(repo, &sysroot, &ns);
        // The staging directory of attach-first paths is gone.
        let left = staging_leftovers();
        assert!(left.is_empty(), "[{name}] staging dirs left: {left:?}");
    }
}

#[test]
fn sha512_and_v2_images_boot() {
    if !root_or_skip("sha512_and_v2_images_boot") {
        return;
    }
    for repo in [
        make_repo("sha512", "1"),
        make_repo("sha256", "2"),
        make_repo("sha512", "2"),
    ] {
        for (name, flags) in [PATHS[0], PATHS[2]] {
            let (sysroot, ns, run) = boot(&repo, &format!("composefs=?{}", repo.hex), flags, None);
            run.ok();
            check_root(&repo, &sysroot, &ns, &format!("{}-{name}", repo.algorithm));
        }
    }
}

#[test]
fn every_karg_form_selects_the_image() {
    if !root_or_skip("every_karg_form_selects_the_image") {
        return;
    }
    let repo = repo256();
    let h = &repo.hex;
    let other = "ab".repeat(32);
    let sha512 = "cd".repeat(64);
    for karg in [
        format!("composefs=?sha256:{h}"),
        format!("composefs.digest=?v1-sha256-12:{h}"),
        format!("quiet composefs=?{} rw", h.to_uppercase()),
        // Earlier selectors that are missing, of another algorithm, or malformed are
        // passed over, in order.
        format!("composefs=?{other} composefs=?{sha512} composefs=?xyz composefs=?{h}"),
        format!("\"composefs=?{h}\" -- composefs=?{other}"),
    ] {
        let (sysroot, ns, run) = boot(repo, &karg, &[], None);
        run.ok();
        let s = sysroot.path.to_str().unwrap();
        assert!(
            ns.mounts_under(&sysroot.path)
                .iter()
                .any(|m| m.target == s && m.source == format!("composefs:{h}")),
            "{karg}: {}",
            run.stderr
        );
    }
    // The skipped ones are logged with their reason.
    let (_s, _ns, run) = boot(
        repo,
        &format!("composefs=?{sha512} composefs=?{other} composefs=?{h}"),
        &[],
        None,
    );
    run.ok();
    assert!(
        run.stderr.contains("the repository uses sha256"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("no such image in the repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn etc_and_var_modes() {
    if !root_or_skip("etc_and_var_modes") {
        return;
    }
    let repo = repo256();
    let karg = format!("composefs=?{}", repo.hex);
    for (name, flags) in [PATHS[0], PATHS[1]] {
        // none: the image's own directories, read-only.
        let (sysroot, ns, run) = boot(
            repo,
            &karg,
            flags,
            Some("[etc]\nmount = \"none\"\n[var]\nmount = \"root\"\n"),
        );
        run.ok();
        let root = ns.path(&sysroot.path);
        assert!(
            root.join("var/lib/app/state").exists(),
            "[{name}] none: image /var"
        );
        assert!(
            fs::write(root.join("etc/x"), b"x").is_err(),
            "[{name}] none: /etc read-only"
        );
        assert_eq!(
            ns.mounts_under(&sysroot.path).len(),
            3,
            "[{name}] sysroot, composefs, physical root"
        );

        // transient: writable, backed by tmpfs, nothing reaches the state directory.
        let (sysroot, ns, run) = boot(
            repo,
            &karg,
            flags,
            Some("[etc]\ntransient = true\n[var]\nmount = \"volatile\"\n"),
        );
        run.ok();
        let root = ns.path(&sysroot.path);
        fs::write(root.join("etc/t"), b"t").unwrap();
        fs::write(root.join("var/t"), b"t").unwrap();
        assert_eq!(
            fs::read_to_string(root.join("etc/app.conf")).unwrap(),
            "setting = from-image\n"
        );
        assert!(
            root.join("var/lib/app/state").exists(),
            "[{name}] transient /var shows the image's"
        );
        assert!(
            !sysroot.path.join("state").exists(),
            "[{name}] transient touches no state"
        );

        // overlay for /var, bind for /etc: explicit modes.
        let (sysroot, ns, run) = boot(
            repo,
            &karg,
            flags,
            Some("[etc]\nmount = \"bind\"\n[var]\nmount = \"overlay\"\n"),
        );
        run.ok();
        let root = ns.path(&sysroot.path);
        let deploy = sysroot.deploy(&repo.hex);
        fs::write(root.join("etc/b"), b"b").unwrap();
        assert!(deploy.join("etc/b").exists(), "[{name}] /etc bind");
        assert!(
            root.join("var/lib/app/state").exists(),
            "[{name}] /var overlay shows the image's"
        );
        fs::write(root.join("var/o"), b"o").unwrap();
        assert!(
            deploy.join("var/upper/o").exists(),
            "[{name}] /var overlay upper"
        );
    }
}

#[test]
fn bootc_state_layout_is_detected() {
    if !root_or_skip("bootc_state_layout_is_detected") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    // bootc: a full writable copy of /etc, and var -> ../../os/default/var shared by
    // deployments.
    let deploy = sysroot.deploy(&repo.hex);
    fs::create_dir_all(deploy.join("etc")).unwrap();
    fs::write(deploy.join("etc/hostname"), b"bootc-host\n").unwrap();
    fs::create_dir_all(sysroot.path.join("state/os/default/var/lib")).unwrap();
    fs::write(sysroot.path.join("state/os/default/var/lib/shared"), b"s").unwrap();
    std::os::unix::fs::symlink("../../os/default/var", deploy.join("var")).unwrap();
    let ns = Namespace::new(&sysroot.path);
    let karg = format!("composefs=?{}", repo.hex);
    ns.run(&sysroot.args(&karg, &["--config", "/nonexistent/config.toml"]))
        .ok();
    let root = ns.path(&sysroot.path);
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "bootc-host\n"
    );
    assert!(
        !root.join("etc/app.conf").exists(),
        "bootc /etc is the copy alone (bind)"
    );
    assert_eq!(fs::read(root.join("var/lib/shared")).unwrap(), b"s");
    assert!(
        !deploy.join("etc/upper").exists(),
        "no overlay dirs made in a bootc layout"
    );
}

#[test]
fn composefs_rs_layout_keeps_existing_state() {
    if !root_or_skip("composefs_rs_layout_keeps_existing_state") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let deploy = sysroot.deploy(&repo.hex);
    fs::create_dir_all(deploy.join("etc/upper")).unwrap();
    fs::create_dir_all(deploy.join("etc/work")).unwrap();
    fs::write(deploy.join("etc/upper/hostname"), b"changed-before\n").unwrap();
    let ns = Namespace::new(&sysroot.path);
    ns.run(&sysroot.args(&format!("composefs=?{}", repo.hex), &[]))
        .ok();
    let root = ns.path(&sysroot.path);
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "changed-before\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/app.conf")).unwrap(),
        "setting = from-image\n"
    );
}

#[test]
fn transient_root_keeps_sysroot_etc_var_visible() {
    if !root_or_skip("transient_root_keeps_sysroot_etc_var_visible") {
        return;
    }
    let repo = repo256();
    for (name, flags) in PATHS {
        let (sysroot, ns, run) = boot(
            repo,
            &format!("composefs=?{}", repo.hex),
            flags,
            Some("[root]\ntransient = true\n"),
        );
        run.ok();
        let root = ns.path(&sysroot.path);
        // / takes writes (tmpfs upper) and still shows the image.
        fs::write(root.join("usr/new-file"), b"n")
            .unwrap_or_else(|e| panic!("[{name}] write /: {e}"));
        assert_eq!(fs::read(root.join("usr/share/doc/small")).unwrap(), b"tiny");
        // sysroot, /etc and /var are mounted on the visible top, not hidden below it.
        assert!(
            root.join("sysroot/composefs/meta.json").exists(),
            "[{name}] sysroot visible"
        );
        fs::write(root.join("etc/e"), b"e").unwrap();
        assert!(
            sysroot.deploy(&repo.hex).join("etc/upper/e").exists(),
            "[{name}] /etc on top"
        );
        fs::write(root.join("var/v"), b"v").unwrap();
        assert!(
            sysroot.deploy(&repo.hex).join("var/v").exists(),
            "[{name}] /var on top"
        );
        assert!(
            !sysroot.path.join("usr").exists(),
            "[{name}] root writes stay in tmpfs"
        );
    }
}

#[test]
fn writable_sysroot_and_volatile_state() {
    if !root_or_skip("writable_sysroot_and_volatile_state") {
        return;
    }
    let repo = repo256();
    let (sysroot, ns, run) = boot(
        repo,
        &format!("composefs=?{} systemd.volatile=state", repo.hex),
        &[],
        Some("[sysroot]\nreadonly = false\n"),
    );
    run.ok();
    let root = ns.path(&sysroot.path);
    fs::write(root.join("sysroot/written"), b"w").unwrap();
    assert!(sysroot.path.join("written").exists());
    let s = sysroot.path.to_str().unwrap();
    assert!(
        !ns.mounts_under(&sysroot.path)
            .iter()
            .any(|m| m.target == format!("{s}/var")),
        "systemd.volatile=state leaves /var unmounted"
    );
}

#[test]
fn no_composefs_argument_touches_nothing() {
    if !root_or_skip("no_composefs_argument_touches_nothing") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let before = ns.mounts();
    let run = ns.run(&sysroot.args("root=/dev/vda rw quiet", &[]));
    run.ok();
    assert!(run.stderr.contains("nothing to do"), "{}", run.stderr);
    assert_eq!(ns.mounts(), before);
    assert!(!sysroot.path.join("state").exists());
}

#[test]
fn dry_run_prints_the_plan_and_mounts_nothing() {
    if !root_or_skip("dry_run_prints_the_plan_and_mounts_nothing") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let before = ns.mounts();
    let karg = format!("composefs=?{}", repo.hex);
    let run = ns.run(&sysroot.args(&karg, &["--dry-run"]));
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!("plan for {}", sysroot.path.display())),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("mount overlay composefs:{}", repo.hex)))
    );
    // The root is attached, then (last: a PCR cannot be un-extended) measured.
    assert!(
        lines[lines.len() - 2].contains("attach the new root"),
        "{}",
        run.stdout
    );
    assert!(
        lines.last().unwrap().contains("into TPM PCR 15"),
        "{}",
        run.stdout
    );
    // What the plan says it will mount is what a real run mounts: every target it names
    // carries a mount afterwards (on a second sysroot of the same repository).
    let (real_sysroot, real_ns, real) = boot(repo, &karg, &[], None);
    real.ok();
    let here = sysroot.path.display().to_string();
    let there = real_sysroot.path.display().to_string();
    let targets: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            let l = l.split_once(": ")?.1;
            let target = l
                .strip_prefix("attach the new root on ")
                .or_else(|| l.strip_prefix("mount the physical root at "))
                .or_else(|| {
                    l.strip_prefix("mount /etc on ")
                        .or_else(|| l.strip_prefix("mount /var on "))
                })?;
            Some(target.split(':').next()?.replace(&here, &there))
        })
        .collect();
    assert_eq!(targets.len(), 4, "{}", run.stdout);
    let mounts = real_ns.mounts();
    for t in &targets {
        assert!(
            mounts.iter().any(|m| &m.target == t),
            "the plan names {t}, the real run mounted nothing there"
        );
    }
    assert_eq!(ns.mounts(), before);
    assert!(!sysroot.path.join("state").exists());
}

#[test]
fn kernel_log_has_every_step() {
    if !root_or_skip("kernel_log_has_every_step") {
        return;
    }
    // The kernel drops the 11th and later lines written through one open of /dev/kmsg within
    // 5 s (unless booted with printk.devkmsg=on); a boot logs more than that.
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let karg = format!("composefs=?{}", repo.hex);
    // The plan first: once the root is set up, the sysroot shows the image, not the repository.
    let dry = ns.run(&sysroot.args(&karg, &["--dry-run"]));
    dry.ok();
    let steps = dry
        .stdout
        .lines()
        .filter(|l| l.starts_with("step "))
        .count();
    assert!(steps >= 8, "{}", dry.stdout);
    let out = ns.command(BIN, &sysroot.args(&karg, &[])).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dmesg =
        String::from_utf8_lossy(&sh(&mut std::process::Command::new("dmesg")).stdout).into_owned();
    // The run's lines are those of the pid whose `done:` line names this sysroot.
    let done = format!("]: done: {} ", sysroot.path.display());
    let tag = dmesg
        .lines()
        .find(|l| l.contains(&done))
        .and_then(|l| l.split("]: done: ").next())
        .and_then(|head| head.rsplit(' ').next())
        .map(|t| format!("{t}]: "))
        .unwrap_or_else(|| {
            panic!(
                "no done line for {} in the kernel log",
                sysroot.path.display()
            )
        });
    let ours: Vec<&str> = dmesg.lines().filter(|l| l.contains(&tag)).collect();
    for n in 1..=steps {
        assert!(
            ours.iter().any(|l| l.contains(&format!("{tag}step {n}: "))),
            "step {n} missing from the kernel log:\n{}",
            ours.join("\n")
        );
    }
}

#[test]
fn image_on_tmpfs_falls_back_to_a_loop_device() {
    if !root_or_skip("image_on_tmpfs_falls_back_to_a_loop_device") {
        return;
    }
    // erofs refuses a file on tmpfs (no read_folio) with ENOTBLK, as a kernel before 6.12
    // refuses any file: the default path must bind a loop device instead.
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let s = sysroot.path.to_str().unwrap();
    let (code, out) = ns.shell(&format!(
        "mount -t tmpfs tmpfs {s} && cp -a {} {s}/composefs",
        repo.dir.display()
    ));
    assert_eq!(code, Some(0), "{out}");
    let karg = format!("composefs=?{}", repo.hex);
    let run = ns.run(&sysroot.args(&karg, &[]));
    run.ok();
    assert!(run.stderr.contains("using a loop device"), "{}", run.stderr);
    check_root(repo, &sysroot, &ns, "tmpfs-loop-fallback");
}

#[test]
fn dry_run_writes_nothing_to_the_kernel_log() {
    if !root_or_skip("dry_run_writes_nothing_to_the_kernel_log") {
        return;
    }
    // Logging to the kernel log as at boot (not the tests' stderr-only mode): the survey
    // lines of a dry run go to stderr, and the kernel log gets none of them.
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let karg = format!("composefs=?{}", repo.hex);
    let run = ns.run_env(
        &sysroot.args(&karg, &["--dry-run"]),
        &[("CFS_SETUP_ROOT_LOG", "kmsg")],
    );
    run.ok();
    let image = sysroot.image(&repo.hex);
    assert!(
        run.stderr.contains(&format!("booting {}", image.display())),
        "{}",
        run.stderr
    );
    let kmsg = kernel_log();
    let ours: Vec<&String> = kmsg
        .iter()
        .filter(|l| l.contains(sysroot.path.to_str().unwrap()))
        .collect();
    assert!(
        ours.is_empty(),
        "--dry-run wrote to the kernel log: {ours:?}"
    );
}

/// The kernel log's records, as far as the buffer reaches back (read only).
fn kernel_log() -> Vec<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .expect("open /dev/kmsg for reading");
    let mut records = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => records.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            // Overwritten while reading: go on with what is there now.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    records
}
