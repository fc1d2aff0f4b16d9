//! Host tests for real boot environments and hostile disks: a root mounted read-only (`ro`),
//! command lines that are not UTF-8, selectors whose images are unusable, entries that must
//! not be opened, state links that leave the state directory, mount propagation, mounts
//! beneath the physical root, bounded work and long kernel-log lines.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn mount_at<'a>(mounts: &'a [MountEntry], target: &Path) -> Vec<&'a MountEntry> {
    let t = target.to_str().unwrap();
    mounts.iter().filter(|m| m.target == t).collect()
}

#[test]
fn read_only_root_gets_writable_persistent_state() {
    if !root_or_skip("read_only_root_gets_writable_persistent_state") {
        return;
    }
    let repo = repo256();
    let ext4 = Ext4Root::new(&Sysroot::new(repo));
    let mp = &ext4.mountpoint;
    let karg = format!("composefs=?{}", repo.hex);
    // The status record beside the disk and a TPM that does not exist: the host's /run and
    // PCRs stay untouched.
    let (status, no_tpm) = (
        mp.with_extension("status.json"),
        mp.with_extension("no-tpm"),
    );
    let args = [
        "--sysroot",
        mp.to_str().unwrap(),
        "--cmdline",
        &karg,
        "--status-file",
        status.to_str().unwrap(),
        "--tpm-device",
        no_tpm.to_str().unwrap(),
    ];
    let deploy = Path::new("sysroot/state/deploy").join(&repo.hex);

    // First boot: no state yet; the filesystem is read-only.
    let ns = ext4.mount_readonly(false);
    ns.run(&args).ok();
    let root = ns.path(mp);
    fs::write(root.join("etc/first-boot"), b"etc written on boot 1").unwrap();
    fs::write(root.join("var/first-boot"), b"var written on boot 1").unwrap();
    // The writes are on the disk, in the deployment's state.
    assert_eq!(
        fs::read(root.join(&deploy).join("etc/upper/first-boot")).unwrap(),
        b"etc written on boot 1"
    );
    let mounts = ns.mounts_under(mp);
    let phys = mount_at(&mounts, &mp.join("sysroot"));
    assert_eq!(phys.len(), 1, "{mounts:#?}");
    assert_eq!(phys[0].fstype, "ext4");
    assert!(
        phys[0].readonly(),
        "/sysroot/sysroot stays read-only per mount"
    );
    assert!(
        phys[0].has_super_option("rw"),
        "the filesystem was made writable: {:?}",
        phys[0]
    );
    ext4.unmount(ns);

    // Second boot, read-only again: the state is there and writable.
    let ns = ext4.mount_readonly(false);
    ns.run(&args).ok();
    let root = ns.path(mp);
    assert_eq!(
        fs::read(root.join("etc/first-boot")).unwrap(),
        b"etc written on boot 1"
    );
    assert_eq!(
        fs::read(root.join("var/first-boot")).unwrap(),
        b"var written on boot 1"
    );
    fs::write(root.join("etc/second-boot"), b"2").unwrap();
    fs::write(root.join("var/second-boot"), b"2").unwrap();
    ext4.unmount(ns);
}

#[test]
fn read_only_device_falls_back_to_transient_state() {
    if !root_or_skip("read_only_device_falls_back_to_transient_state") {
        return;
    }
    let repo = repo256();
    let ext4 = Ext4Root::new(&Sysroot::new(repo));
    let mp = &ext4.mountpoint;
    let karg = format!("composefs=?{}", repo.hex);
    let ns = ext4.mount_readonly(true);
    let (status, no_tpm) = (
        mp.with_extension("status.json"),
        mp.with_extension("no-tpm"),
    );
    let run = ns.run(&[
        "--sysroot",
        mp.to_str().unwrap(),
        "--cmdline",
        &karg,
        "--status-file",
        status.to_str().unwrap(),
        "--tpm-device",
        no_tpm.to_str().unwrap(),
    ]);
    run.ok();
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("device is read-only"))
        .collect();
    assert_eq!(
        warnings.len(),
        2,
        "one warning each for /etc and /var:\n{}",
        run.stderr
    );
    let root = ns.path(mp);
    // /etc and /var take writes, on tmpfs; nothing was created on the disk.
    fs::write(root.join("etc/probe"), b"x").unwrap();
    fs::write(root.join("var/probe"), b"x").unwrap();
    assert!(!root.join("sysroot/state").exists());
    let mounts = ns.mounts_under(mp);
    for dir in ["etc", "var"] {
        let m = mount_at(&mounts, &mp.join(dir));
        assert_eq!(m.len(), 1, "{dir}: {mounts:#?}");
        assert_eq!(m[0].fstype, "overlay");
        assert!(!m[0].readonly());
    }
    // The filesystem was left read-only: the device cannot take writes.
    let phys = mount_at(&mounts, &mp.join("sysroot"));
    assert!(phys[0].has_super_option("ro"), "{:?}", phys[0]);
    ext4.unmount(ns);
}

#[test]
fn command_line_bytes_that_are_not_utf8() {
    if !root_or_skip("command_line_bytes_that_are_not_utf8") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    // /proc/cmdline as the kernel would give it, with another program's argument in Latin-1.
    let mut line = b"quiet splash=\xe9t\xe9 ".to_vec();
    line.extend_from_slice(format!("composefs=?{} ro\n", repo.hex).as_bytes());
    ns.fake_proc_cmdline(&sysroot.path, &line);
    // No --cmdline: /proc/cmdline is read. The status record and the TPM are the test's own.
    let run = ns.run(&[
        "--sysroot",
        sysroot.path.to_str().unwrap(),
        "--status-file",
        sysroot.status.to_str().unwrap(),
        "--tpm-device",
        sysroot.no_tpm.to_str().unwrap(),
    ]);
    run.ok();
    let s = sysroot.path.to_str().unwrap();
    assert!(
        ns.mounts()
            .iter()
            .any(|m| m.target == s && m.source == format!("composefs:{}", repo.hex)),
        "{}",
        run.stderr
    );
}

/// Replaces `images/<hex>` of `sysroot` by what `make` puts at the given path.
fn bad_entry(sysroot: &Sysroot, hex: &str, make: &dyn Fn(&Path)) {
    let image = sysroot.image(hex);
    let _ = fs::remove_file(&image);
    make(&image);
}

#[test]
fn unusable_images_fall_back_to_the_next_selector() {
    if !root_or_skip("unusable_images_fall_back_to_the_next_selector") {
        return;
    }
    let repo = repo256();
    let first = "cd".repeat(32);
    type Maker = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, &str, Maker)> = vec![
        ("missing", "no such image", Box::new(|_: &Path| {})),
        (
            "dangling",
            "dangling",
            Box::new(|p: &Path| symlink("../objects/00/missing", p).unwrap()),
        ),
        (
            "directory",
            "directory",
            Box::new(|p: &Path| fs::create_dir(p).unwrap()),
        ),
        ("fifo", "FIFO", Box::new(|p: &Path| mkfifo(p))),
        (
            "device",
            "character device",
            Box::new(|p: &Path| {
                sh(Command::new("mknod").arg(p).args(["c", "1", "3"]));
            }),
        ),
        (
            "link loop",
            "symbolic links",
            Box::new(move |p: &Path| symlink(p.file_name().unwrap(), p).unwrap()),
        ),
    ];
    for (name, reason, make) in cases {
        let sysroot = Sysroot::new(repo);
        bad_entry(&sysroot, &first, &*make);
        let ns = Namespace::new(&sysroot.path);
        let karg = format!("composefs=?{first} composefs=?{}", repo.hex);
        // A writer blocked on the FIFO would be released if anyone opened it for reading.
        let writer = (name == "fifo").then(|| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("echo x > {}", sysroot.image(&first).display()))
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        });
        let run = ns.run(&sysroot.args(&karg, &[]));
        run.ok();
        let s = sysroot.path.to_str().unwrap();
        assert!(
            ns.mounts()
                .iter()
                .any(|m| m.target == s && m.source == format!("composefs:{}", repo.hex)),
            "[{name}] the second selector did not boot:\n{}",
            run.stderr
        );
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(&format!("skipping composefs=?{first}")) && l.contains(reason)),
            "[{name}] no skip line naming {reason:?}:\n{}",
            run.stderr
        );
        if let Some(mut w) = writer {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let still_blocked = w.try_wait().unwrap().is_none();
            let _ = w.kill();
            let _ = w.wait();
            assert!(
                still_blocked,
                "the FIFO named as the image was opened for reading"
            );
        }
    }
}

#[test]
fn image_link_out_of_the_repository_stops_the_boot() {
    if !root_or_skip("image_link_out_of_the_repository_stops_the_boot") {
        return;
    }
    // The escaped target is the image itself, so no digest check could catch it: with
    // `check-digest = false` only the beneath-the-repository rule stands in the way. A later
    // selector that would boot must not be tried either.
    let repo = repo256();
    let other = make_repo("sha256", "2");
    let sysroot = Sysroot::new(repo);
    let image = sysroot.image(&repo.hex);
    let real = fs::read(&image).unwrap();
    fs::write(sysroot.path.join("outside-image"), &real).unwrap();
    fs::remove_file(&image).unwrap();
    symlink("../../outside-image", &image).unwrap();
    // The other image, complete in the same repository.
    sh(Command::new("cp")
        .arg("-aln")
        .arg(other.dir.join("objects/."))
        .arg(sysroot.path.join("composefs/objects")));
    let other_link = fs::read_link(other.dir.join("images").join(&other.hex)).unwrap();
    symlink(other_link, sysroot.image(&other.hex)).unwrap();
    let cfg = sysroot.path.with_extension("toml");
    fs::write(&cfg, "[image]\ncheck-digest = false\n").unwrap();
    let config = ["--config", cfg.to_str().unwrap()];
    let ns = Namespace::new(&sysroot.path);
    let before = ns.mounts();
    let karg = format!("composefs=?{} composefs=?{}", repo.hex, other.hex);
    let run = ns.run(&sysroot.args(&karg, &config));
    run.fails(4, &[image.to_str().unwrap(), "outside the repository"]);
    assert_eq!(ns.mounts(), before);
    // The second selector alone does boot: it was not tried because of the first.
    ns.run(&sysroot.args(&format!("composefs=?{}", other.hex), &config))
        .ok();
}

#[test]
fn state_links_must_stay_in_the_state_directory() {
    if !root_or_skip("state_links_must_stay_in_the_state_directory") {
        return;
    }
    let repo = repo256();
    for target in ["../../..", "/", "../../../composefs"] {
        let sysroot = Sysroot::new(repo);
        let deploy = sysroot.deploy(&repo.hex);
        fs::create_dir_all(&deploy).unwrap();
        symlink(target, deploy.join("var")).unwrap();
        let ns = Namespace::new(&sysroot.path);
        let before = ns.mounts();
        let run = ns.run(&sysroot.args(&format!("composefs=?{}", repo.hex), &[]));
        run.fails(
            4,
            &[deploy.join("var").to_str().unwrap(), "outside", "state"],
        );
        assert_eq!(ns.mounts(), before, "[{target}] {}", run.stderr);
        assert!(
            run.stderr.contains("everything done so far was undone"),
            "{}",
            run.stderr
        );
        // What this run created for /etc is gone again; the link is left alone.
        assert!(
            !deploy.join("etc").exists(),
            "[{target}] etc state left behind"
        );
        assert!(deploy.join("var").is_symlink());
    }
}

#[test]
fn clones_are_private_and_carry_the_mounts_beneath_the_physical_root() {
    if !root_or_skip("clones_are_private_and_carry_the_mounts_beneath_the_physical_root") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    fs::create_dir_all(sysroot.path.join("boot")).unwrap();
    fs::create_dir_all(sysroot.path.join("probe")).unwrap();
    let ns = Namespace::new(&sysroot.path);
    let s = sysroot.path.to_str().unwrap();
    // A separate /boot, mounted beneath the physical root before us (systemd.mount-extra=,
    // the initrd's fstab).
    let (code, out) = ns.shell(&format!(
        "mount -t tmpfs boot {s}/boot && echo kernel > {s}/boot/vmlinuz"
    ));
    assert_eq!(code, Some(0), "{out}");
    let physical_group = ns
        .mounts_under(&sysroot.path)
        .iter()
        .find(|m| m.target == s && m.fstype != "overlay")
        .and_then(|m| m.peer_group().map(str::to_string))
        .expect("the test sysroot is shared, as in a systemd initrd");
    ns.run(&sysroot.args(&format!("composefs=?{}", repo.hex), &[]))
        .ok();
    let root = ns.path(&sysroot.path);
    // The submount is visible, and read-only like the rest of the physical root.
    assert_eq!(
        fs::read_to_string(root.join("sysroot/boot/vmlinuz")).unwrap(),
        "kernel\n"
    );
    let mounts = ns.mounts_under(&sysroot.path);
    let boot = mount_at(&mounts, &sysroot.path.join("sysroot/boot"));
    assert_eq!(boot.len(), 1, "{mounts:#?}");
    assert!(boot[0].readonly(), "{:?}", boot[0]);
    // No clone of ours is a peer of the physical root hidden below the new root.
    for m in &mounts {
        if m.target.starts_with(&format!("{s}/")) {
            assert_ne!(
                m.peer_group(),
                Some(physical_group.as_str()),
                "{} is a peer of the physical root",
                m.target
            );
        }
    }
    // The effect: a mount made at /sysroot/probe after boot does not appear on the hidden
    // physical root, nor one made in /var on the state directory.
    let (code, out) = ns.shell(&format!(
        "mount -t tmpfs later {s}/sysroot/probe && mkdir -p {s}/var/sub && mount -t tmpfs later {s}/var/sub"
    ));
    assert_eq!(code, Some(0), "{out}");
    let after = ns.mounts();
    assert!(
        mount_at(&after, &sysroot.path.join("probe")).is_empty(),
        "a mount under /sysroot/sysroot propagated to the hidden physical root"
    );
    let hidden_var = sysroot.deploy(&repo.hex).join("var/sub");
    assert!(
        mount_at(&after, &hidden_var).is_empty(),
        "a mount under /var propagated to the state directory"
    );
}

#[test]
fn image_size_is_bounded_and_long_digests_report_progress() {
    if !root_or_skip("image_size_is_bounded_and_long_digests_report_progress") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let cfg = sysroot.path.with_extension("toml");
    fs::write(&cfg, "[image]\nmax-size = 4096\n").unwrap();
    let ns = Namespace::new(&sysroot.path);
    let before = ns.mounts();
    let run = ns.run(&sysroot.args(
        &format!("composefs=?{}", repo.hex),
        &["--config", cfg.to_str().unwrap()],
    ));
    run.fails(
        4,
        &[
            "max-size = 4096",
            sysroot.image(&repo.hex).to_str().unwrap(),
        ],
    );
    assert_eq!(ns.mounts(), before);

    // A 300 MiB image (sparse) under the default limit: hashed, with progress, then refused.
    let sysroot = Sysroot::new(repo);
    let object = sysroot.private_image_object(&repo.hex);
    fs::File::options()
        .write(true)
        .open(&object)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let ns = Namespace::new(&sysroot.path);
    let run = ns.run(&sysroot.args(&format!("composefs=?{}", repo.hex), &[]));
    run.fails(4, &["has digest sha256:"]);
    let progress: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("computing the fs-verity digest") && l.contains("of 300 MiB"))
        .collect();
    assert_eq!(progress.len(), 2, "{}", run.stderr);
}

#[test]
fn long_error_lines_reach_the_kernel_log_whole() {
    if !root_or_skip("long_error_lines_reach_the_kernel_log_whole") {
        return;
    }
    // A sha512 mismatch: the error line names the image twice and three 128-digit digests,
    // well over the 1 KiB the kernel takes in one record.
    let repo = make_repo("sha512", "1");
    let sysroot = Sysroot::new(&repo);
    let wrong = "e".repeat(128);
    let object = fs::read_link(sysroot.image(&repo.hex)).unwrap();
    symlink(&object, sysroot.image(&wrong)).unwrap();
    let ns = Namespace::new(&sysroot.path);
    let karg = format!("composefs=?{wrong}");
    let out = ns.command(BIN, &sysroot.args(&karg, &[])).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr_line = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap()
        .trim_start_matches("cfs-setup-root: ")
        .to_string();
    assert!(stderr_line.len() > 1000, "{stderr_line}");
    let dmesg = String::from_utf8_lossy(&sh(&mut Command::new("dmesg")).stdout).into_owned();
    // This run's lines: those of the pid whose error line names this sysroot.
    let path = sysroot.path.to_str().unwrap();
    let tag = dmesg
        .lines()
        .find(|l| l.contains("]: error: ") && l.contains(path))
        .and_then(|l| l.split("]: error: ").next())
        .and_then(|head| head.rsplit(' ').next())
        .map(|t| format!("{t}]: "))
        .unwrap_or_else(|| panic!("no error line for {path} in the kernel log"));
    let pieces: Vec<&str> = dmesg
        .lines()
        .filter_map(|l| l.split_once(tag.as_str()).map(|(_, msg)| msg))
        .skip_while(|m| !m.starts_with("error: "))
        .take_while(|m| m.starts_with("error: ") || m.starts_with("(continued) "))
        .map(|m| m.strip_prefix("(continued) ").unwrap_or(m))
        .collect();
    assert!(pieces.len() >= 2, "{pieces:?}");
    assert_eq!(pieces.concat(), stderr_line);
}

#[test]
fn objects_directory_out_of_the_repository_is_refused() {
    if !root_or_skip("objects_directory_out_of_the_repository_is_refused") {
        return;
    }
    // The image is the right one; its objects are taken from elsewhere through a link. The
    // overlay must not be built over a data layer outside the repository: refused, exit 4.
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let objects = sysroot.path.join("composefs/objects");
    let image = sysroot.image(&repo.hex);
    let target = fs::read_link(&image).unwrap();
    // Keep the image itself inside the repository, in a directory of its own.
    fs::create_dir_all(sysroot.path.join("composefs/img")).unwrap();
    let inside = sysroot.path.join("composefs/img/image");
    fs::copy(image.parent().unwrap().join(&target), &inside).unwrap();
    fs::remove_file(&image).unwrap();
    symlink("../img/image", &image).unwrap();
    fs::rename(&objects, sysroot.path.join("elsewhere")).unwrap();
    symlink("../elsewhere", &objects).unwrap();
    let ns = Namespace::new(&sysroot.path);
    let before = ns.mounts();
    let run = ns.run(&sysroot.args(&format!("composefs=?{}", repo.hex), &[]));
    run.fails(4, &[objects.to_str().unwrap(), "outside the repository"]);
    assert_eq!(ns.mounts(), before);
}

#[test]
fn a_file_bind_mounted_onto_an_image_entry_is_refused() {
    if !root_or_skip("a_file_bind_mounted_onto_an_image_entry_is_refused") {
        return;
    }
    // Repository look-ups stay on the repository's mount (RESOLVE_NO_XDEV): an image entry
    // with a file mounted over it is refused, even with check-digest = false, where nothing
    // else would notice (here the file even holds the right image).
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let image = sysroot.image(&repo.hex);
    let data = fs::read(&image).unwrap();
    fs::remove_file(&image).unwrap();
    fs::write(&image, &data).unwrap();
    let outside = sysroot.path.with_extension("outside-image");
    fs::write(&outside, &data).unwrap();
    let cfg = sysroot.path.with_extension("toml");
    fs::write(&cfg, "[image]\ncheck-digest = false\n").unwrap();
    let ns = Namespace::new(&sysroot.path);
    let (code, out) = ns.shell(&format!(
        "mount --bind {} {}",
        outside.display(),
        image.display()
    ));
    assert_eq!(code, Some(0), "{out}");
    let before = ns.mounts();
    let karg = format!("composefs=?{}", repo.hex);
    let run = ns.run(&sysroot.args(&karg, &["--config", cfg.to_str().unwrap()]));
    run.fails(
        4,
        &[image.to_str().unwrap(), "resolves outside the repository"],
    );
    assert_eq!(ns.mounts(), before, "mounts left behind:\n{}", run.stderr);
    // Without the mount the same entry boots: the refusal is the mount's.
    let (code, out) = ns.shell(&format!("umount {}", image.display()));
    assert_eq!(code, Some(0), "{out}");
    ns.run(&sysroot.args(&karg, &["--config", cfg.to_str().unwrap()]))
        .ok();
}
