//! JSON: the one reader (`meta.json`, and the status record read back by `--status`) and the
//! one string writer (the status record and the TPM event log).
//!
//! The reader checks the whole document as RFC 8259 writes it (so a truncated file is an
//! error, not a silent default), refuses a key given twice in one object (composefs-rs reads
//! `meta.json` into a serde struct, which refuses it too), and bounds nesting, so hostile
//! input cannot exhaust the stack. Hand-written rather than serde_json: it adds about 22 KB to
//! the static binary where serde_json measured 28.7 KB more.

const MAX_DEPTH: usize = 32;

/// A JSON string literal: quotes, backslashes and control characters escaped.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON value (numbers kept as written).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, members in order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// The members, if this is an object.
    pub fn object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// The boolean, if this is one.
    pub fn bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// The number as an unsigned integer, if it is one.
    pub fn u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
    /// The elements, if this is an array (else none).
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(items) => items,
            _ => &[],
        }
    }
}

/// Parses a whole JSON document.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let v = p.tree(0)?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.error("trailing data"));
    }
    Ok(v)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        if b.is_some() {
            self.pos += 1;
        }
        b
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn expect(&mut self, want: u8) -> Result<(), String> {
        if self.next() == Some(want) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", want as char)))
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => return Ok(out),
                Some(b'\\') => match self.next() {
                    Some(b'"') => out.push('"'),
                    Some(b'\\') => out.push('\\'),
                    Some(b'/') => out.push('/'),
                    Some(b'b') => out.push('\u{8}'),
                    Some(b'f') => out.push('\u{c}'),
                    Some(b'n') => out.push('\n'),
                    Some(b'r') => out.push('\r'),
                    Some(b't') => out.push('\t'),
                    Some(b'u') => {
                        let unit = self.hex4()?;
                        let c = match unit {
                            // A UTF-16 surrogate pair: a high surrogate, then `\u` and a low one.
                            0xD800..=0xDBFF => {
                                if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                                    return Err(self.error("lone surrogate in \\u escape"));
                                }
                                let low = self.hex4()?;
                                if !(0xDC00..=0xDFFF).contains(&low) {
                                    return Err(self.error("lone surrogate in \\u escape"));
                                }
                                0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                            }
                            0xDC00..=0xDFFF => {
                                return Err(self.error("lone surrogate in \\u escape"));
                            }
                            _ => unit,
                        };
                        out.push(char::from_u32(c).ok_or_else(|| self.error("bad \\u escape"))?);
                    }
                    _ => return Err(self.error("bad escape")),
                },
                Some(b) if b < 0x20 => return Err(self.error("control character in string")),
                Some(_) => {
                    // Copy the whole UTF-8 sequence this byte starts.
                    let start = self.pos - 1;
                    while matches!(self.peek(), Some(b) if b & 0xC0 == 0x80) {
                        self.pos += 1;
                    }
                    let chunk = self.bytes.get(start..self.pos).unwrap_or(&[]);
                    out.push_str(&String::from_utf8_lossy(chunk));
                }
            }
        }
    }

    /// The four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.pos += 4;
        Ok(digits
            .iter()
            .fold(0, |n, &d| n * 16 + char::from(d).to_digit(16).unwrap_or(0)))
    }

    /// A number as JSON writes it (RFC 8259: `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`)
    /// that a double can hold (as serde_json, a number that overflows is refused).
    fn number(&mut self) -> Result<(), String> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos - from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        let int = digits(self);
        if int == 0 || (int > 1 && self.bytes.get(int_start) == Some(&b'0')) {
            return Err(self.error("bad number"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(self.error("bad number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("bad number"));
            }
        }
        let text =
            std::str::from_utf8(self.bytes.get(start..self.pos).unwrap_or(&[])).unwrap_or("");
        // Rust's float parser rounds correctly at any length: infinite means out of range.
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(()),
            _ => Err(self.error("number out of range")),
        }
    }

    /// One value.
    fn tree(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(b'"') => self.string().map(Value::String),
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                loop {
                    self.skip_ws();
                    let key = self.string()?;
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(self.error(&format!("duplicate key {key:?}")));
                    }
                    self.skip_ws();
                    self.expect(b':')?;
                    members.push((key, self.tree(depth + 1)?));
                    self.skip_ws();
                    match self.next() {
                        Some(b',') => continue,
                        Some(b'}') => return Ok(Value::Object(members)),
                        _ => return Err(self.error("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.tree(depth + 1)?);
                    self.skip_ws();
                    match self.next() {
                        Some(b',') => continue,
                        Some(b']') => return Ok(Value::Array(items)),
                        _ => return Err(self.error("expected ',' or ']'")),
                    }
                }
            }
            Some(b't') => self.literal(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Value::Bool(false)),
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                let text = self.bytes.get(start..self.pos).unwrap_or(&[]);
                Ok(Value::Number(String::from_utf8_lossy(text).into_owned()))
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), String> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("bad literal"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Value, parse, string};

    #[test]
    fn parses_values() {
        let v = parse(r#" {"a": [1, -2.5e3, true, null, "x\u0041"], "b": {"c": false}, "d": 7} "#)
            .unwrap();
        let a = v.get("a").unwrap().items();
        assert_eq!(a[0], Value::Number("1".into()));
        assert_eq!(a[1], Value::Number("-2.5e3".into()));
        assert_eq!(a[2].bool(), Some(true));
        assert_eq!(a[3], Value::Null);
        assert_eq!(a[4].str(), Some("xA"));
        assert_eq!(
            v.get("b").and_then(|b| b.get("c")).and_then(Value::bool),
            Some(false)
        );
        assert_eq!(v.get("d").and_then(Value::u64), Some(7));
        assert!(v.get("zz").is_none());
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "1 2", "tru", "-"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn reads_strings_and_numbers() {
        let doc = r#" {"a": {"algorithm": "nested"}, "algorithm": "x\u0041\n", "n": [1, -2.5e3, true, null]} "#;
        let v = parse(doc).unwrap();
        assert_eq!(v.get("algorithm").and_then(Value::str), Some("xA\n"));
        assert!(v.get("missing").is_none());
        // A surrogate pair is one character.
        let v = parse(r#"{"a":"\ud83d\ude00"}"#).unwrap();
        assert_eq!(v.get("a").and_then(Value::str), Some("\u{1F600}"));
        for number in [
            "0",
            "-0",
            "10",
            "-1.5",
            "0.25e-3",
            "1E+9",
            "123456789012345678901234567890",
        ] {
            let doc = format!(r#"{{"n":{number},"a":"b"}}"#);
            let v = parse(&doc).unwrap();
            assert_eq!(v.get("n"), Some(&Value::Number(number.into())), "{number}");
        }
    }

    #[test]
    fn string_round_trips() {
        for text in ["", "plain", "q\"b\\n\nr\rt\t\u{1}\u{7f}é\u{1F600}"] {
            let doc = format!("{{\"s\":{}}}", string(text));
            assert_eq!(
                parse(&doc).unwrap().get("s").and_then(Value::str),
                Some(text)
            );
        }
        assert_eq!(string("a\"\u{1}"), "\"a\\\"\\u0001\"");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "{",
            r#"{"a":"b""#,
            r#"{"a" "b"}"#,
            r#"{"a":"b",}"#,
            r#"{"a":"b"} x"#,
            r#"{"a":tru}"#,
            r#"{"a":"\q"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u+123"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":--}"#,
            r#"{"a":01}"#,
            r#"{"a":-01}"#,
            r#"{"a":1.}"#,
            r#"{"a":1.e5}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e+}"#,
            r#"{"a":-}"#,
            r#"{"a":1e400}"#,
            r#"{"a":"x","a":"y"}"#,
            r#"{"a":"x","b":1,"a":[]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).is_err());
    }
}
