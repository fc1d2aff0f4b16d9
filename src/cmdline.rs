//! The kernel command line: split it as the kernel does and find the composefs selectors.
//!
//! Accepted forms (a `?` right after `=` means insecure):
//! `composefs=<hex>` (64 hex = sha256, 128 = sha512), `composefs=sha256:<hex>`,
//! `composefs=sha512:<hex>`, `composefs.digest=<v1|v2>-<sha256|sha512>-12:<hex>`.
//! Hex digits may be upper or lower case; the words `sha256`, `v1`, `12`... are lower case only,
//! as `cfsctl` prints them. Every composefs argument is kept, in order: the caller boots the first
//! one whose image exists, so a later argument is a fallback, not an override.
//!
//! Which arguments are ours: exactly the parameter names `composefs` and `composefs.digest`.
//! `composefs.foo=x` or `composefsx=y` belong to someone else and are ignored, silently. A bare
//! `composefs` or `composefs.digest` (no `=`) is rejected as [`KargError::Empty`]: it does make
//! systemd's `ConditionKernelCommandLine=composefs` true, so the unit runs and must say why it
//! cannot boot anything.
//!
//! # Splitting
//!
//! We split `/proc/cmdline` with the rules of the kernel's own parser (`next_arg()` in
//! lib/cmdline.c, driven by `parse_args()` in kernel/params.c), quirks included:
//!
//! * whitespace (space, tab, newline, vertical tab, form feed, carriage return) separates
//!   arguments, except inside double quotes. A `"` anywhere toggles quoting, so `a=b"c d"e` is
//!   one argument;
//! * quotes are removed only in two places: a `"` that opens the argument (`"a b"` -> `a b`)
//!   or opens the value right after the first `=` (`a="b c"` -> `a=b c`), together with a `"`
//!   that ends the argument. Quotes in the middle stay: `a=b"c d"` is `a=b"c d"`. There are no
//!   escapes;
//! * a quote never closed runs to the end of the line: `a="b c` -> `a=b c`;
//! * the parameter name ends at the first `=` that is not the argument's first character;
//! * a lone `--` (no `=`) ends the kernel's arguments: the rest is init's, not ours.
//!
//! * `""` is an argument with an empty name, as for the kernel (it matches nothing of ours).
//!
//! systemd splits the same line with rules of its own (for instance it treats single quotes as
//! quotes too); the two agree on arguments written without quotes, which is how composefs
//! arguments are written.

use crate::digest::{Algorithm, Digest, DigestError};

/// One image the command line asks for, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSelector {
    /// The image's fs-verity digest.
    pub digest: Digest,
    /// `?` after `=`: the image need not carry kernel fs-verity.
    pub insecure: bool,
    /// The argument as written, for log lines.
    pub arg: String,
}

/// A composefs argument that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedArg {
    /// The argument as written.
    pub arg: String,
    /// Why it was rejected.
    pub reason: KargError,
}

/// Why a composefs argument is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KargError {
    /// `composefs=` with nothing after it.
    #[error("empty value")]
    Empty,
    /// The digest part is not a valid digest.
    #[error("bad digest: {0}")]
    Digest(#[from] DigestError),
    /// A prefix such as `md5:` or a version other than v1/v2, or a block size other than 12.
    #[error(
        "unsupported form {0:?}: expected composefs=<hex>, composefs=sha256:<hex>, composefs=sha512:<hex>, or composefs.digest=<v1|v2>-<sha256|sha512>-12:<hex>"
    )]
    Form(String),
}

/// Every form of kernel argument this module reads, as cfs-setup-root(8) spells it under
/// KERNEL ARGUMENTS (`<hex>`: the digest's hex digits, 64 for sha256, 128 for sha512).
/// `tests/manpages.rs` checks that the man page lists each; a unit test checks that each
/// parses.
pub const FORMS: &[&str] = &[
    "composefs=<hex>",
    "composefs=sha256:<hex>",
    "composefs=sha512:<hex>",
    "composefs.digest=v1-sha256-12:<hex>",
    "composefs.digest=v2-sha512-12:<hex>",
    "composefs=?<hex>",
    "composefs.digest=?v1-sha256-12:<hex>",
    "systemd.volatile=state",
];

/// What the command line says that concerns us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kargs {
    /// Usable selectors, in command-line order.
    pub selectors: Vec<ImageSelector>,
    /// Composefs arguments that were malformed, in command-line order.
    pub rejected: Vec<RejectedArg>,
    /// `systemd.volatile=state`: leave /var unmounted.
    pub volatile_state: bool,
}

/// The command line as text, from the bytes of `/proc/cmdline`: other programs' arguments
/// may be any bytes, and only ours need to be valid. Valid UTF-8 is kept as it is; each byte
/// that is not part of valid UTF-8 becomes U+FFFD, except a lone 0xa0, which the kernel's
/// `isspace()` counts as a space (Latin-1) and which therefore becomes one.
pub fn text_from_bytes(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for &b in chunk.invalid() {
            text.push(if b == 0xa0 {
                ' '
            } else {
                char::REPLACEMENT_CHARACTER
            });
        }
    }
    text
}

/// Split a command line as the kernel does: whitespace separates, double quotes group
/// (no escapes; the quotes are removed), a lone `--` ends the arguments meant for the kernel.
///
/// Each argument comes back as `name` or `name=value`, with the quotes the kernel strips
/// removed (see the module documentation for exactly which).
pub fn split(cmdline: &str) -> Vec<String> {
    KernelArgs::new(cmdline)
        .map(|arg| arg.to_string())
        .collect()
}

/// Parse the command line into selectors.
///
/// Never fails: malformed composefs arguments land in [`Kargs::rejected`] with the reason,
/// everything that is not ours is ignored.
pub fn parse(cmdline: &str) -> Kargs {
    let mut kargs = Kargs::default();
    for arg in KernelArgs::new(cmdline) {
        let value_parser: fn(&str) -> Result<Digest, KargError> = match arg.name {
            "composefs" => parse_composefs_value,
            "composefs.digest" => parse_digest_value,
            "systemd.volatile" => {
                // `systemd.volatile` alone means "yes" (a volatile root), not "state".
                kargs.volatile_state = arg.value == Some("state");
                continue;
            }
            _ => continue,
        };
        let written = arg.to_string();
        match parse_selector(arg.value, value_parser) {
            Ok((digest, insecure)) => kargs.selectors.push(ImageSelector {
                digest,
                insecure,
                arg: written,
            }),
            Err(reason) => kargs.rejected.push(RejectedArg {
                arg: written,
                reason,
            }),
        }
    }
    kargs
}

/// The value of a composefs argument: an optional `?` (insecure), then the digest.
fn parse_selector(
    value: Option<&str>,
    parse_digest: fn(&str) -> Result<Digest, KargError>,
) -> Result<(Digest, bool), KargError> {
    let value = value.ok_or(KargError::Empty)?;
    let (insecure, value) = match value.strip_prefix('?') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    if value.is_empty() {
        return Err(KargError::Empty);
    }
    Ok((parse_digest(value)?, insecure))
}

/// `composefs=` values: `<hex>` (the length names the algorithm) or `<sha256|sha512>:<hex>`.
fn parse_composefs_value(value: &str) -> Result<Digest, KargError> {
    match value.split_once(':') {
        None => Ok(Digest::from_hex(value)?),
        Some((name, hex)) => {
            let algorithm =
                Algorithm::from_name(name).ok_or_else(|| KargError::Form(value.to_owned()))?;
            Ok(Digest::from_hex_with(algorithm, hex)?)
        }
    }
}

/// `composefs.digest=` values: `<v1|v2>-<sha256|sha512>-12:<hex>` (the image format version,
/// the fs-verity algorithm and log2 of its block size, as `cfsctl compute-karg` prints them).
fn parse_digest_value(value: &str) -> Result<Digest, KargError> {
    let form = || KargError::Form(value.to_owned());
    let (spec, hex) = value.split_once(':').ok_or_else(form)?;
    let mut fields = spec.split('-');
    let algorithm = match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some("v1" | "v2"), Some(name), Some("12"), None) => {
            Algorithm::from_name(name).ok_or_else(form)?
        }
        _ => return Err(form()),
    };
    Ok(Digest::from_hex_with(algorithm, hex)?)
}

/// One argument as the kernel's `next_arg()` returns it: the name, and the value if there
/// was an `=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KernelArg<'a> {
    name: &'a str,
    value: Option<&'a str>,
}

impl std::fmt::Display for KernelArg<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.value {
            Some(value) => write!(f, "{}={}", self.name, value),
            None => f.write_str(self.name),
        }
    }
}

/// The arguments of a command line, in order, up to a lone `--`.
struct KernelArgs<'a> {
    rest: &'a str,
}

impl<'a> KernelArgs<'a> {
    fn new(cmdline: &'a str) -> Self {
        KernelArgs {
            rest: skip_spaces(cmdline),
        }
    }
}

impl<'a> Iterator for KernelArgs<'a> {
    type Item = KernelArg<'a>;

    fn next(&mut self) -> Option<KernelArg<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let (arg, rest) = next_arg(self.rest);
        if arg.value.is_none() && arg.name == "--" {
            self.rest = "";
            return None;
        }
        self.rest = rest;
        Some(arg)
    }
}

/// The kernel's `isspace()` on ASCII. (Its Latin-1 table also counts 0xa0, which in UTF-8 is
/// only ever the middle of a character; we do not split characters.)
fn is_kernel_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_spaces(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_ascii() && is_kernel_space(c as u8))
}

/// Take one argument off the front of `s` (which starts with a non-space), as lib/cmdline.c's
/// `next_arg()` does; returns it and what follows, leading spaces skipped.
///
/// All the positions below are of ASCII bytes, so every slice falls on a character boundary;
/// `get` keeps it panic-free regardless.
fn next_arg(s: &str) -> (KernelArg<'_>, &str) {
    // An argument that opens with a quote: drop the quote and start inside the quotes.
    let quoted = s.starts_with('"');
    let body = if quoted { s.get(1..).unwrap_or("") } else { s };
    let bytes = body.as_bytes();

    let mut in_quote = quoted;
    let mut equals = None;
    let mut len = 0;
    while let Some(&b) = bytes.get(len) {
        if is_kernel_space(b) && !in_quote {
            break;
        }
        // The kernel records the first `=` at an index > 0: a leading `=` is part of the name.
        if equals.is_none() && b == b'=' && len > 0 {
            equals = Some(len);
        }
        if b == b'"' {
            in_quote = !in_quote;
        }
        len += 1;
    }
    let rest = skip_spaces(body.get(len..).unwrap_or(""));
    let ends_with_quote = len > 0 && bytes.get(len - 1) == Some(&b'"');

    // Where the argument ends once a closing quote is dropped. The kernel drops a final `"`
    // when the value opened with one, or when the whole argument did.
    let mut end = len;
    let arg = match equals {
        None => {
            if quoted && ends_with_quote {
                end -= 1;
            }
            KernelArg {
                name: body.get(..end).unwrap_or(""),
                value: None,
            }
        }
        Some(eq) => {
            let mut value_start = eq + 1;
            let value_quoted = bytes.get(value_start) == Some(&b'"');
            if value_quoted {
                value_start += 1;
            }
            if (value_quoted || quoted) && ends_with_quote {
                end -= 1;
            }
            // `a="` : the opening quote is also the closing one; the value is empty.
            let value = body.get(value_start..end.max(value_start)).unwrap_or("");
            KernelArg {
                name: body.get(..eq).unwrap_or(""),
                value: Some(value),
            }
        }
    };
    (arg, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn h128() -> String {
        H64.repeat(2)
    }

    fn d(hex: &str) -> Digest {
        Digest::from_hex(hex).unwrap()
    }

    /// Each documented form is one the parser reads: a selector (secure or not, as the `?`
    /// says), or the volatile state.
    #[test]
    fn documented_forms_parse() {
        for form in FORMS {
            let hex = if form.contains("sha512") {
                h128()
            } else {
                H64.to_owned()
            };
            let k = parse(&form.replace("<hex>", &hex));
            if form.starts_with("systemd.volatile=") {
                assert!(k.volatile_state, "{form}");
                continue;
            }
            assert!(k.rejected.is_empty(), "{form}: {:?}", k.rejected);
            assert_eq!(k.selectors.len(), 1, "{form}");
            assert_eq!(k.selectors[0].digest, d(&hex), "{form}");
            assert_eq!(k.selectors[0].insecure, form.contains('?'), "{form}");
        }
    }

    fn sel(hex: &str, insecure: bool, arg: &str) -> ImageSelector {
        ImageSelector {
            digest: d(hex),
            insecure,
            arg: arg.to_owned(),
        }
    }

    fn rejected(cmdline: &str) -> Vec<(String, KargError)> {
        let k = parse(cmdline);
        assert!(k.selectors.is_empty(), "{cmdline:?}: {:?}", k.selectors);
        k.rejected.into_iter().map(|r| (r.arg, r.reason)).collect()
    }

    fn reject_one(cmdline: &str) -> KargError {
        let mut r = rejected(cmdline);
        assert_eq!(r.len(), 1, "{cmdline:?}: {r:?}");
        r.remove(0).1
    }

    fn form(s: &str) -> KargError {
        KargError::Form(s.to_owned())
    }

    // ---- split ----

    #[test]
    fn split_on_whitespace() {
        assert_eq!(
            split("a b\tc\nd\re\x0bf\x0cg"),
            ["a", "b", "c", "d", "e", "f", "g"]
        );
        assert_eq!(
            split("  root=/dev/vda   ro  quiet\n"),
            ["root=/dev/vda", "ro", "quiet"]
        );
        assert!(split("").is_empty());
        assert!(split(" \t\n ").is_empty());
    }

    #[test]
    fn split_keeps_non_ascii_whole() {
        // U+00A0 is 0xc2 0xa0 in UTF-8; the kernel's Latin-1 isspace() would split at the 0xa0
        // byte, in the middle of the character. We keep characters whole.
        assert_eq!(split("a\u{a0}b é=ü"), ["a\u{a0}b", "é=ü"]);
    }

    #[test]
    fn split_quoted_value() {
        assert_eq!(split(r#"a="b c" d"#), ["a=b c", "d"]);
        assert_eq!(split(r#"a="b=c""#), ["a=b=c"]);
        assert_eq!(split(r#"a="""#), ["a="]);
        assert_eq!(split(r#"a="" b"#), ["a=", "b"]);
    }

    #[test]
    fn split_quoted_whole_argument() {
        assert_eq!(split(r#""a b" c"#), ["a b", "c"]);
        assert_eq!(split(r#""a=b c" d"#), ["a=b c", "d"]);
        // The value's opening quote closes the argument's: the space after `b` separates.
        assert_eq!(split(r#""a="b c"" d"#), ["a=b", r#"c"""#, "d"]);
        assert_eq!(split(r#""" x"#), ["", "x"]);
    }

    #[test]
    fn split_quotes_in_the_middle_group_but_stay() {
        // Only a quote opening the argument or the value is removed (with a closing quote at
        // the very end); others only protect spaces.
        assert_eq!(split(r#"a=b"c d"e f"#), [r#"a=b"c d"e"#, "f"]);
        assert_eq!(split(r#"a=b"c d" f"#), [r#"a=b"c d""#, "f"]);
        assert_eq!(split(r#"a"b c"=d e"#), [r#"a"b c"=d"#, "e"]);
        assert_eq!(split(r#"a="b"c d"#), [r#"a=b"c"#, "d"]);
        assert_eq!(split(r#""a"b c"#), [r#"a"b"#, "c"]);
    }

    #[test]
    fn split_unterminated_quote_runs_to_the_end() {
        assert_eq!(split(r#"x a="b c  d -- e"#), ["x", "a=b c  d -- e"]);
        assert_eq!(split(r#"x "a b"#), ["x", "a b"]);
        assert_eq!(split(r#"x a="#), ["x", "a="]);
        assert_eq!(split(r#"x ""#), ["x", ""]);
    }

    #[test]
    fn split_name_ends_at_first_equals_not_leading() {
        // The name/value split does not change the text, but only a quote right after the
        // first `=` past the first character opens a value whose quotes are removed.
        assert_eq!(split(r#"=a="b c""#), ["=a=b c"]);
        assert_eq!(split(r#"a=b="c d""#), [r#"a=b="c d""#]);
    }

    #[test]
    fn split_stops_at_lone_double_dash() {
        assert_eq!(split("a -- b c"), ["a"]);
        assert!(split("-- a").is_empty());
        assert_eq!(split("a \"--\" b"), ["a"]);
        assert_eq!(split("a --"), ["a"]);
        // Not a lone `--`: these are ordinary arguments.
        assert_eq!(
            split("a --x --=y \"-- \" b"),
            ["a", "--x", "--=y", "-- ", "b"]
        );
        // `--` inside quotes does not end anything.
        assert_eq!(split(r#"a="x -- y" b"#), ["a=x -- y", "b"]);
    }

    #[test]
    fn split_never_panics_and_always_progresses() {
        // Deterministic pseudo-random lines over the characters the splitter cares about.
        let alphabet = ['a', '=', '"', ' ', '\t', '-', '?', ':', 'é', '\u{a0}', '\n'];
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            let mut line = String::new();
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (x >> 16) % 24;
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                line.push(alphabet[(x >> 16) as usize % alphabet.len()]);
            }
            let args = split(&line);
            assert!(args.len() <= line.len(), "{line:?}");
            for arg in &args {
                assert!(arg.len() <= line.len(), "{line:?}");
            }
            let _ = parse(&line);
        }
    }

    // ---- parse: accepted forms ----

    #[test]
    fn parse_bare_hex_by_length() {
        let line = format!("ro composefs={H64} composefs={}", h128());
        let k = parse(&line);
        assert_eq!(
            k.selectors,
            [
                sel(H64, false, &format!("composefs={H64}")),
                sel(&h128(), false, &format!("composefs={}", h128())),
            ]
        );
        assert_eq!(k.selectors[0].digest.algorithm(), Algorithm::Sha256);
        assert_eq!(k.selectors[1].digest.algorithm(), Algorithm::Sha512);
        assert!(k.rejected.is_empty());
        assert!(!k.volatile_state);
    }

    #[test]
    fn parse_named_algorithm() {
        let k = parse(&format!(
            "composefs=sha256:{H64} composefs=sha512:{}",
            h128()
        ));
        assert_eq!(k.selectors.len(), 2);
        assert_eq!(k.selectors[0].digest, d(H64));
        assert_eq!(k.selectors[1].digest, d(&h128()));
        assert_eq!(k.selectors[0].arg, format!("composefs=sha256:{H64}"));
        assert!(k.rejected.is_empty());
    }

    #[test]
    fn parse_digest_form() {
        let k = parse(&format!(
            "composefs.digest=v1-sha256-12:{H64} composefs.digest=v2-sha512-12:{}",
            h128()
        ));
        assert_eq!(
            k.selectors,
            [
                sel(H64, false, &format!("composefs.digest=v1-sha256-12:{H64}")),
                sel(
                    &h128(),
                    false,
                    &format!("composefs.digest=v2-sha512-12:{}", h128())
                ),
            ]
        );
        assert!(k.rejected.is_empty());
    }

    #[test]
    fn parse_insecure_marker_on_every_form() {
        for (arg, hex) in [
            (format!("composefs=?{H64}"), H64.to_owned()),
            (format!("composefs=?{}", h128()), h128()),
            (format!("composefs=?sha256:{H64}"), H64.to_owned()),
            (format!("composefs=?sha512:{}", h128()), h128()),
            (
                format!("composefs.digest=?v1-sha256-12:{H64}"),
                H64.to_owned(),
            ),
            (format!("composefs.digest=?v2-sha512-12:{}", h128()), h128()),
        ] {
            let k = parse(&arg);
            assert_eq!(k.selectors, [sel(&hex, true, &arg)], "{arg}");
            assert!(k.rejected.is_empty());
        }
        // A `?` anywhere but right after `=` is no marker.
        assert!(matches!(
            reject_one(&format!("composefs=sha256:?{H64}")),
            KargError::Digest(DigestError::NotHex(_))
        ));
    }

    #[test]
    fn parse_upper_case_hex() {
        let upper = H64.to_uppercase();
        let k = parse(&format!(
            "composefs={upper} composefs=sha256:{upper} composefs.digest=v1-sha256-12:{upper}"
        ));
        assert_eq!(k.selectors.len(), 3);
        for s in &k.selectors {
            assert_eq!(s.digest, d(H64));
            assert!(s.arg.ends_with(&upper), "the arg is kept as written");
        }
    }

    #[test]
    fn parse_quoted_argument() {
        let k = parse(&format!(r#"composefs="{H64}" "composefs=?{H64}""#));
        assert_eq!(
            k.selectors,
            [
                sel(H64, false, &format!("composefs={H64}")),
                sel(H64, true, &format!("composefs=?{H64}")),
            ]
        );
    }

    #[test]
    fn parse_keeps_order_across_forms_and_repeats() {
        let other = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
        let line = format!(
            "quiet composefs={other} composefs=bad composefs.digest=?v1-sha256-12:{H64} \
             root=UUID=x composefs={other} composefs= composefs=sha512:{}",
            h128()
        );
        let k = parse(&line);
        let selected: Vec<_> = k.selectors.iter().map(|s| s.arg.as_str()).collect();
        assert_eq!(
            selected,
            [
                format!("composefs={other}"),
                format!("composefs.digest=?v1-sha256-12:{H64}"),
                format!("composefs={other}"),
                format!("composefs=sha512:{}", h128()),
            ]
        );
        assert_eq!(
            k.selectors.iter().map(|s| s.insecure).collect::<Vec<_>>(),
            [false, true, false, false]
        );
        let rejected: Vec<_> = k.rejected.iter().map(|r| r.arg.as_str()).collect();
        assert_eq!(rejected, ["composefs=bad", "composefs="]);
    }

    #[test]
    fn parse_ignores_everything_after_double_dash() {
        let k = parse(&format!(
            "composefs={H64} -- composefs={} systemd.volatile=state",
            h128()
        ));
        assert_eq!(k.selectors.len(), 1);
        assert_eq!(k.selectors[0].digest, d(H64));
        assert!(!k.volatile_state);
        assert_eq!(parse(&format!("-- composefs={H64}")), Kargs::default());
    }

    #[test]
    fn parse_ignores_arguments_that_are_not_ours() {
        let line = format!(
            "composefs.foo={H64} composefsx={H64} xcomposefs={H64} composefs_digest=v1-sha256-12:{H64} \
             COMPOSEFS={H64} composefs.digestx=v1-sha256-12:{H64} =composefs={H64} rd.composefs={H64}"
        );
        assert_eq!(parse(&line), Kargs::default());
        assert_eq!(parse(""), Kargs::default());
    }

    // ---- parse: rejected shapes ----

    #[test]
    fn reject_empty() {
        for line in [
            "composefs",
            "composefs=",
            "composefs=?",
            "composefs.digest",
            "composefs.digest=",
            "composefs.digest=?",
            r#"composefs="""#,
        ] {
            assert_eq!(reject_one(line), KargError::Empty, "{line}");
        }
        assert_eq!(
            rejected("composefs"),
            [("composefs".to_owned(), KargError::Empty)]
        );
    }

    #[test]
    fn reject_bad_lengths() {
        for len in [1, 32, 63, 65, 100, 127, 129, 192] {
            let hex = "a".repeat(len);
            assert_eq!(
                reject_one(&format!("composefs={hex}")),
                KargError::Digest(DigestError::BadLength { len }),
                "{len}"
            );
        }
        let len_err = |len| KargError::Digest(DigestError::BadLength { len });
        // A named algorithm must match the length.
        assert_eq!(
            reject_one(&format!("composefs=sha256:{}", h128())),
            len_err(128)
        );
        assert_eq!(reject_one(&format!("composefs=sha512:{H64}")), len_err(64));
        assert_eq!(reject_one("composefs=sha256:"), len_err(0));
        assert_eq!(
            reject_one(&format!("composefs.digest=v1-sha512-12:{H64}")),
            len_err(64)
        );
        assert_eq!(
            reject_one(&format!("composefs.digest=v1-sha256-12:{}", h128())),
            len_err(128)
        );
        assert_eq!(reject_one("composefs.digest=v1-sha256-12:"), len_err(0));
        assert_eq!(
            reject_one(&format!("composefs.digest=v1-sha256-12:{}", &H64[1..])),
            len_err(63)
        );
    }

    #[test]
    fn reject_non_hex() {
        let bad = format!("{}z", &H64[1..]);
        let not_hex = |s: &str| KargError::Digest(DigestError::NotHex(s.to_owned()));
        assert_eq!(reject_one(&format!("composefs={bad}")), not_hex(&bad));
        assert_eq!(
            reject_one(&format!("composefs=sha256:{bad}")),
            not_hex(&bad)
        );
        assert_eq!(
            reject_one(&format!("composefs.digest=v1-sha256-12:{bad}")),
            not_hex(&bad)
        );
        // `??`: the first `?` is the marker, the second is part of the digest.
        assert_eq!(
            reject_one(&format!("composefs=??{H64}")),
            not_hex(&format!("?{H64}"))
        );
        assert_eq!(
            reject_one(&format!("composefs.digest=v1-sha256-12:?{H64}")),
            not_hex(&format!("?{H64}"))
        );
        // Quotes in the middle are kept by the kernel, so they make the value non-hex.
        let quoted_mid = format!(r#"{}"a""#, &H64[..62]);
        assert_eq!(
            reject_one(&format!("composefs={quoted_mid}")),
            not_hex(&quoted_mid)
        );
    }

    #[test]
    fn reject_wrong_prefix() {
        for value in [
            format!("md5:{H64}"),
            format!("sha384:{H64}"),
            format!("SHA256:{H64}"),
            format!("sha256-12:{H64}"),
            format!(":{H64}"),
            format!("v1-sha256-12:{H64}"),
        ] {
            assert_eq!(
                reject_one(&format!("composefs={value}")),
                form(&value),
                "{value}"
            );
        }
        assert_eq!(
            reject_one(&format!("composefs=?md5:{H64}")),
            form(&format!("md5:{H64}"))
        );
    }

    #[test]
    fn reject_bad_digest_spec() {
        for value in [
            format!("v3-sha256-12:{H64}"),
            format!("v0-sha256-12:{H64}"),
            format!("V1-sha256-12:{H64}"),
            format!("v1-sha256-13:{H64}"),
            format!("v1-sha256-11:{H64}"),
            format!("v1-sha384-12:{H64}"),
            format!("v1-SHA256-12:{H64}"),
            format!("v1-sha256:{H64}"),
            format!("v1-sha256-12-x:{H64}"),
            format!("sha256:{H64}"),
            format!("v1--12:{H64}"),
            format!("-sha256-12:{H64}"),
            H64.to_owned(),
            format!("v1-sha256-12{H64}"),
        ] {
            assert_eq!(
                reject_one(&format!("composefs.digest={value}")),
                form(&value),
                "{value}"
            );
        }
    }

    #[test]
    fn rejected_reason_reads_well() {
        let k = parse("composefs=md5:00");
        assert_eq!(
            k.rejected[0].reason.to_string(),
            "unsupported form \"md5:00\": expected composefs=<hex>, composefs=sha256:<hex>, \
             composefs=sha512:<hex>, or composefs.digest=<v1|v2>-<sha256|sha512>-12:<hex>"
        );
        // The message names every form the parser accepts: each version and algorithm.
        let message = k.rejected[0].reason.to_string();
        for (algorithm, hex) in [("sha256", H64.to_string()), ("sha512", h128())] {
            assert!(
                message.contains(&format!("composefs={algorithm}:<hex>")),
                "{message}"
            );
            assert_eq!(
                parse(&format!("composefs={algorithm}:{hex}"))
                    .selectors
                    .len(),
                1
            );
            for version in ["v1", "v2"] {
                let karg = format!("composefs.digest={version}-{algorithm}-12:{hex}");
                assert_eq!(parse(&karg).selectors.len(), 1, "{karg}");
            }
        }
        assert!(message.contains("<v1|v2>-<sha256|sha512>-12"), "{message}");
        let k = parse("composefs=abc");
        assert_eq!(
            k.rejected[0].reason.to_string(),
            "bad digest: 3 hex characters; a sha256 digest has 64, a sha512 digest 128"
        );
        assert_eq!(
            parse("composefs=").rejected[0].reason.to_string(),
            "empty value"
        );
    }

    // ---- systemd.volatile ----

    #[test]
    fn volatile_state_last_occurrence_wins() {
        assert!(parse("systemd.volatile=state").volatile_state);
        assert!(parse("systemd.volatile=yes systemd.volatile=state").volatile_state);
        assert!(!parse("systemd.volatile=state systemd.volatile=yes").volatile_state);
        assert!(!parse("systemd.volatile=state systemd.volatile").volatile_state);
        assert!(!parse("systemd.volatile=overlay").volatile_state);
        assert!(!parse("systemd.volatile=State").volatile_state);
        assert!(parse(r#"systemd.volatile="state""#).volatile_state);
        assert!(!parse("systemd.volatilex=state").volatile_state);
        assert!(parse("systemd.volatile=state -- systemd.volatile=no").volatile_state);
        let k = parse(&format!("systemd.volatile=state composefs={H64}"));
        assert!(k.volatile_state);
        assert_eq!(k.selectors.len(), 1);
    }

    #[test]
    fn bytes_that_are_not_utf8_do_not_hide_our_arguments() {
        let hex = "ab".repeat(32);
        let mut line = b"quiet foo=\xff\xfe\x80 root=/dev/vda ".to_vec();
        line.extend_from_slice(format!("composefs={hex} bar=").as_bytes());
        line.extend_from_slice(b"\xc3(\n");
        let k = parse(&text_from_bytes(&line));
        assert_eq!(k.selectors.len(), 1);
        assert_eq!(k.selectors[0].digest.to_hex(), hex);
        // A lone 0xa0 separates arguments, as the kernel's isspace() says.
        let mut line = format!("composefs={hex}").into_bytes();
        line.push(0xa0);
        line.extend_from_slice(b"x=y");
        let k = parse(&text_from_bytes(&line));
        assert_eq!(k.selectors.len(), 1, "{k:?}");
        assert!(k.rejected.is_empty());
        // An invalid byte inside our own argument makes it malformed, never another digest.
        let mut line = format!("composefs={}", &hex[..63]).into_bytes();
        line.push(0xff);
        let k = parse(&text_from_bytes(&line));
        assert!(k.selectors.is_empty());
        assert_eq!(k.rejected.len(), 1);
    }
}
