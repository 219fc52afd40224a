//! One record block to its JSON text, failing exactly where the reference fails.
//!
//! The reference (`atrepo.datamodel.record_json`) decodes with cbor2 (links to `$link`
//! objects by a tag hook), rejects a top level that is not a map, then checks data-model
//! types only when the block holds one of the bytes a float or a 64-bit integer head starts
//! with (f9, fa, fb, 1b) and otherwise lets orjson refuse what it cannot write. Both find
//! the same first offending value in the same traversal order; only the wording differs,
//! and [`Violation::error`] is the error the reference would raise (its values are put into
//! words on the Python side, by the reference's own helpers).

use crate::cbor::{self, DecodeFailure, Tags, Value};
use crate::error::{CoreError, Field};
use crate::fast;
use crate::text::{push_base64, push_cid_str, push_json_str};

/// The first value that the data model (or orjson) refuses.
enum Violation<'a> {
    KeyNotText(&'a [u8]),
    IntRange(i128),
    Float(f64),
    Type(&'static str),
}

impl Violation<'_> {
    fn error(&self, type_checked: bool) -> CoreError {
        let undecodable = |detail: String| CoreError::decode("undecodable record").text("detail", detail);
        match (self, type_checked) {
            (Violation::KeyNotText(key), true) => CoreError::decode("map key is not a string")
                .with("key", Field::PreviewKey(key.to_vec())),
            (Violation::KeyNotText(_), false) => undecodable("Dict key must be str".into()),
            (Violation::IntRange(v), true) => {
                CoreError::decode("integer outside the signed 64-bit range")
                    .with("value", Field::PreviewInt(*v))
            }
            (Violation::IntRange(_), false) => undecodable("Integer exceeds 64-bit range".into()),
            (Violation::Float(x), _) => CoreError::decode("floats are not allowed in the atproto data model")
                .with("value", Field::Float(*x)),
            (Violation::Type(name), true) => {
                CoreError::decode("type not allowed in DAG-CBOR").text("type", *name)
            }
            (Violation::Type(name), false) => {
                undecodable(format!("Type is not JSON serializable: cbor2.{name}"))
            }
        }
    }
}

/// The reference's error for a block the decoder refused.
pub fn failure_error(failure: &DecodeFailure) -> CoreError {
    const HINT: &str = "DAG-CBOR allows only tag 42 (CID)";
    match failure {
        DecodeFailure::Malformed(detail) => {
            let detail: String = detail.chars().take(200).collect();
            CoreError::decode("undecodable record").text("detail", detail)
        }
        DecodeFailure::StrictTag => CoreError::decode("unsupported CBOR tag").hint(HINT),
        DecodeFailure::Tag(n) => CoreError::decode("unsupported CBOR tag").int("tag", *n).hint(HINT),
        DecodeFailure::MalformedLink => {
            CoreError::decode("malformed CID link (tag 42 needs bytes with a 0x00 prefix)")
        }
    }
}

/// Whether the reference runs its data-model type check on this block (see module doc).
fn type_checked(data: &[u8]) -> bool {
    data.iter().any(|&b| matches!(b, 0xf9 | 0xfa | 0xfb | 0x1b))
}

/// Append the JSON text of record block `data` to `out`; on failure leave `out` as it was
/// and return the reference's error (the record's problem).
pub fn record_json(data: &[u8], out: &mut Vec<u8>) -> Result<(), CoreError> {
    if fast::write(data, out) {
        return Ok(());
    }
    let (value, _) = cbor::decode(data, Tags::Links).map_err(|f| failure_error(&f))?;
    let is_dict = matches!(value, Value::Map(_) | Value::Link(_));
    if !is_dict || data.starts_with(&[0xd8, 0x2a]) {
        return Err(CoreError::decode("record is not a map").text("type", value.type_name()));
    }
    let start = out.len();
    if let Err(violation) = write_json(&value, out) {
        out.truncate(start);
        return Err(violation.error(type_checked(data)));
    }
    Ok(())
}

/// Whether a value has a JSON text (writing it as [`record_json`] does succeeds).
pub(crate) fn representable(value: &Value<'_>) -> bool {
    match value {
        Value::Map(pairs) => pairs.iter().all(|(k, v)| matches!(k, Value::Text(_)) && representable(v)),
        Value::Array(items) => items.iter().all(representable),
        Value::Int(v) => i64::try_from(*v).is_ok(),
        Value::Text(_) | Value::Bytes(_) | Value::Link(_) | Value::Bool(_) | Value::Null => true,
        Value::Float(_) | Value::Undefined | Value::Simple(_) | Value::Tag(..) => false,
    }
}

/// Append the JSON text of a [`representable`] value, as the `records` frame holds it (a
/// value that is not has no text: `null` stands for it).
pub(crate) fn push_json(out: &mut Vec<u8>, value: &Value<'_>) {
    let start = out.len();
    if write_json(value, out).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

fn write_json<'a>(value: &Value<'a>, out: &mut Vec<u8>) -> Result<(), Violation<'a>> {
    match *value {
        Value::Map(ref pairs) => {
            out.push(b'{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match *key {
                    Value::Text(t) => push_json_str(out, t),
                    Value::Bytes(b) => return Err(Violation::KeyNotText(b)),
                    _ => return Err(Violation::Type(key.type_name())), // not reached
                }
                out.push(b':');
                write_json(item, out)?;
            }
            out.push(b'}');
        }
        Value::Array(ref items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out)?;
            }
            out.push(b']');
        }
        Value::Text(t) => push_json_str(out, t),
        Value::Bytes(b) => {
            out.extend_from_slice(b"{\"$bytes\":\"");
            push_base64(out, b);
            out.extend_from_slice(b"\"}");
        }
        Value::Link(raw) => {
            out.extend_from_slice(b"{\"$link\":\"");
            push_cid_str(out, raw);
            out.extend_from_slice(b"\"}");
        }
        Value::Int(v) => {
            if v < i128::from(i64::MIN) || v > i128::from(i64::MAX) {
                return Err(Violation::IntRange(v));
            }
            fast::push_int(out, v);
        }
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Float(x) => return Err(Violation::Float(x)),
        Value::Undefined | Value::Simple(_) | Value::Tag(..) => {
            return Err(Violation::Type(value.type_name()))
        }
    }
    Ok(())
}
