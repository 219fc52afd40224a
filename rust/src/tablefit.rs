//! Fitting a record to its table's shape (`atrepo._table_check._clean`), written straight
//! into the table's typed columns ([`crate::tablecols`]).
//!
//! A record's row holds only the declared fields; a value of the wrong type becomes null
//! and a message naming the field (the reference's words); an open union's other member
//! keeps only its `$type`; a CID link, bytes and a blob's reference become their strings;
//! JSON-kind fields their JSON text. The values equal what the reference's route gives
//! (`str.json_decode` of the fitted record with the shape's JSON-side dtype, then
//! `atrepo.tables._fix`), datetimes included: [`parse_datetime`] reads the common form
//! exactly as polars does, and a record with a datetime of any other form is left to the
//! reference.

use std::collections::HashSet;

use serde_json::Value as Json;

use crate::cbor::Value;
use crate::error::Result;
use crate::lexcheck::{bad, common_datetime, get, is_dict, month_days, render, Checked, Defer, Seg};
use crate::record::push_json;
use crate::tablecols::{Column, Layout};
use crate::text::{push_base64, push_cid_str};

/// The kinds of `atrepo.lexicon._shape.Shape`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
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
    pub kind: Kind,
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
        None if kind == Kind::Array => return Err(bad("i")), // a list needs its item's shape
        None => None,
    };
    let refs = node.get("refs").and_then(Json::as_array).map_or(&[][..], Vec::as_slice)
        .iter().filter_map(|r| r.as_str().map(str::to_string)).collect();
    Ok(Shape { kind, fields, item, refs })
}

impl Shape {
    /// The layout of this field's column (`Shape.dtype`).
    pub fn layout(&self) -> Layout<'_> {
        match self.kind {
            Kind::Text | Kind::Cid | Kind::Bytes | Kind::Json => Layout::Strings,
            Kind::Datetime => Layout::Datetimes,
            Kind::Integer => Layout::Integers,
            Kind::Boolean => Layout::Booleans,
            Kind::Blob => Layout::Struct(vec![("ref", Layout::Strings), ("mimeType", Layout::Strings),
                                              ("size", Layout::Integers)]),
            Kind::Object | Kind::Union => {
                Layout::Struct(self.fields.iter().map(|(n, f)| (n.as_str(), f.layout())).collect())
            }
            Kind::Array => Layout::List(Box::new(self.item_shape().layout())),
        }
    }

    /// An array's item shape ([`parse_shape`] gives every array one; any other shape is
    /// its own, which no caller asks for).
    fn item_shape(&self) -> &Shape {
        self.item.as_deref().unwrap_or(self)
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

/// What fitting one record noted: the fields it nulled (path, message), whether a datetime
/// string did not parse or lay outside the table's years, and a scratch buffer.
#[derive(Default)]
pub struct Fitting {
    pub nulled: Vec<(String, String)>,
    lost: bool,
    scratch: Vec<u8>,
}

/// A top-level field in which a datetime string became null: (field number, the field's
/// own string when the field is a datetime).
pub type Lost = (u32, Option<String>);

/// Append the row of record `value` (a map) to `columns`, one per top-level field of
/// `shape`; the datetimes that became null are added to `lost`. Undecided (and nothing
/// appended that [`Column::truncate`] would not take back) for a datetime of an uncommon form.
pub fn fit_record<'v>(shape: &'v Shape, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>,
                      cx: &mut Fitting, columns: &mut [(String, Column)], lost: &mut Vec<Lost>)
                      -> Checked<()> {
    for (k, ((name, field), (_, column))) in shape.fields.iter().zip(columns.iter_mut()).enumerate() {
        cx.lost = false;
        let item = get(value, name).unwrap_or(&Value::Null);
        path.push(Seg::Key(name));
        let done = fit(field, item, path, cx, column);
        path.pop();
        done?;
        if cx.lost {
            let shown = match (field.kind, item) {
                (Kind::Datetime, Value::Text(t)) => Some(t.to_string()),
                _ => None,
            };
            lost.push((k as u32, shown));
        }
    }
    Ok(())
}

/// Append the value that fits `shape` to `column` (or null, noting why).
fn fit<'v>(shape: &'v Shape, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>, cx: &mut Fitting,
           column: &mut Column) -> Checked<()> {
    let fits = match (shape.kind, value) {
        (_, Value::Null) => {
            column.push_null();
            return Ok(());
        }
        (Kind::Text, Value::Text(t)) => push_text(column, t.as_bytes()),
        (Kind::Datetime, Value::Text(t)) => {
            match parse_datetime(t).ok_or(Defer)? {
                Some(micros) => column.push_int(micros),
                None => {
                    cx.lost = true;
                    column.push_null();
                }
            }
            true
        }
        (Kind::Integer, Value::Int(v)) => {
            column.push_int(i64::try_from(*v).map_err(|_| Defer)?);
            true
        }
        (Kind::Boolean, Value::Bool(b)) => {
            column.push_int(i64::from(*b));
            true
        }
        (Kind::Cid | Kind::Bytes, _) => {
            let key = if shape.kind == Kind::Cid { "$link" } else { "$bytes" };
            let mut text = std::mem::take(&mut cx.scratch);
            text.clear();
            let fits = wrapped(value, key, &mut text) && push_text(column, &text);
            cx.scratch = text;
            fits
        }
        (Kind::Blob, _) => fit_blob(value, cx, column),
        (Kind::Json, _) => {
            let mut text = std::mem::take(&mut cx.scratch);
            text.clear();
            push_json(&mut text, value);
            push_text(column, &text);
            cx.scratch = text;
            true
        }
        (Kind::Array, Value::Array(items)) => {
            let item_shape = shape.item_shape();
            let Some(item_column) = column.open_list() else { return Err(Defer) };
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                let done = fit(item_shape, item, path, cx, item_column);
                path.pop();
                done?;
            }
            column.close_list();
            true
        }
        (Kind::Object | Kind::Union, _) if is_dict(value) => {
            fit_object(shape, value, path, cx, column)?;
            true
        }
        _ => false,
    };
    if !fits {
        column.push_null();
        let place = render(path);
        let message = format!("{place}: a {} where the table has {}; null in the table",
                              json_type(value), shape.kind.name());
        cx.nulled.push((place, message));
    }
    Ok(())
}

/// Append a string to a string column; false (nothing appended) for any other column.
fn push_text(column: &mut Column, text: &[u8]) -> bool {
    match column.strings() {
        Some(strings) => {
            strings.push(text);
            true
        }
        None => false,
    }
}

/// `_clean_object`: an object's (or union member's) declared fields, fitted.
fn fit_object<'v>(shape: &'v Shape, value: &'v Value<'v>, path: &mut Vec<Seg<'v>>,
                  cx: &mut Fitting, column: &mut Column) -> Checked<()> {
    if shape.kind == Kind::Union {
        let Some(Value::Text(member)) = get(value, "$type") else {
            let place = render(path);
            let message = format!("{place}: a union member without $type; null in the table");
            cx.nulled.push((place, message));
            column.push_null();
            return Ok(());
        };
        if !known_member(member, &shape.refs) {
            // an open union's other member: only its $type fits
            for (name, field) in column.open_struct() {
                if name == "$type" {
                    push_text(field, member.as_bytes());
                } else {
                    field.push_null();
                }
            }
            return Ok(());
        }
    }
    let fields = column.open_struct();
    for ((name, field), (_, field_column)) in shape.fields.iter().zip(fields.iter_mut()) {
        let item = get(value, name).unwrap_or(&Value::Null);
        path.push(Seg::Key(name));
        let done = fit(field, item, path, cx, field_column);
        path.pop();
        done?;
    }
    Ok(())
}

/// `_clean_object`'s test of a union member against the union's references.
fn known_member(member: &str, refs: &HashSet<String>) -> bool {
    let reference = if member.starts_with("lex:") { member.to_string() } else { format!("lex:{member}") };
    refs.contains(&reference)
        || reference.strip_suffix("#main").is_some_and(|r| refs.contains(r))
        || refs.contains(&format!("{reference}#main"))
}

/// The string of a link or bytes value (the CID, base64), or of a map's `key` member
/// that is a string (`{"$link": text}`), written to `out`; false when it has none.
fn wrapped(value: &Value<'_>, key: &str, out: &mut Vec<u8>) -> bool {
    match (value, key) {
        (Value::Link(raw), "$link") => push_cid_str(out, raw),
        (Value::Bytes(data), "$bytes") => push_base64(out, data),
        _ => {
            let Some(Value::Text(t)) = get(value, key) else { return false };
            out.extend_from_slice(t.as_bytes());
        }
    }
    true
}

/// `_table_check.blob_fits`, appending the blob's reference, type and size (a legacy blob's
/// `cid` as its reference) to the blob's struct column; false when it does not fit.
fn fit_blob(value: &Value<'_>, cx: &mut Fitting, column: &mut Column) -> bool {
    let Some(Value::Text(mime)) = get(value, "mimeType") else { return false };
    let mut link = std::mem::take(&mut cx.scratch);
    link.clear();
    let linked = matches!(get(value, "ref"), Some(r @ (Value::Link(_) | Value::Map(_)))
                          if wrapped(r, "$link", &mut link));
    let size = match get(value, "size") {
        _ if !linked => None,
        None | Some(Value::Null) => None,
        Some(Value::Int(v)) => Some(i64::try_from(*v).ok()),
        Some(_) => Some(None),
    };
    let fits = match (linked, size, get(value, "cid")) {
        (true, Some(None), _) => false, // a size that is not an integer
        (true, size, _) => {
            push_blob(column, &link, mime, size.flatten());
            true
        }
        (false, _, Some(Value::Text(cid))) => {
            push_blob(column, cid.as_bytes(), mime, None);
            true
        }
        _ => false,
    };
    cx.scratch = link;
    fits
}

fn push_blob(column: &mut Column, reference: &[u8], mime: &str, size: Option<i64>) {
    if let [(_, r), (_, m), (_, s)] = column.open_struct() {
        push_text(r, reference);
        push_text(m, mime.as_bytes());
        match size {
            Some(size) => s.push_int(size),
            None => s.push_null(),
        }
    }
}

/// Days from 1970-01-01 to a day of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The table's value of a datetime string of the common form
/// ([`crate::lexcheck::common_datetime`]), as `atrepo.tables._fix` gives it:
/// `Some(Some(micros))` (the fraction cut to microseconds, as polars cuts it), `Some(None)`
/// for a day the calendar does not have or a year outside 1990-2100 (null in the table),
/// None for any other form (undecided).
pub fn parse_datetime(t: &str) -> Option<Option<i64>> {
    let d = common_datetime(t)?;
    if !(1..=month_days(d.year, d.month)).contains(&d.day) || !(1990..=2100).contains(&d.year) {
        return Some(None);
    }
    let seconds = days_from_civil(d.year, d.month, d.day) * 86_400 + d.seconds;
    Some(Some(seconds * 1_000_000 + d.micros))
}
