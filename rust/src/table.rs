//! The checking pass of a typed table (`atrepo.tables`), from each record's CBOR block.
//!
//! Python compiles a collection's lexicon and table shape once into a descriptor (JSON text,
//! `atrepo._table_core`); [`Checker`] holds it. For every record it does what the Python
//! reference (`atrepo._table_check.Checker`, over `atrepo.lexicon._validate`) does over the
//! record's JSON: validate against the lexicon rule for rule, with the same messages in the
//! same order; fit the record to the table's shape (a value of the wrong type becomes null,
//! with a message naming the field); and collect the fields the lexicon does not declare
//! (`extra`). The fitted record is written as JSON text holding only the declared fields, which
//! `str.json_decode` with the shape's dtype reads; nothing is parsed from JSON here.
//!
//! Where a rule needs more than is written here (a string format whose value is not in the
//! common shape, a CID that is not the common sha2-256 v1 kind, `$bytes` spelled out as a
//! map), the record is handed back as *deferred*: the Python reference checks that one
//! record, so the two paths agree by construction on everything the core does not decide.
//! A block that does not turn into JSON (the `records` frame's null) gives a null record.

use std::collections::{HashMap, HashSet};

use serde_json::Value as Json;
use unicode_segmentation::UnicodeSegmentation;

use crate::arrow::ViewColumn;
use crate::car::{verify, Car, Found};
use crate::cbor::{self, Tags, Value};
use crate::error::{CoreError, Field, Result};
use crate::fast::push_int;
use crate::mst::Leaves;
use crate::text::{push_base64, push_cid_str, push_json_str};

/// The table's columns, in order.
pub const NAMES: [&str; 6] = ["did", "rkey", "uri", "cid", "fitted", "extra"];

/// How a problem is worded: by the validator (Python adds `invalid record: `), by the
/// fitting (as is), or a `$type` that is not the collection (the value's JSON; empty when
/// missing), which Python words with the value's repr.
pub const VALIDATOR: u8 = 0;
pub const FITTED: u8 = 1;
pub const RECORD_TYPE: u8 = 2;

/// A record the core does not decide; the reference checks it.
struct Defer;

type Checked<T> = std::result::Result<T, Defer>;

/// One lexicon definition, compiled (`_validate._compile`'s checks, as data).
enum Def {
    Object { props: Vec<(String, usize, bool)>, must: Vec<String> },
    Array { item: usize, max: Option<i64>, min: Option<i64> },
    Union { spell: HashMap<String, usize>, members: HashMap<String, usize>, closed: bool,
            listing: String },
    Boolean { konst: Option<bool> },
    Integer { konst: Option<i64>, choices: Option<Vec<i64>>, max: Option<i64>, min: Option<i64> },
    Text(Box<TextDef>),
    Bytes { max: Option<i64>, min: Option<i64> },
    CidLink,
    Blob,
    Unknown,
    Unexpected(String),
}

struct TextDef {
    konst: Option<String>,
    choices: Option<Vec<String>>,
    max_length: Option<i64>,
    min_length: Option<i64>,
    max_graphemes: Option<i64>,
    min_graphemes: Option<i64>,
    format: Option<String>,
}

/// The kinds of `atrepo.lexicon._shape.Shape`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Datetime,
    Integer,
    Boolean,
    Bytes,
    Cid,
    Json,
    Blob,
    Object,
    Union,
    Array,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Text => "string",
            Kind::Datetime => "datetime",
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
            Kind::Bytes => "bytes",
            Kind::Cid => "cid",
            Kind::Json => "json",
            Kind::Blob => "blob",
            Kind::Object => "object",
            Kind::Union => "union",
            Kind::Array => "array",
        }
    }
}

/// One field's table shape.
struct Shape {
    kind: Kind,
    fields: Vec<(String, Shape)>,
    item: Option<Box<Shape>>,
    refs: HashSet<String>,
}

/// A collection's compiled checks: its record definition and table shape.
pub struct Checker {
    collection: String,
    defs: Vec<Def>,
    root: usize,
    shape: Shape,
    declared: Vec<String>,
}

fn bad(what: &str) -> CoreError {
    CoreError::decode("malformed table descriptor").text("detail", what.to_string())
}

fn int(node: &Json, key: &str) -> Option<i64> {
    node.get(key).and_then(Json::as_i64)
}

fn text(node: &Json, key: &str) -> Option<String> {
    node.get(key).and_then(Json::as_str).map(str::to_string)
}

fn index_map(node: &Json, key: &str) -> Result<HashMap<String, usize>> {
    let map = node.get(key).and_then(Json::as_object).ok_or_else(|| bad(key))?;
    map.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_u64().ok_or_else(|| bad(key))? as usize)))
        .collect()
}

fn parse_def(node: &Json) -> Result<Def> {
    let kind = node.get("t").and_then(Json::as_str).ok_or_else(|| bad("t"))?;
    Ok(match kind {
        "object" => {
            let mut props = Vec::new();
            for prop in node.get("props").and_then(Json::as_array).ok_or_else(|| bad("props"))? {
                let name = prop.get(0).and_then(Json::as_str).ok_or_else(|| bad("prop"))?;
                let at = prop.get(1).and_then(Json::as_u64).ok_or_else(|| bad("prop"))?;
                let nullable = prop.get(2).and_then(Json::as_bool).unwrap_or(false);
                props.push((name.to_string(), at as usize, nullable));
            }
            let must = node.get("must").and_then(Json::as_array).ok_or_else(|| bad("must"))?
                .iter().filter_map(|m| m.as_str().map(str::to_string)).collect();
            Def::Object { props, must }
        }
        "array" => Def::Array {
            item: int(node, "item").ok_or_else(|| bad("item"))? as usize,
            max: int(node, "max"),
            min: int(node, "min"),
        },
        "union" => Def::Union {
            spell: index_map(node, "spell")?,
            members: index_map(node, "members")?,
            closed: node.get("closed").and_then(Json::as_bool).unwrap_or(false),
            listing: text(node, "listing").unwrap_or_default(),
        },
        "boolean" => Def::Boolean { konst: node.get("const").and_then(Json::as_bool) },
        "integer" => Def::Integer {
            konst: int(node, "const"),
            choices: node.get("enum").and_then(Json::as_array)
                .map(|e| e.iter().filter_map(Json::as_i64).collect()),
            max: int(node, "max"),
            min: int(node, "min"),
        },
        "string" => Def::Text(Box::new(TextDef {
            konst: text(node, "const"),
            choices: node.get("enum").and_then(Json::as_array)
                .map(|e| e.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()),
            max_length: int(node, "maxLength"),
            min_length: int(node, "minLength"),
            max_graphemes: int(node, "maxGraphemes"),
            min_graphemes: int(node, "minGraphemes"),
            format: text(node, "format"),
        })),
        "bytes" => Def::Bytes { max: int(node, "max"), min: int(node, "min") },
        "cid-link" => Def::CidLink,
        "blob" => Def::Blob,
        "unknown" => Def::Unknown,
        "unexpected" => Def::Unexpected(text(node, "message").unwrap_or_default()),
        _ => return Err(bad(kind)),
    })
}

fn parse_shape(node: &Json) -> Result<Shape> {
    let kind = match node.get("k").and_then(Json::as_str).ok_or_else(|| bad("k"))? {
        "string" => Kind::Text,
        "datetime" => Kind::Datetime,
        "integer" => Kind::Integer,
        "boolean" => Kind::Boolean,
        "bytes" => Kind::Bytes,
        "cid" => Kind::Cid,
        "json" => Kind::Json,
        "blob" => Kind::Blob,
        "object" => Kind::Object,
        "union" => Kind::Union,
        "array" => Kind::Array,
        other => return Err(bad(other)),
    };
    let mut fields = Vec::new();
    for field in node.get("f").and_then(Json::as_array).map_or(&[][..], Vec::as_slice) {
        let name = field.get(0).and_then(Json::as_str).ok_or_else(|| bad("f"))?;
        fields.push((name.to_string(), parse_shape(field.get(1).ok_or_else(|| bad("f"))?)?));
    }
    let item = match node.get("i") {
        Some(item) => Some(Box::new(parse_shape(item)?)),
        None => None,
    };
    let refs = node.get("refs").and_then(Json::as_array).map_or(&[][..], Vec::as_slice)
        .iter().filter_map(|r| r.as_str().map(str::to_string)).collect();
    Ok(Shape { kind, fields, item, refs })
}

/// A path into the record, rendered only for a problem (`Record/embed/images/0`).
#[derive(Clone, Copy)]
enum Seg<'v> {
    Key(&'v str),
    Index(usize),
}

fn render(path: &[Seg<'_>]) -> String {
    let mut out = String::from("Record");
    for seg in path {
        out.push('/');
        match seg {
            Seg::Key(k) => out.push_str(k),
            Seg::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// The value under text key `key` of a map (the JSON object's property).
fn get<'v, 'a>(value: &'v Value<'a>, key: &str) -> Option<&'v Value<'a>> {
    match value {
        Value::Map(pairs) => pairs.iter().find_map(|(k, v)| match k {
            Value::Text(t) if *t == key => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

/// Whether a value is a JSON object (links and bytes are `{"$link"}`/`{"$bytes"}` objects).
fn is_dict(value: &Value<'_>) -> bool {
    matches!(value, Value::Map(_) | Value::Link(_) | Value::Bytes(_))
}

/// The number of properties of a JSON object.
fn dict_len(value: &Value<'_>) -> usize {
    match value {
        Value::Map(pairs) => pairs.len(),
        _ => 1,
    }
}

/// The name `_table_check._json_type` gives a (non-null) JSON value.
fn json_type(value: &Value<'_>) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Text(_) => "string",
        Value::Array(_) => "array",
        _ => "object",
    }
}

/// Whether the record's JSON text exists (`record::record_json` succeeds on it).
fn representable(value: &Value<'_>) -> bool {
    match value {
        Value::Map(pairs) => pairs.iter().all(|(k, v)| matches!(k, Value::Text(_)) && representable(v)),
        Value::Array(items) => items.iter().all(representable),
        Value::Int(v) => i64::try_from(*v).is_ok(),
        Value::Text(_) | Value::Bytes(_) | Value::Link(_) | Value::Bool(_) | Value::Null => true,
        Value::Float(_) | Value::Undefined | Value::Simple(_) | Value::Tag(..) => false,
    }
}

/// The JSON text of a representable value, as the `records` frame holds it.
fn push_json(out: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::Map(pairs) => {
            out.push(b'{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if let Value::Text(t) = key {
                    push_json_str(out, t);
                }
                out.push(b':');
                push_json(out, item);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json(out, item);
            }
            out.push(b']');
        }
        Value::Text(t) => push_json_str(out, t),
        Value::Bytes(b) => {
            out.extend_from_slice(b"{\"$bytes\":\"");
            push_base64(out, b);
            out.extend_from_slice(b"\"}");
        }
        Value::Link(raw) => push_link(out, raw),
        Value::Int(v) => push_int(out, *v),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        _ => out.extend_from_slice(b"null"),
    }
}

fn push_link(out: &mut Vec<u8>, raw: &[u8]) {
    out.extend_from_slice(b"{\"$link\":\"");
    push_cid_str(out, raw);
    out.extend_from_slice(b"\"}");
}

/// A binary CID of the common kind (v1, dag-cbor or raw, sha2-256): its string matches
/// `_validate._COMMON_CID`.
fn common_cid(raw: &[u8]) -> bool {
    raw.len() == 36 && raw[0] == 1 && (raw[1] == 0x71 || raw[1] == 0x55) && raw[2] == 0x12
        && raw[3] == 0x20
}

/// `_validate._COMMON_CID` (`baf[yk]rei[a-z2-7]{52}`).
fn common_cid_text(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 59 && b.starts_with(b"baf") && (b[3] == b'y' || b[3] == b'k') && &b[4..7] == b"rei"
        && b[7..].iter().all(|&c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
}

/// Whether a `{"$link"}` value names a CID (`_validate._link`); undecided for uncommon CIDs.
fn link_ok(value: Option<&Value<'_>>) -> Checked<bool> {
    match value {
        Some(Value::Link(raw)) => if common_cid(raw) { Ok(true) } else { Err(Defer) },
        Some(map @ Value::Map(pairs)) if pairs.len() == 1 => match get(map, "$link") {
            Some(Value::Text(t)) => if common_cid_text(t) { Ok(true) } else { Err(Defer) },
            _ => Ok(false),
        },
        _ => Ok(false),
    }
}

/// `_validate.is_blob`.
fn is_blob(value: &Value<'_>) -> Checked<bool> {
    if !matches!(value, Value::Map(_)) {
        return Ok(false);
    }
    let mime = matches!(get(value, "mimeType"), Some(Value::Text(_)));
    if matches!(get(value, "$type"), Some(Value::Text("blob"))) {
        let sized = matches!(get(value, "size"), Some(Value::Int(_)));
        return Ok(dict_len(value) == 4 && link_ok(get(value, "ref"))? && mime && sized);
    }
    match get(value, "cid") {
        Some(Value::Text(cid)) if dict_len(value) == 2 && mime => {
            if common_cid_text(cid) { Ok(true) } else { Err(Defer) }
        }
        _ => Ok(false),
    }
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

/// `_strings.is_iso_datetime` for a datetime in the usual shape (`2024-05-01T12:00:00.123Z`,
/// a day of the calendar by the reference's rules): accepted, else undecided.
fn datetime_ok(t: &str) -> Checked<bool> {
    let b = t.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return Err(Defer);
    }
    let shape = digits(&b[0..4]) && b[4] == b'-' && digits(&b[5..7]) && b[7] == b'-'
        && digits(&b[8..10]) && b[10] == b'T' && digits(&b[11..13]) && b[13] == b':'
        && digits(&b[14..16]) && b[16] == b':' && digits(&b[17..19]);
    let fraction = &b[19..b.len() - 1];
    let fraction_ok = fraction.is_empty() || (fraction[0] == b'.' && (2..=10).contains(&fraction.len())
                                              && digits(&fraction[1..]));
    if !shape || !fraction_ok {
        return Err(Defer);
    }
    let two = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    let (year, month, day) = (two(0) * 100 + two(2), two(5), two(8));
    if two(11) > 23 || two(14) > 59 || two(17) > 59 {
        return Err(Defer); // 24:00 and leap seconds have rules of their own
    }
    // the reference's leap years are the Gregorian ones, but for the year 0000
    let leap = (year % 4 == 0 && year % 100 != 0) || (year % 400 == 0 && year != 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year == 0 => return Err(Defer),
        2 => if leap { 29 } else { 28 },
        _ => return Err(Defer),
    };
    // a datetime the reference refuses is rare: it is left to the reference to word
    if (1..=days).contains(&day) { Ok(true) } else { Err(Defer) }
}

/// `syntax.is_did`.
fn is_did(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("did:") else { return false };
    let Some((method, id)) = rest.split_once(':') else { return false };
    t.len() <= 2048 && !method.is_empty() && method.bytes().all(|c| c.is_ascii_lowercase())
        && id.bytes().all(|c| c.is_ascii_alphanumeric() || b"._:%-".contains(&c))
        && id.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

/// `syntax.is_tid`.
fn is_tid(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 13 && (b"234567".contains(&b[0]) || (b'a'..=b'j').contains(&b[0]))
        && b[1..].iter().all(|&c| (b'2'..=b'7').contains(&c) || c.is_ascii_lowercase())
}

/// `_strings.is_lexicon_uri`, exactly, for ASCII text (where `\s` is these bytes).
fn lexicon_uri(t: &str) -> Checked<bool> {
    if !t.is_ascii() {
        return Err(Defer);
    }
    let space = |c: &u8| matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ');
    let Some((scheme, rest)) = t.split_once(':') else { return Ok(false) };
    let r = rest.as_bytes();
    let scheme_ok = !scheme.is_empty() && scheme.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    let start_ok = if r.starts_with(b"//") { r.len() > 2 && r[2] != b'/' } else { r.first().is_some_and(|&c| c != b'/') };
    Ok(scheme_ok && start_ok && !r.iter().any(space))
}

/// One NSID-like segment `[a-z][a-z0-9-]{0,61}[a-z0-9]` of `_validate._COMMON_AT_URI`.
fn common_segment(s: &[u8]) -> bool {
    (2..=63).contains(&s.len()) && s[0].is_ascii_lowercase()
        && s[s.len() - 1].is_ascii_lowercase() | s[s.len() - 1].is_ascii_digit()
        && s.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// `_validate._COMMON_AT_URI`: a did:plc, an NSID of 3+ segments, a TID-like key.
fn common_at_uri(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("at://did:plc:") else { return false };
    let parts: Vec<&str> = rest.split('/').collect();
    let [id, nsid, rkey] = parts[..] else { return false };
    let b32 = |c: u8| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c);
    let segments: Vec<&[u8]> = nsid.as_bytes().split(|&c| c == b'.').collect();
    let Some((name, authority)) = segments.split_last() else { return false };
    id.len() == 24 && id.bytes().all(b32) && segments.len() >= 3
        && authority.iter().all(|s| common_segment(s))
        && (1..=63).contains(&name.len()) && name[0].is_ascii_alphabetic()
        && name.iter().all(u8::is_ascii_alphanumeric)
        && rkey.len() == 13 && (b"234567".contains(&rkey.as_bytes()[0])
                                || (b'a'..=b'j').contains(&rkey.as_bytes()[0]))
        && rkey.bytes().skip(1).all(b32)
}

/// Language tags of the common shapes (`en`, `pt-BR`, `zh-Hant`, `es-419`), which
/// `_strings.is_bcp47` accepts; any other shape is left to the reference.
fn common_language(t: &str) -> bool {
    let mut parts = t.split('-');
    let alpha = |s: &str, n: std::ops::RangeInclusive<usize>| n.contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphabetic());
    let Some(language) = parts.next() else { return false };
    if !alpha(language, 2..=3) {
        return false;
    }
    let mut next = parts.next();
    if next.is_some_and(|s| alpha(s, 4..=4)) {
        next = parts.next();
    }
    let region_ok = next.is_none_or(|s| alpha(s, 2..=2) || (s.len() == 3 && digits(s.as_bytes())));
    region_ok && parts.next().is_none()
}

/// The verdict of a string format: accepted, rejected, or left to the reference.
fn format_ok(format: &str, t: &str) -> Checked<bool> {
    match format {
        "datetime" => datetime_ok(t),
        "uri" => lexicon_uri(t),
        "at-uri" => if common_at_uri(t) { Ok(true) } else { Err(Defer) },
        "did" => Ok(is_did(t)),
        "tid" => Ok(is_tid(t)),
        "cid" => if common_cid_text(t) { Ok(true) } else { Err(Defer) },
        "language" => if common_language(t) { Ok(true) } else { Err(Defer) },
        _ => Err(Defer),
    }
}

/// The reference's message of a format that does not accept the value.
fn format_message(format: &str) -> &'static str {
    match format {
        "datetime" => "must be an valid atproto datetime (both RFC-3339 and ISO-8601)",
        "uri" => "must be a uri",
        "at-uri" => "must be a valid at-uri",
        "did" => "must be a valid did",
        "handle" => "must be a valid handle",
        "at-identifier" => "must be a valid did or a handle",
        "nsid" => "must be a valid nsid",
        "cid" => "must be a cid string",
        "language" => "must be a well-formed BCP 47 language tag",
        "tid" => "must be a valid TID",
        _ => "must be a valid Record Key",
    }
}

/// Strip `lex:` and add it back, without `#main` (`_validate._normalize`).
fn normalize(member: &str) -> String {
    let bare = member.strip_prefix("lex:").unwrap_or(member);
    let bare = bare.strip_suffix("#main").unwrap_or(bare);
    format!("lex:{bare}")
}

/// What one record gave: problems (kind, text) and, unless it was left to the reference,
/// its fitted JSON and `extra` JSON.
pub struct Outcome {
    pub problems: Vec<(u8, String)>,
    pub deferred: bool,
    pub extra: bool,
}

impl Checker {
    /// Compile a descriptor (JSON text: `collection`, `root`, `defs`, `shape`).
    pub fn new(descriptor: &str) -> Result<Self> {
        let doc: Json = serde_json::from_str(descriptor).map_err(|e| bad(&e.to_string()))?;
        let collection = text(&doc, "collection").ok_or_else(|| bad("collection"))?;
        let defs = doc.get("defs").and_then(Json::as_array).ok_or_else(|| bad("defs"))?
            .iter().map(parse_def).collect::<Result<Vec<_>>>()?;
        let root = int(&doc, "root").ok_or_else(|| bad("root"))? as usize;
        let shape = parse_shape(doc.get("shape").ok_or_else(|| bad("shape"))?)?;
        let indices_ok = |i: usize| i < defs.len();
        let linked = defs.iter().all(|d| match d {
            Def::Object { props, .. } => props.iter().all(|(_, i, _)| indices_ok(*i)),
            Def::Array { item, .. } => indices_ok(*item),
            Def::Union { spell, members, .. } => spell.values().chain(members.values()).all(|i| indices_ok(*i)),
            _ => true,
        });
        if !linked || !indices_ok(root) {
            return Err(bad("a definition index is out of range"));
        }
        let mut declared: Vec<String> = shape.fields.iter().map(|(n, _)| n.clone()).collect();
        declared.push("$type".to_string());
        Ok(Checker { collection, defs, root, shape, declared })
    }

    /// Check the record block `data`, appending its fitted JSON to `fitted` and its extra
    /// JSON to `extra` (None: no JSON text, or left to the reference).
    pub fn record(&self, data: &[u8], fitted: &mut Vec<u8>, extra: &mut Vec<u8>) -> Option<Outcome> {
        let (value, _) = cbor::decode(data, Tags::Links).ok()?;
        if !matches!(value, Value::Map(_)) || !representable(&value) {
            return None;
        }
        let mut found: Vec<(u8, String)> = Vec::new();
        match get(&value, "$type") {
            Some(Value::Text(t)) if *t == self.collection => {}
            other => {
                let mut shown = Vec::new();
                if let Some(v) = other {
                    push_json(&mut shown, v);
                }
                found.push((RECORD_TYPE, String::from_utf8(shown).unwrap_or_default()));
            }
        }
        let mut path = Vec::new();
        let mut messages = Vec::new();
        let deferred = Outcome { problems: Vec::new(), deferred: true, extra: false };
        if self.check(self.root, &value, &mut path, &mut messages).is_err() {
            return Some(deferred);
        }
        found.extend(messages.into_iter().map(|m| (VALIDATOR, m)));
        let mut nulled = Vec::new();
        self.fit_object(&self.shape, &value, &mut path, &mut nulled, fitted);
        let has_extra = self.push_extra(&value, extra);
        if !nulled.is_empty() {
            // the table's own message replaces the validator's for a nulled field
            let paths: Vec<String> = nulled.iter().map(|(p, _)| format!("{p} ")).collect();
            found.retain(|(kind, m)| {
                let shown = if *kind == RECORD_TYPE { "Record/$type is " } else { m.as_str() };
                !paths.iter().any(|p| shown.starts_with(p.as_str()))
            });
            found.extend(nulled.into_iter().map(|(_, m)| (FITTED, m)));
        }
        Some(Outcome { problems: found, deferred: false, extra: has_extra })
    }

    fn push_extra(&self, value: &Value<'_>, out: &mut Vec<u8>) -> bool {
        let Value::Map(pairs) = value else { return false };
        let mut any = false;
        for (key, item) in pairs {
            let Value::Text(name) = key else { continue };
            if self.declared.iter().any(|d| d == name) {
                continue;
            }
            out.push(if any { b',' } else { b'{' });
            any = true;
            push_json_str(out, name);
            out.push(b':');
            push_json(out, item);
        }
        if any {
            out.push(b'}');
        }
        any
    }

    // -- validation (`_validate`) --------------------------------------------------------

    fn check<'v>(&self, at: usize, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>,
                 out: &mut Vec<String>) -> Checked<()> {
        match &self.defs[at] {
            Def::Object { props, must } => self.check_object(props, must, value, path, out)?,
            Def::Array { item, max, min } => {
                let Value::Array(items) = value else {
                    out.push(format!("{} must be an array", render(path)));
                    return Ok(());
                };
                let n = items.len() as i64;
                if let Some(max) = max.filter(|&m| n > m) {
                    out.push(format!("{} must not have more than {max} elements", render(path)));
                }
                if let Some(min) = min.filter(|&m| n < m) {
                    out.push(format!("{} must not have fewer than {min} elements", render(path)));
                }
                for (i, item_value) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    let done = self.check(*item, item_value, path, out);
                    path.pop();
                    done?;
                }
            }
            Def::Union { spell, members, closed, listing } => {
                let member = match get(value, "$type") {
                    Some(Value::Text(t)) => *t,
                    _ => {
                        out.push(format!("{} must be an object which includes the \"$type\" property",
                                         render(path)));
                        return Ok(());
                    }
                };
                let found = spell.get(member).copied().or_else(|| {
                    if member.matches('#').count() > 1 { None } else { members.get(&normalize(member)).copied() }
                });
                match found {
                    Some(at) => self.check(at, value, path, out)?,
                    None if member.matches('#').count() > 1 => {
                        out.push(format!("{}/$type is not a lexicon reference", render(path)));
                    }
                    None if *closed => out.push(format!("{} $type must be one of {listing}", render(path))),
                    None => {}
                }
            }
            Def::Boolean { konst } => match value {
                Value::Bool(b) => {
                    if let Some(k) = konst.filter(|k| k != b) {
                        out.push(format!("{} must be {k}", render(path)));
                    }
                }
                _ => out.push(format!("{} must be a boolean", render(path))),
            },
            Def::Integer { konst, choices, max, min } => {
                let Value::Int(v) = *value else {
                    out.push(format!("{} must be an integer", render(path)));
                    return Ok(());
                };
                if let Some(k) = konst.filter(|&k| i128::from(k) != v) {
                    out.push(format!("{} must be {k}", render(path)));
                }
                if let Some(choices) = choices.as_ref().filter(|c| !c.iter().any(|&e| i128::from(e) == v)) {
                    let listing: Vec<String> = choices.iter().map(i64::to_string).collect();
                    out.push(format!("{} must be one of ({})", render(path), listing.join("|")));
                }
                if let Some(max) = max.filter(|&m| v > i128::from(m)) {
                    out.push(format!("{} can not be greater than {max}", render(path)));
                }
                if let Some(min) = min.filter(|&m| v < i128::from(m)) {
                    out.push(format!("{} can not be less than {min}", render(path)));
                }
            }
            Def::Text(def) => {
                let Value::Text(t) = *value else {
                    out.push(format!("{} must be a string", render(path)));
                    return Ok(());
                };
                check_text(def, t, path, out)?;
            }
            Def::Bytes { max, min } => {
                let data = match value {
                    Value::Bytes(b) => *b,
                    Value::Map(pairs) if pairs.len() == 1 && matches!(get(value, "$bytes"), Some(Value::Text(_))) => {
                        return Err(Defer); // base64 spelled out: the reference decodes it
                    }
                    _ => {
                        out.push(format!("{} must be a byte array", render(path)));
                        return Ok(());
                    }
                };
                let n = data.len() as i64;
                if let Some(max) = max.filter(|&m| n > m) {
                    out.push(format!("{} must not be larger than {max} bytes", render(path)));
                }
                if let Some(min) = min.filter(|&m| n < m) {
                    out.push(format!("{} must not be smaller than {min} bytes", render(path)));
                }
            }
            Def::CidLink => {
                if !link_ok(Some(value))? {
                    out.push(format!("{} must be a CID", render(path)));
                }
            }
            Def::Blob => {
                if !is_blob(value)? {
                    out.push(format!("{} should be a blob ref", render(path)));
                }
            }
            Def::Unknown => {
                if !is_dict(value) && !matches!(value, Value::Array(_)) {
                    out.push(format!("{} must be an object", render(path)));
                }
            }
            Def::Unexpected(message) => out.push(message.clone()),
        }
        Ok(())
    }

    fn check_object<'v>(&self, props: &[(String, usize, bool)], must: &[String],
                        value: &'v Value<'v>, path: &mut Vec<Seg<'v>>, out: &mut Vec<String>)
                        -> Checked<()> {
        let pairs: &[(Value<'_>, Value<'_>)] = match value {
            Value::Map(pairs) => pairs,
            Value::Array(_) => &[], // an object without properties, as in JavaScript
            Value::Link(_) | Value::Bytes(_) => {
                let key = if matches!(value, Value::Link(_)) { "$link" } else { "$bytes" };
                if props.iter().any(|(name, ..)| name == key) {
                    return Err(Defer);
                }
                &[]
            }
            _ => {
                out.push(format!("{} must be an object", render(path)));
                return Ok(());
            }
        };
        for (key, item) in pairs {
            let Value::Text(name) = key else { continue };
            if let Some(&(_, at, nullable)) = props.iter().find(|(p, ..)| p == name) {
                if matches!(item, Value::Null) && nullable {
                    continue;
                }
                path.push(Seg::Key(name));
                let done = self.check(at, item, path, out);
                path.pop();
                done?;
            }
        }
        let single = match value {
            Value::Link(_) => Some("$link"),
            Value::Bytes(_) => Some("$bytes"),
            _ => None,
        };
        for name in must {
            let present = match value {
                Value::Map(_) => get(value, name).is_some(),
                _ => single == Some(name.as_str()),
            };
            if !present {
                out.push(format!("{} must have the property \"{name}\"", render(path)));
            }
        }
        Ok(())
    }

    // -- fitting (`_table_check._clean`) -------------------------------------------------

    /// Write the value that fits `shape` (or `null`, noting why in `nulled`).
    fn fit<'v>(&self, shape: &'v Shape, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>,
               nulled: &mut Vec<(String, String)>, out: &mut Vec<u8>) {
        let start = out.len();
        let fits = match (shape.kind, value) {
            (_, Value::Null) => {
                out.extend_from_slice(b"null");
                return;
            }
            (Kind::Text | Kind::Datetime, Value::Text(t)) => {
                push_json_str(out, t);
                true
            }
            (Kind::Integer, Value::Int(v)) => {
                push_int(out, *v);
                true
            }
            (Kind::Boolean, Value::Bool(b)) => {
                out.extend_from_slice(if *b { b"true" } else { b"false" });
                true
            }
            (Kind::Cid, _) => fit_wrapped(value, "$link", out),
            (Kind::Bytes, _) => fit_wrapped(value, "$bytes", out),
            (Kind::Blob, _) => fit_blob(value, out),
            (Kind::Json, _) => {
                let mut text = Vec::new();
                push_json(&mut text, value);
                push_json_str(out, std::str::from_utf8(&text).unwrap_or_default());
                true
            }
            (Kind::Array, Value::Array(items)) => {
                let item_shape = shape.item.as_deref().unwrap_or(shape);
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    path.push(Seg::Index(i));
                    self.fit(item_shape, item, path, nulled, out);
                    path.pop();
                }
                out.push(b']');
                true
            }
            (Kind::Object | Kind::Union, _) if is_dict(value) => {
                self.fit_object(shape, value, path, nulled, out);
                true
            }
            _ => false,
        };
        if !fits {
            out.truncate(start);
            out.extend_from_slice(b"null");
            let place = render(path);
            let message = format!("{place}: a {} where the table has {}; null in the table",
                                  json_type(value), shape.kind.name());
            nulled.push((place, message));
        }
    }

    /// `_clean_object`: an object's (or union member's) declared fields, fitted.
    fn fit_object<'v>(&self, shape: &'v Shape, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>,
                      nulled: &mut Vec<(String, String)>, out: &mut Vec<u8>) {
        if shape.kind == Kind::Union {
            let Some(Value::Text(member)) = get(value, "$type") else {
                let place = render(path);
                let message = format!("{place}: a union member without $type; null in the table");
                nulled.push((place, message));
                out.extend_from_slice(b"null");
                return;
            };
            if !known_member(member, &shape.refs) {
                // an open union's other member: only its $type fits
                out.extend_from_slice(b"{\"$type\":");
                push_json_str(out, member);
                out.push(b'}');
                return;
            }
        }
        out.push(b'{');
        let mut first = true;
        for (name, field) in &shape.fields {
            let Some(item) = get(value, name) else { continue };
            if matches!(item, Value::Null) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            push_json_str(out, name);
            out.push(b':');
            path.push(Seg::Key(name));
            self.fit(field, item, path, nulled, out);
            path.pop();
        }
        out.push(b'}');
    }
}

/// `_clean_object`'s test of a union member against the union's references.
fn known_member(member: &str, refs: &HashSet<String>) -> bool {
    let reference = if member.starts_with("lex:") { member.to_string() } else { format!("lex:{member}") };
    refs.contains(&reference)
        || reference.strip_suffix("#main").is_some_and(|r| refs.contains(r))
        || refs.contains(&format!("{reference}#main"))
}

/// A `{"$link": text}` or `{"$bytes": text}` value (a link or bytes, or a map so spelled),
/// written as that one-property object; false when it does not fit.
fn fit_wrapped(value: &Value<'_>, key: &str, out: &mut Vec<u8>) -> bool {
    match (value, key) {
        (Value::Link(raw), "$link") => push_link(out, raw),
        (Value::Bytes(b), "$bytes") => {
            out.extend_from_slice(b"{\"$bytes\":\"");
            push_base64(out, b);
            out.extend_from_slice(b"\"}");
        }
        _ => {
            let Some(Value::Text(t)) = get(value, key) else { return false };
            out.push(b'{');
            push_json_str(out, key);
            out.push(b':');
            push_json_str(out, t);
            out.push(b'}');
        }
    }
    true
}

/// `_table_check.blob_fits`, writing the parts of the blob the table reads.
fn fit_blob(value: &Value<'_>, out: &mut Vec<u8>) -> bool {
    let Some(Value::Text(mime)) = get(value, "mimeType") else { return false };
    let link = match get(value, "ref") {
        Some(r @ (Value::Link(_) | Value::Map(_))) => {
            let mut link = Vec::new();
            fit_wrapped(r, "$link", &mut link).then_some(link)
        }
        _ => None,
    };
    if let Some(link) = link {
        let size = match get(value, "size") {
            None | Some(Value::Null) => None,
            Some(Value::Int(v)) => Some(*v),
            Some(_) => return false,
        };
        out.extend_from_slice(b"{\"ref\":");
        out.extend_from_slice(&link);
        out.extend_from_slice(b",\"mimeType\":");
        push_json_str(out, mime);
        if let Some(size) = size {
            out.extend_from_slice(b",\"size\":");
            push_int(out, size);
        }
        out.push(b'}');
        return true;
    }
    let Some(Value::Text(cid)) = get(value, "cid") else { return false };
    out.extend_from_slice(b"{\"mimeType\":");
    push_json_str(out, mime);
    out.extend_from_slice(b",\"cid\":");
    push_json_str(out, cid);
    out.push(b'}');
    true
}

/// `_validate._string`'s tests after the type: const, enum, lengths, graphemes, format.
fn check_text(def: &TextDef, t: &str, path: &[Seg<'_>], out: &mut Vec<String>) -> Checked<()> {
    if let Some(k) = def.konst.as_ref().filter(|k| k.as_str() != t) {
        out.push(format!("{} must be {k}", render(path)));
    }
    if let Some(choices) = def.choices.as_ref().filter(|c| !c.iter().any(|e| e == t)) {
        out.push(format!("{} must be one of ({})", render(path), choices.join("|")));
    }
    let size = t.len() as i64;
    if let Some(max) = def.max_length.filter(|&m| size > m) {
        out.push(format!("{} must not be longer than {max} characters", render(path)));
    } else if let Some(min) = def.min_length.filter(|&m| size < m) {
        out.push(format!("{} must not be shorter than {min} characters", render(path)));
    }
    if def.max_graphemes.is_some() || def.min_graphemes.is_some() {
        // a string has at most as many graphemes as code points
        let skip = def.min_graphemes.is_none()
            && def.max_graphemes.is_some_and(|m| t.chars().count() as i64 <= m);
        if !skip {
            let count = t.graphemes(true).count() as i64;
            if let Some(max) = def.max_graphemes.filter(|&m| count > m) {
                out.push(format!("{} must not be longer than {max} graphemes", render(path)));
            } else if let Some(min) = def.min_graphemes.filter(|&m| count < m) {
                out.push(format!("{} must not be shorter than {min} graphemes", render(path)));
            }
        }
    }
    if let Some(format) = def.format.as_deref() {
        if !format_ok(format, t)? {
            out.push(format!("{} {}", render(path), format_message(format)));
        }
    }
    Ok(())
}

/// What a table's checking pass hands back: its columns ([`NAMES`]), the problems
/// (row, kind, text) in row order, and the rows left to the reference.
pub struct Table {
    pub columns: Vec<ViewColumn>,
    pub problems: Vec<(usize, u8, String)>,
    pub deferred: Vec<usize>,
}

/// Fewer records than this are checked on the calling thread alone (a thread costs more).
const PARALLEL_MIN: usize = 20_000;

/// Check the records under `leaves` (one collection's keys and record CIDs).
///
/// A record block that is missing, or does not match its CID when `verify_cids`, fails the
/// call with the error of the first such record in key order, as decoding `records` does.
/// A big collection is checked in two halves side by side (the GIL is released).
pub fn check_records(checker: &Checker, car: &Car, buf: &[u8], leaves: &Leaves, did: &str,
                     verify_cids: bool) -> Result<Table> {
    let n = leaves.len();
    let found = car.locate_many(buf, n, |i| leaves.value(i));
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = if n < PARALLEL_MIN { 1 } else { cores.clamp(1, 2) };
    let chunk = n.div_ceil(threads).max(1);
    let parts: Vec<Result<Part>> = std::thread::scope(|scope| {
        let work = |from: usize| {
            let rows = from..(from + chunk).min(n);
            check_part(checker, car, buf, leaves, &found[rows.clone()], rows, verify_cids)
        };
        let handles: Vec<_> = (chunk..n).step_by(chunk).map(|from| scope.spawn(move || work(from))).collect();
        let mut parts = vec![work(0)];
        // a panic in a thread is re-raised here, and PyO3 turns it into an exception
        parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
        parts
    });
    let mut fitted = ViewColumn::new(n);
    let mut extra = ViewColumn::new(n);
    fitted.all_null();
    extra.all_null();
    let (mut problems, mut deferred) = (Vec::new(), Vec::new());
    for part in parts {
        let part = part?; // parts are in key order: the first failure is the first in order
        fitted.adopt(part.fitted);
        extra.adopt(part.extra);
        problems.extend(part.problems);
        deferred.extend(part.deferred);
    }
    let mut columns = key_columns(leaves, did);
    columns.extend([fitted, extra]);
    Ok(Table { columns, problems, deferred })
}

/// What one thread checked: its rows' fitted and extra texts, problems and deferred rows.
struct Part {
    fitted: ViewColumn,
    extra: ViewColumn,
    problems: Vec<(usize, u8, String)>,
    deferred: Vec<usize>,
}

/// Check rows `rows` (their blocks `found`), in key order.
fn check_part(checker: &Checker, car: &Car, buf: &[u8], leaves: &Leaves, found: &[Found],
              rows: std::ops::Range<usize>, verify_cids: bool) -> Result<Part> {
    let mut part = Part { fitted: ViewColumn::sparse(rows.len()), extra: ViewColumn::sparse(0),
                          problems: Vec::new(), deferred: Vec::new() };
    let mut extra_text = Vec::new();
    for (i, place) in rows.zip(found) {
        let Some((id, alone)) = place.get() else {
            return Err(CoreError::mst("record block missing from CAR")
                .with("cid", Field::CidText(leaves.value(i).to_vec()))
                .hint("the CAR is incomplete"));
        };
        let block = car.block(id);
        if verify_cids {
            verify(buf, leaves.value(i), block, alone)?;
        }
        let data = &buf[block.offset..block.offset + block.length];
        extra_text.clear();
        // the fitted JSON is at most the record's JSON (8 bytes a byte), twice for JSON
        // kept as text inside a string
        let out = part.fitted.reserve(16 * data.len() + 64);
        let start = out.len();
        let Some(outcome) = checker.record(data, out, &mut extra_text) else {
            out.truncate(start);
            continue;
        };
        if outcome.deferred {
            out.truncate(start);
            part.deferred.push(i);
            continue;
        }
        let (b, end) = part.fitted.cursor();
        part.fitted.push_written(i, b, start, end - start);
        if outcome.extra {
            let buffer = part.extra.reserve(extra_text.len());
            let at = buffer.len();
            buffer.extend_from_slice(&extra_text);
            let (b, _) = part.extra.cursor();
            part.extra.push_written(i, b, at, extra_text.len());
        }
        part.problems.extend(outcome.problems.into_iter().map(|(kind, text)| (i, kind, text)));
    }
    Ok(part)
}

/// did, rkey, uri and cid of the table, in key order.
fn key_columns(leaves: &Leaves, did: &str) -> Vec<ViewColumn> {
    let n = leaves.len();
    let mut did_col = ViewColumn::new(n);
    let mut rkey = ViewColumn::new(n);
    let mut uri = ViewColumn::new(n);
    let mut cid = ViewColumn::new(n);
    let mut text = Vec::with_capacity(256);
    for i in 0..n {
        let key = leaves.key(i);
        let slash = key.iter().position(|&b| b == b'/').map_or(key.len(), |s| s + 1);
        if i == 0 {
            did_col.set(0, did.as_bytes());
        } else {
            did_col.share(i, 0);
        }
        rkey.set(i, &key[slash.min(key.len())..]);
        text.clear();
        text.extend_from_slice(b"at://");
        text.extend_from_slice(did.as_bytes());
        text.push(b'/');
        text.extend_from_slice(key);
        uri.set(i, &text);
        text.clear();
        push_cid_str(&mut text, leaves.value(i));
        cid.set(i, &text);
    }
    vec![did_col, rkey, uri, cid]
}

// -- the Python interface ---------------------------------------------------------------

use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::{arrow, leaves_of, raise, PyCar, PyKeys, PyValues};

/// A collection's compiled checks, built once from its descriptor.
#[pyclass(module = "atrepo._core", name = "TableChecker", frozen)]
pub struct PyTableChecker {
    checker: Checker,
}

#[pymethods]
impl PyTableChecker {
    #[new]
    fn new(py: Python<'_>, descriptor: &str) -> PyResult<Self> {
        Checker::new(descriptor).map(|checker| PyTableChecker { checker }).map_err(|f| raise(py, f))
    }
}

/// The table's columns ([`NAMES`]), handed to polars once through `__arrow_c_array__`.
#[pyclass(module = "atrepo._core", name = "TableColumns", frozen)]
pub struct TableColumns {
    columns: Mutex<Option<Vec<ViewColumn>>>,
}

#[pymethods]
impl TableColumns {
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>)
            -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema; // the columns have one natural schema; consumers adapt
        let columns = self
            .columns
            .lock()
            .map_err(|_| PyValueError::new_err("table columns are poisoned"))?
            .take()
            .ok_or_else(|| PyValueError::new_err("table columns were already taken"))?;
        let schema = arrow::schema_for(&NAMES);
        let array = arrow::array_for(columns);
        let schema = PyCapsule::new_with_destructor(
            py, schema, Some(c"arrow_schema".to_owned()), |s, _| arrow::drop_schema(s))?;
        let array = PyCapsule::new_with_destructor(
            py, array, Some(c"arrow_array".to_owned()), |a, _| arrow::drop_array(a))?;
        PyTuple::new(py, [schema.into_any(), array.into_any()])
    }
}

/// Rows [`start`, `end`) of a walk's own views, or all of any two sequences.
fn rows_of(keys: &Bound<'_, PyAny>, values: &Bound<'_, PyAny>, start: usize, end: Option<usize>)
           -> PyResult<Leaves> {
    if let (Ok(k), Ok(v)) = (keys.cast::<PyKeys>(), values.cast::<PyValues>()) {
        if k.get().tree.is(&v.get().tree) {
            let all = &k.get().tree.get().leaves;
            let end = end.unwrap_or(all.len());
            if start > end || end > all.len() {
                return Err(PyValueError::new_err("rows are beyond the walk"));
            }
            let mut leaves = Leaves::default();
            for i in start..end {
                leaves.keys.push(all.key(i));
                leaves.values.push(all.value(i));
            }
            return Ok(leaves);
        }
    }
    if start != 0 || end.is_some() {
        return Err(PyValueError::new_err("rows are taken from a walk's views only"));
    }
    leaves_of(keys, values)
}

/// Problems as (row, kind, text): kind 0 the validator's, 1 the fitting's, 2 a `$type`
/// that is not the collection (text: the value's JSON, empty when missing).
type TableProblems = Vec<(usize, u8, String)>;

/// Check one collection's records (rows [`start`, `end`) of a walk's views, or the given
/// keys and record CIDs): (columns, problems, rows left to the reference).
#[pyfunction]
#[pyo3(signature = (checker, car, did, keys, values, *, start = 0, end = None, verify_cids = true))]
#[allow(clippy::too_many_arguments)]
pub fn check_table(py: Python<'_>, checker: &PyTableChecker, car: &PyCar, did: &str,
                   keys: &Bound<'_, PyAny>, values: &Bound<'_, PyAny>, start: usize,
                   end: Option<usize>, verify_cids: bool)
                   -> PyResult<(TableColumns, TableProblems, Vec<usize>)> {
    let leaves = rows_of(keys, values, start, end)?;
    let buf = car.source.slice(py);
    let verify_cids = verify_cids && car.car.verify_cids;
    let table = py
        .detach(|| check_records(&checker.checker, &car.car, buf, &leaves, did, verify_cids))
        .map_err(|f| raise(py, f))?;
    let columns = TableColumns { columns: Mutex::new(Some(table.columns)) };
    Ok((columns, table.problems, table.deferred))
}
