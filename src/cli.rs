//! The command line of the binary: composefs-setup-root's flags and arguments, with the same
//! meaning, plus `--dry-run` and the test-only overrides.
//!
//! composefs-setup-root 0.9.4 (and bootc's initramfs-setup, its fork) parse with clap:
//! `--sysroot`, `--config`, `--cmdline`, `--root-fs` and `--target`, each as `--flag VALUE` or
//! `--flag=VALUE`, positional arguments anywhere (its "command to execute"), `--` before
//! arguments that start with `-`, and `--help`/`-h`, `--version`/`-V`. Units and scripts
//! written for it run this binary unchanged.

use std::path::PathBuf;

use crate::Options;
use crate::features::{Assembly, ErofsBacking, Overrides};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Set the root up (or print the plan), then run `command` if there is one.
    Run {
        /// The options.
        options: Options,
        /// The trailing command: run once the root is set up, in its place (exec).
        command: Vec<String>,
    },
    /// `--status [--json]`: print the status record at `path`.
    Status {
        /// As it is, not for a person.
        json: bool,
        /// The record.
        path: PathBuf,
    },
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// The default physical root.
pub const DEFAULT_SYSROOT: &str = "/sysroot";

/// The default config file.
pub const DEFAULT_CONFIG: &str = "/usr/lib/composefs/setup-root-conf.toml";

/// The usage text (`--help`).
pub const USAGE: &str = "\
usage: cfs-setup-root [--sysroot DIR] [--config FILE] [--cmdline STRING] [--target DIR]
                      [--root-fs DIR] [--dry-run] [--status-file FILE] [--help] [--version]
                      [[--] COMMAND...]
       cfs-setup-root --status [--json] [--status-file FILE]

Turns the physical root mounted at DIR (default /sysroot) into the composefs root named
by the composefs= kernel argument, ready for switch_root.

  --sysroot DIR      the physical root (default /sysroot)
  --config FILE      config file (default /usr/lib/composefs/setup-root-conf.toml;
                     a missing file means defaults)
  --cmdline STRING   use STRING instead of /proc/cmdline
  --target DIR       set the new root up at DIR and leave the sysroot's mount alone
                     (the physical root is still mounted at DIR/sysroot)
  --root-fs DIR      use the tree at DIR (a read-only clone) as the root instead of the
                     composefs image; the first composefs= argument names the deployment
  --dry-run          print the plan, one line per step, and mount nothing
  --status           print the status record (what the setup of this system did);
                     with --json, the record as it is
  --status-file FILE the status record (default /run/cfs-setup-root/status.json)
  --help, --version
  COMMAND...         once the root is set up, run COMMAND in place of this process

Test-only:
  --force-overlay detached|attach-first|string-lowerdir   mount path to use
  --force-erofs file|loop                                  how erofs reads the image
  --tpm-device PATH                                        the TPM (default /dev/tpmrm0)

Exit codes:
  0  done, or no composefs= argument (nothing touched); with COMMAND, its exit code
  2  usage error, unreadable command line, bad config file, COMMAND cannot be run
  3  no usable image (none of the composefs= images is in the repository)
  4  image refused (digest mismatch, no fs-verity in secure mode, bad repository entry)
  5  mount failure or missing kernel feature (everything undone)
  6  [tpm] measure = \"required\" and the image could not be measured (everything undone)
  1  --status: no status record (this system was not set up by cfs-setup-root)

Kernel arguments, config keys, files, examples: man 8 cfs-setup-root, man 5 cfs-setup-root.conf
";

/// What a usage error prints: the error and one line pointing at `--help`, so the error stays
/// on a 25-line emergency console (the whole usage would scroll it off).
pub fn usage_error(error: &str) -> String {
    format!("cfs-setup-root: {error}\nTry 'cfs-setup-root --help' for the usage.\n")
}

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut options = Options {
        sysroot: PathBuf::from(DEFAULT_SYSROOT),
        config: PathBuf::from(DEFAULT_CONFIG),
        cmdline: None,
        target: None,
        root_fs: None,
        dry_run: false,
        status_path: PathBuf::from(crate::status::PATH),
        tpm_device: PathBuf::from(crate::tpm::DEVICE),
        overrides: Overrides::default(),
    };
    let (mut status, mut json) = (false, false);
    let mut command = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            command.extend(args.by_ref());
            break;
        }
        // Positional: part of the command (clap takes them anywhere among the flags).
        if !arg.starts_with('-') || arg == "-" {
            command.push(arg);
            continue;
        }
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| match inline.clone() {
            Some(v) => Ok(v),
            None => args.next().ok_or_else(|| format!("{name} needs a value")),
        };
        let switch = |name: &str| match inline {
            Some(_) => Err(format!("{name} takes no value")),
            None => Ok(()),
        };
        match flag.as_str() {
            "--help" | "-h" => return switch("--help").map(|()| Parsed::Help),
            "--version" | "-V" => return switch("--version").map(|()| Parsed::Version),
            "--dry-run" => {
                switch("--dry-run")?;
                options.dry_run = true;
            }
            "--sysroot" => options.sysroot = path(value("--sysroot")?, "--sysroot")?,
            "--config" => options.config = path(value("--config")?, "--config")?,
            "--cmdline" => options.cmdline = Some(value("--cmdline")?),
            "--target" => options.target = Some(path(value("--target")?, "--target")?),
            "--root-fs" => options.root_fs = Some(path(value("--root-fs")?, "--root-fs")?),
            "--status" => {
                switch("--status")?;
                status = true;
            }
            "--json" => {
                switch("--json")?;
                json = true;
            }
            "--status-file" => {
                options.status_path = path(value("--status-file")?, "--status-file")?;
            }
            "--tpm-device" => options.tpm_device = path(value("--tpm-device")?, "--tpm-device")?,
            "--force-overlay" => {
                let v = value("--force-overlay")?;
                options.overrides.assembly = Some(
                    Assembly::from_name(&v)
                        .ok_or_else(|| format!("--force-overlay: unknown path {v:?}"))?,
                );
            }
            "--force-erofs" => {
                let v = value("--force-erofs")?;
                options.overrides.erofs = Some(
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
        // A flag, not a word: anything else on the line is a mistake.
        if !command.is_empty() {
            return Err(format!("--status takes no command (got {:?})", command[0]));
        }
        return Ok(Parsed::Status {
            json,
            path: options.status_path,
        });
    }
    Ok(Parsed::Run { options, command })
}

/// A path argument: not empty (clap's `PathBuf` refuses an empty value too).
fn path(value: String, flag: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        Err(format!("{flag} needs a non-empty path"))
    } else {
        Ok(PathBuf::from(value))
    }
}

/// The arguments that [`parse`] turns back into `parsed`: every option spelled out, in one
/// order (the fuzz target checks that parsing them gives `parsed` again).
pub fn unparse(parsed: &Parsed) -> Vec<String> {
    let (options, command) = match parsed {
        Parsed::Help => return vec!["--help".into()],
        Parsed::Version => return vec!["--version".into()],
        Parsed::Status { json, path } => {
            let mut args = vec!["--status".to_string()];
            if *json {
                args.push("--json".into());
            }
            args.push(format!("--status-file={}", path.to_string_lossy()));
            return args;
        }
        Parsed::Run { options, command } => (options, command),
    };
    let lossy = |p: &PathBuf| p.to_string_lossy().into_owned();
    let mut args = vec![
        "--sysroot".to_string(),
        lossy(&options.sysroot),
        format!("--config={}", lossy(&options.config)),
    ];
    if let Some(cmdline) = &options.cmdline {
        args.extend(["--cmdline".to_string(), cmdline.clone()]);
    }
    if let Some(target) = &options.target {
        args.extend(["--target".to_string(), lossy(target)]);
    }
    if let Some(root_fs) = &options.root_fs {
        args.push(format!("--root-fs={}", lossy(root_fs)));
    }
    if options.dry_run {
        args.push("--dry-run".into());
    }
    args.extend([
        "--status-file".to_string(),
        lossy(&options.status_path),
        format!("--tpm-device={}", lossy(&options.tpm_device)),
    ]);
    if let Some(a) = options.overrides.assembly {
        args.extend(["--force-overlay".to_string(), a.name().to_string()]);
    }
    if let Some(e) = options.overrides.erofs {
        args.push(format!("--force-erofs={}", e.name()));
    }
    if !command.is_empty() {
        args.push("--".into());
        args.extend(command.iter().cloned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        super::parse(args.iter().map(|s| s.to_string()))
    }

    fn run(args: &[&str]) -> (Options, Vec<String>) {
        match parse(args) {
            Ok(Parsed::Run { options, command }) => (options, command),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn flags_and_defaults() {
        let (o, command) = run(&[]);
        assert_eq!(o.sysroot, PathBuf::from("/sysroot"));
        assert_eq!(
            o.config,
            PathBuf::from("/usr/lib/composefs/setup-root-conf.toml")
        );
        assert!(o.cmdline.is_none() && o.target.is_none() && o.root_fs.is_none() && !o.dry_run);
        assert!(command.is_empty());
        let (o, _) = run(&[
            "--sysroot",
            "/x",
            "--config=/c",
            "--cmdline",
            "a b",
            "--dry-run",
            "--force-overlay",
            "attach-first",
            "--force-erofs=loop",
        ]);
        assert_eq!(o.sysroot, PathBuf::from("/x"));
        assert_eq!(o.config, PathBuf::from("/c"));
        assert_eq!(o.cmdline.as_deref(), Some("a b"));
        assert!(o.dry_run);
        assert_eq!(o.overrides.assembly, Some(Assembly::AttachFirst));
        assert_eq!(o.overrides.erofs, Some(ErofsBacking::Loop));
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
        assert!(matches!(parse(&["-h"]), Ok(Parsed::Help)));
        assert!(matches!(parse(&["--version"]), Ok(Parsed::Version)));
        assert!(matches!(parse(&["-V"]), Ok(Parsed::Version)));
        assert_eq!(
            o.status_path,
            PathBuf::from("/run/cfs-setup-root/status.json")
        );
        assert_eq!(o.tpm_device, PathBuf::from("/dev/tpmrm0"));
        let (o, _) = run(&["--status-file=/s", "--tpm-device", "/t"]);
        assert_eq!(
            (o.status_path, o.tpm_device),
            (PathBuf::from("/s"), PathBuf::from("/t"))
        );
    }

    #[test]
    fn status_flags() {
        assert_eq!(
            parse(&["--status", "--json"]),
            Ok(Parsed::Status {
                json: true,
                path: PathBuf::from("/run/cfs-setup-root/status.json")
            })
        );
        assert_eq!(
            parse(&["--status-file=/x", "--status"]),
            Ok(Parsed::Status {
                json: false,
                path: PathBuf::from("/x")
            })
        );
        for bad in [&["--json"][..], &["--status", "json"], &["--status=1"]] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_peers_flags() {
        let (o, command) = run(&[
            "--target",
            "/mnt",
            "--root-fs=/tree",
            "--cmdline=composefs=x",
        ]);
        assert_eq!(o.target, Some(PathBuf::from("/mnt")));
        assert_eq!(o.root_fs, Some(PathBuf::from("/tree")));
        assert!(command.is_empty());
        // A value may start with a dash or contain '='.
        let (o, _) = run(&["--cmdline", "-x=1 composefs=y", "--target", "-t"]);
        assert_eq!(o.cmdline.as_deref(), Some("-x=1 composefs=y"));
        assert_eq!(o.target, Some(PathBuf::from("-t")));
    }

    #[test]
    fn the_trailing_command() {
        // Positional arguments anywhere among the flags, as clap takes them.
        let (o, command) = run(&["sh", "--sysroot", "/s", "x"]);
        assert_eq!(o.sysroot, PathBuf::from("/s"));
        assert_eq!(command, ["sh", "x"]);
        // `-c` is not a flag of ours: refused, as clap refuses it (the command goes after --).
        assert!(parse(&["sh", "-c", "x"]).is_err());
        let (o, command) = run(&["--target", "/t", "--", "sh", "-c", "echo --sysroot"]);
        assert_eq!(o.target, Some(PathBuf::from("/t")));
        assert_eq!(o.sysroot, PathBuf::from("/sysroot"));
        assert_eq!(command, ["sh", "-c", "echo --sysroot"]);
        let (_, command) = run(&["findmnt", "-", "--dry-run", "--", "--", "-x"]);
        assert_eq!(command, ["findmnt", "-", "--", "-x"]);
    }

    #[test]
    fn usage_error_is_two_lines() {
        let text = usage_error("unknown argument \"--bogus\"");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.starts_with("cfs-setup-root: unknown argument"),
            "{text}"
        );
        assert!(text.contains("--help"), "{text}");
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["--bogus"][..],
            &["-x"],
            &["--sysroot"],
            &["--sysroot="],
            &["--target", ""],
            &["--root-fs"],
            &["--force-overlay", "x"],
            &["--force-erofs", "nbd"],
            &["--dry-run=yes"],
            &["--help=1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn unparse_parses_back() {
        for args in [
            &[][..],
            &["--help"],
            &["-V"],
            &[
                "--sysroot=/a b",
                "--dry-run",
                "--target",
                "/t",
                "x",
                "--",
                "-y",
            ],
            &[
                "--root-fs",
                "/r",
                "--cmdline",
                "",
                "--force-overlay=detached",
            ],
            &["--force-erofs", "file", "--config", "-c"],
            &["--status", "--json"],
            &["--status-file", "/s", "--status"],
            &["--tpm-device", "/t", "--status-file=/s"],
        ] {
            let parsed = parse(args).unwrap();
            let again = super::parse(unparse(&parsed)).unwrap();
            assert_eq!(again, parsed, "{args:?} -> {:?}", unparse(&parsed));
        }
    }
}
