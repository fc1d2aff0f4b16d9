//! The configuration file (`/usr/lib/composefs/setup-root-conf.toml`): keys, defaults, aliases.
//!
//! A hand-written parser for the TOML subset the keys need: `[section]` headers, dotted keys
//! (`etc.mount = "bind"`), basic and literal strings, booleans, `#` comments.
//!
//! Why not a TOML crate: the binary runs in the initramfs, the file holds a handful of keys, and
//! a small parser we can read end to end (and fuzz) is cheaper than a general one.
//!
//! The parser works in two passes. The first reads the text as TOML: it checks the syntax, the
//! rules about defining keys and tables only once, and collects every `key = value` with its full
//! dotted name and line. Values of keys we do not know are skipped whatever their TOML type
//! (numbers, dates, arrays, inline tables, multi-line strings), so a file written for a newer
//! version still boots. The second pass gives the known keys their meaning: a known key with a
//! value it does not accept is an error, an unknown key is a warning.
//!
//! Deliberate limits: basic strings accept only the escapes `\" \\ \n \t \uXXXX`; arrays of
//! tables (`[[x]]`) are rejected; keys may have at most [`MAX_KEY_PARTS`] parts and values may
//! nest at most [`MAX_VALUE_DEPTH`] arrays or inline tables deep, so no input can exhaust the
//! stack or take quadratic time.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

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

/// `[tpm] measure`: whether the booted image is measured into TPM PCR 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TpmMeasure {
    /// Measure when `/dev/tpmrm0` exists; a TPM error is a warning and the boot goes on.
    #[default]
    Auto,
    /// No TPM, or a TPM error, refuses the boot.
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
    /// `[tpm] measure` (auto): measure the image into PCR 15.
    pub tpm_measure: TpmMeasure,
    /// `[image] max-size` (1 GiB): the largest image accepted, in bytes. A composefs image
    /// holds metadata only (tens of MB for a large OS); a bigger one is refused rather than
    /// hashed for minutes in a silent boot.
    pub max_image_size: u64,
}

/// The default `[image] max-size`: 1 GiB, over 20 times the image of a large OS.
pub const DEFAULT_MAX_IMAGE_SIZE: u64 = 1 << 30;

impl Default for Config {
    fn default() -> Self {
        Config {
            root_transient: false,
            etc: EtcMode::Auto,
            var: MountMode::Bind,
            sysroot_readonly: true,
            check_digest: true,
            tpm_measure: TpmMeasure::Auto,
            max_image_size: DEFAULT_MAX_IMAGE_SIZE,
        }
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
    /// Syntax error.
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

/// The most parts a key (section name included) may have: `a.b.c` has three.
pub const MAX_KEY_PARTS: usize = 32;

/// The deepest nesting of arrays and inline tables accepted in a (skipped) value.
pub const MAX_VALUE_DEPTH: usize = 32;

/// The sections this version knows.
const KNOWN_SECTIONS: &[&str] = &["root", "etc", "var", "sysroot", "image", "tpm"];

/// The full dotted names of the keys this version knows.
const KNOWN_KEYS: &[&str] = &[
    "root.transient",
    "etc.mount",
    "etc.transient",
    "var.mount",
    "var.transient",
    "sysroot.readonly",
    "image.check-digest",
    "tpm.measure",
    "image.max-size",
];

/// Parse config text. Unknown keys become warnings; unknown values are errors.
pub fn parse(text: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let document = Parser::new(text).document()?;
    interpret(document)
}

/// Read and parse `path`; a missing file means defaults.
pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Config::default(), Vec::new()));
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let text = std::str::from_utf8(&bytes).map_err(|error| {
        let valid = bytes.get(..error.valid_up_to()).unwrap_or_default();
        ConfigError::Syntax {
            line: 1 + valid.iter().filter(|&&byte| byte == b'\n').count(),
            message: format!(
                "invalid UTF-8 at byte offset {} of {}",
                error.valid_up_to(),
                path.display()
            ),
        }
    })?;
    parse(text)
}

// ---------------------------------------------------------------------------------------------
// First pass: TOML syntax.

/// What the first pass found: every assignment, and the warnings about unknown sections.
struct Document {
    entries: Vec<Entry>,
    warnings: Vec<ConfigWarning>,
}

/// One `key = value`, with the key's full dotted name (section included).
struct Entry {
    line: usize,
    key: Vec<String>,
    value: Value,
    /// Under a `[section]` already reported as unknown: no second warning for each key.
    in_unknown_section: bool,
}

/// A value, with its text as written (for error messages).
struct Value {
    kind: ValueKind,
    raw: String,
}

/// The value types the known keys can use; everything else is `Other`.
#[derive(Debug, PartialEq)]
enum ValueKind {
    /// A one-line basic or literal string, escapes resolved.
    String(String),
    /// `true` or `false`.
    Bool(bool),
    /// A number, date, array, inline table, multi-line string, or bare word.
    Other,
}

/// How a dotted name came to be defined; TOML allows each name to be defined only once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefinedAs {
    /// `name = value`.
    Value,
    /// `[name]`.
    HeaderTable,
    /// A prefix of a `[header]`, not yet given its own header.
    ImplicitTable,
    /// A prefix of a dotted key (`name.key = value`).
    DottedTable,
}

/// A definition and the line where it happened.
#[derive(Debug, Clone, Copy)]
struct Definition {
    kind: DefinedAs,
    line: usize,
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset into `text`, always on a char boundary.
    pos: usize,
    /// 1-based line of `pos`.
    line: usize,
    /// The current `[section]` (empty at the top).
    section: Vec<String>,
    section_known: bool,
    defined: HashMap<Vec<String>, Definition>,
    entries: Vec<Entry>,
    warnings: Vec<ConfigWarning>,
}

type ParseResult<T> = Result<T, ConfigError>;

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            pos: 0,
            line: 1,
            section: Vec::new(),
            section_known: true,
            defined: HashMap::new(),
            entries: Vec::new(),
            warnings: Vec::new(),
        }
    }

    // --- cursor -------------------------------------------------------------------------------

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Consume `prefix` if the text continues with it.
    fn eat_str(&mut self, prefix: &str) -> bool {
        if self.rest().starts_with(prefix) {
            for _ in prefix.chars() {
                self.bump();
            }
            true
        } else {
            false
        }
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        error_at(self.line, message)
    }

    /// Whether a newline (`\n` or `\r\n`) comes next.
    fn at_newline(&self) -> bool {
        let rest = self.rest();
        rest.starts_with('\n') || rest.starts_with("\r\n")
    }

    /// Consume a newline if one comes next.
    fn eat_newline(&mut self) -> bool {
        self.eat('\n') || self.eat_str("\r\n")
    }

    // --- whitespace, comments, line ends ------------------------------------------------------

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// Skip a `#` comment up to (not including) the end of the line, if one comes next.
    fn skip_comment(&mut self) -> ParseResult<()> {
        if !self.eat('#') {
            return Ok(());
        }
        loop {
            if self.at_newline() {
                return Ok(());
            }
            match self.peek() {
                None => return Ok(()),
                Some(c) if is_forbidden_control(c) => {
                    return Err(self.error(format!("{} in a comment", describe(c))));
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
    }

    /// After a header or a `key = value`: only spaces and a comment may follow on the line.
    fn end_of_line(&mut self) -> ParseResult<()> {
        self.skip_spaces();
        self.skip_comment()?;
        if self.eat_newline() {
            return Ok(());
        }
        match self.peek() {
            None => Ok(()),
            Some('\r') => Err(self.error("carriage return not followed by a line feed")),
            Some(c) => Err(self.error(format!(
                "expected the end of the line, found {}",
                describe(c)
            ))),
        }
    }

    /// Inside arrays: spaces, newlines and comments.
    fn skip_blank(&mut self) -> ParseResult<()> {
        loop {
            self.skip_spaces();
            self.skip_comment()?;
            if !self.eat_newline() {
                return Ok(());
            }
        }
    }

    // --- document -----------------------------------------------------------------------------

    fn document(mut self) -> ParseResult<Document> {
        loop {
            self.skip_spaces();
            match self.peek() {
                None => break,
                Some('#' | '\n' | '\r') => self.end_of_line()?,
                Some('[') => {
                    self.header()?;
                    self.end_of_line()?;
                }
                Some(c) if is_bare_key_char(c) || c == '"' || c == '\'' => {
                    self.key_value()?;
                    self.end_of_line()?;
                }
                Some(c) => return Err(self.error(format!("unexpected {}", describe(c)))),
            }
        }
        Ok(Document {
            entries: self.entries,
            warnings: self.warnings,
        })
    }

    /// `[section]`, cursor on the `[`.
    fn header(&mut self) -> ParseResult<()> {
        let line = self.line;
        self.bump();
        if self.peek() == Some('[') {
            return Err(self.error("arrays of tables ([[...]]) are not supported"));
        }
        self.skip_spaces();
        let name = self.key()?;
        if !self.eat(']') {
            return Err(match self.peek() {
                Some(c) => self.error(format!(
                    "expected ']' to close the section header, found {}",
                    describe(c)
                )),
                None => self.error("expected ']' to close the section header"),
            });
        }
        self.define_table(&name, line)?;
        self.section_known =
            matches!(name.as_slice(), [one] if KNOWN_SECTIONS.contains(&one.as_str()));
        if !self.section_known {
            self.warnings.push(ConfigWarning {
                line,
                message: format!(
                    "unknown section [{}], its keys are ignored",
                    display_key(&name)
                ),
            });
        }
        self.section = name;
        Ok(())
    }

    /// `key = value`, cursor on the key.
    fn key_value(&mut self) -> ParseResult<()> {
        let line = self.line;
        let key = self.key()?;
        if !self.eat('=') {
            return Err(match self.peek() {
                Some(c) if !self.at_newline() => self.error(format!(
                    "expected '=' after the key {}, found {}",
                    display_key(&key),
                    describe(c)
                )),
                _ => self.error(format!("expected '=' after the key {}", display_key(&key))),
            });
        }
        self.skip_spaces();
        let value = self.value(0)?;
        let mut full = self.section.clone();
        full.extend(key);
        if full.len() > MAX_KEY_PARTS {
            return Err(error_at(
                line,
                format!("key has more than {MAX_KEY_PARTS} parts"),
            ));
        }
        self.define_value(&full, line)?;
        self.entries.push(Entry {
            line,
            key: full,
            value,
            in_unknown_section: !self.section_known,
        });
        Ok(())
    }

    // --- keys ---------------------------------------------------------------------------------

    /// A possibly dotted key; consumes the spaces after it.
    fn key(&mut self) -> ParseResult<Vec<String>> {
        let mut parts = Vec::new();
        loop {
            if parts.len() == MAX_KEY_PARTS {
                return Err(self.error(format!("key has more than {MAX_KEY_PARTS} parts")));
            }
            parts.push(self.key_part()?);
            self.skip_spaces();
            if !self.eat('.') {
                return Ok(parts);
            }
            self.skip_spaces();
        }
    }

    fn key_part(&mut self) -> ParseResult<String> {
        match self.peek() {
            Some('"') if self.rest().starts_with("\"\"\"") => {
                Err(self.error("a multi-line string cannot be a key"))
            }
            Some('\'') if self.rest().starts_with("'''") => {
                Err(self.error("a multi-line string cannot be a key"))
            }
            Some('"') => self.basic_string(),
            Some('\'') => self.literal_string(),
            Some(c) if is_bare_key_char(c) => {
                let start = self.pos;
                while self.peek().is_some_and(is_bare_key_char) {
                    self.bump();
                }
                Ok(self.text.get(start..self.pos).unwrap_or("").to_string())
            }
            Some(c) if self.at_newline() || c == '\r' => {
                Err(self.error("expected a key, found the end of the line"))
            }
            Some(c) => Err(self.error(format!(
                "expected a key (letters, digits, '_', '-', or a quoted string), found {}",
                describe(c)
            ))),
            None => Err(self.error("expected a key, found the end of the file")),
        }
    }

    /// Record `[name]`, applying TOML's rules: a table is defined once, never over a value.
    fn define_table(&mut self, name: &[String], line: usize) -> ParseResult<()> {
        for end in 1..name.len() {
            let prefix = name.get(..end).unwrap_or_default();
            match self.defined.get(prefix) {
                None => {
                    self.defined.insert(
                        prefix.to_vec(),
                        Definition {
                            kind: DefinedAs::ImplicitTable,
                            line,
                        },
                    );
                }
                Some(earlier) if earlier.kind == DefinedAs::Value => {
                    return Err(error_at(
                        line,
                        format!(
                            "{} is a value (line {}), not a table",
                            display_key(prefix),
                            earlier.line
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let earlier = self.defined.get(name).copied();
        match earlier {
            None
            | Some(Definition {
                kind: DefinedAs::ImplicitTable,
                ..
            }) => {
                self.defined.insert(
                    name.to_vec(),
                    Definition {
                        kind: DefinedAs::HeaderTable,
                        line,
                    },
                );
                Ok(())
            }
            Some(Definition { kind, line: first }) => {
                let name = display_key(name);
                Err(error_at(
                    line,
                    match kind {
                        DefinedAs::HeaderTable => {
                            format!("section [{name}] appears twice (first on line {first})")
                        }
                        DefinedAs::DottedTable => format!(
                            "section [{name}] was already defined by dotted keys on line {first}"
                        ),
                        _ => format!("{name} is a value (line {first}), not a table"),
                    },
                ))
            }
        }
    }

    /// Record `full = value` (the current section's name comes first in `full`).
    fn define_value(&mut self, full: &[String], line: usize) -> ParseResult<()> {
        for end in self.section.len() + 1..full.len() {
            let prefix = full.get(..end).unwrap_or_default();
            match self.defined.get(prefix).copied() {
                None => {
                    self.defined.insert(
                        prefix.to_vec(),
                        Definition {
                            kind: DefinedAs::DottedTable,
                            line,
                        },
                    );
                }
                Some(Definition {
                    kind: DefinedAs::DottedTable,
                    ..
                }) => {}
                Some(Definition {
                    kind: DefinedAs::Value,
                    line: first,
                }) => {
                    return Err(error_at(
                        line,
                        format!(
                            "{} is a value (line {first}), not a table",
                            display_key(prefix)
                        ),
                    ));
                }
                Some(Definition { line: first, .. }) => {
                    return Err(error_at(
                        line,
                        format!(
                            "table {} has a [section] header (line {first}): \
                             dotted keys cannot add to it from here",
                            display_key(prefix)
                        ),
                    ));
                }
            }
        }
        match self.defined.get(full).copied() {
            None => {
                self.defined.insert(
                    full.to_vec(),
                    Definition {
                        kind: DefinedAs::Value,
                        line,
                    },
                );
                Ok(())
            }
            Some(Definition {
                kind: DefinedAs::Value,
                line: first,
            }) => Err(error_at(
                line,
                format!(
                    "duplicate key {} (first set on line {first})",
                    display_key(full)
                ),
            )),
            Some(Definition { line: first, .. }) => Err(error_at(
                line,
                format!(
                    "{} is already a table (line {first}), it cannot be set to a value",
                    display_key(full)
                ),
            )),
        }
    }

    // --- values -------------------------------------------------------------------------------

    /// Any TOML value; `depth` counts the arrays and inline tables around it.
    fn value(&mut self, depth: usize) -> ParseResult<Value> {
        let start = self.pos;
        let kind = match self.peek() {
            None => return Err(self.error("missing value after '='")),
            Some('#' | '\n' | '\r') => return Err(self.error("missing value after '='")),
            Some('"') if self.rest().starts_with("\"\"\"") => {
                self.multi_line_string('"')?;
                ValueKind::Other
            }
            Some('\'') if self.rest().starts_with("'''") => {
                self.multi_line_string('\'')?;
                ValueKind::Other
            }
            Some('"') => ValueKind::String(self.basic_string()?),
            Some('\'') => ValueKind::String(self.literal_string()?),
            Some('[') => {
                self.array(depth)?;
                ValueKind::Other
            }
            Some('{') => {
                self.inline_table(depth)?;
                ValueKind::Other
            }
            Some(c) => match self.bare_word() {
                "" => {
                    return Err(self.error(format!("invalid value starting with {}", describe(c))));
                }
                "true" => ValueKind::Bool(true),
                "false" => ValueKind::Bool(false),
                _ => ValueKind::Other,
            },
        };
        let raw = self.text.get(start..self.pos).unwrap_or("").to_string();
        Ok(Value { kind, raw })
    }

    /// A number, date, time, `inf`, `nan`, boolean or (invalid in TOML, but reported as a value
    /// error on a known key) an unquoted word. Not validated further: it only has to be skipped.
    fn bare_word(&mut self) -> &'a str {
        let start = self.pos;
        loop {
            match self.peek() {
                Some(c) if is_bare_value_char(c) => {
                    self.bump();
                }
                // A date and a time may be separated by a space: `1979-05-27 07:32:00`.
                Some(' ')
                    if looks_like_date(self.text.get(start..self.pos).unwrap_or(""))
                        && self.peek_second().is_some_and(|c| c.is_ascii_digit()) =>
                {
                    self.bump();
                }
                _ => break,
            }
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// `"..."`, cursor on the opening quote; returns the string with escapes resolved.
    fn basic_string(&mut self) -> ParseResult<String> {
        self.bump();
        let mut out = String::new();
        loop {
            if self.at_newline() {
                return Err(self.error("unterminated string (a \"string\" ends on its own line)"));
            }
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some('"') => {
                    self.bump();
                    return Ok(out);
                }
                Some('\\') => {
                    self.bump();
                    out.push(self.escape()?);
                }
                Some(c) if is_forbidden_control(c) => {
                    return Err(self.error(format!("{} in a string", describe(c))));
                }
                Some(c) => {
                    self.bump();
                    out.push(c);
                }
            }
        }
    }

    /// After a backslash in a basic string.
    fn escape(&mut self) -> ParseResult<char> {
        match self.peek() {
            Some('"') => {
                self.bump();
                Ok('"')
            }
            Some('\\') => {
                self.bump();
                Ok('\\')
            }
            Some('n') => {
                self.bump();
                Ok('\n')
            }
            Some('t') => {
                self.bump();
                Ok('\t')
            }
            Some('u') => {
                self.bump();
                let mut code = 0u32;
                for _ in 0..4 {
                    match self.peek().and_then(|c| c.to_digit(16)) {
                        Some(digit) => {
                            code = code * 16 + digit;
                            self.bump();
                        }
                        None => return Err(self.error("\\u must be followed by four hex digits")),
                    }
                }
                char::from_u32(code).ok_or_else(|| {
                    self.error(format!("\\u{code:04X} is not a Unicode scalar value"))
                })
            }
            Some(c) if !self.at_newline() && !is_forbidden_control(c) => Err(self.error(format!(
                "unsupported escape \\{c} (supported: \\\" \\\\ \\n \\t \\uXXXX)"
            ))),
            _ => Err(self.error("unterminated escape in a string")),
        }
    }

    /// `'...'`, cursor on the opening quote; no escapes.
    fn literal_string(&mut self) -> ParseResult<String> {
        self.bump();
        let start = self.pos;
        loop {
            if self.at_newline() {
                return Err(self.error("unterminated string (a 'string' ends on its own line)"));
            }
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some('\'') => {
                    let text = self.text.get(start..self.pos).unwrap_or("").to_string();
                    self.bump();
                    return Ok(text);
                }
                Some(c) if is_forbidden_control(c) => {
                    return Err(self.error(format!("{} in a string", describe(c))));
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
    }

    /// `"""..."""` or `'''...'''`, cursor on the first quote. Only skipped, never used.
    fn multi_line_string(&mut self, quote: char) -> ParseResult<()> {
        let start_line = self.line;
        let delimiter: String = [quote; 3].iter().collect();
        self.eat_str(&delimiter);
        loop {
            if self.eat_str(&delimiter) {
                // Up to two quotes may end the content right before the delimiter: `"""a"""""`.
                for _ in 0..2 {
                    self.eat(quote);
                }
                return Ok(());
            }
            if self.eat_newline() {
                continue;
            }
            match self.peek() {
                None => {
                    return Err(error_at(
                        start_line,
                        "unterminated multi-line string (it starts here)",
                    ));
                }
                Some('\\') if quote == '"' => {
                    self.bump();
                    if matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
                        // A line-ending backslash: the newline and the blanks after it vanish.
                        self.skip_spaces();
                        if !self.eat_newline() {
                            return Err(self.error("a '\\' followed by spaces must end the line"));
                        }
                        while self.eat_newline() || self.eat(' ') || self.eat('\t') {}
                    } else {
                        self.escape()?;
                    }
                }
                Some(c) if is_forbidden_control(c) => {
                    return Err(self.error(format!("{} in a string", describe(c))));
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
    }

    /// `[ value, ... ]`, cursor on the `[`. Only skipped, never used.
    fn array(&mut self, depth: usize) -> ParseResult<()> {
        let start_line = self.line;
        if depth >= MAX_VALUE_DEPTH {
            return Err(self.error(format!("values nested more than {MAX_VALUE_DEPTH} deep")));
        }
        self.bump();
        loop {
            self.skip_blank()?;
            if self.peek().is_none() {
                return Err(error_at(start_line, "unterminated array (it starts here)"));
            }
            if self.eat(']') {
                return Ok(());
            }
            self.value(depth + 1)?;
            self.skip_blank()?;
            if self.eat(',') {
                continue;
            }
            if self.eat(']') {
                return Ok(());
            }
            return Err(match self.peek() {
                Some(c) => self.error(format!(
                    "expected ',' or ']' in an array, found {}",
                    describe(c)
                )),
                None => error_at(start_line, "unterminated array (it starts here)"),
            });
        }
    }

    /// `{ key = value, ... }` on one line, cursor on the `{`. Only skipped, never used.
    fn inline_table(&mut self, depth: usize) -> ParseResult<()> {
        if depth >= MAX_VALUE_DEPTH {
            return Err(self.error(format!("values nested more than {MAX_VALUE_DEPTH} deep")));
        }
        self.bump();
        self.skip_spaces();
        if self.eat('}') {
            return Ok(());
        }
        loop {
            self.skip_spaces();
            let key = self.key()?;
            if !self.eat('=') {
                return Err(self.error(format!("expected '=' after the key {}", display_key(&key))));
            }
            self.skip_spaces();
            self.value(depth + 1)?;
            self.skip_spaces();
            if self.eat(',') {
                continue;
            }
            if self.eat('}') {
                return Ok(());
            }
            return Err(match self.peek() {
                Some(c) if !self.at_newline() && c != '\r' => self.error(format!(
                    "expected ',' or '}}' in an inline table, found {}",
                    describe(c)
                )),
                _ => self.error("unterminated inline table (it must end on its own line)"),
            });
        }
    }
}

fn error_at(line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError::Syntax {
        line,
        message: message.into(),
    }
}

/// Control characters TOML forbids in strings and comments (tab is allowed).
fn is_forbidden_control(c: char) -> bool {
    (c.is_ascii_control() && c != '\t') || c == '\u{7f}'
}

fn is_bare_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_bare_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.' | ':')
}

/// `YYYY-MM-DD`.
fn looks_like_date(word: &str) -> bool {
    let bytes = word.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// A character for an error message: `'x'`, or its code point for invisible ones.
fn describe(c: char) -> String {
    if c.is_control() {
        format!("control character U+{:04X}", u32::from(c))
    } else if c.is_ascii_graphic() || c.is_alphanumeric() {
        format!("'{c}'")
    } else {
        format!("character U+{:04X}", u32::from(c))
    }
}

/// A dotted key as one would write it: bare parts as they are, others quoted.
fn display_key(parts: &[String]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if !part.is_empty() && part.chars().all(is_bare_key_char) {
            out.push_str(part);
        } else {
            out.push('"');
            for c in part.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Second pass: meaning.

fn interpret(document: Document) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let mut config = Config::default();
    let mut warnings = document.warnings;
    let mut etc_mount = None;
    let mut var_mount = None;
    // The line of a `transient = true` shorthand, if any.
    let mut etc_transient = None;
    let mut var_transient = None;

    for entry in &document.entries {
        let key: Vec<&str> = entry.key.iter().map(String::as_str).collect();
        match key.as_slice() {
            ["root", "transient"] => config.root_transient = boolean(entry)?,
            ["etc", "mount"] => etc_mount = Some(etc_mode(entry)?),
            ["etc", "transient"] => {
                if boolean(entry)? {
                    etc_transient = Some(entry.line);
                }
            }
            ["var", "mount"] => var_mount = Some(var_mode(entry)?),
            ["var", "transient"] => {
                if boolean(entry)? {
                    var_transient = Some(entry.line);
                }
            }
            ["sysroot", "readonly"] => config.sysroot_readonly = boolean(entry)?,
            ["image", "check-digest"] => config.check_digest = boolean(entry)?,
            ["tpm", "measure"] => config.tpm_measure = tpm_measure(entry)?,
            ["image", "max-size"] => config.max_image_size = size(entry)?,
            [section] if KNOWN_SECTIONS.contains(section) => {
                return Err(value_error(
                    entry,
                    format!(
                        "expected a [{section}] section or dotted keys such as \
                         {section}.{} = ... (inline tables are not supported)",
                        KNOWN_KEYS
                            .iter()
                            .find_map(|k| k.strip_prefix(*section)?.strip_prefix('.'))
                            .unwrap_or("key")
                    ),
                ));
            }
            _ if entry.in_unknown_section => {}
            _ => warnings.push(unknown_key(entry)),
        }
    }

    config.etc = match (etc_mount, etc_transient) {
        (Some(mode), None) => mode,
        (Some(mode), Some(line)) => {
            warnings.push(shorthand_ignored("etc", line));
            mode
        }
        (None, Some(_)) => EtcMode::Fixed(MountMode::Transient),
        (None, None) => config.etc,
    };
    config.var = match (var_mount, var_transient) {
        (Some(mode), None) => mode,
        (Some(mode), Some(line)) => {
            warnings.push(shorthand_ignored("var", line));
            mode
        }
        (None, Some(_)) => MountMode::Transient,
        (None, None) => config.var,
    };

    warnings.sort_by_key(|warning| warning.line);
    Ok((config, warnings))
}

fn value_error(entry: &Entry, expected: String) -> ConfigError {
    // The value as written, kept to one readable line.
    let first_line = entry.value.raw.lines().next().unwrap_or("");
    let mut value: String = first_line.chars().take(64).collect();
    if value.len() < entry.value.raw.len() {
        value.push_str("...");
    }
    ConfigError::Value {
        line: entry.line,
        key: display_key(&entry.key),
        value,
        expected,
    }
}

fn boolean(entry: &Entry) -> Result<bool, ConfigError> {
    let hint = match &entry.value.kind {
        ValueKind::Bool(value) => return Ok(*value),
        ValueKind::String(s) if s == "true" || s == "false" => " (without quotes)",
        ValueKind::Other
            if entry.value.raw.eq_ignore_ascii_case("true")
                || entry.value.raw.eq_ignore_ascii_case("false") =>
        {
            " (in lower case)"
        }
        _ => "",
    };
    Err(value_error(entry, format!("expected true or false{hint}")))
}

/// A positive integer number of bytes (TOML integer: decimal, `_` between digits).
fn size(entry: &Entry) -> Result<u64, ConfigError> {
    let raw = entry.value.raw.trim();
    let digits_ok = !raw.is_empty()
        && raw.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !raw.starts_with('_')
        && !raw.ends_with('_')
        && !raw.contains("__");
    let value = digits_ok
        .then(|| raw.replace('_', "").parse::<u64>().ok())
        .flatten()
        .filter(|v| *v > 0);
    value.ok_or_else(|| {
        value_error(
            entry,
            "expected a positive integer number of bytes, e.g. 1073741824".into(),
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

fn etc_mode(entry: &Entry) -> Result<EtcMode, ConfigError> {
    mode_value(entry, etc_word, |_| None).map_err(|hint| {
        value_error(
            entry,
            format!(
                r#"expected one of "auto", "none", "bind", "overlay", "transient" {ALIASES}{hint}"#
            ),
        )
    })
}

fn tpm_measure(entry: &Entry) -> Result<TpmMeasure, ConfigError> {
    match &entry.value.kind {
        ValueKind::String(s) if s == "auto" => Ok(TpmMeasure::Auto),
        ValueKind::String(s) if s == "required" => Ok(TpmMeasure::Required),
        ValueKind::String(s) if s == "off" => Ok(TpmMeasure::Off),
        _ => Err(value_error(
            entry,
            r#"expected one of "auto", "required", "off""#.to_string(),
        )),
    }
}

fn var_mode(entry: &Entry) -> Result<MountMode, ConfigError> {
    let auto_hint = |word: &str| {
        (word == "auto").then(|| r#"; "auto" is accepted only for etc.mount"#.to_string())
    };
    mode_value(entry, mount_mode, auto_hint).map_err(|hint| {
        value_error(
            entry,
            format!(r#"expected one of "none", "bind", "overlay", "transient" {ALIASES}{hint}"#),
        )
    })
}

/// Read a mode with `accept`; on failure return a hint for the message (possibly empty).
fn mode_value<T>(
    entry: &Entry,
    accept: impl Fn(&str) -> Option<T>,
    special_hint: impl Fn(&str) -> Option<String>,
) -> Result<T, String> {
    match &entry.value.kind {
        ValueKind::String(word) => {
            if let Some(mode) = accept(word) {
                return Ok(mode);
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
        ValueKind::Bool(_) | ValueKind::Other => {
            let raw = entry.value.raw.as_str();
            if accept(raw).is_some() {
                Err(format!(r#"; strings need quotes: "{raw}""#))
            } else {
                Err(String::new())
            }
        }
    }
}

fn unknown_key(entry: &Entry) -> ConfigWarning {
    let name = display_key(&entry.key);
    let lower = name.to_ascii_lowercase();
    let hint = if KNOWN_KEYS.contains(&lower.as_str()) {
        format!(" (keys are case-sensitive: did you mean {lower}?)")
    } else {
        String::new()
    };
    ConfigWarning {
        line: entry.line,
        message: format!("unknown key {name} ignored{hint}"),
    }
}

fn shorthand_ignored(section: &str, line: usize) -> ConfigWarning {
    ConfigWarning {
        line,
        message: format!("{section}.transient = true ignored: {section}.mount is set"),
    }
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
max-size = 1_000_000

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
                tpm_measure: TpmMeasure::Required,
                max_image_size: 1_000_000,
            }
        );
    }

    #[test]
    fn every_key_dotted_at_top_level() {
        let text = "root.transient = true\netc.mount = \"bind\"\nvar.mount = \"overlay\"\n\
                    sysroot.readonly = false\nimage.check-digest = false\ntpm.measure = \"off\"\n";
        assert_eq!(
            clean(text),
            Config {
                root_transient: true,
                etc: EtcMode::Fixed(MountMode::Bind),
                var: MountMode::Overlay,
                sysroot_readonly: false,
                check_digest: false,
                tpm_measure: TpmMeasure::Off,
                max_image_size: DEFAULT_MAX_IMAGE_SIZE,
            }
        );
    }

    #[test]
    fn max_size_takes_positive_integers_only() {
        assert_eq!(clean("image.max-size = 4096").max_image_size, 4096);
        for bad in [
            "0",
            "-1",
            "\"1G\"",
            "1.5",
            "_1",
            "1__0",
            "true",
            "99999999999999999999",
        ] {
            let text = format!("[image]\nmax-size = {bad}\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("line 2") && err.contains("positive integer"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn defaults_written_out_change_nothing() {
        let text = "[root]\ntransient = false\n[etc]\nmount = \"auto\"\n[var]\nmount = \"bind\"\n\
                    [sysroot]\nreadonly = true\n[image]\ncheck-digest = true\n\
                    [tpm]\nmeasure = \"auto\"\n";
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
        assert!(message.contains("unterminated"), "{message}");
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
        let cases = [
            (r#"x = "\"""#, true),
            (r#"x = "\\""#, true),
            (r#"x = "a\nb\tc""#, true),
            (r#"x = "\u00e9\uFFFD""#, true),
            (r#"x = "\x41""#, false),
            (r#"x = "\r""#, false),
            (r#"x = "\b""#, false),
            (r#"x = "\U0001F600""#, false),
            (r#"x = "\u12""#, false),
            (r#"x = "\u12G4""#, false),
            (r#"x = "\uD800""#, false),
            (r#"x = "\"#, false),
            ("x = \"\\", false),
        ];
        for (text, valid) in cases {
            assert_eq!(parse(text).is_ok(), valid, "{text}");
        }
        let (_, message) = syntax(r#"x = "\q""#);
        assert!(message.contains("unsupported escape \\q"), "{message}");
        let (_, message) = syntax(r#"x = "\uDFFF""#);
        assert!(message.contains("DFFF"), "{message}");
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
        assert!(message.contains("U+FEFF"), "{message}");
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
        assert!(message.contains("unexpected"), "{message}");
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
            ("\n\n[]", 3, "expected a key"),
            ("[etc] x", 1, "end of the line"),
            ("[etc]\nmount \"bind\"", 2, "'='"),
            ("[etc]\nmount", 2, "'='"),
            ("[etc]\nmount =", 2, "missing value"),
            ("[etc]\nmount = # none", 2, "missing value"),
            ("[etc]\nmount =\n\"bind\"", 2, "missing value"),
            ("[etc]\nmount = \"bind\" \"overlay\"", 2, "end of the line"),
            ("[etc]\nmount = \"bind", 2, "unterminated"),
            ("[etc]\nmount = 'bind", 2, "unterminated"),
            ("= 1", 1, "unexpected"),
            ("[root]\ntransient = @", 2, "invalid value"),
            ("x = true false", 1, "end of the line"),
            ("x = 1 2", 1, "end of the line"),
        ];
        for (text, line, needle) in cases {
            let (got_line, message) = syntax(text);
            assert_eq!(got_line, *line, "{text:?}: {message}");
            assert!(message.contains(needle), "{text:?}: {message}");
        }
    }

    #[test]
    fn array_tables_are_rejected() {
        let (line, message) = syntax("[root]\n[[image]]\n");
        assert_eq!(line, 2);
        assert!(message.contains("[[...]]"), "{message}");
        syntax("[[etc]]");
        syntax("[ [etc]]");
    }

    #[test]
    fn duplicate_key_is_a_syntax_error() {
        let (line, message) = syntax("[etc]\nmount = \"bind\"\n\nmount = \"bind\"\n");
        assert_eq!(line, 4);
        assert!(message.contains("duplicate key etc.mount"), "{message}");
        assert!(message.contains("line 2"), "{message}");
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
        assert_eq!(syntax("[a.b.c]\n[a]\nb.d = 1").0, 3);
    }

    #[test]
    fn valid_table_orders_are_accepted() {
        // Sub-table before its parent, and a parent given its header later.
        ok("[a.b]\nx = 1\n[a]\ny = 2\n");
        // Sub-tables under a table made by dotted keys.
        ok("[a]\nb.c = 1\nb.d = 2\n[a.b.e]\nf = 3\n");
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
        // Section and key together over the limit.
        let half = vec!["a"; MAX_KEY_PARTS / 2 + 1].join(".");
        syntax(&format!("[{half}]\n{half} = 1"));
        // Exactly at the limit is fine.
        let max = vec!["a"; MAX_KEY_PARTS].join(".");
        ok(&format!("{max} = 1"));

        let deep = format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(syntax(&deep).1.contains("nested"));
        let deep = format!("x = {}", "{ a = ".repeat(100_000));
        assert!(syntax(&deep).1.contains("nested"));
        let at_limit = format!(
            "x = {}{}",
            "[".repeat(MAX_VALUE_DEPTH),
            "]".repeat(MAX_VALUE_DEPTH)
        );
        ok(&at_limit);
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
        let (_, _, _, expected) = value_err("[root]\ntransient = True");
        assert!(expected.contains("lower case"), "{expected}");
        let (_, _, _, expected) = value_err("etc.mount = 'bogus'");
        assert!(!expected.contains("did you mean"), "{expected}");
    }

    #[test]
    fn unquoted_mode_is_a_value_error_with_a_hint() {
        let (line, key, value, expected) = value_err("[etc]\nmount = bind");
        assert_eq!(
            (line, key.as_str(), value.as_str()),
            (2, "etc.mount", "bind")
        );
        assert!(expected.contains("quotes"), "{expected}");
        let (_, _, value, _) = value_err("[var]\nmount = true");
        assert_eq!(value, "true");
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
            "sysroot.readonly = TRUE",
            "image.check-digest = no",
            "image.check-digest = 2024-01-01",
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
    fn modes_reject_other_types() {
        for text in [
            "etc.mount = 1",
            "etc.mount = true",
            "etc.mount = [\"bind\"]",
            "etc.mount = { a = 1 }",
            "etc.mount = \"\"\"bind\"\"\"",
            "etc.mount = '''bind'''",
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
        let (line, _, value, _) = value_err("\netc.mount = \"\"\"\nbind\"\"\"\nx = 1");
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
    fn section_name_as_a_key_is_a_value_error() {
        let (line, key, value, expected) = value_err("etc = { mount = \"bind\" }");
        assert_eq!((line, key.as_str()), (1, "etc"));
        assert_eq!(value, "{ mount = \"bind\" }");
        assert!(expected.contains("etc.mount"), "{expected}");
        let (_, key, _, expected) = value_err("image = 'x'");
        assert_eq!(key, "image");
        assert!(expected.contains("image.check-digest"), "{expected}");
        let (_, _, _, expected) = value_err("root = true");
        assert!(expected.contains("root.transient"), "{expected}");
    }

    #[test]
    fn tpm_measure_key() {
        assert_eq!(Config::default().tpm_measure, TpmMeasure::Auto);
        for (text, want) in [
            ("[tpm]\nmeasure = \"required\"", TpmMeasure::Required),
            ("tpm.measure = 'off'", TpmMeasure::Off),
            ("[tpm]\nmeasure = \"auto\"", TpmMeasure::Auto),
        ] {
            assert_eq!(clean(text).tpm_measure, want, "{text}");
        }
        for bad in [
            "tpm.measure = true",
            "tpm.measure = \"yes\"",
            "tpm.measure = \"Required\"",
        ] {
            let (line, key, _, expected) = value_err(bad);
            assert_eq!((line, key.as_str()), (1, "tpm.measure"));
            assert!(expected.contains("\"required\""), "{expected}");
        }
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
        let (_, warnings) = ok("[root]\n[etc]\n[var]\n[sysroot]\n[image]\n");
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
        assert_eq!(
            keys,
            [
                "int",
                "neg",
                "hex",
                "float",
                "special",
                "nan",
                "date",
                "datetime",
                "spaced",
                "time",
                "empty-array",
                "array",
                "multi-line-array",
                "table",
                "empty-table",
                "mls",
                "mll",
                "five",
            ]
        );
        // Line numbers after multi-line values are right.
        assert_eq!(warnings[13].line, 19);
        assert_eq!(warnings[16].line, 25);
        assert_eq!(warnings[17].line, 27);
    }

    #[test]
    fn invalid_values_of_unknown_keys_are_syntax_errors() {
        let cases: &[(&str, usize)] = &[
            ("x = [1, 2", 1),
            ("x = [\n1,\n2\n", 1),
            ("x = [1 2]", 1),
            ("x = [,]", 1),
            ("x = { a = 1", 1),
            ("x = { a = 1,\n b = 2 }", 1),
            ("x = { a = 1, }", 1),
            ("x = { a }", 1),
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
        let error = parse("\n\n[[x]]").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 3: arrays of tables ([[...]]) are not supported"
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
        let key =
            |parts: &[&str]| display_key(&parts.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        assert_eq!(key(&["etc", "mount"]), "etc.mount");
        assert_eq!(key(&["a b", ""]), "\"a b\".\"\"");
        assert_eq!(key(&["q\"\\\n\u{1}"]), "\"q\\\"\\\\\\n\\u0001\"");
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
