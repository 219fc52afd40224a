//! Records against their lexicon, from the decoded CBOR: `atrepo.lexicon._validate`, rule
//! for rule, with its messages.
//!
//! A [`Lexicon`] is the record definition and every definition it refers to, compiled by
//! Python (`atrepo._table_check.descriptor`) into numbered nodes (references become node
//! numbers, so recursive lexicons stay finite). Values are read as the JSON data model sees
//! them: a link is the object `{"$link": ...}`, bytes are `{"$bytes": ...}`.
//!
//! Where a rule needs more than is written here (a string format whose value is not in the
//! common shape, a CID that is not the common sha2-256 v1 kind, `$bytes` spelled out as a
//! map), the check is [`Defer`]red: the caller leaves that record to the Python reference.

use std::collections::HashMap;

use serde_json::Value as Json;
use unicode_segmentation::UnicodeSegmentation;

use crate::cbor::Value;
use crate::error::{CoreError, Result};

/// A record the core does not decide; the reference checks it.
pub struct Defer;

pub type Checked<T> = std::result::Result<T, Defer>;
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
pub fn bad(what: &str) -> CoreError {
    CoreError::decode("malformed table descriptor").text("detail", what.to_string())
}

pub fn int(node: &Json, key: &str) -> Option<i64> {
    node.get(key).and_then(Json::as_i64)
}

pub fn text(node: &Json, key: &str) -> Option<String> {
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
/// A path into the record, rendered only for a problem (`Record/embed/images/0`).
#[derive(Clone, Copy)]
pub enum Seg<'v> {
    Key(&'v str),
    Index(usize),
}

pub fn render(path: &[Seg<'_>]) -> String {
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
pub fn get<'v, 'a>(value: &'v Value<'a>, key: &str) -> Option<&'v Value<'a>> {
    match value {
        Value::Map(pairs) => pairs.iter().find_map(|(k, v)| match k {
            Value::Text(t) if *t == key => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

/// Whether a value is a JSON object (links and bytes are `{"$link"}`/`{"$bytes"}` objects).
pub fn is_dict(value: &Value<'_>) -> bool {
    matches!(value, Value::Map(_) | Value::Link(_) | Value::Bytes(_))
}

/// The number of properties of a JSON object.
fn dict_len(value: &Value<'_>) -> usize {
    match value {
        Value::Map(pairs) => pairs.len(),
        _ => 1,
    }
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

/// A datetime string of the common form `YYYY-MM-DDTHH:MM:SS[.f]Z` (one to nine fraction
/// digits, hours 00-23, minutes and seconds 00-59), read into its parts; the fraction is cut
/// to microseconds. The validator and the table's reading both start from it.
pub struct CommonDatetime {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    /// seconds since midnight
    pub seconds: i64,
    pub micros: i64,
}

/// [`CommonDatetime`] of `t`, or None for any other form (24:00 and leap seconds included:
/// they have rules of their own).
pub fn common_datetime(t: &str) -> Option<CommonDatetime> {
    let b = t.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let shape = digits(&b[0..4]) && b[4] == b'-' && digits(&b[5..7]) && b[7] == b'-'
        && digits(&b[8..10]) && b[10] == b'T' && digits(&b[11..13]) && b[13] == b':'
        && digits(&b[14..16]) && b[16] == b':' && digits(&b[17..19]);
    let fraction = &b[19..b.len() - 1];
    let fraction_ok = fraction.is_empty() || (fraction[0] == b'.' && (2..=10).contains(&fraction.len())
                                              && digits(&fraction[1..]));
    if !shape || !fraction_ok {
        return None;
    }
    let two = |i: usize| i64::from(b[i] - b'0') * 10 + i64::from(b[i + 1] - b'0');
    let (hour, minute, second) = (two(11), two(14), two(17));
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let micros = (1..=6).fold(0, |m, k| m * 10 + fraction.get(k).map_or(0, |d| i64::from(d - b'0')));
    Some(CommonDatetime { year: two(0) * 100 + two(2), month: two(5), day: two(8),
                          seconds: hour * 3_600 + minute * 60 + second, micros })
}

/// The days of `month` in `year` of the proleptic Gregorian calendar (0: no such month).
pub fn month_days(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    }
}

/// `_strings.is_iso_datetime` for a datetime of the common form ([`common_datetime`]) on a
/// day of the calendar by the reference's rules: accepted, else undecided.
fn datetime_ok(t: &str) -> Checked<bool> {
    let d = common_datetime(t).ok_or(Defer)?;
    if d.year == 0 && d.month == 2 {
        return Err(Defer); // the reference's leap years are the Gregorian ones, but for 0000
    }
    // a datetime the reference refuses is rare: it is left to the reference to word
    if (1..=month_days(d.year, d.month)).contains(&d.day) { Ok(true) } else { Err(Defer) }
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
/// A record definition and the definitions it refers to.
pub struct Lexicon {
    defs: Vec<Def>,
    root: usize,
}

impl Lexicon {
    /// The `defs` and `root` of a descriptor.
    pub fn parse(doc: &Json) -> Result<Self> {
        let defs = doc.get("defs").and_then(Json::as_array).ok_or_else(|| bad("defs"))?
            .iter().map(parse_def).collect::<Result<Vec<_>>>()?;
        let root = int(doc, "root").ok_or_else(|| bad("root"))? as usize;
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
        Ok(Lexicon { defs, root })
    }

    /// Check a record, appending each problem to `out`; `path` is empty on entry and exit.
    pub fn check_record<'v>(&self, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>,
                            out: &mut Vec<String>) -> Checked<()> {
        self.check(self.root, value, path, out)
    }

    fn check<'v>(&self, at: usize, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>,
                 out: &mut Vec<String>) -> Checked<()> {
        match &self.defs[at] {
            Def::Object { props, must } => self.check_object(props, must, value, path, out)?,
            Def::Array { item, max, min } => {
                let Value::Array(items) = value else {
                    out.push(format!("{} must be an array", render(path)));
                    return Ok(());
                };
                let words = ["must not have more", "must not have fewer", " elements"];
                check_bounds(items.len() as i128, *max, *min, words, path, out);
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
                check_bounds(v, *max, *min, ["can not be greater", "can not be less", ""], path, out);
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
                let words = ["must not be larger", "must not be smaller", " bytes"];
                check_bounds(data.len() as i128, *max, *min, words, path, out);
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
}

/// The reference's two bound checks of a size or value `n`, each with its own message (both
/// can fail): `[above, below, unit]` word them as "{path} {above} than {max}{unit}" and
/// "{path} {below} than {min}{unit}".
fn check_bounds(n: i128, max: Option<i64>, min: Option<i64>, [above, below, unit]: [&str; 3],
                path: &[Seg<'_>], out: &mut Vec<String>) {
    if let Some(max) = max.filter(|&m| n > i128::from(m)) {
        out.push(format!("{} {above} than {max}{unit}", render(path)));
    }
    if let Some(min) = min.filter(|&m| n < i128::from(m)) {
        out.push(format!("{} {below} than {min}{unit}", render(path)));
    }
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
