//! The fuzz targets' bodies: each feeds one parser arbitrary bytes and checks more than "no
//! panic" wherever there is something to check (a round trip, or a second implementation of
//! the same format). libFuzzer runs them through `fuzz_targets/*.rs`; `src/bin/mutate.rs` runs
//! the same functions on stable Rust without libFuzzer (see `fuzz/run`).
//!
//! A failed check panics, which both drivers report as a crash and save the input of.

use std::io::Read;

use cfs_setup_root::cli::{self, Parsed};
use cfs_setup_root::cmdline;
use cfs_setup_root::config::{self, ConfigError};
use cfs_setup_root::digest::{
    Algorithm, Digest, compute_fsverity_digest, compute_fsverity_digest_of_bytes,
};
use cfs_setup_root::repo;

/// A target: checks one input, panics when a check fails.
pub type Target = fn(&[u8]);

/// Every target, by name: what `fuzz/run` and the stable driver iterate over.
pub const TARGETS: &[(&str, Target)] = &[
    ("kernel_cmdline", kernel_cmdline),
    ("cli", cli),
    ("config", config),
    ("meta_json", meta_json),
    ("digest", digest),
];

/// The kernel command line: the selectors found print back, as a command line of their own,
/// to the same selectors, and every digest prints back to itself.
pub fn kernel_cmdline(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let kargs = cmdline::parse(&text);
    let split = cmdline::split(&text);
    let mut again = String::new();
    for sel in &kargs.selectors {
        assert_eq!(Digest::from_hex(&sel.digest.to_hex()), Ok(sel.digest));
        assert!(split.contains(&sel.arg), "{:?} is not an argument", sel.arg);
        let q = if sel.insecure { "?" } else { "" };
        again.push_str(&format!(
            "composefs={q}{}:{} ",
            sel.digest.algorithm(),
            sel.digest
        ));
    }
    if kargs.volatile_state {
        again.push_str("systemd.volatile=state");
    }
    let reparsed = cmdline::parse(&again);
    let pairs = |k: &cmdline::Kargs| -> Vec<(Digest, bool)> {
        k.selectors.iter().map(|s| (s.digest, s.insecure)).collect()
    };
    assert_eq!(pairs(&reparsed), pairs(&kargs), "{again:?}");
    assert!(reparsed.rejected.is_empty());
    assert_eq!(reparsed.volatile_state, kargs.volatile_state);
}

/// The binary's arguments (NUL-separated): what parses prints back, through `cli::unparse`,
/// to arguments that parse the same.
pub fn cli(data: &[u8]) {
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let Ok(parsed) = cli::parse(args) else {
        return;
    };
    let printed = cli::unparse(&parsed);
    assert_eq!(
        cli::parse(printed.clone()),
        Ok(parsed),
        "printed as {printed:?}"
    );
    if let Ok(Parsed::Run { options, .. }) = cli::parse(printed) {
        assert!(!options.sysroot.as_os_str().is_empty());
    }
}

/// The config file: a file that loads loads the same, with no warning, from its normalized
/// form; and it is TOML exactly when the peers' parser (the `toml` crate) says so.
pub fn config(data: &[u8]) {
    let ours = config::parse_bytes(data);
    if let Ok((config, _)) = &ours {
        let normalized = config.to_string();
        match config::parse(&normalized) {
            Ok((again, warnings)) => {
                assert_eq!(&again, config, "{normalized}");
                assert!(warnings.is_empty(), "{warnings:?}");
            }
            Err(e) => panic!("the normalized form does not load: {e}\n{normalized}"),
        }
    }
    if let Err(ConfigError::Syntax { line, .. }) = &ours {
        let lines = 1 + data.iter().filter(|&&b| b == b'\n').count();
        assert!((1..=lines).contains(line), "line {line} of {lines}");
    }
    // The peers read unknown keys as serde's IgnoredAny: the whole document is checked, and
    // nothing is kept.
    let peer_toml =
        std::str::from_utf8(data).is_ok_and(|t| toml::from_str::<serde::de::IgnoredAny>(t).is_ok());
    let our_toml = !matches!(ours, Err(ConfigError::Syntax { .. }));
    assert_eq!(
        our_toml,
        peer_toml,
        "TOML verdicts differ (ours {ours:?}) on {:?}",
        String::from_utf8_lossy(data)
    );
}

/// `meta.json`: what we read is what a full JSON parser (serde_json) reads, and we refuse
/// only what composefs-rs refuses.
pub fn meta_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = repo::parse_meta(text);
    let theirs = serde_json::from_str::<serde_json::Value>(text);
    let their_algorithm = theirs.as_ref().ok().and_then(|v| {
        v.as_object()?
            .get("algorithm")?
            .as_str()
            .and_then(Algorithm::from_repository_name)
    });
    match (&ours, their_algorithm) {
        (Ok(a), Some(b)) => assert_eq!(*a, b),
        (Ok(a), None) => panic!("we read {a:?}, serde_json {theirs:?}"),
        // Deeper than we accept (32 levels), or the key twice (serde_json keeps the last; the
        // peer refuses), is our refusal alone.
        (Err(e), _) if e.contains("deep") || e.contains("duplicate") => {}
        // The refusals composefs-rs defines: an incompatible feature, a newer format version
        // (by the start of the message: an unknown algorithm's is quoted in its own).
        (Err(e), _)
            if e.starts_with("the repository requires features this tool does not know") =>
        {
            let listed = theirs.as_ref().ok().and_then(|v| {
                v.get("features")?
                    .get("incompatible")?
                    .as_array()
                    .map(Vec::len)
            });
            assert!(listed.is_some_and(|n| n > 0), "{e}: serde_json {theirs:?}");
        }
        (Err(e), _) if e.starts_with("repository format version") => {
            let version = theirs
                .as_ref()
                .ok()
                .and_then(|v| v.get("version")?.as_u64());
            assert!(version.is_some_and(|n| n > 1), "{e}: serde_json {theirs:?}");
        }
        (Err(e), Some(b)) => panic!("we refuse ({e}), serde_json reads {b:?}"),
        (Err(_), None) => {}
    }
}

/// Digests: a hex string that parses prints back to itself (lower case), in both selector
/// forms; and the fs-verity digest computed over arbitrary short reads equals the one over
/// the whole buffer.
pub fn digest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Digest::from_hex(&text) {
        Ok(d) => {
            assert_eq!(d.to_hex(), text.to_ascii_lowercase());
            assert_eq!(d.to_string(), d.to_hex());
            assert_eq!(Digest::from_hex_with(d.algorithm(), &d.to_hex()), Ok(d));
            for karg in [
                format!("composefs={d}"),
                format!("composefs=?{}:{d}", d.algorithm()),
                format!("composefs.digest=v1-{}-12:{}", d.algorithm(), text),
            ] {
                let k = cmdline::parse(&karg);
                assert_eq!(k.selectors.len(), 1, "{karg}");
                assert_eq!(k.selectors[0].digest, d, "{karg}");
            }
        }
        Err(_) => assert!(
            !(matches!(text.len(), 64 | 128) && text.bytes().all(|b| b.is_ascii_hexdigit())),
            "{text:?} refused"
        ),
    }
    // The first byte picks the algorithm and the read sizes.
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let algorithm = if seed & 1 == 0 {
        Algorithm::Sha256
    } else {
        Algorithm::Sha512
    };
    let whole = compute_fsverity_digest_of_bytes(algorithm, body);
    let mut reader = ShortReads {
        data: body,
        step: usize::from(seed >> 1) + 1,
        calls: 0,
    };
    let streamed = compute_fsverity_digest(algorithm, &mut reader).expect("reading memory");
    assert_eq!(streamed, whole);
}

/// A reader that returns at most a varying handful of bytes per call, and sometimes EINTR.
struct ShortReads<'a> {
    data: &'a [u8],
    step: usize,
    calls: usize,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls % 7 == 3 {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = (self.step * (1 + self.calls % 3))
            .min(buf.len())
            .min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        buf[..n].copy_from_slice(head);
        self.data = rest;
        Ok(n)
    }
}
