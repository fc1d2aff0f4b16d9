//! Host tests, negative: every refusal has its own exit code and an error line naming the
//! path and the cause, and leaves the namespace exactly as it was: no mount, no staging
//! directory, no loop device.

mod common;

use std::fs;

use common::*;

/// Runs the binary on a prepared sysroot and checks nothing was left behind.
fn refused(sysroot: &Sysroot, karg: &str, extra: &[&str], code: i32, needles: &[&str]) -> Run {
    let ns = Namespace::new(&sysroot.path);
    let before = ns.mounts();
    let run = ns.run(&sysroot.args(karg, extra));
    run.fails(code, needles);
    assert_eq!(ns.mounts(), before, "mounts left behind:\n{}", run.stderr);
    let staging = staging_leftovers();
    assert!(staging.is_empty(), "staging directories left: {staging:?}");
    run
}

#[test]
fn unknown_digest_is_no_usable_image() {
    if !root_or_skip("unknown_digest_is_no_usable_image") {
        return;
    }
    let sysroot = Sysroot::new(repo256());
    let other = "ab".repeat(32);
    refused(
        &sysroot,
        &format!("composefs=?{other}"),
        &[],
        3,
        &[&other, "no such image"],
    );
}

#[test]
fn malformed_digests_are_listed() {
    if !root_or_skip("malformed_digests_are_listed") {
        return;
    }
    let sysroot = Sysroot::new(repo256());
    let run = refused(
        &sysroot,
        "composefs=abc123 composefs=?zz00 composefs.digest=v3-sha256-12:00",
        &[],
        3,
        &[
            "composefs=abc123",
            "composefs=?zz00",
            "composefs.digest=v3-sha256-12:00",
            "malformed",
        ],
    );
    assert!(
        run.stderr.contains("ignoring composefs=abc123"),
        "{}",
        run.stderr
    );
}

#[test]
fn secure_mode_needs_fs_verity() {
    if !root_or_skip("secure_mode_needs_fs_verity") {
        return;
    }
    // This host's filesystems have no fs-verity: a secure argument must be refused.
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let image = sysroot.image(&repo.hex);
    refused(
        &sysroot,
        &format!("composefs={}", repo.hex),
        &[],
        4,
        &[image.to_str().unwrap(), "has no fs-verity", "composefs=?"],
    );
}

#[test]
fn corrupt_and_truncated_images_are_refused() {
    if !root_or_skip("corrupt_and_truncated_images_are_refused") {
        return;
    }
    let repo = repo256();
    // One flipped byte.
    let sysroot = Sysroot::new(repo);
    let object = sysroot.private_image_object(&repo.hex);
    let mut data = fs::read(&object).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    fs::write(&object, &data).unwrap();
    let image = sysroot.image(&repo.hex);
    refused(
        &sysroot,
        &format!("composefs=?{}", repo.hex),
        &[],
        4,
        &[
            image.to_str().unwrap(),
            "has digest",
            "corrupt or was replaced",
        ],
    );
    // Truncated.
    let sysroot = Sysroot::new(repo);
    let object = sysroot.private_image_object(&repo.hex);
    let data = fs::read(&object).unwrap();
    fs::write(&object, &data[..data.len() / 3]).unwrap();
    refused(
        &sysroot,
        &format!("composefs=?{}", repo.hex),
        &[],
        4,
        &["has digest"],
    );
}

#[test]
fn corrupt_image_unchecked_fails_to_mount_and_unwinds() {
    if !root_or_skip("corrupt_image_unchecked_fails_to_mount_and_unwinds") {
        return;
    }
    // With the digest check switched off, a broken superblock reaches the kernel, which
    // refuses it: a mount failure, undone, with the kernel's own words.
    let repo = repo256();
    for flags in [&["--force-erofs", "file"][..], &["--force-erofs", "loop"]] {
        let sysroot = Sysroot::new(repo);
        let object = sysroot.private_image_object(&repo.hex);
        let mut data = fs::read(&object).unwrap();
        for b in &mut data[1024..1024 + 128] {
            *b = 0xff; // the erofs superblock lives at 1024
        }
        fs::write(&object, &data).unwrap();
        let cfg = sysroot.path.with_extension("toml");
        fs::write(&cfg, "[image]\ncheck-digest = false\n").unwrap();
        let mut args = vec!["--config", cfg.to_str().unwrap()];
        args.extend_from_slice(flags);
        refused(
            &sysroot,
            &format!("composefs=?{}", repo.hex),
            &args,
            5,
            &["step 2", "erofs"],
        );
        assert!(
            loops_backing(&object).is_empty(),
            "loop device left on {}",
            object.display()
        );
    }
}

#[test]
fn image_of_another_name_is_refused() {
    if !root_or_skip("image_of_another_name_is_refused") {
        return;
    }
    // images/<A> pointing at image B's object: the content does not match the name.
    let a = repo256();
    let b = make_repo("sha256", "2");
    let sysroot = Sysroot::new(a);
    let b_object = b.dir.join("images").join(&b.hex);
    let b_data = fs::read(&b_object).unwrap();
    let a_object = sysroot.private_image_object(&a.hex);
    fs::write(&a_object, b_data).unwrap();
    refused(
        &sysroot,
        &format!("composefs=?{}", a.hex),
        &[],
        4,
        &[&a.hex, &b.hex],
    );
}

#[test]
fn image_links_out_of_the_repository_are_refused() {
    if !root_or_skip("image_links_out_of_the_repository_are_refused") {
        return;
    }
    let repo = repo256();
    for target in ["/etc/passwd", "../../outside", "../objects/../../outside"] {
        let sysroot = Sysroot::new(repo);
        fs::write(sysroot.path.join("outside"), b"not an image").unwrap();
        let image = sysroot.image(&repo.hex);
        fs::remove_file(&image).unwrap();
        std::os::unix::fs::symlink(target, &image).unwrap();
        refused(
            &sysroot,
            &format!("composefs=?{}", repo.hex),
            &[],
            4,
            &[image.to_str().unwrap(), "outside the repository"],
        );
    }
}

#[test]
fn non_regular_and_dangling_images_are_no_usable_image() {
    if !root_or_skip("non_regular_and_dangling_images_are_no_usable_image") {
        return;
    }
    // Alone on the command line, an unusable entry leaves nothing to boot (exit 3), and the
    // error says why for each argument. (With a later selector, that one boots: hostile.rs.)
    let repo = repo256();
    let karg = format!("composefs=?{}", repo.hex);
    let sysroot = Sysroot::new(repo);
    let image = sysroot.image(&repo.hex);
    fs::remove_file(&image).unwrap();
    fs::create_dir(&image).unwrap();
    refused(
        &sysroot,
        &karg,
        &[],
        3,
        &[
            &karg,
            image.to_str().unwrap(),
            "directory, not a regular file",
        ],
    );

    let sysroot = Sysroot::new(repo);
    let image = sysroot.image(&repo.hex);
    fs::remove_file(&image).unwrap();
    mkfifo(&image);
    refused(&sysroot, &karg, &[], 3, &[&karg, "FIFO"]);

    let sysroot = Sysroot::new(repo);
    let image = sysroot.image(&repo.hex);
    fs::remove_file(&image).unwrap();
    std::os::unix::fs::symlink("../objects/00/missing", &image).unwrap();
    refused(&sysroot, &karg, &[], 3, &[&karg, "dangling"]);
}

#[test]
fn bad_config_is_a_usage_error() {
    if !root_or_skip("bad_config_is_a_usage_error") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let cfg = sysroot.path.with_extension("toml");
    fs::write(&cfg, "[etc]\nmount = \"sideways\"\n").unwrap();
    refused(
        &sysroot,
        &format!("composefs=?{}", repo.hex),
        &["--config", cfg.to_str().unwrap()],
        2,
        &[cfg.to_str().unwrap(), "line 2", "sideways"],
    );
}

#[test]
fn missing_repository_and_usage_errors() {
    if !root_or_skip("missing_repository_and_usage_errors") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    fs::rename(
        sysroot.path.join("composefs"),
        sysroot.path.join("elsewhere"),
    )
    .unwrap();
    refused(
        &sysroot,
        &format!("composefs=?{}", repo.hex),
        &[],
        3,
        &["composefs repository", "No such file"],
    );
    let out = std::process::Command::new(BIN)
        .arg("--frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
}

#[test]
fn image_without_sysroot_dir_unwinds_on_every_path() {
    if !root_or_skip("image_without_sysroot_dir_unwinds_on_every_path") {
        return;
    }
    // A tree with no /sysroot: the physical root cannot be mounted in it. Everything done
    // before that step (attached roots on attach-first paths included) is undone.
    let base = scratch("nosysroot");
    let tree = base.join("tree");
    build_tree(&tree);
    fs::remove_dir(tree.join("sysroot")).unwrap();
    let dir = base.join("repo");
    sh(std::process::Command::new(cfsctl())
        .args(["init", "--insecure", "--algorithm", "fsverity-sha256-12"])
        .arg(&dir));
    let out = sh(std::process::Command::new(cfsctl())
        .arg("--repo")
        .arg(&dir)
        .arg("create-image")
        .arg(&tree));
    let hex = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("sha256:")
        .to_string();
    let repo = Repo {
        dir,
        algorithm: "sha256",
        hex,
    };
    for flags in [
        &["--force-overlay", "detached"][..],
        &["--force-overlay", "attach-first"],
        &[
            "--force-overlay",
            "string-lowerdir",
            "--force-erofs",
            "loop",
        ],
    ] {
        let sysroot = Sysroot::new(&repo);
        refused(
            &sysroot,
            &format!("composefs=?{}", repo.hex),
            flags,
            5,
            &["mount the physical root", "/sysroot directory"],
        );
    }
}

#[test]
fn a_mismatch_on_the_first_selector_is_fatal_even_if_the_second_would_boot() {
    if !root_or_skip("a_mismatch_on_the_first_selector_is_fatal_even_if_the_second_would_boot") {
        return;
    }
    // `images/<other>` holds the real image: it opens, but its digest is not <other>. The
    // second selector names an image that would boot: a mismatch is tampering, not a reason
    // to try the next selector.
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let other = "ef".repeat(32);
    fs::copy(sysroot.image(&repo.hex), sysroot.image(&other)).unwrap();
    let run = refused(
        &sysroot,
        &format!("composefs=?{other} composefs=?{}", repo.hex),
        &[],
        4,
        &[
            sysroot.image(&other).to_str().unwrap(),
            &format!("has digest sha256:{}", repo.hex),
            "refusing to mount it",
        ],
    );
    assert!(!run.stderr.contains("skipping"), "{}", run.stderr);
    assert!(!sysroot.path.join("state").exists());
}

#[test]
fn a_missing_image_names_the_image_and_the_repository_and_what_to_do() {
    if !root_or_skip("a_missing_image_names_the_image_and_the_repository_and_what_to_do") {
        return;
    }
    let sysroot = Sysroot::new(repo256());
    let other = "ab".repeat(32);
    let repository = sysroot.path.join("composefs");
    refused(
        &sysroot,
        &format!("composefs=?{other}"),
        &[],
        3,
        &[
            &format!("no such image in the repository {}", repository.display()),
            &format!(
                "{} does not exist",
                repository.join("images").join(&other).display()
            ),
            "boot an older boot entry",
            "the one on this disk",
        ],
    );
}

#[test]
fn an_unopenable_state_directory_is_a_setup_failure_naming_it() {
    if !root_or_skip("an_unopenable_state_directory_is_a_setup_failure_naming_it") {
        return;
    }
    // `state` is a file: not a containment violation (exit 4) but a failure to set up
    // (exit 5), naming the path and the cause.
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let state = sysroot.path.join("state");
    fs::write(&state, b"not a directory").unwrap();
    let run = refused(
        &sysroot,
        &format!("composefs=?{}", repo.hex),
        &[],
        5,
        &[state.to_str().unwrap(), "Not a directory"],
    );
    assert!(!run.stderr.contains("refusing"), "{}", run.stderr);
    assert_eq!(fs::read(&state).unwrap(), b"not a directory");
}

/// A usage error prints the error and one line pointing at `--help`: on a 25-line emergency
/// console the whole usage (36 lines) would scroll the error off the screen. Needs no root.
#[test]
fn usage_error_fits_an_emergency_console() {
    for args in [&["--frobnicate"][..], &["--sysroot"], &["--json"]] {
        let out = std::process::Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("cfs-setup-root: "), "{stderr}");
        assert!(lines[1].contains("--help"), "{stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// composefs-rs's `meta.json` feature flags: an `incompatible` feature we do not know refuses
/// the repository (exit 3, as every other unreadable `meta.json`), naming the feature, with
/// nothing mounted. The repository's own flags (cfsctl writes `v1_erofs` as
/// read-only-compatible for V1 images) boot, as every other test shows.
#[test]
fn incompatible_repository_feature_is_refused() {
    if !root_or_skip("incompatible_repository_feature_is_refused") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let meta_path = sysroot.path.join("composefs/meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["features"]["incompatible"] = serde_json::json!(["sealed_images"]);
    // A hard link to the shared repository's file: replace it, never write through it.
    fs::remove_file(&meta_path).unwrap();
    fs::write(&meta_path, meta.to_string()).unwrap();
    refused(
        &sysroot,
        &format!("composefs=?{}", repo.hex),
        &[],
        3,
        &[
            "meta.json",
            "sealed_images",
            "features this tool does not know",
        ],
    );
}

/// A test that cannot run says so: a `SKIPPED` line in the skip file the test command reads,
/// and, in a run that must run everything (root and every tool: the test command's), a
/// failure instead of a silent pass. Needs no root.
#[test]
fn a_skipped_test_is_reported_not_passed() {
    let dir = scratch("skips");
    let file = dir.join("skipped");
    skip_with("some_test", "needs root", Some(&file), false);
    skip_with("other_test", "swtpm is not installed", Some(&file), false);
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "SKIPPED some_test: needs root\nSKIPPED other_test: swtpm is not installed\n"
    );
    let required = std::panic::catch_unwind(|| skip_with("third", "needs root", None, true));
    let message = required.expect_err("a skip under CFS_TESTS_REQUIRE_ALL=1 must fail");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("SKIPPED third: needs root"), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}
