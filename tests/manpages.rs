//! The man pages (man/*.scd, turned into roff by scdoc at build time) render cleanly and
//! document what the code knows: every config section and key (`config::KNOWN_SECTIONS`,
//! `config::KNOWN_KEYS`), every kernel argument form (`cmdline::FORMS`), every flag of
//! `--help` (`cli::USAGE`, which ends by pointing at the pages) and exactly the exit codes of
//! `exit::ALL`. The example config file sets every known key, without a warning.
//!
//! Needs scdoc, groff and man (tests/deps.txt, group test): a missing one fails the test,
//! naming it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use cfs_setup_root::{cli, cmdline, config, exit};

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name)
}

/// Runs `program args` with `input` on stdin; (status ok, stdout, stderr).
fn run(program: &str, args: &[&str], input: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .env("MANWIDTH", "80")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install it (tests/deps.txt)"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The roff scdoc makes of `man/NAME.scd`, also written to a file (for `man -l`).
fn roff(name: &str) -> (Vec<u8>, PathBuf) {
    let scd = std::fs::read(source(&format!("{name}.scd"))).unwrap();
    let (ok, out, err) = run("scdoc", &[], &scd);
    assert!(ok && err.is_empty(), "scdoc {name}.scd: {err}");
    // One file per call: the tests run in parallel.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.{n}"));
    std::fs::write(&path, &out).unwrap();
    (out.into_bytes(), path)
}

/// The page as a reader sees it, one paragraph per line (no hyphenation, long lines), so that
/// a key or a form is never split.
fn text(name: &str) -> String {
    let (roff, _) = roff(name);
    let (ok, out, err) = run(
        "groff",
        &["-man", "-Tascii", "-P-cbou", "-rLL=400n", "-rHY=0"],
        &roff,
    );
    assert!(ok && err.is_empty(), "groff {name}: {err}");
    out
}

/// The lines of section `title` (a heading at column 0) up to the next heading.
fn section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| *l != title);
    assert!(lines.next().is_some(), "no {title} section");
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

#[test]
fn pages_render_without_warnings() {
    for name in ["cfs-setup-root.8", "cfs-setup-root.conf.5"] {
        let (roff, path) = roff(name);
        let (ok, _, err) = run("groff", &["-man", "-ww", "-z"], &roff);
        assert!(ok && err.is_empty(), "groff -man -ww -z {name}: {err}");
        let (ok, out, err) = run("man", &["-l", path.to_str().unwrap()], b"");
        assert!(ok && err.is_empty(), "man -l {name}: {err}");
        assert!(
            out.contains("NAME") && out.contains("SEE ALSO"),
            "man -l {name}: {out}"
        );
    }
}

#[test]
fn config_page_documents_every_section_and_key() {
    let text = text("cfs-setup-root.conf.5");
    let keys = section(&text, "SECTIONS AND KEYS");
    // "   [etc]" headings, then "       mount = ..." terms.
    let (mut sections, mut documented) = (BTreeSet::new(), BTreeSet::new());
    let mut current = None;
    for line in keys {
        if let Some(name) = line.strip_prefix("   [").and_then(|l| l.strip_suffix(']')) {
            sections.insert(name.to_owned());
            current = Some(name.to_owned());
        } else if let (Some(term), Some(sec)) = (line.strip_prefix("       "), &current) {
            if let Some((key, _)) = term.split_once(" = ") {
                if !key.starts_with(' ') {
                    documented.insert(format!("{sec}.{key}"));
                }
            }
        }
    }
    let known_sections: BTreeSet<String> = config::KNOWN_SECTIONS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let known_keys: BTreeSet<String> = config::KNOWN_KEYS.iter().map(|s| s.to_string()).collect();
    assert_eq!(sections, known_sections, "cfs-setup-root.conf(5) sections");
    assert_eq!(documented, known_keys, "cfs-setup-root.conf(5) keys");
    // The aliases the parser takes.
    for alias in ["alias root", "alias volatile"] {
        assert!(text.contains(alias), "cfs-setup-root.conf(5) lacks {alias}");
    }
}

#[test]
fn main_page_documents_every_kernel_argument_form() {
    let text = text("cfs-setup-root.8");
    let kargs = section(&text, "KERNEL ARGUMENTS").join("\n");
    for form in cmdline::FORMS {
        assert!(
            kargs.contains(form),
            "cfs-setup-root(8) KERNEL ARGUMENTS lacks {form}"
        );
    }
}

#[test]
fn main_page_lists_exactly_the_exit_codes() {
    let text = text("cfs-setup-root.8");
    // Terms: "       N" alone on a line.
    let listed: BTreeSet<u8> = section(&text, "EXIT STATUS")
        .iter()
        .filter_map(|l| l.strip_prefix("       "))
        .filter_map(|l| l.parse().ok())
        .collect();
    let known: BTreeSet<u8> = exit::ALL.iter().map(|(code, _)| *code).collect();
    assert_eq!(listed, known, "cfs-setup-root(8) EXIT STATUS");
}

#[test]
fn example_config_sets_every_key_without_warnings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/setup-root-conf.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (parsed, warnings) = config::parse(&text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        parsed,
        config::Config::default(),
        "the example spells out the defaults"
    );
    for key in config::KNOWN_KEYS {
        let (sec, name) = key.split_once('.').unwrap();
        let table = text.split(&format!("[{sec}]\n")).nth(1).unwrap_or("");
        let table = table.split("\n[").next().unwrap();
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{name} = "))),
            "examples/setup-root-conf.toml does not set {key}"
        );
    }
}

#[test]
fn main_page_documents_every_flag_and_help_points_at_it() {
    let text = text("cfs-setup-root.8");
    let options = section(&text, "OPTIONS").join("\n");
    // Every --flag of the usage text (test-only ones included).
    let flags: BTreeSet<&str> = cli::USAGE
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    assert!(flags.len() >= 10, "{flags:?}");
    for flag in flags {
        assert!(
            options.contains(flag),
            "cfs-setup-root(8) OPTIONS lacks {flag}"
        );
    }
    let last = cli::USAGE.trim_end().lines().last().unwrap();
    assert!(
        last.contains("man 8 cfs-setup-root") && last.contains("man 5 cfs-setup-root.conf"),
        "--help does not end by pointing at the man pages: {last}"
    );
}
