//! A failure injected before every step of every mount path leaves nothing mounted.
//! Needs the test-only `fault-injection` feature (the test command enables it).

mod common;

use common::*;

#[test]
fn failure_at_every_step_unwinds_everything() {
    if !root_or_skip("failure_at_every_step_unwinds_everything") {
        return;
    }
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
                checked += 1;
            }
            // And the same sysroot still boots afterwards.
            ns.run(&args).ok();
        }
    }
    eprintln!("checked {checked} injected failures");
}
