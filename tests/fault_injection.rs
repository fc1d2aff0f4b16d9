//! A failure injected before every step of every mount path leaves nothing mounted.
//! Needs the test-only `fault-injection` feature (the test command enables it).

mod common;

use common::*;

/// The tests here run one at a time: the read-only test's `losetup --find` opens loop
/// devices, and an open loop device is not released by autoclear until it is closed again,
/// which another test checking that its loop device is gone would see as a leak.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn failure_at_every_step_unwinds_everything() {
    if !root_or_skip("failure_at_every_step_unwinds_everything") {
        return;
    }
    let _serial = serial();
    let repo = repo256();
    let karg = format!("composefs=?{} systemd.volatile=", repo.hex);
    let configs = [
        "",
        "[root]\ntransient = true\n[var]\nmount = \"transient\"\n",
    ];
    let paths: &[&[&str]] = &[
        &["--force-overlay", "detached"],
        &["--force-overlay", "attach-first"],
        &[
            "--force-overlay",
            "string-lowerdir",
            "--force-erofs",
            "loop",
        ],
    ];
    let mut checked = 0;
    for config in configs {
        for flags in paths {
            let sysroot = Sysroot::new(repo);
            let cfg = sysroot.path.with_extension("toml");
            std::fs::write(&cfg, config).unwrap();
            let mut args = sysroot.args(&karg, &["--config", cfg.to_str().unwrap()]);
            args.extend_from_slice(flags);
            let ns = Namespace::new(&sysroot.path);
            let mut dry = args.clone();
            dry.push("--dry-run");
            let plan = ns.run(&dry);
            plan.ok();
            let steps = plan
                .stdout
                .lines()
                .filter(|l| l.starts_with("step "))
                .count();
            assert!(steps >= 8, "{}", plan.stdout);
            let before = ns.mounts();
            let image = sysroot.image(&repo.hex);
            for n in 1..=steps {
                let n_text = n.to_string();
                let run = ns.run_env(&args, &[("CFS_SETUP_ROOT_FAIL_AT", &n_text)]);
                run.fails(5, &[&format!("step {n} "), "injected"]);
                assert_eq!(
                    ns.mounts(),
                    before,
                    "{flags:?} config {config:?}: failure at step {n} left mounts:\n{}",
                    run.stderr
                );
                assert!(
                    loops_backing(&image).is_empty(),
                    "step {n}: loop device left"
                );
                assert!(
                    !sysroot.path.join("state").exists(),
                    "{flags:?} config {config:?}: failure at step {n} left state directories"
                );
                assert!(
                    run.stderr.contains("everything done so far was undone"),
                    "{}",
                    run.stderr
                );
                checked += 1;
            }
            // And the same sysroot still boots afterwards.
            ns.run(&args).ok();
        }
    }
    eprintln!("checked {checked} injected failures");
}

#[test]
fn a_failed_undo_is_reported_as_such() {
    if !root_or_skip("a_failed_undo_is_reported_as_such") {
        return;
    }
    let _serial = serial();
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let karg = format!("composefs=?{}", repo.hex);
    let args = sysroot.args(&karg, &["--force-overlay", "attach-first"]);
    let dry = ns.run(&[args.as_slice(), &["--dry-run"]].concat());
    dry.ok();
    let last = dry
        .stdout
        .lines()
        .filter(|l| l.starts_with("step "))
        .count();
    let n = last.to_string();
    let run = ns.run_env(
        &args,
        &[
            ("CFS_SETUP_ROOT_FAIL_AT", &n),
            ("CFS_SETUP_ROOT_FAIL_UNDO", "1"),
        ],
    );
    run.fails(5, &["undoing it failed in part", "injected undo failure"]);
    assert!(!run.stderr.contains("was undone"), "{}", run.stderr);
}

/// The superblock of the filesystem mounted at `mp` in `ns` is read-only.
fn superblock_readonly(ns: &Namespace, mp: &std::path::Path) -> bool {
    let mounts = ns.mounts();
    let m = mounts
        .iter()
        .rfind(|m| m.target == mp.to_str().unwrap() && m.fstype == "ext4")
        .unwrap_or_else(|| panic!("nothing mounted at {}: {mounts:#?}", mp.display()));
    m.has_super_option("ro")
}

#[test]
fn a_read_only_physical_root_is_read_only_again_after_every_failure() {
    if !root_or_skip("a_read_only_physical_root_is_read_only_again_after_every_failure") {
        return;
    }
    let _serial = serial();
    // First boot on a root mounted `ro`: the superblock is made writable for the state,
    // and every failure after that must make it read-only again, with the state directory
    // it created removed (an fd still open on that removed directory made the remount
    // busy: EBUSY).
    let repo = repo256();
    let ext4 = Ext4Root::new(&Sysroot::new(repo));
    let mp = &ext4.mountpoint;
    let karg = format!("composefs=?{}", repo.hex);
    let no_tpm = mp.with_extension("no-tpm");
    let cfg = mp.with_extension("toml");
    std::fs::write(&cfg, "[tpm]\nmeasure = \"required\"\n").unwrap();
    let args = [
        "--sysroot",
        mp.to_str().unwrap(),
        "--cmdline",
        &karg,
        "--tpm-device",
        no_tpm.to_str().unwrap(),
        "--status-file",
        "/dev/null/none",
    ];
    let ns = ext4.mount_readonly(false);
    let dry = ns.run(&[args.as_slice(), &["--dry-run"]].concat());
    dry.ok();
    assert!(
        dry.stdout.contains("remount the physical root"),
        "{}",
        dry.stdout
    );
    let steps = dry
        .stdout
        .lines()
        .filter(|l| l.starts_with("step "))
        .count();
    ext4.unmount(ns);
    let mut checked = 0;
    for n in 1..=steps {
        let ns = ext4.mount_readonly(false);
        let before = ns.mounts();
        let n_text = n.to_string();
        let run = ns.run_env(&args, &[("CFS_SETUP_ROOT_FAIL_AT", &n_text)]);
        run.fails(
            5,
            &[
                &format!("step {n} "),
                "injected",
                "everything done so far was undone",
            ],
        );
        assert!(
            superblock_readonly(&ns, mp),
            "step {n}: left read-write:\n{}",
            run.stderr
        );
        assert_eq!(
            ns.mounts(),
            before,
            "step {n}: mounts left:\n{}",
            run.stderr
        );
        assert!(!ns.path(mp).join("state").exists(), "step {n}: state left");
        ext4.unmount(ns);
        checked += 1;
    }
    // `[tpm] measure = "required"` without a TPM: the last step fails for real (exit 6).
    let ns = ext4.mount_readonly(false);
    let run = ns.run(&[args.as_slice(), &["--config", cfg.to_str().unwrap()]].concat());
    run.fails(6, &["required", "everything done so far was undone"]);
    assert!(
        superblock_readonly(&ns, mp),
        "TPM failure: left read-write:\n{}",
        run.stderr
    );
    assert!(
        !ns.path(mp).join("state").exists(),
        "TPM failure: state left"
    );
    ext4.unmount(ns);
    eprintln!("checked {checked} injected failures and one TPM refusal");
}
