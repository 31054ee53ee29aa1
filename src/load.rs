//! Load: read a YAML file into a [`Document`], a JSON value plus the byte
//! span of every node.
//!
//! serde_yaml parses the values; yaml-rust2's event stream, which carries
//! positions, builds the [`SpanIndex`] keyed by JSON pointer. A JSON Schema
//! instance path is a JSON pointer, so every schema error maps back to a line.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diag::Diagnostic;
use crate::source::{Source, Span};

/// Runbooks and params files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// A parsed YAML file.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    pub value: Value,
    /// Built on first use: only a diagnostic needs a position, and a valid
    /// runbook then never pays for the second YAML pass.
    spans: std::sync::OnceLock<SpanIndex>,
}

impl Document {
    /// The value at a JSON pointer, as `Value::pointer` finds it, without
    /// its two copies of every segment: validation looks a few pointers up
    /// per step, and those copies were most of their cost.
    pub fn at(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return Some(&self.value);
        }
        let mut v = &self.value;
        for seg in pointer.strip_prefix('/')?.split('/') {
            let seg: std::borrow::Cow<'_, str> = if seg.contains('~') {
                seg.replace("~1", "/").replace("~0", "~").into()
            } else {
                seg.into()
            };
            v = match v {
                Value::Object(m) => m.get(seg.as_ref())?,
                // As serde_json reads an index: no sign, no leading zero.
                Value::Array(a)
                    if !seg.starts_with('+') && (seg == "0" || !seg.starts_with('0')) =>
                {
                    a.get(seg.parse::<usize>().ok()?)?
                }
                _ => return None,
            };
        }
        Some(v)
    }

    /// Where each node sits in the file.
    pub fn spans(&self) -> &SpanIndex {
        self.spans.get_or_init(|| index_spans(&self.source))
    }

    /// Map a byte range inside a scalar's value back to the file, where the
    /// scalar's style makes that exact; else the scalar's own span.
    pub fn locate(
        &self,
        pointer: &str,
        value: &str,
        range: std::ops::Range<usize>,
    ) -> Option<Span> {
        let node = self.spans().node(pointer)?;
        let text = self.source.text();
        let start = node.value.start;
        let exact = |at: usize| -> Option<Span> {
            let want = value.get(range.clone())?;
            let want = want.split('\n').next().unwrap_or(want);
            (text.get(at..at + want.len()) == Some(want)).then(|| at..at + want.len().max(1))
        };
        let found = match node.style {
            Some(ScalarStyle::Plain) if !value.contains('\n') => exact(start + range.start),
            Some(ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted)
                if !value.contains('\n') =>
            {
                exact(start + 1 + range.start)
            }
            Some(ScalarStyle::Literal) => {
                // yaml-rust2 marks a block scalar at its first content line.
                let before = &value[..range.start.min(value.len())];
                let line = before.matches('\n').count();
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1);
                let (first_line, first_col) = self.source.line_col(start);
                let line_start = self.source.offset(first_line + line, 1)?;
                exact(line_start + (first_col - 1) + col)
            }
            _ => None,
        };
        found.or_else(|| Some(node.value.clone()))
    }
}

/// A file that could not be read or parsed: its source (possibly empty) and why.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub source: Source,
    pub diagnostic: Diagnostic,
}

/// How a scalar was written, which decides how offsets inside it map to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

/// Where a node sits: its key (for mapping values) and the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePos {
    pub key: Option<Span>,
    pub value: Span,
    pub style: Option<ScalarStyle>,
}

/// Byte spans of every node, by JSON pointer (`/phases/0/steps/1/sql`).
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    nodes: HashMap<String, NodePos>,
}

impl SpanIndex {
    pub fn node(&self, pointer: &str) -> Option<&NodePos> {
        self.nodes.get(pointer)
    }

    /// The span of the value at `pointer`, or of its nearest ancestor.
    pub fn value(&self, pointer: &str) -> Option<Span> {
        self.nearest(pointer).map(|n| n.value.clone())
    }

    /// The span of the key that names `pointer`, else its value's span.
    pub fn key_or_value(&self, pointer: &str) -> Option<Span> {
        self.nearest(pointer)
            .map(|n| n.key.clone().unwrap_or_else(|| n.value.clone()))
    }

    fn nearest(&self, pointer: &str) -> Option<&NodePos> {
        let mut p = pointer;
        loop {
            if let Some(n) = self.nodes.get(p) {
                return Some(n);
            }
            if p.is_empty() {
                return None;
            }
            p = &p[..p.rfind('/').unwrap_or(0)];
        }
    }
}

/// Escape one JSON pointer segment.
pub fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Read and parse a file. Size and encoding are checked before parsing.
pub fn load_file(path: &Path) -> Result<Document, Box<LoadFailure>> {
    let name = path.display().to_string();
    let fail = |text: &str, d: Diagnostic| {
        Box::new(LoadFailure {
            source: Source::new(name.clone(), text),
            diagnostic: d,
        })
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        fail(
            "",
            Diagnostic::new(format!("failed to read `{name}`: {}", io_reason(&e)))
                .hint("check the path; it is relative to the current directory"),
        )
    })?;
    if meta.is_dir() {
        return Err(fail(
            "",
            Diagnostic::new(format!("`{name}` is a directory, not a runbook file"))
                .hint("name a .yml file inside it"),
        ));
    }
    // A FIFO, a socket or a device (/dev/zero) would block or never end:
    // only regular files are read.
    if !meta.is_file() {
        return Err(fail(
            "",
            Diagnostic::new(format!(
                "`{name}` is not a regular file (a pipe, socket or device)"
            ))
            .hint("save the runbook to a file and name that file"),
        ));
    }
    let too_large = |len: u64| {
        fail(
            "",
            Diagnostic::new(format!(
                "file is too large ({:.1} MiB); the limit is {} MiB",
                len as f64 / (1024.0 * 1024.0),
                MAX_FILE_BYTES / (1024 * 1024)
            ))
            .hint("split the runbook, or move long SQL into migration files"),
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    // Read with a cap all the same: the file may grow after the check.
    let mut bytes = Vec::new();
    {
        use std::io::Read;
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| {
                fail(
                    "",
                    Diagnostic::new(format!("failed to read `{name}`: {}", io_reason(&e))),
                )
            })?;
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let offset = String::from_utf8_lossy(&e.as_bytes()[..at]).len();
            return Err(fail(
                &lossy,
                Diagnostic::new("file is not valid UTF-8")
                    .at(Some(offset..offset + '\u{FFFD}'.len_utf8()))
                    .label(format!("invalid byte 0x{:02x}", e.as_bytes()[at]))
                    .hint("save the file as UTF-8"),
            ));
        }
    };
    load_str(name, text)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// Parse YAML text that is already in memory.
pub fn load_str(
    name: impl Into<String>,
    text: impl Into<String>,
) -> Result<Document, Box<LoadFailure>> {
    let source = Source::new(name, text);
    if let Some(at) = too_deep(source.text()) {
        let (line, col) = source.line_col(at);
        let diagnostic = Diagnostic::new(format!(
            "the document is nested too deeply: more than {MAX_FLOW_DEPTH} levels of `[` or `{{` at line {line}, column {col}"
        ))
        .hint("a runbook needs a few levels; this looks like generated or corrupted input");
        return Err(Box::new(LoadFailure { source, diagnostic }));
    }
    // Straight to JSON, as most files are; anything it does not take (an
    // error, a tag, a key that is not a string, a number JSON cannot hold)
    // goes the long way, through serde_yaml's value, which says where.
    if let Ok(Json(value)) = serde_yaml::from_str::<Json>(source.text()) {
        return Ok(Document {
            source,
            value,
            spans: std::sync::OnceLock::new(),
        });
    }
    let parsed: Result<Lenient, _> = serde_yaml::from_str(source.text());
    let yaml = match parsed {
        Ok(v) => v.0,
        Err(e) => {
            let diagnostic = yaml_error(&source, &e);
            return Err(Box::new(LoadFailure { source, diagnostic }));
        }
    };
    let value = match to_json(yaml, &mut Vec::new(), &source) {
        Ok(v) => v,
        Err(diagnostic) => return Err(Box::new(LoadFailure { source, diagnostic })),
    };
    Ok(Document {
        source,
        value,
        spans: std::sync::OnceLock::new(),
    })
}

/// Where a second YAML document starts, as the YAML parser sees it (a
/// `---` line after content, or content after a scalar document ended).
fn second_document(text: &str) -> Option<Span> {
    struct Starts(Vec<usize>);
    impl MarkedEventReceiver for Starts {
        fn on_event(&mut self, ev: Event, mark: Marker) {
            if matches!(ev, Event::DocumentStart) {
                self.0.push(mark.index());
            }
        }
    }
    let mut starts = Starts(Vec::new());
    let mut parser = Parser::new_from_str(text);
    let failed = parser.load(&mut starts, true).err();
    // Where this parser stopped, when it does not see the second document
    // the way libyaml does: the place the first one could not go on.
    let index = match (starts.0.get(1), failed) {
        (Some(&i), _) => i,
        (None, Some(e)) => e.marker().index(),
        // This parser reads one document where libyaml reads two: point at
        // where the first begins, the part to look at.
        (None, None) => {
            let mut at = 0;
            let first = text.split_inclusive('\n').find_map(|l| {
                let start = at;
                at += l.len();
                let t = l.trim();
                (!t.is_empty() && !t.starts_with('#')).then_some(start)
            })?;
            text[..first].chars().count()
        }
    };
    // The parser counts characters; spans are bytes.
    let at = text
        .char_indices()
        .nth(index)
        .map_or(text.len(), |(i, _)| i);
    let end = text[at..]
        .find('\n')
        .map_or(text.len(), |n| at + n)
        .max(at + 1);
    Some(at..end.min(text.len()).max(at))
}

fn yaml_error(source: &Source, e: &serde_yaml::Error) -> Diagnostic {
    let mut message = e.to_string();
    let span = e.location().map(|loc| {
        message = message.replacen(
            &format!(" at line {} column {}", loc.line(), loc.column()),
            "",
            1,
        );
        let at = source
            .offset(loc.line(), loc.column())
            .unwrap_or_else(|| loc.index().min(source.text().len()));
        at..at
    });
    let at_tab = span
        .as_ref()
        .is_some_and(|s| source.text()[s.start..].starts_with('\t'));
    let (message, hint) = if at_tab {
        (
            "tab character in indentation".to_string(),
            "YAML does not allow tabs for indentation; indent with spaces".to_string(),
        )
    } else if let Some((path, key)) =
        message
            .split_once("duplicate entry with key \"")
            .map(|(path, rest)| {
                (
                    path.trim_end_matches(": "),
                    rest.split('"').next().unwrap_or_default(),
                )
            })
    {
        // Spans index the last occurrence of a key, which is the duplicate.
        let pointer = format!("{}/{}", yaml_path_to_pointer(path), pointer_segment(key));
        let at = index_spans(source).key_or_value(&pointer);
        return Diagnostic::new(format!("duplicate key `{key}`"))
            .at(at.or(span))
            .label("second occurrence")
            .hint("a key may appear only once in a mapping; remove or rename one of them");
    } else if message.contains("more than one document") {
        let span = span.or_else(|| second_document(source.text()));
        let located = span.is_some();
        let d = Diagnostic::new("the file holds more than one YAML document")
            .at(span)
            .hint("a runbook file is a single document; remove the extra `---` line, or the stray text that ends the first document early");
        return if located {
            d.label("a document starts here")
        } else {
            d
        };
    } else if message.contains("repetition limit exceeded") {
        (
            "aliases expand to too many nodes".to_string(),
            "anchors and aliases may share values, not multiply the document".to_string(),
        )
    } else if message.contains("recursion limit exceeded") {
        (
            "the document is nested too deeply".to_string(),
            "a runbook needs only a few levels of nesting".to_string(),
        )
    } else {
        (
            format!("invalid YAML: {message}"),
            "check the indentation and quoting on this line and the one above it".to_string(),
        )
    };
    let located = span.is_some();
    let d = Diagnostic::new(message).at(span).hint(hint);
    if located { d.label("here") } else { d }
}

/// serde_yaml names a node like `phases[0].steps[1]`; make it a JSON pointer.
fn yaml_path_to_pointer(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.').filter(|p| !p.is_empty() && *p != ".") {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push('/');
            out.push_str(&pointer_segment(&rest[..i]));
            rest = &rest[i..];
        } else {
            out.push('/');
            out.push_str(&pointer_segment(rest));
            continue;
        }
        for idx in rest.split('[').filter(|x| !x.is_empty()) {
            out.push('/');
            out.push_str(idx.trim_end_matches(']'));
        }
    }
    out
}

/// Where a node sits, as segments; formatted into a pointer only on error.
fn pointer_of(path: &[String]) -> String {
    path.iter()
        .map(|s| format!("/{}", pointer_segment(s)))
        .collect()
}

/// Flow collections (`[`, `{`) nested deeper than this are refused before
/// parsing: a runbook needs a handful, and the parsers' cost grows with
/// depth (80 KB of `[` took 30 s).
const MAX_FLOW_DEPTH: usize = 64;

/// Where flow nesting first goes past [`MAX_FLOW_DEPTH`], outside quotes
/// and comments. A cheap, linear pre-scan; the parser has the last word.
/// It reads bytes: every character it looks for is ASCII, and no byte of
/// a longer UTF-8 character is one (a comment or quote follows a space or
/// tab in YAML, never wider white space).
fn too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    // The byte before `i`; the text starts as if after a line break.
    let prev = |i: usize| if i == 0 { b'\n' } else { bytes[i - 1] };
    // The next `byte` at or after `from`, if any.
    let find = |from: usize, byte: u8| {
        bytes[from..]
            .iter()
            .position(|&b| b == byte)
            .map(|k| from + k)
    };
    let mut depth = 0usize;
    let mut i = 0;
    // Jump from one byte that can change the state to the next: most of a
    // runbook is plain text, and looking at each byte's state cost 20
    // instructions a byte.
    while let Some(k) = bytes[i..]
        .iter()
        .position(|b| matches!(b, b'#' | b'\'' | b'"' | b'[' | b'{' | b']' | b'}'))
    {
        i += k;
        let c = bytes[i];
        match c {
            // A comment runs to the end of its line.
            b'#' if prev(i).is_ascii_whitespace() => match find(i, b'\n') {
                Some(end) => i = end,
                None => return None,
            },
            // A quote opens a scalar only where one can start, and the
            // scalar runs to the next of the same quote.
            b'\'' | b'"' if prev(i).is_ascii_whitespace() || b"[{,:".contains(&prev(i)) => {
                match find(i + 1, c) {
                    Some(end) => i = end,
                    None => return None,
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// serde_yaml's value, except that an integer too large for 64 bits is
/// kept as its digits: a migration version such as `20191100000002000004`
/// written without quotes is a version, not an error.
struct Lenient(serde_yaml::Value);

impl<'de> serde::Deserialize<'de> for Lenient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor).map(Lenient)
    }
}

struct LenientVisitor;

impl<'de> serde::de::Visitor<'de> for LenientVisitor {
    type Value = serde_yaml::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Number(i.into()))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Number(u.into()))
    }
    fn visit_i128<E>(self, i: i128) -> Result<Self::Value, E> {
        Ok(match i64::try_from(i) {
            Ok(small) => serde_yaml::Value::Number(small.into()),
            Err(_) => serde_yaml::Value::String(i.to_string()),
        })
    }
    fn visit_u128<E>(self, u: u128) -> Result<Self::Value, E> {
        Ok(match u64::try_from(u) {
            Ok(small) => serde_yaml::Value::Number(small.into()),
            Err(_) => serde_yaml::Value::String(u.to_string()),
        })
    }
    fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Number(f.into()))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        <Lenient as serde::Deserialize>::deserialize(d).map(|l| l.0)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Lenient(v)) = a.next_element()? {
            out.push(v);
        }
        Ok(serde_yaml::Value::Sequence(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_yaml::Mapping::new();
        while let Some(Lenient(k)) = a.next_key()? {
            let Lenient(v) = a.next_value()?;
            if out.contains_key(&k) {
                let shown = match &k {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                return Err(serde::de::Error::custom(format!(
                    "duplicate entry with key \"{shown}\""
                )));
            }
            out.insert(k, v);
        }
        Ok(serde_yaml::Value::Mapping(out))
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        use serde::de::VariantAccess;
        let (tag, variant): (String, _) = a.variant()?;
        let Lenient(value) = variant.newtype_variant()?;
        Ok(serde_yaml::Value::Tagged(Box::new(
            serde_yaml::value::TaggedValue {
                tag: serde_yaml::value::Tag::new(tag),
                value,
            },
        )))
    }
}

/// A YAML document read straight into JSON, as [`to_json`] would make it
/// of the [`Lenient`] value, or an error for everything `to_json` would
/// refuse or treat apart: the caller then goes that way.
struct Json(Value);

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor).map(Json)
    }
}

struct JsonVisitor;

/// Refused by the straight way; the reason does not matter.
fn long_way<E: serde::de::Error>() -> E {
    E::custom("read through serde_yaml's value")
}

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::from(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::from(u))
    }
    fn visit_i128<E>(self, i: i128) -> Result<Value, E> {
        Ok(match i64::try_from(i) {
            Ok(small) => Value::from(small),
            Err(_) => Value::String(i.to_string()),
        })
    }
    fn visit_u128<E>(self, u: u128) -> Result<Value, E> {
        Ok(match u64::try_from(u) {
            Ok(small) => Value::from(small),
            Err(_) => Value::String(u.to_string()),
        })
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(long_way)
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        <Json as serde::Deserialize>::deserialize(d).map(|j| j.0)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Json(v)) = a.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(Key(k)) = a.next_key()? {
            let Json(v) = a.next_value()?;
            // A repeat, or two keys that only JSON makes one (`1` and
            // `"1"`): the long way tells them apart.
            if out.insert(k, v).is_some() {
                return Err(long_way());
            }
        }
        Ok(Value::Object(out))
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(long_way())
    }
}

/// A mapping key as [`to_json`] writes it: a string, an integer or a
/// boolean; anything else goes the long way.
struct Key(String);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E>(self, s: &str) -> Result<String, E> {
                Ok(s.to_string())
            }
            fn visit_string<E>(self, s: String) -> Result<String, E> {
                Ok(s)
            }
            fn visit_bool<E>(self, b: bool) -> Result<String, E> {
                Ok(b.to_string())
            }
            fn visit_i64<E>(self, i: i64) -> Result<String, E> {
                Ok(i.to_string())
            }
            fn visit_u64<E>(self, u: u64) -> Result<String, E> {
                Ok(u.to_string())
            }
            fn visit_i128<E>(self, i: i128) -> Result<String, E> {
                Ok(i.to_string())
            }
            fn visit_u128<E>(self, u: u128) -> Result<String, E> {
                Ok(u.to_string())
            }
        }
        d.deserialize_any(V).map(Key)
    }
}

/// Convert serde_yaml's value into JSON, consuming it (no string copies).
fn to_json(
    v: serde_yaml::Value,
    path: &mut Vec<String>,
    source: &Source,
) -> Result<Value, Diagnostic> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| {
                        Diagnostic::new(format!("unsupported number `{n}`"))
                            .at(index_spans(source).value(&pointer_of(path)))
                            .hint("infinities and NaN are not allowed; use a finite number")
                    })?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(i.to_string());
                out.push(to_json(item, path, source)?);
                path.pop();
            }
            Value::Array(out)
        }
        Y::Mapping(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, item) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    _ => {
                        return Err(Diagnostic::new("mapping key is not a string")
                            .at(index_spans(source).value(&pointer_of(path)))
                            .hint("write keys as plain words, such as `name:`"));
                    }
                };
                path.push(key);
                let value = to_json(item, path, source)?;
                let key = path.pop().unwrap_or_default();
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            return Err(Diagnostic::new(format!("YAML tag `{}` is not supported", t.tag))
                .at(index_spans(source).value(&pointer_of(path)))
                .hint("remove the tag; runbook values are plain strings, numbers, lists and mappings"));
        }
    })
}

/// Build the span index from yaml-rust2's positioned events. Errors here are
/// ignored: serde_yaml has already accepted the text, and a missing span only
/// costs a diagnostic its caret.
fn index_spans(source: &Source) -> SpanIndex {
    let mut builder = SpanBuilder {
        source,
        ascii: source.text().is_ascii(),
        stack: Vec::new(),
        index: SpanIndex::default(),
    };
    let mut parser = Parser::new_from_str(source.text());
    let _ = parser.load(&mut builder, false);
    builder.index
}

enum Frame {
    Map {
        pointer: String,
        key: Option<(String, Span)>,
        /// The first key: a block mapping is shown by its first line.
        first: Option<Span>,
    },
    Seq {
        pointer: String,
        next: usize,
    },
}

struct SpanBuilder<'a> {
    source: &'a Source,
    /// yaml-rust2 counts `Marker::index` in characters; in ASCII text that
    /// is also the byte offset, which saves a line/column walk per node.
    ascii: bool,
    stack: Vec<Frame>,
    index: SpanIndex,
}

impl SpanBuilder<'_> {
    fn offset(&self, mark: Marker) -> usize {
        if self.ascii {
            return mark.index().min(self.source.text().len());
        }
        self.source
            .offset(mark.line(), mark.col() + 1)
            .unwrap_or(self.source.text().len())
    }

    /// The pointer and key span for a node starting now, or `None` when the
    /// node is a mapping key.
    fn place(&mut self) -> Option<(String, Option<Span>)> {
        match self.stack.last_mut() {
            None => Some((String::new(), None)),
            Some(Frame::Seq { pointer, next }) => {
                let p = format!("{pointer}/{next}");
                *next += 1;
                Some((p, None))
            }
            Some(Frame::Map { pointer, key, .. }) => key
                .take()
                .map(|(k, span)| (format!("{pointer}/{}", pointer_segment(&k)), Some(span))),
        }
    }

    fn scalar_end(&self, start: usize, value: &str, style: ScalarStyle) -> usize {
        let text = self.source.text();
        let line_end = self.source.line_span(start).end;
        let rest = &text[start..line_end];
        match style {
            ScalarStyle::Plain if rest.starts_with(value) && !value.is_empty() => {
                start + value.len()
            }
            ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                let quote = if style == ScalarStyle::SingleQuoted {
                    '\''
                } else {
                    '"'
                };
                let mut escaped = false;
                for (i, c) in rest.char_indices().skip(1) {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' && quote == '"' {
                        escaped = true;
                    } else if c == quote {
                        return start + i + 1;
                    }
                }
                line_end
            }
            _ => {
                let trimmed = rest.split(" #").next().unwrap_or(rest).trim_end();
                start + trimmed.len()
            }
        }
    }
}

impl MarkedEventReceiver for SpanBuilder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let start = self.offset(mark);
        match ev {
            Event::Scalar(value, style, _, _) => {
                let style = match style {
                    TScalarStyle::SingleQuoted => ScalarStyle::SingleQuoted,
                    TScalarStyle::DoubleQuoted => ScalarStyle::DoubleQuoted,
                    TScalarStyle::Literal => ScalarStyle::Literal,
                    TScalarStyle::Folded => ScalarStyle::Folded,
                    _ => ScalarStyle::Plain,
                };
                let end = self.scalar_end(start, &value, style);
                match self.place() {
                    Some((pointer, key)) => {
                        self.index.nodes.insert(
                            pointer,
                            NodePos {
                                key,
                                value: start..end,
                                style: Some(style),
                            },
                        );
                    }
                    None => {
                        if let Some(Frame::Map { key, first, .. }) = self.stack.last_mut() {
                            first.get_or_insert(start..end);
                            *key = Some((value, start..end));
                        }
                    }
                }
            }
            Event::Alias(_) => {
                if let Some((pointer, key)) = self.place() {
                    let end = self.scalar_end(start, "", ScalarStyle::Plain);
                    self.index.nodes.insert(
                        pointer,
                        NodePos {
                            key,
                            value: start..end,
                            style: None,
                        },
                    );
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let (pointer, key) = self.place().unwrap_or_else(|| ("/?".to_string(), None));
                let end = self.scalar_end(start, "", ScalarStyle::Plain);
                self.index.nodes.insert(
                    pointer.clone(),
                    NodePos {
                        key,
                        value: start..end.max(start + 1),
                        style: None,
                    },
                );
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        pointer,
                        key: None,
                        first: None,
                    }
                } else {
                    Frame::Seq { pointer, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(Frame::Map {
                    pointer,
                    first: Some(first),
                    ..
                }) = self.stack.pop()
                    && let Some(node) = self.index.nodes.get_mut(&pointer)
                    && !self.source.text()[node.value.start..].starts_with('{')
                {
                    let line = self.source.line_span(first.start);
                    let text = &self.source.text()[first.start..line.end];
                    let end =
                        first.start + text.split(" #").next().unwrap_or(text).trim_end().len();
                    node.value = first.start..end;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        load_str("t.yml", text).unwrap()
    }

    fn at(d: &Document, span: Span) -> &str {
        &d.source.text()[span]
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let d = doc(
            "a: 1\nphases:\n  - id: one\n    steps:\n      - sql: 'SELECT 1'\n        name: \"x y\" # c\n",
        );
        let n = d.spans().node("/phases/0/id").unwrap();
        assert_eq!(at(&d, n.key.clone().unwrap()), "id");
        assert_eq!(at(&d, n.value.clone()), "one");
        assert_eq!(
            at(&d, d.spans().value("/phases/0/steps/0/sql").unwrap()),
            "'SELECT 1'"
        );
        assert_eq!(
            at(&d, d.spans().value("/phases/0/steps/0/name").unwrap()),
            "\"x y\""
        );
        // A missing child falls back to the nearest ancestor.
        assert_eq!(
            d.spans().value("/phases/0/steps/0/nope"),
            d.spans().value("/phases/0/steps/0")
        );
        assert_eq!(d.value["phases"][0]["steps"][0]["sql"], "SELECT 1");
    }

    #[test]
    fn non_ascii_text_keeps_byte_spans_right() {
        let d = doc("é: ü\nkey: value\n");
        assert_eq!(at(&d, d.spans().value("/key").unwrap()), "value");
        assert_eq!(at(&d, d.spans().value("/é").unwrap()), "ü");
    }

    #[test]
    fn tab_indentation_is_named() {
        let err = load_str("t.yml", "a:\n\tb: 1\n").unwrap_err();
        assert_eq!(err.diagnostic.message, "tab character in indentation");
        assert_eq!(err.diagnostic.span, Some(3..3));
    }

    #[test]
    fn deep_nesting_pipes_and_devices_are_refused_at_once() {
        let deep = "[".repeat(80_000);
        let started = std::time::Instant::now();
        let err = load_str("deep.yml", deep).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            err.diagnostic.message.contains("nested too deeply"),
            "{}",
            err.diagnostic.message
        );
        // Brackets in quotes and comments, and normal nesting, are fine.
        assert_eq!(
            too_deep(&format!(
                "a: '{}'\n# {}\nb: [[1], {{c: [2]}}]\nd: it's [ok]\n",
                "[".repeat(100),
                "{".repeat(100)
            )),
            None
        );
        for path in ["/dev/zero", "/dev/null"] {
            let err = load_file(std::path::Path::new(path)).unwrap_err();
            assert!(
                err.diagnostic.message.contains("is not a regular file"),
                "{path}: {}",
                err.diagnostic.message
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = load_file(&fifo).unwrap_err();
        assert!(err.diagnostic.message.contains("is not a regular file"));
    }

    /// The pre-scan as first written, one byte and one state at a time:
    /// the reference the jumping scan must agree with.
    fn too_deep_byte_by_byte(text: &str) -> Option<usize> {
        let (mut depth, mut quote, mut comment) = (0usize, None::<u8>, false);
        let mut prev = b'\n';
        for (i, &c) in text.as_bytes().iter().enumerate() {
            match (quote, c) {
                _ if comment => comment = c != b'\n',
                (Some(q), _) if c == q => quote = None,
                (Some(_), _) => {}
                (None, b'#') if prev.is_ascii_whitespace() => comment = true,
                (None, b'\'' | b'"') if prev.is_ascii_whitespace() || b"[{,:".contains(&prev) => {
                    quote = Some(c);
                }
                (None, b'[' | b'{') => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some(i);
                    }
                }
                (None, b']' | b'}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
        None
    }

    #[test]
    fn the_jumping_depth_scan_agrees_with_the_byte_by_byte_one() {
        // Texts of the characters that move the scan, drawn from a fixed
        // sequence (the same every run), leaning to `[` so that between a
        // quarter and three quarters of them go too deep.
        let alphabet = b"[[[[[[[[[[[[[[[[{]}#'\" \n\ta:,x";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut deep = 0;
        for _ in 0..4000 {
            let len = 40 + (seed >> 33) as usize % 400;
            let text: String = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    alphabet[(seed >> 33) as usize % alphabet.len()] as char
                })
                .collect();
            let want = too_deep_byte_by_byte(&text);
            deep += usize::from(want.is_some());
            assert_eq!(too_deep(&text), want, "{text:?}");
        }
        assert!((1000..3000).contains(&deep), "{deep} of 4000 went too deep");
        for text in [
            "",
            "#",
            "'",
            "\"[",
            "a: '[[' # [",
            "x#[\n",
            "[#\n]",
            "a: it's [ok]",
        ] {
            assert_eq!(too_deep(text), too_deep_byte_by_byte(text), "{text:?}");
        }
    }

    #[test]
    fn at_finds_what_value_pointer_finds() {
        let d = doc("a: {b/c: 1, d~e: [x, y, {f: 2}], '': 3}\nl: [0, 1]\n");
        for p in [
            "",
            "/a",
            "/a/b~1c",
            "/a/d~0e",
            "/a/d~0e/1",
            "/a/d~0e/2/f",
            "/a/",
            "/l/0",
            "/l/1",
            "/l/01",
            "/l/+1",
            "/l/2",
            "/l/-1",
            "/a/b/c",
            "/a/d~e",
            "a",
            "/missing",
            "/l/x",
        ] {
            assert_eq!(d.at(p), d.value.pointer(p), "{p:?}");
        }
        assert_eq!(d.at("/a/d~0e/2/f"), Some(&serde_json::json!(2)));
    }

    #[test]
    fn the_straight_way_reads_what_the_long_way_reads_or_leaves_it_to_it() {
        let long = |text: &str| {
            let yaml = serde_yaml::from_str::<Lenient>(text).ok()?.0;
            to_json(yaml, &mut Vec::new(), &Source::new("t.yml", text)).ok()
        };
        let straight = |text: &str| serde_yaml::from_str::<Json>(text).ok().map(|j| j.0);
        for text in [
            "a: 1\nb: [x, 2.5, -3, true, null, ~]\nc: {d: e}\n",
            "v: 20191100000002000004\nw: -20191100000002000004\n",
            "1: one\ntrue: yes\n18446744073709551616: big\n",
            "s: |\n  line\n  two\nt: 'it''s'\n",
            "[1, [2, [3]]]",
            "plain",
            "",
        ] {
            let s = straight(text);
            assert!(s.is_some(), "{text:?} should go the straight way");
            assert_eq!(s, long(text), "{text:?}");
        }
        // Each of these goes the long way, which refuses it or reads it its own way.
        for text in [
            "a: 1\na: 2\n",
            "1: x\n'1': y\n",
            "? [k]\n: v\n",
            "~: v\n",
            "1.5: v\n",
            "x: !tag v\n",
            "x: .nan\n",
            "x: .inf\n",
            "a: [\n",
        ] {
            assert_eq!(straight(text), None, "{text:?}");
        }
    }

    #[test]
    fn integers_beyond_64_bits_stay_digits() {
        let doc = load_str(
            "v.yml",
            "to: 20191100000002000004\nsmall: 12\nneg: -170141183460469231731687303715884105728\n",
        )
        .unwrap();
        assert_eq!(doc.value["to"], "20191100000002000004");
        assert_eq!(doc.value["small"], 12);
        assert_eq!(doc.value["neg"], "-170141183460469231731687303715884105728");
    }

    #[test]
    fn tags_and_duplicate_keys_are_refused() {
        let err = load_str("t.yml", "a: !Ref x\n").unwrap_err();
        assert_eq!(err.diagnostic.message, "YAML tag `!Ref` is not supported");
        let err = load_str("t.yml", "a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        assert_eq!(err.diagnostic.message, "duplicate key `c`");
        assert_eq!(err.diagnostic.span, Some(17..18));
    }
}
