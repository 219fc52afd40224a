//! Fitting a record to its table's shape: `atrepo._table_check._clean`, as JSON text.
//!
//! The fitted record holds only the declared fields; a value of the wrong type becomes null
//! and a message naming the field (the reference's words); an open union's other member
//! keeps only its `$type`; a blob keeps the parts the table reads. `str.json_decode` with the
//! shape's JSON-side dtype reads the result.

use std::collections::HashSet;

use serde_json::Value as Json;

use crate::cbor::Value;
use crate::error::Result;
use crate::fast::push_int;
use crate::lexcheck::{bad, get, is_dict, render, Seg};
use crate::record::push_json;
use crate::text::push_json_str;

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
pub struct Shape {
    kind: Kind,
    pub fields: Vec<(String, Shape)>,
    item: Option<Box<Shape>>,
    refs: HashSet<String>,
}
pub fn parse_shape(node: &Json) -> Result<Shape> {
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

/// Write the value that fits `shape` (or `null`, noting why in `nulled`).
pub fn fit<'v>(shape: &'v Shape, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>,
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
                fit(item_shape, item, path, nulled, out);
                path.pop();
            }
            out.push(b']');
            true
        }
        (Kind::Object | Kind::Union, _) if is_dict(value) => {
            fit_object(shape, value, path, nulled, out);
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
pub fn fit_object<'v>(shape: &'v Shape, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>,
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
            push_text_object(out, &[("$type", member)]);
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
        fit(field, item, path, nulled, out);
        path.pop();
    }
    out.push(b'}');
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
        // the data model's JSON of a link or bytes is that object
        (Value::Link(_), "$link") | (Value::Bytes(_), "$bytes") => push_json(out, value),
        _ => {
            let Some(Value::Text(t)) = get(value, key) else { return false };
            push_text_object(out, &[(key, t)]);
        }
    }
    true
}

/// A JSON object of string members, in the order given.
fn push_text_object(out: &mut Vec<u8>, members: &[(&str, &str)]) {
    for (i, (key, text)) in members.iter().enumerate() {
        out.push(if i == 0 { b'{' } else { b',' });
        push_json_str(out, key);
        out.push(b':');
        push_json_str(out, text);
    }
    out.push(b'}');
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
    push_text_object(out, &[("mimeType", mime), ("cid", cid)]);
    true
}
