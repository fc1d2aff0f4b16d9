//! The configuration file (`/usr/lib/composefs/setup-root-conf.toml`): keys, defaults, aliases.
//!
//! The file is shared with composefs-setup-root and bootc, which read it with the `toml` crate,
//! so it is read here with the same crate: `toml::de::DeTable` (the `toml` crate's table parser,
//! without serde) applies TOML's grammar and table rules, with spans for line numbers, so every
//! document the peers accept loads and every one they refuse is refused, with its line. Before
//! it, one pass over `toml_parser`'s events (the lexer and parser under `DeTable`) names the line
//! where a syntax error starts (an unterminated string's opening quote, not the end of the file)
//! and checks numbers as the peers' deserializer does. This module gives the known keys their
//! meaning: a known key with a value it does not accept is an error naming the line, the key and
//! what would do; an unknown key is a warning (at most [`MAX_WARNINGS`] of them are listed, then
//! their count), so a file written for a newer version or for a peer still boots.

use std::fmt;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};
use toml_parser::decoder::ScalarKind;
use toml_parser::parser::{EventKind, RecursionGuard, ValidateWhitespace};
use toml_parser::{ErrorSink, Expected, ParseError, Source};

/// The deepest nesting of arrays and inline tables, and the most parts a key may have (the
/// `toml` crate's limits: no input exhausts the stack).
pub const MAX_DEPTH: u32 = 80;

/// How /etc or /var is provided in the new root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    /// Leave the image's directory as it is (alias `root`).
    None,
    /// Bind-mount the deployment's directory.
    Bind,
    /// Overlay: image's directory below, the deployment's `upper`/`work` above.
    Overlay,
    /// Overlay with a tmpfs upper: changes vanish at reboot (alias `volatile`).
    Transient,
}

impl fmt::Display for MountMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MountMode::None => "none",
            MountMode::Bind => "bind",
            MountMode::Overlay => "overlay",
            MountMode::Transient => "transient",
        })
    }
}

/// The /etc mode: a fixed mode, or chosen from the deployment's state layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcMode {
    /// `etc/upper` + `etc/work` -> overlay; a populated `etc` -> bind; missing or empty -> overlay.
    Auto,
    /// A fixed mode.
    Fixed(MountMode),
}

impl fmt::Display for EtcMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcMode::Auto => f.write_str("auto"),
            EtcMode::Fixed(mode) => mode.fmt(f),
        }
    }
}

/// Whether the image digest is measured into the TPM (`[tpm] measure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmMeasure {
    /// Measure when the machine has a TPM; boot without one.
    Auto,
    /// Measure; refuse to boot when there is no TPM or the measurement fails.
    Required,
    /// Never measure.
    Off,
}

impl fmt::Display for TpmMeasure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TpmMeasure::Auto => "auto",
            TpmMeasure::Required => "required",
            TpmMeasure::Off => "off",
        })
    }
}

/// The default `[image] max-size`: 1 GiB, over 20 times the image of a large OS.
pub const DEFAULT_MAX_IMAGE_SIZE: u64 = 1 << 30;

/// The whole configuration, with defaults for every key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[root] transient` (false): a tmpfs-upper overlay over the composefs root.
    pub root_transient: bool,
    /// `[etc] mount` / `[etc] transient` (auto).
    pub etc: EtcMode,
    /// `[var] mount` / `[var] transient` (bind).
    pub var: MountMode,
    /// `[sysroot] readonly` (true): the physical root at `<new root>/sysroot` is read-only.
    pub sysroot_readonly: bool,
    /// `[image] check-digest` (true): in insecure mode, an image without kernel fs-verity has its
    /// digest computed in userspace and a mismatch is refused. Secure mode always checks.
    pub check_digest: bool,
    /// `[image] max-size` (1 GiB): the largest image accepted, in bytes. A composefs image
    /// holds metadata only (tens of MB for a large OS); a bigger one is refused rather than
    /// hashed for minutes in a silent boot.
    pub max_image_size: u64,
    /// `[tpm] measure` (auto): whether the image digest is measured into the TPM.
    pub tpm_measure: TpmMeasure,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root_transient: false,
            etc: EtcMode::Auto,
            var: MountMode::Bind,
            sysroot_readonly: true,
            check_digest: true,
            max_image_size: DEFAULT_MAX_IMAGE_SIZE,
            tpm_measure: TpmMeasure::Auto,
        }
    }
}

/// The configuration as a config file that sets every key: loading it gives the same
/// configuration, with no warning.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[root]\ntransient = {}", self.root_transient)?;
        writeln!(f, "[etc]\nmount = \"{}\"", self.etc)?;
        writeln!(f, "[var]\nmount = \"{}\"", self.var)?;
        writeln!(f, "[sysroot]\nreadonly = {}", self.sysroot_readonly)?;
        writeln!(
            f,
            "[image]\ncheck-digest = {}\nmax-size = {}",
            self.check_digest, self.max_image_size
        )?;
        writeln!(f, "[tpm]\nmeasure = \"{}\"", self.tpm_measure)
    }
}

/// A non-fatal remark about the file (unknown key), with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A config file error; every variant names the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not TOML (or TOML the peers refuse too).
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Known key, unknown value.
    #[error("line {line}: {key} = {value}: {expected}")]
    Value {
        /// 1-based line number.
        line: usize,
        /// The full dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// What would be accepted.
        expected: String,
    },
}

/// The most warnings listed; the rest are counted in one more.
pub const MAX_WARNINGS: usize = 10;

/// The sections this version knows (`[root]`, `[etc]`...). The man page
/// cfs-setup-root.conf(5) documents each one (`tests/manpages.rs` checks it).
pub const KNOWN_SECTIONS: &[&str] = &["root", "etc", "var", "sysroot", "image", "tpm"];

/// The full dotted names (`section.key`) of the keys this version knows. The man page
/// cfs-setup-root.conf(5) documents each one (`tests/manpages.rs` checks it).
pub const KNOWN_KEYS: &[&str] = &[
    "root.transient",
    "etc.mount",
    "etc.transient",
    "var.mount",
    "var.transient",
    "sysroot.readonly",
    "image.check-digest",
    "image.max-size",
    "tpm.measure",
];

/// Parse config text. Unknown keys become warnings; unknown values are errors.
pub fn parse(text: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    check_syntax(text)?;
    let root = DeTable::parse(text).map_err(|e| table_error(text, &e))?;
    interpret(text, root.get_ref())
}

/// Parse the bytes of a config file: as [`parse`], after checking they are UTF-8.
pub fn parse_bytes(bytes: &[u8]) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let valid = bytes.get(..error.valid_up_to()).unwrap_or_default();
        ConfigError::Syntax {
            line: 1 + valid.iter().filter(|&&byte| byte == b'\n').count(),
            message: format!("invalid UTF-8 at byte offset {}", error.valid_up_to()),
        }
    })?;
    parse(text)
}

/// Read and parse `path`; a missing file means defaults.
pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => parse_bytes(&bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok((Config::default(), Vec::new()))
        }
        Err(source) => Err(ConfigError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Syntax: the first error, at the line where its construct starts.

/// The 1-based line holding byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn syntax_error(text: &str, offset: usize, message: String) -> ConfigError {
    ConfigError::Syntax {
        line: line_of(text, offset),
        message,
    }
}

/// Keeps the first error the parser reports (errors are reported in the order of the text).
struct FirstError(Option<ParseError>);

impl ErrorSink for FirstError {
    fn report_error(&mut self, error: ParseError) {
        self.0.get_or_insert(error);
    }
}

/// A parser error as a line and a message: what is wrong, what was expected, what was found.
/// The line is where the offending construct starts (an unterminated string's opening quote,
/// a key without a value), else where the parser stopped.
fn parse_error(text: &str, error: &ParseError) -> ConfigError {
    let at = error.unexpected().or(error.context());
    let mut message = error.description().to_string();
    for (i, expected) in error.expected().unwrap_or_default().iter().enumerate() {
        message.push_str(if i == 0 { ", expected " } else { " or " });
        match expected {
            Expected::Literal("\n") => message.push_str("a newline"),
            Expected::Literal(s) => message.push_str(&format!("'{s}'")),
            Expected::Description(s) => message.push_str(s),
            _ => message.push_str("something else"),
        }
    }
    if let Some(found) = at.and_then(|span| text.get(span.start()..span.end())) {
        if !found.is_empty() {
            message.push_str(&format!(", found {:?}", shorten(found, 40)));
        } else if at.is_some_and(|span| span.start() >= text.len()) {
            message.push_str(", found the end of the file");
        }
    }
    let line_at = error.context().or(at).map_or(0, |span| span.start());
    syntax_error(text, line_at, message)
}

/// The grammar, escapes, key lengths and numbers: everything but the table rules, which
/// `DeTable` checks. Numbers as the peers' deserializer reads them: an integer from `i128::MIN`
/// to `u128::MAX`, a float that does not round to infinity unless written so.
fn check_syntax(text: &str) -> Result<(), ConfigError> {
    let source = Source::new(text);
    let tokens = source.lex().into_vec();
    let mut events = Vec::with_capacity(tokens.len());
    let mut first = FirstError(None);
    let mut validate = ValidateWhitespace::new(&mut events, source);
    let mut guard = RecursionGuard::new(&mut validate, MAX_DEPTH);
    toml_parser::parser::parse_document(&tokens, &mut guard, &mut first);
    if let Some(error) = first.0 {
        return Err(parse_error(text, &error));
    }
    let (mut parts, mut key_start) = (0, 0);
    for event in events {
        let Some(raw) = source.get(event) else {
            continue;
        };
        let mut decoded = String::new();
        let mut first = FirstError(None);
        let start = event.span().start();
        let out_of_range = |what: &str| {
            let message = format!("{what} {:?} is out of range", shorten(raw.as_str(), 40));
            Err(syntax_error(text, start, message))
        };
        match event.kind() {
            EventKind::SimpleKey => {
                if parts == 0 {
                    key_start = start;
                }
                parts += 1;
                if parts > MAX_DEPTH {
                    let message = format!("a key may have at most {MAX_DEPTH} parts");
                    return Err(syntax_error(text, key_start, message));
                }
                raw.decode_key(&mut decoded, &mut first);
            }
            EventKind::KeySep | EventKind::Whitespace => continue,
            EventKind::Scalar => match raw.decode_scalar(&mut decoded, &mut first) {
                ScalarKind::Float => {
                    let written_inf =
                        matches!(decoded.trim_start_matches(['+', '-']), "inf" | "nan");
                    if !written_inf && crate::json::overflows_f64(&decoded) {
                        return out_of_range("float");
                    }
                }
                ScalarKind::Integer(radix) if !integer_in_range(&decoded, radix.value()) => {
                    return out_of_range("integer");
                }
                _ => {}
            },
            _ => {}
        }
        if event.kind() != EventKind::SimpleKey {
            parts = 0;
        }
        if let Some(error) = first.0 {
            return Err(parse_error(text, &error));
        }
    }
    Ok(())
}

/// Whether decoded integer digits (a sign only in base 10) are from `i128::MIN` to
/// `u128::MAX`, the integers the peers' deserializer reads. (By hand: std's 128-bit
/// `from_str_radix` would add several KB to the binary.)
fn integer_in_range(digits: &str, radix: u32) -> bool {
    let (negative, digits) = match digits.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, digits.strip_prefix('+').unwrap_or(digits)),
    };
    let mut magnitude: u128 = 0;
    for c in digits.chars() {
        let next = c.to_digit(radix).and_then(|d| {
            magnitude
                .checked_mul(u128::from(radix))?
                .checked_add(u128::from(d))
        });
        match next {
            Some(n) => magnitude = n,
            None => return false,
        }
    }
    !digits.is_empty() && (!negative || magnitude <= 1 << 127)
}

/// The first line of `text`, at most `max` bytes (cut at a character boundary), with `...`
/// when anything was left out.
fn shorten(text: &str, max: usize) -> String {
    let mut end = text.find('\n').unwrap_or(text.len()).min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let more = if end < text.len() { "..." } else { "" };
    format!("{}{more}", &text[..end])
}

// ---------------------------------------------------------------------------------------------
// Table rules: `DeTable` names the key that breaks one; say which key and where it was first.

type Table<'t> = DeTable<'t>;
type Entry<'e, 't> = (
    &'e Spanned<std::borrow::Cow<'t, str>>,
    &'e Spanned<DeValue<'t>>,
);

/// `DeTable`'s error, with the full key and where it was first defined when it is a duplicate.
fn table_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let span = error.span().unwrap_or(0..0);
    let start = span.start.min(text.len());
    let mut message = error.message().to_string();
    if message == "duplicate key" {
        message = duplicate(text, span).unwrap_or(message);
    }
    syntax_error(text, start, message)
}

/// "duplicate key etc.mount: already defined on line 2 (as a string)", from the text: the
/// statement holding the key at `span`, the `[header]` above it, and the document before it.
fn duplicate(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let line_start = text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
    let statement = text.get(line_start..span.end)?;
    let header = statement.trim_start().starts_with('[');
    let mut path = if header {
        Vec::new()
    } else {
        // The `[header]` in effect: the last line above that parses as one.
        text[..line_start]
            .lines()
            .rev()
            .filter(|l| l.trim_start().starts_with('['))
            .find_map(|l| {
                let l = l.trim_start().trim_start_matches('[');
                key_path(&l[..l.find(']')?])
            })
            .unwrap_or_default()
    };
    path.extend(key_path(statement.trim_start().trim_start_matches('['))?);
    let before = DeTable::parse_recoverable(&text[..line_start]).0;
    let (old_key, old) = lookup(before.get_ref(), &path)?;
    let shown = display_key(path.iter().map(String::as_str));
    let shown = if header {
        format!("table [{shown}]")
    } else {
        format!("key {shown}")
    };
    Some(format!(
        "duplicate {shown}: already defined on line {} (as {})",
        line_of(text, old_key.span().start),
        kind(text, old_key, old)
    ))
}

/// The parts of a dotted key written as `written`, decoded.
fn key_path(written: &str) -> Option<Vec<String>> {
    let statement = format!("{written} = 0");
    let mut table = DeTable::parse(&statement).ok()?.into_inner();
    let mut path = Vec::new();
    loop {
        let (key, value) = table.into_iter().next()?;
        path.push(key.into_inner().into_owned());
        match value.into_inner() {
            DeValue::Table(inner) => table = inner,
            _ => return Some(path),
        }
    }
}

/// The entry at `path` (through the last table of an array of tables).
fn lookup<'e, 't>(mut table: &'e Table<'t>, path: &[String]) -> Option<Entry<'e, 't>> {
    let (last, parents) = path.split_last()?;
    for part in parents {
        table = match table.get(part.as_str())?.get_ref() {
            DeValue::Table(t) => t,
            DeValue::Array(a) => match a.iter().last()?.get_ref() {
                DeValue::Table(t) => t,
                _ => return None,
            },
            _ => return None,
        };
    }
    table.get_key_value(last.as_str())
}

/// How an entry was written: the value of `key = value`, or a table (a `[header]`'s span
/// starts before its key, an implicit table's is its key) or an array of tables.
#[derive(Clone, Copy, PartialEq)]
enum Written {
    Value,
    Header,
    Implicit,
    ArrayOfTables,
}

fn written(key: &Spanned<std::borrow::Cow<'_, str>>, value: &Spanned<DeValue<'_>>) -> Written {
    let (k, v) = (key.span(), value.span());
    match value.get_ref() {
        DeValue::Table(_) if v.start < k.start => Written::Header,
        DeValue::Table(_) if v == k => Written::Implicit,
        DeValue::Array(_) if v.start < k.start => Written::ArrayOfTables,
        _ => Written::Value,
    }
}

/// What an entry is, for messages.
fn kind(
    text: &str,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
) -> &'static str {
    match (written(key, value), value.get_ref()) {
        (Written::Header, _) => "a table",
        (Written::Implicit, _) => "a table made by dotted keys",
        (Written::ArrayOfTables, _) => "an array of tables",
        (_, DeValue::Table(_))
            if text
                .get(value.span().start..)
                .is_some_and(|t| t.starts_with('{')) =>
        {
            "an inline table"
        }
        (_, DeValue::Table(_)) => "a table",
        (_, DeValue::String(_)) => "a string",
        (_, DeValue::Integer(_)) => "an integer",
        (_, DeValue::Float(_)) => "a float",
        (_, DeValue::Boolean(_)) => "a boolean",
        (_, DeValue::Datetime(_)) => "a date-time",
        (_, DeValue::Array(_)) => "an array",
    }
}

// ---------------------------------------------------------------------------------------------
// Meaning.

/// One known key's entry, for its value and messages.
struct Item<'e, 't> {
    text: &'e str,
    key: [&'e str; 2],
    entry: Entry<'e, 't>,
}

impl Item<'_, '_> {
    fn line(&self) -> usize {
        line_of(self.text, self.offset())
    }

    /// Where its key starts (lines are counted only for what is reported).
    fn offset(&self) -> usize {
        self.entry.0.span().start
    }

    fn value(&self) -> &DeValue<'_> {
        self.entry.1.get_ref()
    }
}

fn interpret(text: &str, root: &Table<'_>) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let mut config = Config::default();
    let mut remarks: Vec<(usize, String)> = Vec::new();
    let mut etc_mount = None;
    let mut var_mount = None;
    // Where a `transient = true` shorthand is, if any.
    let mut etc_transient = None;
    let mut var_transient = None;

    for section in root.iter() {
        let name = section.0.get_ref().as_ref();
        if !KNOWN_SECTIONS.contains(&name) {
            unknown(vec![name.to_string()], section, &mut remarks);
            continue;
        }
        let table = section_table(text, name, section)?;
        for entry in table.iter() {
            let item = Item {
                text,
                key: [name, entry.0.get_ref().as_ref()],
                entry,
            };
            match item.key {
                ["root", "transient"] => config.root_transient = boolean(&item)?,
                ["etc", "mount"] => etc_mount = Some(etc_mode(&item)?),
                ["etc", "transient"] => {
                    if boolean(&item)? {
                        etc_transient = Some(item.offset());
                    }
                }
                ["var", "mount"] => var_mount = Some(var_mode(&item)?),
                ["var", "transient"] => {
                    if boolean(&item)? {
                        var_transient = Some(item.offset());
                    }
                }
                ["sysroot", "readonly"] => config.sysroot_readonly = boolean(&item)?,
                ["image", "check-digest"] => config.check_digest = boolean(&item)?,
                ["image", "max-size"] => config.max_image_size = size(&item)?,
                ["tpm", "measure"] => config.tpm_measure = tpm_measure(&item)?,
                key => unknown(key.map(str::to_string).to_vec(), entry, &mut remarks),
            }
        }
    }

    config.etc = match (etc_mount, etc_transient) {
        (Some(mode), None) => mode,
        (Some(mode), Some(offset)) => {
            remarks.push((
                offset,
                "etc.transient = true ignored: etc.mount is set".to_string(),
            ));
            mode
        }
        (None, Some(_)) => EtcMode::Fixed(MountMode::Transient),
        (None, None) => config.etc,
    };
    config.var = match (var_mount, var_transient) {
        (Some(mode), None) => mode,
        (Some(mode), Some(offset)) => {
            remarks.push((
                offset,
                "var.transient = true ignored: var.mount is set".to_string(),
            ));
            mode
        }
        (None, Some(_)) => MountMode::Transient,
        (None, None) => config.var,
    };

    // The first ones in the order of the text (the table keeps keys sorted by name): a partial
    // selection sort, as only they need ordering (and a full sort costs the binary KBs).
    for k in 0..remarks.len().min(MAX_WARNINGS + 1) {
        let first = (k..remarks.len())
            .min_by_key(|&i| remarks[i].0)
            .unwrap_or(k);
        remarks.swap(k, first);
    }
    let mut warnings: Vec<ConfigWarning> = remarks
        .iter()
        .take(MAX_WARNINGS)
        .map(|(offset, message)| ConfigWarning {
            line: line_of(text, *offset),
            message: message.clone(),
        })
        .collect();
    if let Some((offset, _)) = remarks.get(MAX_WARNINGS) {
        warnings.push(ConfigWarning {
            line: line_of(text, *offset),
            message: format!(
                "and {} more unknown keys, from this line on (not listed)",
                remarks.len() - MAX_WARNINGS
            ),
        });
    }
    Ok((config, warnings))
}

/// Records what is unknown under `entry`: a value or inline table as one key, a `[section]`
/// once, tables made by dotted keys (or only named in a header) by what they hold.
fn unknown(path: Vec<String>, entry: Entry<'_, '_>, remarks: &mut Vec<(usize, String)>) {
    let name = display_key(path.iter().map(String::as_str));
    let message = match (written(entry.0, entry.1), entry.1.get_ref()) {
        (Written::Header, _) => format!("unknown section [{name}], its keys are ignored"),
        (Written::ArrayOfTables, _) => {
            format!("unknown array of tables [[{name}]], its keys are ignored")
        }
        (Written::Implicit, DeValue::Table(table)) => {
            for child in table.iter() {
                let mut deeper = path.clone();
                deeper.push(child.0.get_ref().to_string());
                unknown(deeper, child, remarks);
            }
            return;
        }
        _ => {
            let lower = name.to_ascii_lowercase();
            let hint = if KNOWN_KEYS.contains(&lower.as_str()) {
                format!(" (keys are case-sensitive: did you mean {lower}?)")
            } else {
                String::new()
            };
            format!("unknown key {name} ignored{hint}")
        }
    };
    remarks.push((entry.0.span().start, message));
}

/// A known section must be a table: a `[section]`, dotted keys, or an inline table.
fn section_table<'e, 't>(
    text: &str,
    name: &str,
    section: Entry<'e, 't>,
) -> Result<&'e Table<'t>, ConfigError> {
    if let DeValue::Table(table) = section.1.get_ref() {
        return Ok(table);
    }
    let example = KNOWN_KEYS
        .iter()
        .find_map(|k| k.strip_prefix(name)?.strip_prefix('.'))
        .unwrap_or("key");
    let item = Item {
        text,
        key: [name, ""],
        entry: section,
    };
    Err(value_error(
        &item,
        format!(
            "expected a table: a [{name}] section, dotted keys such as {name}.{example} = ..., \
             or an inline table"
        ),
    ))
}

fn value_error(item: &Item<'_, '_>, expected: String) -> ConfigError {
    let parts = item.key.iter().copied().filter(|k| !k.is_empty());
    let key = display_key(parts);
    let value = match written(item.entry.0, item.entry.1) {
        Written::ArrayOfTables => format!("[[{key}]]"),
        Written::Header | Written::Implicit => format!("[{key}]"),
        // The value as written, kept to one readable line.
        Written::Value => shorten(item.text.get(item.entry.1.span()).unwrap_or(""), 64),
    };
    ConfigError::Value {
        line: item.line(),
        key,
        value,
        expected,
    }
}

fn boolean(item: &Item<'_, '_>) -> Result<bool, ConfigError> {
    let hint = match item.value() {
        DeValue::Boolean(value) => return Ok(*value),
        DeValue::String(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
            " (without quotes, in lower case)"
        }
        _ => "",
    };
    Err(value_error(item, format!("expected true or false{hint}")))
}

fn size(item: &Item<'_, '_>) -> Result<u64, ConfigError> {
    if let DeValue::Integer(n) = item.value() {
        if let Ok(n @ 1..) = u64::from_str_radix(n.as_str(), n.radix()) {
            return Ok(n);
        }
    }
    Err(value_error(
        item,
        format!(
            "expected a positive integer number of bytes, at most {} (default {DEFAULT_MAX_IMAGE_SIZE}, 1 GiB)",
            u64::MAX
        ),
    ))
}

fn tpm_measure(item: &Item<'_, '_>) -> Result<TpmMeasure, ConfigError> {
    let accept = |word: &str| match word {
        "auto" => Some(TpmMeasure::Auto),
        "required" => Some(TpmMeasure::Required),
        "off" => Some(TpmMeasure::Off),
        _ => None,
    };
    word_value(item, accept, |_| None).map_err(|hint| {
        value_error(
            item,
            format!(r#"expected one of "auto", "required", "off"{hint}"#),
        )
    })
}

/// A `mount` value other than `auto`, aliases included.
fn mount_mode(word: &str) -> Option<MountMode> {
    match word {
        "none" | "root" => Some(MountMode::None),
        "bind" => Some(MountMode::Bind),
        "overlay" => Some(MountMode::Overlay),
        "transient" | "volatile" => Some(MountMode::Transient),
        _ => None,
    }
}

fn etc_word(word: &str) -> Option<EtcMode> {
    if word == "auto" {
        Some(EtcMode::Auto)
    } else {
        mount_mode(word).map(EtcMode::Fixed)
    }
}

const ALIASES: &str = r#"(aliases: "root" = "none", "volatile" = "transient")"#;

fn etc_mode(item: &Item<'_, '_>) -> Result<EtcMode, ConfigError> {
    word_value(item, etc_word, |_| None).map_err(|hint| {
        value_error(
            item,
            format!(
                r#"expected one of "auto", "none", "bind", "overlay", "transient" {ALIASES}{hint}"#
            ),
        )
    })
}

fn var_mode(item: &Item<'_, '_>) -> Result<MountMode, ConfigError> {
    let auto_hint = |word: &str| {
        (word == "auto").then(|| r#"; "auto" is accepted only for etc.mount"#.to_string())
    };
    word_value(item, mount_mode, auto_hint).map_err(|hint| {
        value_error(
            item,
            format!(r#"expected one of "none", "bind", "overlay", "transient" {ALIASES}{hint}"#),
        )
    })
}

/// Reads a string value with `accept`; on failure returns a hint for the message (possibly
/// empty).
fn word_value<T>(
    item: &Item<'_, '_>,
    accept: impl Fn(&str) -> Option<T>,
    special_hint: impl Fn(&str) -> Option<String>,
) -> Result<T, String> {
    let DeValue::String(word) = item.value() else {
        return Err(String::new());
    };
    if let Some(value) = accept(word) {
        return Ok(value);
    }
    if let Some(hint) = special_hint(word) {
        return Err(hint);
    }
    let guess = word.trim().to_ascii_lowercase();
    if accept(&guess).is_some() {
        return Err(format!(
            r#"; did you mean "{guess}"? (values are case-sensitive, without spaces)"#
        ));
    }
    Err(String::new())
}

/// A dotted key for messages: bare parts as they are, others quoted (control characters as
/// Rust writes them, `\u{1}`).
pub fn display_key<'k>(parts: impl IntoIterator<Item = &'k str>) -> String {
    let mut out = String::new();
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        let bare = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if bare {
            out.push_str(part);
        } else {
            // Rust's quoting escapes quotes, backslashes and control characters.
            out.push_str(&format!("{part:?}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (Config, Vec<ConfigWarning>) {
        match parse(text) {
            Ok(result) => result,
            Err(error) => panic!("{text:?} should parse, got: {error}"),
        }
    }

    /// Parses with no warnings.
    fn clean(text: &str) -> Config {
        let (config, warnings) = ok(text);
        assert!(
            warnings.is_empty(),
            "{text:?}: unexpected warnings {warnings:?}"
        );
        config
    }

    /// The line and message of a syntax error.
    fn syntax(text: &str) -> (usize, String) {
        match parse(text) {
            Err(ConfigError::Syntax { line, message }) => (line, message),
            other => panic!("{text:?} should be a syntax error, got {other:?}"),
        }
    }

    /// line, key, value, expected of a value error.
    fn value_err(text: &str) -> (usize, String, String, String) {
        match parse(text) {
            Err(ConfigError::Value {
                line,
                key,
                value,
                expected,
            }) => (line, key, value, expected),
            other => panic!("{text:?} should be a value error, got {other:?}"),
        }
    }

    fn with_etc(mode: EtcMode) -> Config {
        Config {
            etc: mode,
            ..Config::default()
        }
    }

    fn with_var(mode: MountMode) -> Config {
        Config {
            var: mode,
            ..Config::default()
        }
    }

    // --- defaults and the whole file -----------------------------------------------------------

    #[test]
    fn empty_text_gives_defaults() {
        let config = clean("");
        assert_eq!(config, Config::default());
        assert!(!config.root_transient);
        assert_eq!(config.etc, EtcMode::Auto);
        assert_eq!(config.var, MountMode::Bind);
        assert!(config.sysroot_readonly);
        assert!(config.check_digest);
        assert_eq!(config.max_image_size, 1024 * 1024 * 1024);
        assert_eq!(config.tpm_measure, TpmMeasure::Auto);
    }

    #[test]
    fn blank_lines_and_comments_only() {
        let text = "\n   \n\t\n# a comment\n   # indented comment\n#\n";
        assert_eq!(clean(text), Config::default());
    }

    #[test]
    fn every_key_in_sections() {
        let text = r#"
# Full configuration.
[root]
transient = true

[etc]
mount = "overlay"

[var]
mount = "none"

[sysroot]
readonly = false

[image]
check-digest = false
max-size = 1_048_576

[tpm]
measure = "required"
"#;
        assert_eq!(
            clean(text),
            Config {
                root_transient: true,
                etc: EtcMode::Fixed(MountMode::Overlay),
                var: MountMode::None,
                sysroot_readonly: false,
                check_digest: false,
                max_image_size: 1 << 20,
                tpm_measure: TpmMeasure::Required,
            }
        );
    }

    #[test]
    fn every_key_dotted_at_top_level() {
        let text = "root.transient = true\netc.mount = \"bind\"\nvar.mount = \"overlay\"\n\
                    sysroot.readonly = false\nimage.check-digest = false\nimage.max-size = 0x1000\n\
                    tpm.measure = 'off'\n";
        let want = Config {
            root_transient: true,
            etc: EtcMode::Fixed(MountMode::Bind),
            var: MountMode::Overlay,
            sysroot_readonly: false,
            check_digest: false,
            max_image_size: 4096,
            tpm_measure: TpmMeasure::Off,
        };
        assert_eq!(clean(text), want);
        // The peers read the same keys as inline tables.
        let inline = "root = { transient = true }\netc = { mount = \"bind\" }\n\
                      var = { mount = \"overlay\" }\nsysroot = { readonly = false }\n\
                      image = { check-digest = false, max-size = 4096 }\ntpm = { measure = 'off' }\n";
        assert_eq!(clean(inline), want);
    }

    #[test]
    fn the_normalized_form_loads_as_the_same_config() {
        let configs = [
            Config::default(),
            clean(
                "root.transient = true\netc.mount = 'volatile'\nvar.mount = 'root'\n\
                   sysroot.readonly = false\nimage.check-digest = false\nimage.max-size = 1\n\
                   tpm.measure = 'required'",
            ),
            clean(
                "etc.transient = true\nvar.transient = true\nimage.max-size = 18446744073709551615",
            ),
        ];
        for config in configs {
            let text = config.to_string();
            assert_eq!(clean(&text), config, "{text}");
        }
    }

    #[test]
    fn defaults_written_out_change_nothing() {
        let text = "[root]\ntransient = false\n[etc]\nmount = \"auto\"\n[var]\nmount = \"bind\"\n\
                    [sysroot]\nreadonly = true\n[image]\ncheck-digest = true\n\
                    max-size = 1_073_741_824\n[tpm]\nmeasure = 'auto'\n";
        assert_eq!(clean(text), Config::default());
    }

    #[test]
    fn last_file_without_trailing_newline() {
        assert!(clean("[root]\ntransient = true").root_transient);
    }

    // --- grammar ----------------------------------------------------------------------------------

    #[test]
    fn whitespace_everywhere_it_is_allowed() {
        let text = "  [ etc ]  \n\t mount\t=\t\"bind\"\t\n[\tvar\t]\nmount=\"overlay\"\n";
        let config = clean(text);
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Bind));
        assert_eq!(config.var, MountMode::Overlay);
    }

    #[test]
    fn spaces_around_dots_in_keys() {
        assert_eq!(
            clean("etc . mount = \"bind\"").etc,
            EtcMode::Fixed(MountMode::Bind)
        );
        assert!(!clean("[ image ]\n\"check-digest\" = false").check_digest);
    }

    #[test]
    fn quoted_key_parts() {
        assert_eq!(
            clean("\"etc\".\"mount\" = \"bind\"").etc,
            EtcMode::Fixed(MountMode::Bind)
        );
        assert_eq!(clean("'var'.mount = 'none'").var, MountMode::None);
        assert!(!clean("image.'check-digest' = false").check_digest);
        assert!(!clean("[\"sysroot\"]\n'readonly' = false").sysroot_readonly);
        // An escape in a key resolves like in a value.
        assert!(clean("[root]\n\"transie\\u006Et\" = true").root_transient);
    }

    #[test]
    fn dotted_key_inside_a_section_is_relative_to_it() {
        // Inside [root], `etc.mount` means root.etc.mount: unknown, not etc.mount.
        let (config, warnings) = ok("[root]\netc.mount = \"bind\"\n");
        assert_eq!(config, Config::default());
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 2);
        assert!(
            warnings[0].message.contains("root.etc.mount"),
            "{warnings:?}"
        );
    }

    #[test]
    fn trailing_comments() {
        let text = "[etc] # the etc section\nmount = \"bind\" # bind it\n\
                    [root]\ntransient = true# no space needed\n";
        let config = clean(text);
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Bind));
        assert!(config.root_transient);
    }

    #[test]
    fn hash_inside_strings_is_not_a_comment() {
        let (_, warnings) = ok("x = \"a # b\" # comment\ny = 'c # d'\n");
        assert_eq!(warnings.len(), 2);
        let (line, message) = syntax("etc.mount = \"bind # oops\n");
        assert_eq!(line, 1);
        assert!(message.contains("invalid basic string"), "{message}");
    }

    #[test]
    fn literal_strings() {
        assert_eq!(
            clean("etc.mount = 'transient'").etc,
            EtcMode::Fixed(MountMode::Transient)
        );
        // No escapes in literal strings: the backslash is kept, and the value is wrong.
        let (_, _, value, _) = value_err(r"etc.mount = 'bin\d'");
        assert_eq!(value, r"'bin\d'");
        // Empty strings.
        value_err("etc.mount = ''");
        value_err("etc.mount = \"\"");
    }

    #[test]
    fn basic_string_escapes() {
        assert_eq!(
            clean(r#"etc.mount = "b\u0069nd""#).etc,
            EtcMode::Fixed(MountMode::Bind)
        );
        assert_eq!(
            clean(r#"etc.mount = "b\x69n\U00000064""#).etc,
            EtcMode::Fixed(MountMode::Bind)
        );
        // TOML's escapes, with TOML 1.1's \e and \xHH (the peers' parser reads 1.1).
        let cases = [
            (r#"x = "\"""#, true),
            (r#"x = "\\""#, true),
            (r#"x = "a\nb\tc""#, true),
            (r#"x = "\u00e9\uFFFD""#, true),
            (r#"x = "\x41""#, true),
            (r#"x = "\r""#, true),
            (r#"x = "\b\f\e""#, true),
            (r#"x = "\U0001F600""#, true),
            (r#"x = "\u12""#, false),
            (r#"x = "\u12G4""#, false),
            (r#"x = "\uD800""#, false),
            (r#"x = "\U00110000""#, false),
            (r#"x = "\x4""#, false),
            (r#"x = "\"#, false),
            ("x = \"\\", false),
        ];
        for (text, valid) in cases {
            assert_eq!(parse(text).is_ok(), valid, "{text}");
        }
        let (_, message) = syntax(r#"x = "\q""#);
        assert!(message.contains("escape"), "{message}");
        let (_, message) = syntax(r#"x = "\uDFFF""#);
        assert!(message.contains("unicode"), "{message}");
    }

    #[test]
    fn escaped_quote_does_not_end_the_string() {
        let (_, _, value, _) = value_err(r#"etc.mount = "a\"b" # c"#);
        assert_eq!(value, r#""a\"b""#);
    }

    #[test]
    fn byte_order_mark_is_allowed_at_the_start_only() {
        assert!(clean("\u{feff}[root]\ntransient = true\n").root_transient);
        assert!(clean("\u{feff}").eq(&Config::default()));
        let (line, message) = syntax("[root]\n\u{feff}transient = true\n");
        assert_eq!(line, 2);
        assert!(message.contains("feff"), "{message}");
    }

    #[test]
    fn crlf_line_ends() {
        let text = "# comment\r\n[etc]\r\nmount = \"bind\" # c\r\n\r\n[var]\r\nmount = 'none'\r\n";
        let config = clean(text);
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Bind));
        assert_eq!(config.var, MountMode::None);
        // Line numbers still count CRLF lines.
        let (line, _) = syntax("\r\n\r\n[etc\r\n");
        assert_eq!(line, 3);
    }

    #[test]
    fn lone_carriage_return_is_an_error() {
        let (line, message) = syntax("[root]\rtransient = true\n");
        assert_eq!(line, 1);
        assert!(message.contains("carriage return"), "{message}");
        assert_eq!(syntax("a = 1\n# comment\r").0, 2);
        assert_eq!(syntax("\n\r").0, 2);
        assert_eq!(syntax("x = \"a\rb\"").0, 1);
    }

    #[test]
    fn control_characters_are_errors() {
        for text in [
            "x = \"a\u{0}b\"",
            "x = 'a\u{1}b'",
            "# comment \u{7f}",
            "x = 1 # \u{0}",
            "\u{0}",
            "x\u{0} = 1",
        ] {
            syntax(text);
        }
        // Tabs are fine in strings and comments.
        ok("x = \"a\tb\" # c\td");
    }

    #[test]
    fn bare_keys_accept_toml_characters_only() {
        ok("a-b_C9 = 1\n-- = 2\n_ = 3\n1234 = 4\ntrue = 5\n");
        let (line, message) = syntax("\n\u{e9}t\u{e9} = 1");
        assert_eq!(line, 2);
        assert!(message.contains("invalid unquoted key"), "{message}");
        syntax("a.b$ = 1");
        syntax("a b = 1");
        syntax("a. = 1");
        syntax(".a = 1");
        syntax("a..b = 1");
    }

    #[test]
    fn empty_quoted_key_is_valid() {
        let (_, warnings) = ok("\"\" = 1\n[etc]\n'' = 2\n");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings[0].message, "unknown key \"\" ignored");
        assert_eq!(warnings[1].message, "unknown key etc.\"\" ignored");
    }

    // --- syntax errors ----------------------------------------------------------------------------

    #[test]
    fn syntax_errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("[etc\nmount = \"bind\"", 1, "']'"),
            ("\n\n[]", 3, "keys cannot be empty"),
            ("[etc] x", 1, "'#'"),
            ("[etc]\nmount \"bind\"", 2, "'='"),
            ("[etc]\nmount", 2, "'='"),
            ("[etc]\nmount =", 2, "end of the file"),
            ("[etc]\nmount = # none", 2, "quoted"),
            ("[etc]\nmount =\n\"bind\"", 3, "'='"),
            ("[etc]\nmount = \"bind\" \"overlay\"", 2, "'#'"),
            ("[etc]\nmount = \"bind", 2, "end of the file"),
            ("[etc]\nmount = 'bind", 2, "end of the file"),
            ("= 1", 1, "keys cannot be empty"),
            ("[root]\ntransient = @", 2, "\"@\""),
            ("x = true false", 1, "\"true false\""),
            ("x = 1 2", 1, "\"1 2\""),
            ("[root]\ntransient = True", 2, "'true'"),
            ("[etc]\nmount = bind", 2, "must be quoted"),
        ];
        for (text, line, needle) in cases {
            let (got_line, message) = syntax(text);
            assert_eq!(got_line, *line, "{text:?}: {message}");
            assert!(message.contains(needle), "{text:?}: {message}");
        }
    }

    #[test]
    fn arrays_of_tables() {
        // Unknown ones are one warning each, whatever they hold.
        let (config, warnings) = ok("[[x]]\na = 1\n[[x]]\n[x.y]\nb = 2\n[etc]\nmount = 'bind'\n");
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Bind));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].line, 1);
        assert!(warnings[0].message.contains("[[x]]"), "{warnings:?}");
        // A known section cannot be one.
        let (line, key, value, expected) = value_err("[root]\n[[image]]\n");
        assert_eq!(
            (line, key.as_str(), value.as_str()),
            (2, "image", "[[image]]")
        );
        assert!(expected.contains("[image] section"), "{expected}");
        // Table rules: an array of tables is not a table, nor a table one.
        assert_eq!(syntax("[[x]]\n[x]").0, 2);
        assert_eq!(syntax("[x]\n[[x]]").0, 2);
        assert_eq!(syntax("x = [{}]\n[[x]]").0, 2);
    }

    #[test]
    fn duplicate_key_is_a_syntax_error() {
        let (line, message) = syntax("[etc]\nmount = \"bind\"\n\nmount = \"bind\"\n");
        assert_eq!(line, 4);
        assert!(message.contains("duplicate key etc.mount"), "{message}");
        assert!(message.contains("line 2"), "{message}");
        // Inside inline tables and arrays too.
        assert_eq!(syntax("x = { a = 1, a = 2 }").0, 1);
        assert_eq!(syntax("x = [\n{ a = 1 },\n{ b.c = 1, b = 2 }]").0, 3);
        // Different spellings of the same key.
        assert_eq!(syntax("[etc]\nmount = 'a'\n\"mount\" = 'b'").0, 3);
        assert_eq!(syntax("etc.mount = 'a'\n'etc' . \"mount\" = 'b'").0, 2);
        // Unknown keys too.
        assert_eq!(syntax("x = 1\nx = 2").0, 2);
        assert_eq!(syntax("[foo]\nx = 1\nx = 2").0, 3);
        // Booleans set twice, even to the same value.
        assert_eq!(syntax("root.transient = true\nroot.transient = true").0, 2);
    }

    #[test]
    fn duplicate_key_message_names_the_full_key_and_its_first_line() {
        let (line, message) = syntax("[etc] # the etc section\nmount = 'a'\nmount = 'b'\n");
        assert_eq!(line, 3);
        assert!(
            message.contains("duplicate key etc.mount: already defined on line 2 (as a string)"),
            "{message}"
        );
        let (line, message) = syntax("[[x]]\n[x.y]\na = 1\n[x.y]\n");
        assert_eq!(line, 4);
        assert!(message.contains("duplicate table [x.y]"), "{message}");
    }

    #[test]
    fn duplicate_section_is_a_syntax_error() {
        let (line, message) = syntax("[etc]\nmount = 'bind'\n[var]\n[etc]\n");
        assert_eq!(line, 4);
        assert!(message.contains("[etc]"), "{message}");
        assert_eq!(syntax("[ etc ]\n['etc']").0, 2);
    }

    #[test]
    fn tables_and_values_do_not_overlap() {
        // A value cannot become a table, nor a table a value.
        assert_eq!(syntax("etc = 'x'\netc.mount = 'bind'").0, 2);
        assert_eq!(syntax("etc.mount = 'bind'\netc = 'x'").0, 2);
        assert_eq!(syntax("etc.mount = 'bind'\netc.mount.x = 1").0, 2);
        assert_eq!(syntax("a = 1\n[a]").0, 2);
        assert_eq!(syntax("a = 1\n[a.b]").0, 2);
        assert_eq!(syntax("[a.b]\n[a]\nb = 1").0, 3);
        // A table made by dotted keys cannot get a header afterwards.
        let (line, message) = syntax("etc.mount = 'bind'\n[etc]\n");
        assert_eq!(line, 2);
        assert!(message.contains("dotted keys"), "{message}");
        // A header table cannot be extended by dotted keys from elsewhere.
        assert_eq!(syntax("[a.b.c]\n[a]\nb.c.d = 1").0, 3);
        // Inline tables are closed.
        assert_eq!(syntax("x = { a = 1 }\nx.b = 2").0, 2);
        assert_eq!(syntax("x = { a = 1 }\n[x.b]").0, 2);
    }

    #[test]
    fn valid_table_orders_are_accepted() {
        // Sub-table before its parent, and a parent given its header later.
        ok("[a.b]\nx = 1\n[a]\ny = 2\n");
        // Sub-tables under a table made by dotted keys.
        ok("[a]\nb.c = 1\nb.d = 2\n[a.b.e]\nf = 3\n");
        // A table only named by an earlier header may take dotted keys (as the peers' parser
        // has it).
        ok("[a.b.c]\n[a]\nb.d = 1");
        // Dotted keys sharing a prefix.
        let config = clean("etc.mount = 'bind'\netc.transient = false\nvar.mount = 'none'");
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Bind));
    }

    #[test]
    fn very_long_keys_and_deep_values_are_errors_not_crashes() {
        let long_key = vec!["a"; 100_000].join(".");
        let (line, message) = syntax(&format!("\n{long_key} = 1"));
        assert_eq!(line, 2);
        assert!(message.contains("parts"), "{message}");
        syntax(&format!("[{long_key}]"));
        // Exactly at the limit is fine, in a header and in a key below it.
        let max = vec!["a"; MAX_DEPTH as usize].join(".");
        ok(&format!("{max} = 1"));
        ok(&format!("[{max}]\n{max} = 1"));
        syntax(&format!("{max}.a = 1"));

        let deep = format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(syntax(&deep).1.contains("recursion"));
        let deep = format!("x = {}", "{ a = ".repeat(100_000));
        assert!(syntax(&deep).1.contains("recursion"));
        let depth = MAX_DEPTH as usize;
        ok(&format!("x = {}{}", "[".repeat(depth), "]".repeat(depth)));
        syntax(&format!(
            "x = {}{}",
            "[".repeat(depth + 1),
            "]".repeat(depth + 1)
        ));
    }

    #[test]
    fn many_unknown_keys_are_counted_not_listed() {
        let text: String = (0..100_000).map(|i| format!("key{i} = {i}\n")).collect();
        let (config, warnings) = ok(&text);
        assert_eq!(config, Config::default());
        assert_eq!(warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(warnings[0].message, "unknown key key0 ignored");
        assert_eq!(warnings[MAX_WARNINGS - 1].line, MAX_WARNINGS);
        let last = &warnings[MAX_WARNINGS];
        assert_eq!(last.line, MAX_WARNINGS + 1);
        assert!(last.message.contains("99990 more"), "{last:?}");
        // Exactly the limit: no count.
        let text: String = (0..MAX_WARNINGS).map(|i| format!("k{i} = 1\n")).collect();
        assert_eq!(ok(&text).1.len(), MAX_WARNINGS);
    }

    // --- values of known keys ---------------------------------------------------------------------

    #[test]
    fn etc_mount_values_and_aliases() {
        let cases = [
            ("auto", EtcMode::Auto),
            ("none", EtcMode::Fixed(MountMode::None)),
            ("root", EtcMode::Fixed(MountMode::None)),
            ("bind", EtcMode::Fixed(MountMode::Bind)),
            ("overlay", EtcMode::Fixed(MountMode::Overlay)),
            ("transient", EtcMode::Fixed(MountMode::Transient)),
            ("volatile", EtcMode::Fixed(MountMode::Transient)),
        ];
        for (word, mode) in cases {
            assert_eq!(clean(&format!("[etc]\nmount = \"{word}\"")), with_etc(mode));
            assert_eq!(clean(&format!("etc.mount = '{word}'")), with_etc(mode));
        }
    }

    #[test]
    fn var_mount_values_and_aliases() {
        let cases = [
            ("none", MountMode::None),
            ("root", MountMode::None),
            ("bind", MountMode::Bind),
            ("overlay", MountMode::Overlay),
            ("transient", MountMode::Transient),
            ("volatile", MountMode::Transient),
        ];
        for (word, mode) in cases {
            assert_eq!(clean(&format!("[var]\nmount = \"{word}\"")), with_var(mode));
        }
    }

    #[test]
    fn var_mount_auto_is_rejected() {
        let (line, key, value, expected) = value_err("\n[var]\nmount = \"auto\"");
        assert_eq!(
            (line, key.as_str(), value.as_str()),
            (3, "var.mount", "\"auto\"")
        );
        assert!(expected.contains("only for etc.mount"), "{expected}");
        assert!(!expected.contains("\"auto\", "), "{expected}");
    }

    #[test]
    fn unknown_mode_is_a_value_error() {
        let (line, key, value, expected) = value_err("# c\n[etc]\nmount = \"tmpfs\" # c");
        assert_eq!(line, 3);
        assert_eq!(key, "etc.mount");
        assert_eq!(value, "\"tmpfs\"");
        for word in [
            "auto",
            "none",
            "bind",
            "overlay",
            "transient",
            "root",
            "volatile",
        ] {
            assert!(expected.contains(&format!("\"{word}\"")), "{expected}");
        }
        let (_, key, _, expected) = value_err("var.mount = 'tmpfs'");
        assert_eq!(key, "var.mount");
        assert!(expected.contains("\"overlay\""), "{expected}");
    }

    #[test]
    fn values_are_case_sensitive_with_a_hint() {
        let (_, _, value, expected) = value_err("etc.mount = \"Bind\"");
        assert_eq!(value, "\"Bind\"");
        assert!(expected.contains("did you mean \"bind\""), "{expected}");
        let (_, _, _, expected) = value_err("var.mount = ' OVERLAY '");
        assert!(expected.contains("did you mean \"overlay\""), "{expected}");
        let (_, _, _, expected) = value_err("etc.mount = 'bogus'");
        assert!(!expected.contains("did you mean"), "{expected}");
        // `True` and unquoted words are not TOML at all.
        assert!(syntax("[root]\ntransient = True").1.contains("'true'"));
        assert!(syntax("[etc]\nmount = bind").1.contains("quoted"));
    }

    #[test]
    fn booleans() {
        for (key, field) in [
            ("root.transient", 0),
            ("sysroot.readonly", 1),
            ("image.check-digest", 2),
        ] {
            for value in [true, false] {
                let config = clean(&format!("{key} = {value}"));
                let got = [
                    config.root_transient,
                    config.sysroot_readonly,
                    config.check_digest,
                ];
                assert_eq!(got[field], value, "{key} = {value}");
            }
        }
    }

    #[test]
    fn booleans_reject_other_types() {
        for text in [
            "root.transient = 1",
            "root.transient = 0",
            "root.transient = \"yes\"",
            "root.transient = [true]",
            "root.transient = { a = true }",
            "image.check-digest = 2024-01-01",
            "image.check-digest = 1.0",
        ] {
            let (line, _, _, expected) = value_err(text);
            assert_eq!(line, 1);
            assert!(expected.contains("true or false"), "{text}: {expected}");
        }
        let (_, key, value, expected) = value_err("[sysroot]\nreadonly = \"false\"");
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("sysroot.readonly", "\"false\"")
        );
        assert!(expected.contains("without quotes"), "{expected}");
    }

    #[test]
    fn image_max_size() {
        for (text, want) in [
            ("1", 1),
            ("4_096", 4096),
            ("0x1_0000", 65536),
            ("0o777", 0o777),
            ("0b1000", 8),
            ("+1073741824", 1 << 30),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(
                clean(&format!("[image]\nmax-size = {text}")).max_image_size,
                want,
                "{text}"
            );
        }
        for bad in [
            "0",
            "-1",
            "18446744073709551616",
            "1.5",
            "'16G'",
            "\"1024\"",
            "true",
            "[1]",
        ] {
            let (line, key, value, expected) = value_err(&format!("\n[image]\nmax-size = {bad}"));
            assert_eq!(
                (line, key.as_str(), value.as_str()),
                (3, "image.max-size", bad)
            );
            assert!(
                expected.contains("positive integer number of bytes"),
                "{expected}"
            );
        }
    }

    #[test]
    fn tpm_measure() {
        for (word, want) in [
            ("auto", TpmMeasure::Auto),
            ("required", TpmMeasure::Required),
            ("off", TpmMeasure::Off),
        ] {
            assert_eq!(
                clean(&format!("[tpm]\nmeasure = '{word}'")).tpm_measure,
                want
            );
            assert_eq!(want.to_string(), word);
        }
        let (_, key, _, expected) = value_err("[tpm]\nmeasure = 'Required'");
        assert_eq!(key, "tpm.measure");
        assert!(expected.contains("did you mean \"required\""), "{expected}");
        for bad in ["'yes'", "true", "1", "''"] {
            let (_, _, _, expected) = value_err(&format!("tpm.measure = {bad}"));
            assert!(
                expected.contains("\"auto\", \"required\", \"off\""),
                "{expected}"
            );
        }
    }

    #[test]
    fn modes_reject_other_types() {
        for text in [
            "etc.mount = 1",
            "etc.mount = true",
            "etc.mount = [\"bind\"]",
            "etc.mount = { a = 1 }",
            "etc.mount = \"\"\"bogus\"\"\"",
            "var.mount = 3.5",
            "var.mount = inf",
        ] {
            let (line, key, _, _) = value_err(text);
            assert_eq!(line, 1);
            assert!(key == "etc.mount" || key == "var.mount", "{text}");
        }
    }

    #[test]
    fn multi_line_value_error_shows_its_first_line() {
        let (line, _, value, _) = value_err("\netc.mount = \"\"\"\nbogus\"\"\"\nx = 1");
        assert_eq!(line, 2);
        assert_eq!(value, "\"\"\"...");
        let (line, _, value, _) = value_err("[etc]\nmount = [\n  'bind',\n]");
        assert_eq!(line, 2);
        assert_eq!(value, "[...");
    }

    #[test]
    fn long_value_error_is_shortened() {
        let long = "x".repeat(500);
        let (_, _, value, _) = value_err(&format!("etc.mount = '{long}'"));
        assert!(value.len() < 100, "{value}");
        assert!(value.ends_with("..."), "{value}");
    }

    #[test]
    fn section_name_as_a_key_needs_a_table() {
        assert_eq!(
            clean("etc = { mount = \"bind\" }").etc,
            EtcMode::Fixed(MountMode::Bind)
        );
        let (line, key, value, expected) = value_err("\nimage = 'x'");
        assert_eq!((line, key.as_str(), value.as_str()), (2, "image", "'x'"));
        assert!(expected.contains("image.check-digest"), "{expected}");
        let (_, _, _, expected) = value_err("root = true");
        assert!(expected.contains("root.transient"), "{expected}");
        let (_, _, _, expected) = value_err("tpm = []");
        assert!(expected.contains("tpm.measure"), "{expected}");
    }

    // --- transient shorthands ---------------------------------------------------------------------

    #[test]
    fn etc_transient_shorthand() {
        let transient = with_etc(EtcMode::Fixed(MountMode::Transient));
        assert_eq!(clean("[etc]\ntransient = true"), transient);
        assert_eq!(clean("etc.transient = true"), transient);
        // `false` means nothing.
        assert_eq!(clean("[etc]\ntransient = false"), Config::default());
        assert_eq!(
            clean("[etc]\ntransient = false\nmount = 'bind'"),
            with_etc(EtcMode::Fixed(MountMode::Bind))
        );
        // Still a boolean.
        value_err("[etc]\ntransient = 'yes'");
    }

    #[test]
    fn etc_mount_wins_over_transient_in_any_order() {
        let bind = with_etc(EtcMode::Fixed(MountMode::Bind));
        for text in [
            "[etc]\ntransient = true\nmount = 'bind'",
            "[etc]\nmount = 'bind'\ntransient = true",
            "etc.mount = 'bind'\n[root]\ntransient = false\n[etc.x]\n[etc.y]\n",
        ] {
            let (config, warnings) = ok(text);
            assert_eq!(config.etc, bind.etc, "{text}");
            let shorthand: Vec<_> = warnings
                .iter()
                .filter(|w| w.message.contains("etc.transient"))
                .collect();
            assert_eq!(
                shorthand.len(),
                usize::from(text.contains("transient = true"))
            );
        }
        // Even `auto` written out counts as set.
        let (config, warnings) = ok("etc.transient = true\netc.mount = 'auto'");
        assert_eq!(config.etc, EtcMode::Auto);
        assert_eq!(warnings[0].line, 1);
        // The shorthand far from the mount key, in another part of the file.
        let (config, _) = ok("etc.transient = true\n[root]\ntransient = true\n[etc.x]\n");
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Transient));
    }

    #[test]
    fn var_transient_shorthand() {
        assert_eq!(
            clean("[var]\ntransient = true"),
            with_var(MountMode::Transient)
        );
        assert_eq!(clean("var.transient = false"), Config::default());
        let (config, warnings) = ok("[var]\ntransient = true\nmount = 'overlay'");
        assert_eq!(config, with_var(MountMode::Overlay));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 2);
        assert!(warnings[0].message.contains("var.transient"));
        // The shorthands do not cross sections.
        assert_eq!(
            clean("etc.transient = true").var,
            MountMode::Bind,
            "etc.transient must not touch var"
        );
    }

    // --- unknown keys ------------------------------------------------------------------------

    #[test]
    fn unknown_key_is_a_warning_naming_it() {
        let (config, warnings) = ok("[etc]\nmount = 'bind'\nmode = 'bind'\n");
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Bind));
        assert_eq!(
            warnings,
            vec![ConfigWarning {
                line: 3,
                message: "unknown key etc.mode ignored".to_string()
            }]
        );
        let (_, warnings) = ok("top = true\n");
        assert!(warnings[0].message.contains("top"));
        let (_, warnings) = ok("[etc]\n\"odd key\" = 1\n");
        assert!(
            warnings[0].message.contains("etc.\"odd key\""),
            "{warnings:?}"
        );
    }

    #[test]
    fn unknown_key_case_hint() {
        let (config, warnings) = ok("[etc]\nMount = 'bind'");
        assert_eq!(config, Config::default());
        assert!(
            warnings[0].message.contains("did you mean etc.mount"),
            "{warnings:?}"
        );
    }

    #[test]
    fn unknown_section_warns_once() {
        let (config, warnings) =
            ok("[composefs]\na = 1\nb = 'x'\n[etc]\nmount = 'overlay'\n[etc.extra]\nc = 2\n");
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Overlay));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings[0].line, 1);
        assert!(warnings[0].message.contains("[composefs]"));
        assert_eq!(warnings[1].line, 6);
        assert!(warnings[1].message.contains("[etc.extra]"));
        // Known sections, even empty, are not reported.
        let (_, warnings) = ok("[root]\n[etc]\n[var]\n[sysroot]\n[image]\n[tpm]\n");
        assert!(warnings.is_empty());
    }

    #[test]
    fn known_key_inside_unknown_section_is_not_applied() {
        let (config, warnings) = ok("[ETC]\nmount = 'bind'");
        assert_eq!(config, Config::default());
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn warnings_are_in_line_order() {
        let (_, warnings) =
            ok("a = 1\n[b]\nc = 2\n[etc]\nd = 3\ntransient = true\nmount = 'bind'\n");
        let lines: Vec<usize> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![1, 2, 5, 6]);
    }

    #[test]
    fn unknown_keys_may_hold_any_toml_value() {
        let text = r#"
int = 42
neg = -17
hex = 0xDEAD_beef
float = 6.626e-34
special = -inf
nan = nan
date = 1979-05-27
datetime = 1979-05-27T07:32:00Z
spaced = 1979-05-27 07:32:00.999-07:00
time = 07:32:00
empty-array = []
array = [ 1, "two", 'three', [4, 5], { six = 6 }, ]
multi-line-array = [
    "a",   # comment after an element
    # a comment line
    'b#c',
]
table = { x = 1, "y z" = "w", nested.key = [1, 2] }
empty-table = {}
mls = """
multi-line, with a "quote" and \" escaped
and a # not a comment \
    continued"""
mll = '''
literal \ with ' single quote ''and two'''
five = """ends with two quotes"""""
[etc]
mount = "overlay"
"#;
        let (config, warnings) = ok(text);
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Overlay));
        let keys: Vec<&str> = warnings
            .iter()
            .map(|w| {
                w.message
                    .strip_prefix("unknown key ")
                    .and_then(|m| m.strip_suffix(" ignored"))
                    .unwrap_or("?")
            })
            .collect();
        // The first ten are listed, the other eight counted from the line of the first.
        assert_eq!(
            keys[..MAX_WARNINGS],
            [
                "int", "neg", "hex", "float", "special", "nan", "date", "datetime", "spaced",
                "time",
            ]
        );
        assert_eq!(warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(warnings[MAX_WARNINGS].line, 12);
        assert!(warnings[MAX_WARNINGS].message.contains("8 more"));
        // The rest, each listed once the first ones are gone; line numbers after multi-line
        // values are right.
        let rest = &text[text.find("empty-array").unwrap()..];
        let (_, warnings) = ok(rest);
        let keys: Vec<(usize, &str)> = warnings
            .iter()
            .map(|w| (w.line, w.message.split(' ').nth(2).unwrap_or("?")))
            .collect();
        assert_eq!(
            keys,
            [
                (1, "empty-array"),
                (2, "array"),
                (3, "multi-line-array"),
                (8, "table"),
                (9, "empty-table"),
                (10, "mls"),
                (14, "mll"),
                (16, "five"),
            ]
        );
    }

    #[test]
    fn invalid_values_of_unknown_keys_are_syntax_errors() {
        let cases: &[(&str, usize)] = &[
            ("x = [1, 2", 1),
            ("x = [\n1,\n2\n", 1),
            ("x = [1 2]", 1),
            ("x = [,]", 1),
            ("x = { a = 1", 1),
            ("x = { a }", 1),
            ("x = 1979-02-29", 1),
            ("x = 24:00:00", 1),
            ("x = 1e400", 1),
            ("x = -340282366920938463463374607431768211456", 1),
            ("x = \"\"\"abc", 1),
            ("\nx = '''abc\n\n", 2),
            ("x = \"\"\"\\q\"\"\"", 1),
            ("x = \"\"\"a\\ b\"\"\"", 1),
            ("x = \"\"\"a\"\"\"\"\"\"", 1),
            ("x = foo bar", 1),
            ("x = [\"a\" # comment ]", 1),
            ("x = \"a\" 'b'", 1),
            ("x = ]", 1),
            ("x = }", 1),
            ("x = \"\"\"\"\"\"\"\"\"", 1),
        ];
        for (text, line) in cases {
            let (got, message) = syntax(text);
            assert_eq!(got, *line, "{text:?}: {message}");
        }
        // TOML 1.1, as the peers' parser reads it: newlines and a trailing comma in inline
        // tables, times without seconds, integers beyond 64 bits (for keys it ignores).
        ok("x = { a = 1,\n b = 2, }");
        ok("x = 07:32\ny = 1979-05-27T07:32Z");
        ok("x = 340282366920938463463374607431768211455");
        // Up to two quotes may sit right before the closing delimiter.
        ok("x = \"\"\"\"\"\"\"\"");
        ok("x = ''");
        ok("x = \"\"\"\"\"\"");
    }

    #[test]
    fn errors_come_after_multi_line_values_with_the_right_line() {
        let text = "x = [\n1,\n2,\n]\ny = \"\"\"\n\n\"\"\"\n[etc]\nmount = 'x'\n";
        assert_eq!(value_err(text).0, 9);
        let text = "x = '''\n\n'''\n[etc\n";
        assert_eq!(syntax(text).0, 4);
    }

    // --- errors and display -----------------------------------------------------------------------

    #[test]
    fn error_display() {
        let error = parse("[etc]\nmount = \"tmpfs\"").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("line 2: etc.mount = \"tmpfs\": expected one of"),
            "{text}"
        );
        let error = parse("\n\nx = 1\nx = 2").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 4: duplicate key x: already defined on line 3 (as an integer)"
        );
    }

    #[test]
    fn mode_display() {
        assert_eq!(MountMode::None.to_string(), "none");
        assert_eq!(MountMode::Bind.to_string(), "bind");
        assert_eq!(MountMode::Overlay.to_string(), "overlay");
        assert_eq!(MountMode::Transient.to_string(), "transient");
        assert_eq!(EtcMode::Auto.to_string(), "auto");
        assert_eq!(EtcMode::Fixed(MountMode::Bind).to_string(), "bind");
        assert_eq!(
            EtcMode::Fixed(MountMode::Transient).to_string(),
            "transient"
        );
        // Every displayed mode parses back to itself.
        for mode in [
            MountMode::None,
            MountMode::Bind,
            MountMode::Overlay,
            MountMode::Transient,
        ] {
            assert_eq!(clean(&format!("var.mount = '{mode}'")).var, mode);
            let etc = EtcMode::Fixed(mode);
            assert_eq!(clean(&format!("etc.mount = '{etc}'")).etc, etc);
        }
        assert_eq!(clean("etc.mount = 'auto'").etc, EtcMode::Auto);
    }

    #[test]
    fn display_key_quotes_what_is_not_bare() {
        let key = |parts: &[&str]| display_key(parts.iter().copied());
        assert_eq!(key(&["etc", "mount"]), "etc.mount");
        assert_eq!(key(&["a b", ""]), "\"a b\".\"\"");
        assert_eq!(key(&["q\"\\\n\u{1}"]), "\"q\\\"\\\\\\n\\u{1}\"");
    }

    // --- load -------------------------------------------------------------------------------------

    /// A scratch directory, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "cfs-setup-root-config-{}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_missing_file_gives_defaults() {
        let scratch = Scratch::new("missing");
        let (config, warnings) = load(&scratch.0.join("setup-root-conf.toml")).unwrap();
        assert_eq!(config, Config::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn load_reads_the_file() {
        let scratch = Scratch::new("reads");
        let path = scratch.0.join("setup-root-conf.toml");
        std::fs::write(&path, "\u{feff}[etc]\r\nmount = 'bind'\r\nextra = 1\r\n").unwrap();
        let (config, warnings) = load(&path).unwrap();
        assert_eq!(config.etc, EtcMode::Fixed(MountMode::Bind));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 3);
    }

    #[test]
    fn load_unreadable_path_is_a_read_error() {
        let scratch = Scratch::new("unreadable");
        // A directory exists but cannot be read as a file.
        match load(&scratch.0) {
            Err(ConfigError::Read { path, .. }) => {
                assert_eq!(path, scratch.0.display().to_string());
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        let error = load(&scratch.0).unwrap_err().to_string();
        assert!(error.starts_with("cannot read "), "{error}");
    }

    #[test]
    fn load_invalid_utf8_names_the_line() {
        let scratch = Scratch::new("utf8");
        let path = scratch.0.join("conf.toml");
        std::fs::write(&path, b"[etc]\nmount = 'bind'\nx = '\xff'\n").unwrap();
        match load(&path) {
            Err(ConfigError::Syntax { line, message }) => {
                assert_eq!(line, 3);
                assert!(message.contains("UTF-8"), "{message}");
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
        std::fs::write(&path, b"\xc3").unwrap();
        assert!(matches!(
            load(&path),
            Err(ConfigError::Syntax { line: 1, .. })
        ));
    }

    // --- robustness -------------------------------------------------------------------------------

    /// A tiny deterministic generator, so the test needs no crate and always runs the same.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    const SEEDS: &[&str] = &[
        "\u{feff}[root]\ntransient = true # c\r\n[ etc ]\nmount = \"b\\u0069nd\"\n",
        "etc.'mount' = 'overlay'\nvar . transient = true\n[image]\ncheck-digest = false\n",
        "x = [1, [2, { a = \"b\" }], '''\nq''', \"\"\"\\\n r\"\"\"]\ny = 1979-05-27 07:32:00\n",
        "[a.b]\n[a]\nb.c = 1\n[[t]]\n\"\" = {}\n",
        "x = { a.b = 1979-05-27T07:32:00Z, c = [0x1_f, 1e5, inf, \"\\x41\\e\"] }\n[[t.u]]\n",
    ];

    #[test]
    fn every_prefix_parses_without_panicking() {
        for seed in SEEDS {
            for (end, _) in seed.char_indices() {
                let _ = parse(&seed[..end]);
            }
        }
    }

    #[test]
    fn mutated_inputs_parse_without_panicking() {
        let alphabet: &[u8] = b"[]{}=.,#\"'\\ \t\r\nabu0123-_:+\x00\x7f";
        let mut rng = Lcg(0x5eed);
        for _ in 0..20_000 {
            let seed = SEEDS[(rng.next() as usize) % SEEDS.len()];
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % (bytes.len() + 1);
                let byte = alphabet[(rng.next() as usize) % alphabet.len()];
                match rng.next() % 3 {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => bytes[at] = byte,
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text);
        }
    }

    #[test]
    fn random_bytes_parse_without_panicking() {
        let mut rng = Lcg(42);
        for _ in 0..2_000 {
            let len = (rng.next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| (rng.next() % 128) as u8).collect();
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }
    }
}
