//! Host tests: composefs-setup-root's command line (`--target`, `--root-fs`, the trailing
//! command) and the mount sources bootc reads back after boot (`composefs:<hex>`,
//! `transient:composefs=<hex>`), checked in the mount table of a private namespace.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// The mount paths every `--target` run is checked on.
const PATHS: &[(&str, &[&str])] = &[
    ("detached", &["--force-overlay", "detached"]),
    ("attach-first", &["--force-overlay", "attach-first"]),
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

/// What a user of a mount table compares: where, what, how.
fn table(mounts: &[MountEntry]) -> Vec<(String, String, String, String)> {
    mounts
        .iter()
        .map(|m| {
            (
                m.target.clone(),
                m.fstype.clone(),
                m.source.clone(),
                m.mount_options.clone(),
            )
        })
        .collect()
}

/// The mount at `path` that is on top (the last one mounted there).
fn top<'m>(mounts: &'m [MountEntry], path: &Path) -> &'m MountEntry {
    let p = path.to_str().unwrap();
    mounts
        .iter()
        .rev()
        .find(|m| m.target == p)
        .unwrap_or_else(|| panic!("nothing mounted at {p}: {mounts:#?}"))
}

#[test]
fn target_sets_the_root_up_there_and_leaves_the_sysroot_alone() {
    if !root_or_skip("target_sets_the_root_up_there_and_leaves_the_sysroot_alone") {
        return;
    }
    let repo = repo256();
    let karg = format!("composefs=?{}", repo.hex);
    for (config, transient) in [("", false), ("[root]\ntransient = true\n", true)] {
        for (name, flags) in PATHS {
            let sysroot = Sysroot::new(repo);
            let ns = Namespace::new(&sysroot.path);
            let target = scratch("target");
            let cfg = sysroot.path.with_extension("toml");
            fs::write(&cfg, config).unwrap();
            let before = table(&ns.mounts_under(&sysroot.path));
            let mut args = sysroot.args(&karg, &["--config", cfg.to_str().unwrap()]);
            args.extend_from_slice(&["--target", target.to_str().unwrap()]);
            args.extend_from_slice(flags);
            let run = ns.run(&args);
            run.ok();
            let ctx = format!("[{name}, transient {transient}]");

            // The sysroot's mounts are exactly as they were.
            assert_eq!(
                table(&ns.mounts_under(&sysroot.path)),
                before,
                "{ctx} the sysroot changed:\n{}",
                run.stderr
            );
            // At the target: the composefs root (under a transient overlay if asked for),
            // the physical root, /etc and /var.
            let mounts = ns.mounts_under(&target);
            let t = target.to_str().unwrap();
            let root = top(&mounts, &target);
            assert_eq!(root.fstype, "overlay", "{ctx}");
            if transient {
                assert_eq!(
                    root.source,
                    format!("transient:composefs={}", repo.hex),
                    "{ctx}"
                );
                assert!(!root.readonly(), "{ctx}");
            } else {
                assert_eq!(root.source, format!("composefs:{}", repo.hex), "{ctx}");
                assert!(root.readonly(), "{ctx}");
            }
            // (Under a transient root, the composefs overlay is listed only where the kernel
            // path attached it first; on the detached path it is a private layer.)
            for m in mounts
                .iter()
                .filter(|m| m.target == t && m.source.starts_with("composefs:"))
            {
                assert!(m.readonly(), "{ctx} {m:?}");
            }
            let physical = top(&mounts, &target.join("sysroot"));
            assert!(physical.readonly(), "{ctx} physical root read-only");
            assert_eq!(top(&mounts, &target.join("etc")).fstype, "overlay", "{ctx}");
            assert!(
                mounts.iter().any(|m| m.target == format!("{t}/var")),
                "{ctx} /var"
            );
            // Read through the target: the image's files, the repository below, the state.
            let seen = ns.path(&target);
            assert_eq!(fs::read(seen.join("usr/share/doc/small")).unwrap(), b"tiny");
            assert!(seen.join("sysroot/composefs/images").is_dir(), "{ctx}");
            fs::write(seen.join("etc/at-target"), b"t").unwrap();
            assert!(
                sysroot
                    .deploy(&repo.hex)
                    .join("etc/upper/at-target")
                    .exists(),
                "{ctx} /etc is the deployment's"
            );
            // The sysroot still shows the physical root, not the image.
            let plain = ns.path(&sysroot.path);
            assert!(plain.join("composefs/images").is_dir(), "{ctx}");
            assert!(!plain.join("usr").exists(), "{ctx}");
        }
    }
}

#[test]
fn transient_root_source_is_the_one_bootc_reads() {
    if !root_or_skip("transient_root_source_is_the_one_bootc_reads") {
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
        let mounts = ns.mounts_under(&sysroot.path);
        let s = sysroot.path.to_str().unwrap();
        // `/` after switch_root is the topmost mount at the sysroot.
        let root = top(&mounts, &sysroot.path);
        assert_eq!(
            (root.fstype.as_str(), root.source.clone()),
            ("overlay", format!("transient:composefs={}", repo.hex)),
            "[{name}] {mounts:#?}"
        );
        // Below it, the read-only composefs overlay, where the path attached it first (on the
        // detached path it is only the transient overlay's private lower layer).
        let cfs: Vec<&MountEntry> = mounts
            .iter()
            .filter(|m| m.target == s && m.source == format!("composefs:{}", repo.hex))
            .collect();
        assert_eq!(
            cfs.len(),
            usize::from(*name != "detached"),
            "[{name}] {mounts:#?}"
        );
        assert!(cfs.iter().all(|m| m.readonly()), "[{name}]");
    }
    // Without a transient root, `/` is the composefs overlay itself.
    let (sysroot, ns, run) = boot(repo, &format!("composefs=?{}", repo.hex), &[], None);
    run.ok();
    let mounts = ns.mounts_under(&sysroot.path);
    assert_eq!(
        top(&mounts, &sysroot.path).source,
        format!("composefs:{}", repo.hex)
    );
}

#[test]
fn root_fs_tree_stands_in_for_the_image() {
    if !root_or_skip("root_fs_tree_stands_in_for_the_image") {
        return;
    }
    let hex = "ab".repeat(32);
    let karg = format!("composefs={hex} composefs={}", "cd".repeat(32));
    for flags in [
        &["--force-overlay", "detached"][..],
        &["--force-overlay", "attach-first"],
    ] {
        // No repository at all: only the deployment state, named by the first argument.
        let base = scratch("root-fs");
        let tree = base.join("tree");
        build_tree(&tree);
        let sysroot = base.join("sysroot");
        fs::create_dir_all(&sysroot).unwrap();
        let cfg = base.join("conf.toml");
        fs::write(&cfg, "").unwrap();
        let ns = Namespace::new(&sysroot);
        // The status record in the scratch directory and no TPM: the host stays untouched.
        let (status, no_tpm) = (base.join("status.json"), base.join("no-tpm"));
        let mut args = vec![
            "--status-file",
            status.to_str().unwrap(),
            "--tpm-device",
            no_tpm.to_str().unwrap(),
            "--sysroot",
            sysroot.to_str().unwrap(),
            "--cmdline",
            &karg,
            "--config",
            cfg.to_str().unwrap(),
            "--root-fs",
            tree.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        ns.run(&args).ok();
        let seen = ns.path(&sysroot);
        assert_eq!(fs::read(seen.join("usr/share/doc/small")).unwrap(), b"tiny");
        assert_eq!(
            fs::read_to_string(seen.join("etc/hostname")).unwrap(),
            "composefs-test\n"
        );
        // Read-only, and /etc and /var are the first argument's deployment.
        assert!(fs::write(seen.join("usr/x"), b"x").is_err(), "{flags:?}");
        fs::write(seen.join("etc/from-root-fs"), b"r").unwrap();
        let deploy = sysroot.join("state/deploy").join(&hex);
        assert!(deploy.join("etc/upper/from-root-fs").exists(), "{flags:?}");
        assert!(deploy.join("var").is_dir());
        assert!(seen.join("sysroot/state/deploy").is_dir(), "physical root");
        // The tree itself is untouched.
        assert!(!tree.join("etc/from-root-fs").exists());
    }
}

#[test]
fn the_trailing_command_runs_once_the_root_is_set_up() {
    if !root_or_skip("the_trailing_command_runs_once_the_root_is_set_up") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let cfg = sysroot.path.with_extension("toml");
    fs::write(&cfg, "").unwrap();
    let s = sysroot.path.to_str().unwrap();
    let karg = format!("composefs=?{}", repo.hex);
    // The command sees the new root, and its exit code is ours.
    let script = format!("cat {s}/usr/share/doc/small; exit 7");
    let mut args = sysroot.args(&karg, &["--config", cfg.to_str().unwrap()]);
    args.extend_from_slice(&["--", "sh", "-c", &script]);
    let run = ns.run(&args);
    assert_eq!(run.code, Some(7), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "tiny");
    // Nothing to do (no composefs argument): the command still runs.
    let run = ns.run(&["--sysroot", s, "--cmdline", "quiet", "true"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // A setup that fails does not run it.
    let run = ns.run(&[
        "--sysroot",
        s,
        "--config",
        cfg.to_str().unwrap(),
        "--cmdline",
        &format!("composefs={}", "0".repeat(64)),
        "--",
        "sh",
        "-c",
        "exit 9",
    ]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    // A command that cannot be run is a usage error.
    let run = ns.run(&["--sysroot", s, "--cmdline", "quiet", "/nonexistent/cmd"]);
    run.fails(2, &["cannot run /nonexistent/cmd"]);
}
