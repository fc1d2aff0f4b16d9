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

/// The smallest value that rounds to infinity as a double: halfway between `f64::MAX` and
/// 2^1024 (2^1024 - 2^970; the tie rounds to the even mantissa, 2^1024), as decimal digits.
const OVERFLOW: &[u8] = b"179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";

/// Whether a decimal number (`[+-]digits[.digits][(e|E)[+-]digits]`, as JSON and decoded TOML
/// write it) rounds to infinity as a double: both formats refuse it (serde_json, the `toml`
/// crate). Decided from the digits: parsing as `f64` would link the float parser and its
/// tables (about 15 KB) into every initramfs. Text of another form is not a finite number.
pub(crate) fn overflows_f64(text: &str) -> bool {
    let text = text.trim_start_matches(['+', '-']);
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].trim_start_matches('+')),
        None => (text, "0"),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let (negative, exp_digits) = match exponent.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, exponent),
    };
    if !digits(int) || !digits(frac) || int.len() + frac.len() == 0 {
        return true;
    }
    if exp_digits.is_empty() || !digits(exp_digits) {
        return true;
    }
    // Saturate: past a billion, the exponent has decided already.
    let exp = exp_digits
        .bytes()
        .fold(0i64, |n, b| (n * 10 + i64::from(b - b'0')).min(1 << 30));
    let all: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let Some(first) = all.iter().position(|&d| d != b'0') else {
        return false; // zero
    };
    // value = 0.d1d2... x 10^magnitude, d1 the first non-zero digit.
    let magnitude = int.len() as i64 - first as i64 + if negative { -exp } else { exp };
    match magnitude.cmp(&(OVERFLOW.len() as i64)) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Greater => true,
        // As many integer digits as the limit: compare digit by digit (missing ones are 0).
        std::cmp::Ordering::Equal => {
            let ours = all[first..].iter().copied().chain(std::iter::repeat(b'0'));
            match ours.zip(OVERFLOW).find(|(d, l)| d != *l) {
                Some((d, l)) => d > *l,
                None => true, // the limit itself rounds to infinity
            }
        }
    }
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
        if overflows_f64(text) {
            Err(self.error("number out of range"))
        } else {
            Ok(())
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
    fn overflow_agrees_with_the_float_parser() {
        let limit = std::str::from_utf8(super::OVERFLOW).unwrap();
        let below = format!("{}1", &limit[..limit.len() - 1]);
        for text in [
            "0",
            "-0",
            "1",
            "1.5",
            "0.000",
            "1e308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.79769313486231580793e308",
            "1.7976931348623159e308",
            "2e308",
            "1e309",
            "-1e400",
            "1e-400",
            "0e99999999999",
            "0.0001e312",
            "100000000000000000000e289",
            "1e99999999999999999999",
            "1E+309",
            "17976931348623158e292",
            limit,
            &below,
        ] {
            let parsed: f64 = text.parse().unwrap();
            assert_eq!(super::overflows_f64(text), parsed.is_infinite(), "{text}");
        }
        assert!(super::overflows_f64(&format!("{limit}.0")));
        assert!(!super::overflows_f64(&format!(
            "{}.9999",
            &limit[..limit.len() - 1]
        )));
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
