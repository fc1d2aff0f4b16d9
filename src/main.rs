//! `cfs-setup-root`: argument parsing and exit codes only; the work is in the library.
//!
//! `#![no_main]`: the C `main` below replaces std's runtime start-up, which only adds a
//! main-thread stack-guard probe (glibc's `pthread_getattr_np`, which drags `sscanf`, `strtod`
//! and their locale code into a static binary: about 80 KiB we do not need). Arguments still
//! come from `std::env::args` (glibc hands them to std through `.init_array`).

#![cfg_attr(not(test), no_main)]

use std::path::PathBuf;

use cfs_setup_root::features::{Assembly, ErofsBacking, Overrides};
use cfs_setup_root::{Options, Outcome, exit, run};

#[cfg_attr(test, allow(dead_code))]
const USAGE: &str = "\
usage: cfs-setup-root [--sysroot DIR] [--config FILE] [--cmdline STRING] [--dry-run]
                      [--status-file FILE] [--help] [--version]
       cfs-setup-root --status [--json] [--status-file FILE]

Turns the physical root mounted at DIR (default /sysroot) into the composefs root named
by the composefs= kernel argument, ready for switch_root.

  --sysroot DIR      the physical root (default /sysroot)
  --config FILE      config file (default /usr/lib/composefs/setup-root-conf.toml;
                     a missing file means defaults)
  --cmdline STRING   use STRING instead of /proc/cmdline
  --dry-run          print the plan, one line per step, and mount nothing
  --status           print the status record of the running system (what the setup
                     did); with --json, the record as it is
  --status-file FILE the status record (default /run/cfs-setup-root/status.json)
  --help, --version

Test-only:
  --force-overlay detached|attach-first|string-lowerdir   mount path to use
  --force-erofs file|loop                                  how erofs reads the image
  --tpm-device PATH                                        the TPM (default /dev/tpmrm0)

Exit codes:
  0  done, or no composefs= argument (nothing touched)
  2  usage error, unreadable command line, bad config file
  3  no usable image (none of the composefs= images is in the repository)
  4  image refused (digest mismatch, no fs-verity in secure mode, bad repository entry)
  5  mount failure or missing kernel feature (everything undone)
  6  [tpm] measure = \"required\" and the image could not be measured (everything undone)
  1  --status: no status record (this system was not set up by cfs-setup-root)
";

#[derive(Debug)]
enum Parsed {
    Run(Options),
    Status { json: bool, path: PathBuf },
    Help,
    Version,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut opts = Options {
        sysroot: PathBuf::from("/sysroot"),
        config: PathBuf::from("/usr/lib/composefs/setup-root-conf.toml"),
        cmdline: None,
        dry_run: false,
        status_path: PathBuf::from(cfs_setup_root::status::PATH),
        tpm_device: PathBuf::from(cfs_setup_root::tpm::DEVICE),
        overrides: Overrides::default(),
    };
    let (mut status, mut json) = (false, false);
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
            "--status" => status = true,
            "--json" => json = true,
            "--status-file" => opts.status_path = PathBuf::from(value("--status-file")?),
            "--tpm-device" => opts.tpm_device = PathBuf::from(value("--tpm-device")?),
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
    if json && !status {
        return Err("--json goes with --status".into());
    }
    if status {
        return Ok(Parsed::Status {
            json,
            path: opts.status_path,
        });
    }
    Ok(Parsed::Run(opts))
}

/// The process entry point, called by the C library's start-up code.
// SAFETY: `main` is the symbol `__libc_start_main` calls; nothing else in the program defines
// it (std's own `main` is not generated under `#![no_main]`), and the signature is the C one.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    // SAFETY: the C runtime passes `argc` pointers to NUL-terminated strings in `argv`, valid
    // for the whole run. (Read here, not through std::env::args: that relies on glibc handing
    // them to std from `.init_array`, which other C libraries do not do.)
    let args = unsafe { c_args(argc, argv) };
    let code = real_main(args);
    // std's runtime would flush stdout at exit; without it, flush here.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(i32::from(code))
}

/// The arguments after the program name, as strings (invalid UTF-8 is replaced; the
/// paths given here are plain ASCII in every initramfs we know).
///
/// # Safety
/// `argv` must hold `argc` valid pointers to NUL-terminated strings.
#[cfg(not(test))]
unsafe fn c_args(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> Vec<String> {
    let count = usize::try_from(argc).unwrap_or(0);
    (1..count)
        .filter_map(|i| {
            // SAFETY: i < argc, so `argv.add(i)` is inside the array and points to a valid C
            // string (the caller's contract); null entries are skipped.
            let ptr = unsafe { *argv.add(i) };
            (!ptr.is_null()).then(|| {
                unsafe { std::ffi::CStr::from_ptr(ptr) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .collect()
}

#[cfg_attr(test, allow(dead_code))]
fn real_main(args: Vec<String>) -> u8 {
    cfs_setup_root::log::init();
    let opts = match parse_args(args) {
        Ok(Parsed::Run(opts)) => opts,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return exit::OK;
        }
        Ok(Parsed::Version) => {
            println!("cfs-setup-root {}", env!("CARGO_PKG_VERSION"));
            return exit::OK;
        }
        Ok(Parsed::Status { json, path }) => return show_status(&path, json),
        Err(e) => {
            eprintln!("cfs-setup-root: {e}\n\n{USAGE}");
            return exit::USAGE;
        }
    };
    match run(&opts) {
        Ok(Outcome::DryRun(plan)) => {
            print!("{plan}");
            exit::OK
        }
        Ok(Outcome::Done(_) | Outcome::NothingToDo) => exit::OK,
        Err(e) => {
            log::error!("error: {e}");
            e.exit_code()
        }
    }
}

/// `--status`: the record for a person, or as it is.
#[cfg_attr(test, allow(dead_code))]
fn show_status(path: &std::path::Path, json: bool) -> u8 {
    use cfs_setup_root::status;
    match status::read(path) {
        Ok((text, _)) if json => {
            print!("{text}");
            exit::OK
        }
        Ok((_, value)) => {
            print!(
                "{}",
                status::human(&value, status::running_root_source().as_deref())
            );
            exit::OK
        }
        Err(e @ status::StatusError::Missing { .. }) => {
            eprintln!("cfs-setup-root: {e}");
            exit::NO_STATUS
        }
        Err(e) => {
            eprintln!("cfs-setup-root: {e}");
            exit::USAGE
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
        let Ok(Parsed::Status { json, path }) = parse(&["--status", "--json"]) else {
            panic!()
        };
        assert!(json);
        assert_eq!(path, PathBuf::from("/run/cfs-setup-root/status.json"));
        let Ok(Parsed::Status { json, path }) = parse(&["--status-file=/x", "--status"]) else {
            panic!()
        };
        assert!(!json);
        assert_eq!(path, PathBuf::from("/x"));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["--bogus"][..],
            &["--sysroot"],
            &["--force-overlay", "x"],
            &["--force-erofs", "nbd"],
            &["positional"],
            &["--json"],
            &["--status", "json"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
