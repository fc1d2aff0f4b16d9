//! `cfs-setup-root`: argument parsing and exit codes only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use cfs_setup_root::features::{Assembly, ErofsBacking, Overrides};
use cfs_setup_root::{Options, Outcome, exit, run};

const USAGE: &str = "\
usage: cfs-setup-root [--sysroot DIR] [--config FILE] [--cmdline STRING] [--dry-run]
                      [--help] [--version]

Turns the physical root mounted at DIR (default /sysroot) into the composefs root named
by the composefs= kernel argument, ready for switch_root.

  --sysroot DIR      the physical root (default /sysroot)
  --config FILE      config file (default /usr/lib/composefs/setup-root-conf.toml;
                     a missing file means defaults)
  --cmdline STRING   use STRING instead of /proc/cmdline
  --dry-run          print the plan, one line per step, and mount nothing
  --help, --version

Test-only:
  --force-overlay detached|attach-first|string-lowerdir   mount path to use
  --force-erofs file|loop                                  how erofs reads the image

Exit codes:
  0  done, or no composefs= argument (nothing touched)
  2  usage error, unreadable command line, bad config file
  3  no usable image (none of the composefs= images is in the repository)
  4  image refused (digest mismatch, no fs-verity in secure mode, bad repository entry)
  5  mount failure or missing kernel feature (everything undone)
";

#[derive(Debug)]
enum Parsed {
    Run(Options),
    Help,
    Version,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut opts = Options {
        sysroot: PathBuf::from("/sysroot"),
        config: PathBuf::from("/usr/lib/composefs/setup-root-conf.toml"),
        cmdline: None,
        dry_run: false,
        overrides: Overrides::default(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--version" | "-V" => return Ok(Parsed::Version),
            "--dry-run" => opts.dry_run = true,
            "--sysroot" => opts.sysroot = PathBuf::from(value("--sysroot")?),
            "--config" => opts.config = PathBuf::from(value("--config")?),
            "--cmdline" => opts.cmdline = Some(value("--cmdline")?),
            "--force-overlay" => {
                let v = value("--force-overlay")?;
                opts.overrides.assembly = Some(
                    Assembly::from_name(&v)
                        .ok_or_else(|| format!("--force-overlay: unknown path {v:?}"))?,
                );
            }
            "--force-erofs" => {
                let v = value("--force-erofs")?;
                opts.overrides.erofs = Some(
                    ErofsBacking::from_name(&v)
                        .ok_or_else(|| format!("--force-erofs: unknown backing {v:?}"))?,
                );
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Parsed::Run(opts))
}

fn main() -> ExitCode {
    cfs_setup_root::log::init();
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(opts)) => opts,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::from(exit::OK);
        }
        Ok(Parsed::Version) => {
            println!("cfs-setup-root {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::from(exit::OK);
        }
        Err(e) => {
            eprintln!("cfs-setup-root: {e}\n\n{USAGE}");
            return ExitCode::from(exit::USAGE);
        }
    };
    match run(&opts) {
        Ok(Outcome::DryRun(plan)) => {
            print!("{plan}");
            ExitCode::from(exit::OK)
        }
        Ok(Outcome::Done(_) | Outcome::NothingToDo) => ExitCode::from(exit::OK),
        Err(e) => {
            log::error!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_and_defaults() {
        let Ok(Parsed::Run(o)) = parse(&[]) else {
            panic!()
        };
        assert_eq!(o.sysroot, PathBuf::from("/sysroot"));
        assert!(o.cmdline.is_none() && !o.dry_run);
        let Ok(Parsed::Run(o)) = parse(&[
            "--sysroot",
            "/x",
            "--config=/c",
            "--cmdline",
            "a b",
            "--dry-run",
            "--force-overlay",
            "attach-first",
            "--force-erofs=loop",
        ]) else {
            panic!()
        };
        assert_eq!(o.sysroot, PathBuf::from("/x"));
        assert_eq!(o.config, PathBuf::from("/c"));
        assert_eq!(o.cmdline.as_deref(), Some("a b"));
        assert!(o.dry_run);
        assert_eq!(o.overrides.assembly, Some(Assembly::AttachFirst));
        assert_eq!(o.overrides.erofs, Some(ErofsBacking::Loop));
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
        assert!(matches!(parse(&["--version"]), Ok(Parsed::Version)));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["--bogus"][..],
            &["--sysroot"],
            &["--force-overlay", "x"],
            &["--force-erofs", "nbd"],
            &["positional"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
