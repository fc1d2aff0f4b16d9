//! The config file as a TOML document: `toml_parser` reads the syntax, this module gives it
//! TOML's meaning.
//!
//! `toml_parser` is the lexer and push parser of the toml-rs family: the `toml` crate, and so
//! composefs-setup-root and bootc, read this same file through it. It turns the text into
//! events (a key, a separator, a scalar, a table header) and reports every syntax error with
//! its place; it does not build tables, so the rules of TOML's data model are here: every key
//! and table defined once, dotted keys and `[table]` headers that may not redefine each
//! other's tables, arrays of tables (`[[x]]`) extended through their last element, inline
//! tables and static arrays closed. Scalars are decoded (escapes) and checked (numbers in
//! range, real calendar dates) as the `toml` crate checks them.
//!
//! The rules follow what the `toml` crate accepts, including its TOML 1.1 extensions (`\e`,
//! `\xHH`, newlines in inline tables, times without seconds), because a file that boots with
//! the peers must boot here. Limits: values nest at most [`MAX_DEPTH`] arrays or inline tables
//! deep and a key has at most [`MAX_DEPTH`] parts, as in the `toml` crate, so no input
//! exhausts the stack; everything else is linear in the size of the file.

use std::collections::BTreeMap;

use toml_parser::decoder::ScalarKind;
use toml_parser::parser::{Event, EventKind, RecursionGuard, ValidateWhitespace};
use toml_parser::{ErrorSink, Expected, ParseError, Source};

/// The deepest nesting of arrays and inline tables, and the most parts a key may have.
pub const MAX_DEPTH: u32 = 80;

/// Index of a table in [`Document`].
pub type TableId = usize;

/// The root table's id.
pub const ROOT: TableId = 0;

/// A parsed, well-formed TOML document.
pub struct Document<'a> {
    text: &'a str,
    lines: LineIndex,
    tables: Vec<Table>,
}

/// One table: its entries in the order they were defined.
#[derive(Debug, Default)]
pub struct Table {
    entries: Vec<Entry>,
    index: BTreeMap<String, usize>,
    /// Created as a prefix of a header or a dotted key, not (yet) defined itself.
    implicit: bool,
    /// Extended by dotted keys: it can no longer get a `[header]`.
    dotted: bool,
    /// Inside an inline table: closed once the value ends.
    inline: bool,
    /// The table holding it and the index of its entry there (none for the root, and for
    /// inline tables inside arrays), to name it in messages.
    parent: Option<(TableId, usize)>,
}

/// One key of a table and what it holds.
#[derive(Debug)]
pub struct Entry {
    /// The key, decoded.
    pub key: String,
    /// The line where it was first defined (1-based).
    pub line: usize,
    /// What it holds.
    pub item: Item,
    /// The value as written, for `key = value` entries (byte range).
    pub written: Option<(usize, usize)>,
}

/// What a key holds.
#[derive(Debug)]
pub enum Item {
    /// A table: `[header]`, dotted keys, or an inline table.
    Table(TableId),
    /// An array of tables (`[[header]]`), in order.
    ArrayOfTables(Vec<TableId>),
    /// Any other value.
    Value(Value),
}

/// A value other than a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string, escapes resolved.
    String(String),
    /// `true` or `false`.
    Bool(bool),
    /// An integer: its value when it is from 0 to `u64::MAX`, else `None` (the `toml` crate
    /// accepts integers from `i128::MIN` to `u128::MAX` for keys it ignores; so does this).
    Integer(Option<u64>),
    /// A float.
    Float,
    /// An offset or local date-time, a local date or a local time.
    DateTime,
    /// A static array (`[1, 2]`).
    Array,
}

impl Value {
    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Bool(_) => "a boolean",
            Value::Integer(_) => "an integer",
            Value::Float => "a float",
            Value::DateTime => "a date-time",
            Value::Array => "an array",
        }
    }
}

/// Why the text is not a TOML document (or not one the peers read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl<'a> Document<'a> {
    /// Parses `text` (a leading byte order mark is skipped).
    pub fn parse(text: &'a str) -> Result<Document<'a>, SyntaxError> {
        let source = Source::new(text);
        let lines = LineIndex::new(text);
        let events = {
            let tokens = source.lex().into_vec();
            let mut events: Vec<Event> = Vec::with_capacity(tokens.len());
            let mut first = FirstError(None);
            let mut validate = ValidateWhitespace::new(&mut events, source);
            let mut guard = RecursionGuard::new(&mut validate, MAX_DEPTH);
            toml_parser::parser::parse_document(&tokens, &mut guard, &mut first);
            if let Some(error) = first.0 {
                return Err(lines.parse_error(text, &error));
            }
            events
        };
        let mut builder = Builder {
            source,
            events: &events,
            pos: 0,
            doc: Document {
                text,
                lines,
                tables: vec![Table::default()],
            },
        };
        builder.document()?;
        Ok(builder.doc)
    }

    /// The entries of a table, in the order they were defined.
    pub fn entries(&self, table: TableId) -> &[Entry] {
        self.tables.get(table).map_or(&[], |t| &t.entries)
    }

    /// The entry `key` of a table.
    pub fn get(&self, table: TableId, key: &str) -> Option<&Entry> {
        let t = self.tables.get(table)?;
        t.index.get(key).and_then(|&i| t.entries.get(i))
    }

    /// Whether a table was defined by a `[header]` (not implicitly, by dotted keys or inline).
    pub fn is_header_table(&self, table: TableId) -> bool {
        self.tables
            .get(table)
            .is_some_and(|t| !t.implicit && !t.dotted && !t.inline)
    }

    /// Whether a table is an inline table (or inside one).
    pub fn is_inline(&self, table: TableId) -> bool {
        self.tables.get(table).is_some_and(|t| t.inline)
    }

    /// The text of an entry's value as written, if it was written as `key = value`.
    pub fn written(&self, entry: &Entry) -> Option<&'a str> {
        let (start, end) = entry.written?;
        self.text.get(start..end)
    }
}

/// Keeps the first error the parser reports (errors are reported in the order of the text).
struct FirstError(Option<ParseError>);

impl ErrorSink for FirstError {
    fn report_error(&mut self, error: ParseError) {
        if self.0.is_none() {
            self.0 = Some(error);
        }
    }
}

/// Byte offsets of line starts, for line numbers.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex(starts)
    }

    /// The 1-based line holding byte `offset`.
    fn line(&self, offset: usize) -> usize {
        match self.0.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: self.line(offset),
            message: message.into(),
        }
    }

    /// A parser error as a line and a message: what is wrong, what was expected, what was found.
    fn parse_error(&self, text: &str, error: &ParseError) -> SyntaxError {
        // The line: where the offending token starts (an unterminated string's opening quote,
        // a key without a value), else where the parser stopped.
        let at = error.unexpected().or(error.context());
        let line_at = error.context().or(at);
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
            if found.is_empty() {
                if at.is_some_and(|span| span.start() >= text.len()) {
                    message.push_str(", found the end of the file");
                }
            } else {
                message.push_str(", found ");
                message.push_str(&quote(found, 40));
            }
        }
        self.error(line_at.map_or(0, |span| span.start()), message)
    }
}

/// `text` quoted for a message: its first line, at most `max` bytes (more is shown as `...`).
pub fn quote(text: &str, max: usize) -> String {
    format!("{:?}", shorten(text, max))
}

/// The first line of `text`, at most `max` bytes (cut at a character boundary), with `...`
/// when anything was left out.
pub fn shorten(text: &str, max: usize) -> String {
    let mut end = text.find('\n').unwrap_or(text.len()).min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut short = text[..end].to_string();
    if end < text.len() {
        short.push_str("...");
    }
    short
}

/// How keys below a table are being defined.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A `[header]` path.
    Header,
    /// A dotted key at the top level or under a header.
    Dotted,
    /// A key inside an inline table.
    Inline,
}

/// Walks the parser's events and builds the tables.
struct Builder<'a, 'e> {
    source: Source<'a>,
    events: &'e [Event],
    pos: usize,
    doc: Document<'a>,
}

/// A decoded key part and where it starts.
struct KeyPart {
    name: String,
    offset: usize,
}

impl Builder<'_, '_> {
    fn next(&mut self) -> Option<Event> {
        let event = self.events.get(self.pos).copied();
        self.pos += 1;
        event
    }

    /// The next event that is not whitespace, a comment or a newline.
    fn next_significant(&mut self) -> Option<Event> {
        loop {
            let event = self.next()?;
            if !matches!(
                event.kind(),
                EventKind::Whitespace | EventKind::Comment | EventKind::Newline
            ) {
                return Some(event);
            }
        }
    }

    fn peek_significant(&self) -> Option<Event> {
        self.events.get(self.pos..)?.iter().copied().find(|e| {
            !matches!(
                e.kind(),
                EventKind::Whitespace | EventKind::Comment | EventKind::Newline
            )
        })
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> SyntaxError {
        self.doc.lines.error(offset, message)
    }

    fn unexpected(&self, event: Option<Event>) -> SyntaxError {
        match event {
            Some(e) => self.error_at(
                e.span().start(),
                format!("unexpected {}", e.kind().description()),
            ),
            None => self.error_at(self.doc.text.len(), "unexpected end of the file"),
        }
    }

    fn decode_error(&self, error: &ParseError) -> SyntaxError {
        self.doc.lines.parse_error(self.doc.text, error)
    }

    fn document(&mut self) -> Result<(), SyntaxError> {
        let mut current = ROOT;
        while let Some(event) = self.next_significant() {
            match event.kind() {
                EventKind::StdTableOpen => current = self.std_table()?,
                EventKind::ArrayTableOpen => current = self.array_table()?,
                EventKind::SimpleKey => self.key_value(event, current, false)?,
                _ => return Err(self.unexpected(Some(event))),
            }
        }
        Ok(())
    }

    /// A dotted key starting at `first`; stops before whatever follows it.
    fn key(&mut self, first: Event) -> Result<Vec<KeyPart>, SyntaxError> {
        let mut parts = vec![self.key_part(first)?];
        while self
            .peek_significant()
            .is_some_and(|e| e.kind() == EventKind::KeySep)
        {
            self.next_significant();
            match self.next_significant() {
                Some(e) if e.kind() == EventKind::SimpleKey => parts.push(self.key_part(e)?),
                other => return Err(self.unexpected(other)),
            }
            if parts.len() > MAX_DEPTH as usize {
                return Err(self.error_at(
                    first.span().start(),
                    format!("a key may have at most {MAX_DEPTH} parts"),
                ));
            }
        }
        Ok(parts)
    }

    fn key_part(&mut self, event: Event) -> Result<KeyPart, SyntaxError> {
        let raw = self
            .source
            .get(event)
            .ok_or_else(|| self.unexpected(None))?;
        let mut name = String::new();
        let mut error = FirstError(None);
        raw.decode_key(&mut name, &mut error);
        if let Some(e) = error.0 {
            return Err(self.decode_error(&e));
        }
        Ok(KeyPart {
            name,
            offset: event.span().start(),
        })
    }

    /// A header's key, up to its closing bracket(s).
    fn header_key(&mut self, close: EventKind) -> Result<Vec<KeyPart>, SyntaxError> {
        let key = match self.next_significant() {
            Some(e) if e.kind() == EventKind::SimpleKey => self.key(e)?,
            other => return Err(self.unexpected(other)),
        };
        match self.next_significant() {
            Some(e) if e.kind() == close => Ok(key),
            other => Err(self.unexpected(other)),
        }
    }

    /// `[a.b]`: returns the table later keys go to.
    fn std_table(&mut self) -> Result<TableId, SyntaxError> {
        let key = self.header_key(EventKind::StdTableClose)?;
        let Some((last, path)) = key.split_last() else {
            return Err(self.unexpected(None));
        };
        let parent = self.descend(ROOT, path, Mode::Header)?;
        let line = self.doc.lines.line(last.offset);
        if let Some(entry) = self.doc.get(parent, &last.name) {
            let reusable = match entry.item {
                Item::Table(id) => {
                    let t = &self.doc.tables[id];
                    (t.implicit && !t.dotted).then_some(id)
                }
                _ => None,
            };
            let Some(id) = reusable else {
                return Err(self.redefined(ROOT, &key, entry, "[table]"));
            };
            // A table created as a prefix of an earlier header gets its own header now.
            self.doc.tables[id].implicit = false;
            let index = self.doc.tables[parent].index[&last.name];
            self.doc.tables[parent].entries[index].line = line;
            return Ok(id);
        }
        let id = self.new_table(false, false, false);
        self.insert(parent, &last.name, line, Item::Table(id), None);
        Ok(id)
    }

    /// `[[a.b]]`: a new table appended to the array; returns it.
    fn array_table(&mut self) -> Result<TableId, SyntaxError> {
        let key = self.header_key(EventKind::ArrayTableClose)?;
        let Some((last, path)) = key.split_last() else {
            return Err(self.unexpected(None));
        };
        let parent = self.descend(ROOT, path, Mode::Header)?;
        let id = self.new_table(false, false, false);
        match self.doc.get(parent, &last.name) {
            None => {
                let line = self.doc.lines.line(last.offset);
                self.insert(
                    parent,
                    &last.name,
                    line,
                    Item::ArrayOfTables(vec![id]),
                    None,
                );
            }
            Some(entry) => {
                if !matches!(entry.item, Item::ArrayOfTables(_)) {
                    return Err(self.redefined(ROOT, &key, entry, "[[array of tables]]"));
                }
                let index = self.doc.tables[parent].index[&last.name];
                if let Item::ArrayOfTables(tables) =
                    &mut self.doc.tables[parent].entries[index].item
                {
                    tables.push(id);
                }
                self.doc.tables[id].parent = Some((parent, index));
            }
        }
        Ok(id)
    }

    /// `key = value` (the key starts at `first`), defined in `table`.
    fn key_value(&mut self, first: Event, table: TableId, inline: bool) -> Result<(), SyntaxError> {
        let key = self.key(first)?;
        match self.next_significant() {
            Some(e) if e.kind() == EventKind::KeyValSep => {}
            other => return Err(self.unexpected(other)),
        }
        let value_event = self.next_significant();
        let (item, written) = self.value(value_event)?;
        let Some((last, path)) = key.split_last() else {
            return Err(self.unexpected(None));
        };
        let mode = if inline { Mode::Inline } else { Mode::Dotted };
        let parent = self.descend(table, path, mode)?;
        let p = &self.doc.tables[parent];
        let mixed = if inline {
            p.dotted == path.is_empty()
        } else {
            !path.is_empty() && !p.implicit
        };
        if mixed {
            return Err(self.error_at(
                last.offset,
                format!(
                    "{} cannot be defined here: its table was defined elsewhere",
                    self.full_name(table, &key)
                ),
            ));
        }
        if let Some(entry) = self.doc.get(parent, &last.name) {
            return Err(self.redefined(table, &key, entry, "key"));
        }
        let line = self.doc.lines.line(last.offset);
        self.insert(parent, &last.name, line, item, Some(written));
        Ok(())
    }

    /// A value starting at `event`: the item and its byte range.
    fn value(&mut self, event: Option<Event>) -> Result<(Item, (usize, usize)), SyntaxError> {
        let Some(event) = event else {
            return Err(self.unexpected(None));
        };
        let start = event.span().start();
        match event.kind() {
            EventKind::Scalar => {
                let value = self.scalar(event)?;
                Ok((Item::Value(value), (start, event.span().end())))
            }
            EventKind::ArrayOpen => loop {
                let next = self.next_significant();
                match next.map(|e| e.kind()) {
                    Some(EventKind::ArrayClose) => {
                        let end = next.map_or(start, |e| e.span().end());
                        return Ok((Item::Value(Value::Array), (start, end)));
                    }
                    Some(EventKind::ValueSep) => {}
                    _ => {
                        self.value(next)?;
                    }
                }
            },
            EventKind::InlineTableOpen => {
                let id = self.new_table(false, false, true);
                loop {
                    let next = self.next_significant();
                    match next {
                        Some(e) if e.kind() == EventKind::InlineTableClose => {
                            return Ok((Item::Table(id), (start, e.span().end())));
                        }
                        Some(e) if e.kind() == EventKind::ValueSep => {}
                        Some(e) if e.kind() == EventKind::SimpleKey => {
                            self.key_value(e, id, true)?;
                        }
                        other => return Err(self.unexpected(other)),
                    }
                }
            }
            _ => Err(self.unexpected(Some(event))),
        }
    }

    /// Decodes and checks a scalar.
    fn scalar(&mut self, event: Event) -> Result<Value, SyntaxError> {
        let raw = self
            .source
            .get(event)
            .ok_or_else(|| self.unexpected(Some(event)))?;
        let mut decoded = String::new();
        let mut error = FirstError(None);
        let kind = raw.decode_scalar(&mut decoded, &mut error);
        if let Some(e) = error.0 {
            return Err(self.decode_error(&e));
        }
        let at = event.span().start();
        Ok(match kind {
            ScalarKind::String => Value::String(decoded),
            ScalarKind::Boolean(b) => Value::Bool(b),
            ScalarKind::DateTime => {
                check_datetime(&decoded).map_err(|why| {
                    self.error_at(
                        at,
                        format!("invalid date-time {}: {why}", quote(raw.as_str(), 40)),
                    )
                })?;
                Value::DateTime
            }
            ScalarKind::Float => {
                // As the `toml` crate: a float may not round to infinity unless written so.
                let unsigned = decoded.trim_start_matches(['+', '-']);
                let finite = unsigned == "inf"
                    || unsigned == "nan"
                    || crate::decimal::overflows_f64(&decoded) == Some(false);
                if !finite {
                    return Err(self.error_at(
                        at,
                        format!("float {} is out of range", quote(raw.as_str(), 40)),
                    ));
                }
                Value::Float
            }
            ScalarKind::Integer(radix) => match integer(&decoded, radix.value()) {
                Some(value) => Value::Integer(value),
                None => {
                    return Err(self.error_at(
                        at,
                        format!("integer {} is out of range", quote(raw.as_str(), 40)),
                    ));
                }
            },
        })
    }

    fn new_table(&mut self, implicit: bool, dotted: bool, inline: bool) -> TableId {
        self.doc.tables.push(Table {
            implicit,
            dotted,
            inline,
            ..Table::default()
        });
        self.doc.tables.len() - 1
    }

    fn insert(
        &mut self,
        table: TableId,
        key: &str,
        line: usize,
        item: Item,
        written: Option<(usize, usize)>,
    ) {
        let child = match &item {
            Item::Table(id) => Some(*id),
            Item::ArrayOfTables(ids) => ids.first().copied(),
            Item::Value(_) => None,
        };
        let t = &mut self.doc.tables[table];
        let index = t.entries.len();
        t.index.insert(key.to_string(), index);
        t.entries.push(Entry {
            key: key.to_string(),
            line,
            item,
            written,
        });
        if let Some(c) = child.and_then(|id| self.doc.tables.get_mut(id)) {
            c.parent = Some((table, index));
        }
    }

    /// The full dotted name of `key` under `table`, for messages.
    fn full_name(&self, table: TableId, key: &[KeyPart]) -> String {
        let mut names: Vec<&str> = key.iter().rev().map(|k| k.name.as_str()).collect();
        let mut at = table;
        // Bounded: every step goes to a table created earlier.
        for _ in 0..self.doc.tables.len() {
            let Some((parent, index)) = self.doc.tables.get(at).and_then(|t| t.parent) else {
                break;
            };
            if let Some(entry) = self
                .doc
                .tables
                .get(parent)
                .and_then(|t| t.entries.get(index))
            {
                names.push(&entry.key);
            }
            at = parent;
        }
        display_key(names.into_iter().rev())
    }

    /// Walks `path` down from `table`, creating the tables it names. What may be walked
    /// through depends on how the key is being defined (`toml`'s rules, in its words: "tables
    /// cannot be defined more than once"; dotted keys may not redefine `[table]`s; inline
    /// tables are self-contained).
    fn descend(
        &mut self,
        start: TableId,
        path: &[KeyPart],
        mode: Mode,
    ) -> Result<TableId, SyntaxError> {
        let mut table = start;
        for (depth, part) in path.iter().enumerate() {
            let Some(entry) = self.doc.get(table, &part.name) else {
                let (dotted, inline) = match mode {
                    Mode::Header => (false, false),
                    Mode::Dotted => (true, false),
                    Mode::Inline => (true, true),
                };
                let id = self.new_table(true, dotted, inline);
                let line = self.doc.lines.line(part.offset);
                self.insert(table, &part.name, line, Item::Table(id), None);
                table = id;
                continue;
            };
            let so_far = self.full_name(start, &path[..=depth]);
            let line = entry.line;
            let next = match &entry.item {
                Item::ArrayOfTables(tables) if mode != Mode::Inline => tables.last().copied(),
                Item::Table(id) => Some(*id),
                _ => None,
            };
            let Some(id) = next else {
                let what = match &entry.item {
                    Item::Value(v) => v.kind(),
                    _ => "an array of tables",
                };
                return Err(self.error_at(
                    part.offset,
                    format!("{so_far} is {what} (line {line}): it cannot hold keys"),
                ));
            };
            let through_array = matches!(entry.item, Item::ArrayOfTables(_));
            let t = &mut self.doc.tables[id];
            if !through_array {
                if t.inline && mode != Mode::Inline {
                    return Err(self.error_at(
                        part.offset,
                        format!("{so_far} is an inline table (line {line}): it cannot be extended"),
                    ));
                }
                if mode != Mode::Header {
                    if !t.implicit {
                        return Err(self.error_at(
                            part.offset,
                            format!(
                                "{so_far} was defined as a table on line {line}: dotted keys \
                                 cannot add to it from here"
                            ),
                        ));
                    }
                    t.dotted = true;
                }
            }
            table = id;
        }
        Ok(table)
    }

    /// The error for a key or table defined a second time.
    fn redefined(&self, base: TableId, key: &[KeyPart], old: &Entry, as_what: &str) -> SyntaxError {
        let name = self.full_name(base, key);
        let shown = match as_what {
            "[table]" => format!("table [{name}]"),
            "[[array of tables]]" => format!("array of tables [[{name}]]"),
            _ => format!("key {name}"),
        };
        let was = match &old.item {
            Item::Table(id) if self.doc.tables[*id].inline => "an inline table",
            Item::Table(id) if self.doc.tables[*id].dotted => "a table made by dotted keys",
            Item::Table(_) => "a table",
            Item::ArrayOfTables(_) => "an array of tables",
            Item::Value(v) => v.kind(),
        };
        let offset = key.last().map_or(0, |k| k.offset);
        self.error_at(
            offset,
            format!(
                "duplicate {shown}: already defined on line {} (as {was})",
                old.line
            ),
        )
    }
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

/// A decoded integer (digits in `radix`, a sign only in base 10): `Some(value)` from 0 to
/// `u64::MAX`, `Some(None)` for other values from `i128::MIN` to `u128::MAX`, `None` beyond.
fn integer(digits: &str, radix: u32) -> Option<Option<u64>> {
    let (negative, digits) = match digits.as_bytes().first() {
        Some(b'-') => (true, &digits[1..]),
        Some(b'+') => (false, &digits[1..]),
        _ => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    let mut magnitude: u128 = 0;
    for c in digits.chars() {
        let digit = c.to_digit(radix)?;
        magnitude = magnitude
            .checked_mul(u128::from(radix))?
            .checked_add(u128::from(digit))?;
    }
    if negative && magnitude > 0 {
        (magnitude <= 1 << 127).then_some(None)
    } else {
        Some(u64::try_from(magnitude).ok())
    }
}

/// Checks a date-time the parser has already shaped (digits, `-`, `:`, `T`, `.`, `Z`, ...):
/// RFC 3339 fields with real calendar days, as TOML (1.1: seconds optional) defines them.
fn check_datetime(text: &str) -> Result<(), &'static str> {
    let mut rest = text;
    let mut has_date = false;
    if text.as_bytes().get(4) == Some(&b'-') || text.as_bytes().get(2) != Some(&b':') {
        let year = take_digits(&mut rest, 4, "a four-digit year")?;
        expect(&mut rest, b'-', "'-' after the year")?;
        let month = take_digits(&mut rest, 2, "a two-digit month")?;
        expect(&mut rest, b'-', "'-' after the month")?;
        let day = take_digits(&mut rest, 2, "a two-digit day")?;
        if !(1..=12).contains(&month) {
            return Err("the month must be 01 to 12");
        }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if day < 1 || day > days {
            return Err("no such day in that month");
        }
        has_date = true;
        match rest.as_bytes().first() {
            None => return Ok(()),
            Some(b'T' | b't' | b' ') => rest = &rest[1..],
            Some(_) => return Err("'T' between the date and the time"),
        }
    }
    let hour = take_digits(&mut rest, 2, "a two-digit hour")?;
    expect(&mut rest, b':', "':' after the hour")?;
    let minute = take_digits(&mut rest, 2, "a two-digit minute")?;
    if rest.starts_with(':') {
        rest = &rest[1..];
        let second = take_digits(&mut rest, 2, "a two-digit second")?;
        if second > 60 {
            return Err("the second must be 00 to 60");
        }
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err("digits after the decimal point");
            }
            rest = &fraction[digits..];
        }
    }
    if hour > 23 {
        return Err("the hour must be 00 to 23");
    }
    if minute > 59 {
        return Err("the minute must be 00 to 59");
    }
    if has_date {
        match rest.as_bytes().first() {
            Some(b'Z' | b'z') => rest = &rest[1..],
            Some(b'+' | b'-') => {
                rest = &rest[1..];
                let h = take_digits(&mut rest, 2, "a two-digit offset hour")?;
                expect(&mut rest, b':', "':' in the offset")?;
                let m = take_digits(&mut rest, 2, "a two-digit offset minute")?;
                if h > 23 || m > 59 {
                    return Err("the offset must be within 23:59");
                }
            }
            _ => {}
        }
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err("unexpected text after it")
    }
}

/// Exactly `count` ASCII digits (no more), as a number.
fn take_digits(rest: &mut &str, count: usize, what: &'static str) -> Result<u32, &'static str> {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits != count {
        return Err(what);
    }
    let (number, tail) = rest.split_at(count);
    *rest = tail;
    number.parse().map_err(|_| what)
}

fn expect(rest: &mut &str, byte: u8, what: &'static str) -> Result<(), &'static str> {
    match rest.as_bytes().first() {
        Some(&b) if b == byte => {
            *rest = &rest[1..];
            Ok(())
        }
        _ => Err(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        for ok in [
            "1979-05-27",
            "1979-05-27T07:32:00Z",
            "1979-05-27t07:32:00z",
            "1979-05-27 07:32:00.999999-07:00",
            "1979-05-27T00:32:00.999999999999+23:59",
            "2000-02-29",
            "07:32:00",
            "07:32",
            "1979-05-27T07:32",
            "1979-05-27T07:32Z",
            "23:59:60",
        ] {
            assert_eq!(check_datetime(ok), Ok(()), "{ok}");
        }
        for bad in [
            "1979-13-01",
            "1979-00-01",
            "1900-02-29",
            "2001-02-29",
            "1979-04-31",
            "1979-05-00",
            "979-05-27",
            "1979-5-27",
            "24:00:00",
            "12:60:00",
            "12:00:61",
            "12:00:00.",
            "12:00:00Z",
            "1979-05-27T",
            "1979-05-27X07:32:00",
            "1979-05-27T07:32:00+24:00",
            "1979-05-27T07:32:00+2:00",
            "1979-05-27T07:32:00+02",
            "1979-05-27T07:32:00.5.5",
            "",
            "1",
            "12:",
        ] {
            assert!(check_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(integer("0", 10), Some(Some(0)));
        assert_eq!(integer("+42", 10), Some(Some(42)));
        assert_eq!(integer("-0", 10), Some(Some(0)));
        assert_eq!(integer("-1", 10), Some(None));
        assert_eq!(integer("ff", 16), Some(Some(255)));
        assert_eq!(integer("18446744073709551615", 10), Some(Some(u64::MAX)));
        assert_eq!(integer("18446744073709551616", 10), Some(None));
        assert_eq!(integer(&u128::MAX.to_string(), 10), Some(None));
        assert_eq!(integer(&format!("{}0", u128::MAX), 10), None);
        assert_eq!(integer(&i128::MIN.to_string(), 10), Some(None));
        assert_eq!(integer(&format!("-{}", 1u128 << 127 | 1), 10), None);
        assert_eq!(integer("12", 2), None);
        assert_eq!(integer("", 16), None);
        assert_eq!(integer("-", 10), None);
    }

    #[test]
    fn line_index() {
        let lines = LineIndex::new("a\nbc\n\nd");
        let got: Vec<usize> = (0..8).map(|o| lines.line(o)).collect();
        assert_eq!(got, [1, 1, 2, 2, 2, 3, 4, 4]);
    }
}
