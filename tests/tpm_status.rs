//! Host tests of the TPM step's policy and of the status record, on real mounts. This host
//! has no TPM (and a host test never touches one: `Sysroot::args` points the binary at a
//! device that does not exist); the TPM itself is proven against swtpm (tests/tpm_swtpm.rs)
//! and in the VM tier.

mod common;

use std::fs;

use common::*;

fn tpm_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("TPM") && !l.contains("step "))
        .collect()
}

#[test]
fn required_without_a_tpm_refuses_and_undoes() {
    if !root_or_skip("required_without_a_tpm_refuses_and_undoes") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let before = ns.mounts();
    let cfg = sysroot.path.with_extension("toml");
    fs::write(&cfg, "[tpm]\nmeasure = \"required\"\n").unwrap();
    let karg = format!("composefs=?{}", repo.hex);
    let run = ns.run(&sysroot.args(&karg, &["--config", cfg.to_str().unwrap()]));
    run.fails(6, &["no TPM", sysroot.no_tpm.to_str().unwrap(), "required"]);
    assert_eq!(ns.mounts(), before, "mounts left behind:\n{}", run.stderr);
    assert!(!sysroot.status.exists(), "a status record after a failure");
    // The state directories the run created are gone again.
    assert!(
        !sysroot.path.join("state").exists(),
        "state directories left behind"
    );
}

#[test]
fn auto_without_a_tpm_boots_with_one_warning() {
    if !root_or_skip("auto_without_a_tpm_boots_with_one_warning") {
        return;
    }
    let repo = repo256();
    let (sysroot, ns, run) = boot(repo, &format!("composefs=?{}", repo.hex), &[], None);
    run.ok();
    check_root(repo, &sysroot, &ns, "auto without a TPM");
    let lines = tpm_lines(&run.stderr);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("no TPM"), "{}", lines[0]);
    assert!(lines[0].contains("the boot goes on"), "{}", lines[0]);

    // The record says what happened.
    let text = fs::read_to_string(&sysroot.status).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["setup"], "boot");
    assert_eq!(v["root"], sysroot.path.to_str().unwrap());
    assert_eq!(v["image"]["digest"], repo.hex);
    assert_eq!(v["image"]["algorithm"], "sha256");
    assert_eq!(v["image"]["insecure"], true);
    // This host has no fs-verity: the digest was computed in userspace.
    assert_eq!(v["checks"]["kernel_fsverity"], false);
    assert_eq!(v["checks"]["userspace_digest"], true);
    assert_eq!(v["checks"]["verity_require"], false);
    assert_eq!(v["mount"]["source"], format!("composefs:{}", repo.hex));
    // The root's mount says the same.
    let root = ns
        .mounts()
        .into_iter()
        .rev()
        .find(|m| m.target == sysroot.path.to_str().unwrap())
        .unwrap();
    assert_eq!(v["mount"]["source"], root.source);
    assert_eq!(v["etc"]["mode"], "overlay");
    assert_eq!(
        v["etc"]["source"],
        format!("state/deploy/{}/etc/upper", repo.hex)
    );
    assert_eq!(v["var"]["mode"], "bind");
    assert_eq!(
        v["physical_root"]["path"],
        sysroot.path.join("sysroot").to_str().unwrap()
    );
    assert_eq!(v["physical_root"]["readonly"], true);
    assert_eq!(v["tpm"]["policy"], "auto");
    assert_eq!(v["tpm"]["measured"], false);
    assert!(
        v["tpm"]["reason"].as_str().unwrap().contains("no TPM"),
        "{text}"
    );
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases[0]["name"], "survey");
    assert_eq!(phases.last().unwrap()["name"], "tpm-measure");
    let total: u64 = phases.iter().map(|p| p["usec"].as_u64().unwrap()).sum();
    assert_eq!(v["total_usec"], total);

    // --status prints it for a person, --status --json as it is.
    let status = sysroot.status.to_str().unwrap();
    let human = ns.run(&["--status", "--status-file", status]);
    human.ok();
    assert!(
        human
            .stdout
            .contains(&format!("image          sha256:{}", repo.hex)),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("mode           insecure: digest computed in userspace matched, overlay without verity=require"), "{}", human.stdout);
    assert!(human.stdout.lines().count() <= 24, "{}", human.stdout);
    let json = ns.run(&["--status", "--json", "--status-file", status]);
    json.ok();
    assert_eq!(json.stdout, text);
}

#[test]
fn off_measures_nothing_and_status_without_record_exits_1() {
    if !root_or_skip("off_measures_nothing_and_status_without_record_exits_1") {
        return;
    }
    let repo = repo256();
    let (sysroot, _ns, run) = boot(
        repo,
        &format!("composefs=?{}", repo.hex),
        &["--dry-run"],
        Some("[tpm]\nmeasure = \"off\"\n"),
    );
    run.ok();
    assert!(!run.stdout.contains("TPM"), "{}", run.stdout);
    assert!(!sysroot.status.exists(), "--dry-run wrote a status record");
    let missing = sysroot.path.join("no-such-status.json");
    let out = std::process::Command::new(BIN)
        .args(["--status", "--status-file", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("this system was not set up by cfs-setup-root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn staging_a_soft_reboot_records_it_and_refuses_a_busy_target() {
    if !root_or_skip("staging_a_soft_reboot_records_it_and_refuses_a_busy_target") {
        return;
    }
    let repo = repo256();
    let sysroot = Sysroot::new(repo);
    let ns = Namespace::new(&sysroot.path);
    let target = scratch("nextroot");
    let t = target.to_str().unwrap();
    let karg = format!("composefs=?{}", repo.hex);
    // The running system's record, as a boot would have left it.
    let previous = sysroot.status.with_file_name("previous.json");
    fs::write(&sysroot.status, "{\"schema\":1,\"booted\":\"A\"}\n").unwrap();

    // A missing image: refused as at boot (exit 3), nothing at the target, record kept.
    let missing = format!("composefs=?{}", "ab".repeat(32));
    let run = ns.run(&sysroot.args(&missing, &["--target", t]));
    run.fails(3, &["no such image"]);
    assert!(
        ns.mounts_under(&target).is_empty(),
        "{:?}",
        ns.mounts_under(&target)
    );
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    assert!(
        fs::read_to_string(&sysroot.status)
            .unwrap()
            .contains("\"A\"")
    );

    // Staged: the record is the staged root's, the running root's is kept.
    ns.run(&sysroot.args(&karg, &["--target", t])).ok();
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&sysroot.status).unwrap()).unwrap();
    assert_eq!(v["setup"], "soft-reboot");
    assert_eq!(v["root"], t);
    assert_eq!(v["image"]["digest"], repo.hex);
    assert_eq!(v["physical_root"]["path"], format!("{t}/sysroot"));
    assert_eq!(v["etc"]["target"], format!("{t}/etc"));
    assert!(fs::read_to_string(&previous).unwrap().contains("\"A\""));
    let staged = ns.mounts_under(&target);
    assert!(
        staged
            .iter()
            .any(|m| m.target == t && m.source == format!("composefs:{}", repo.hex)),
        "{staged:?}"
    );

    // Staging again over it is refused with what to do; the staged root stays as it was.
    let again = ns.run(&sysroot.args(&karg, &["--target", t]));
    again.fails(5, &[t, "already has", "systemctl soft-reboot", "umount -R"]);
    assert_eq!(ns.mounts_under(&target), staged);

    // A missing target directory is created, and removed again when the staging fails (here:
    // the image's bytes changed, exit 4).
    let fresh = scratch("nextroot").join("nextroot");
    let f = fresh.to_str().unwrap();
    let damaged = Sysroot::new(repo);
    let object = damaged.private_image_object(&repo.hex);
    let mut bytes = fs::read(&object).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&object, bytes).unwrap();
    let ns2 = Namespace::new(&damaged.path);
    ns2.run(&damaged.args(&karg, &["--target", f]))
        .fails(4, &["digest"]);
    assert!(!fresh.exists(), "{f} left behind");
    ns.run(&sysroot.args(&karg, &["--target", f])).ok();
    assert!(
        ns.mounts_under(&fresh).iter().any(|m| m.target == f),
        "nothing mounted at the created {f}"
    );
}

#[test]
fn an_unverified_root_is_measured_as_insecure() {
    if !root_or_skip("an_unverified_root_is_measured_as_insecure") {
        return;
    }
    // This host has no fs-verity: an insecure root gets no verity=require, so the identity
    // measured into PCR 15 (and recorded) is composefs-insecure:<hex>, never the verified
    // image's composefs:<hex>.
    let repo = repo256();
    let (sysroot, _ns, run) = boot(repo, &format!("composefs=?{}", repo.hex), &[], None);
    run.ok();
    let insecure = format!("composefs-insecure:{}", repo.hex);
    let lines = tpm_lines(&run.stderr);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains(&format!("(as {insecure})")),
        "{}",
        lines[0]
    );
    let text = fs::read_to_string(&sysroot.status).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["checks"]["verity_require"], false);
    assert_eq!(v["tpm"]["event"], insecure, "{text}");
}
