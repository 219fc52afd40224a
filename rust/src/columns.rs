//! The `records` frame's columns, built from a walk without a Python object per row.
//!
//! Record blocks come in file order (see [`crate::pass`]) and are written into the `record`
//! column's buffers as they come; each row's view points at its text, so rows stay in key
//! order. A block that is missing or does not match its CID fails the read, as in the
//! reference; a block that does not decode is a problem of its row (a null `record`).

use crate::arrow::ViewColumn;
use crate::car::Car;
use crate::error::{CoreError, Result};
use crate::mst::Leaves;
use crate::pass::record_blocks;
use crate::record::record_json;
use crate::text::push_cid_str;

pub const NAMES: [&str; 6] = ["did", "collection", "rkey", "uri", "cid", "record"];

/// The six columns (in [`NAMES`] order) and the problems (row, text), in key order.
pub struct Decoded {
    pub columns: Vec<ViewColumn>,
    pub problems: Vec<(usize, CoreError)>,
}

/// An upper bound of the JSON text of a block of `n` bytes (the widest growth is a control
/// character, 1 byte of CBOR to 6 of JSON, plus the quotes around its string).
fn json_bound(n: usize) -> usize {
    8 * n + 16
}

pub fn decode_records(car: &Car, buf: &[u8], leaves: &Leaves, did: &str,
                      release: &(dyn Fn(usize, usize) + Sync)) -> Result<Decoded> {
    let parts = record_blocks(car, buf, leaves, car.verify_cids, release, Part::new, |part, i, data| {
        let out = part.column.reserve(json_bound(data.len()));
        let start = out.len();
        match record_json(data, out) {
            Ok(()) => {
                let (b, end) = part.column.cursor();
                part.column.push_written(i, b, start, end - start);
            }
            Err(problem) => part.problems.push((i, problem)),
        }
    })?;
    let mut record = ViewColumn::new(leaves.len());
    record.all_null();
    let mut problems = Vec::new();
    for part in parts {
        problems.extend(part.problems);
        record.adopt(part.column);
    }
    problems.sort_unstable_by_key(|p| p.0);
    let mut columns = key_columns(leaves, did, true);
    columns.push(record);
    Ok(Decoded { columns, problems })
}

/// What one thread decoded: its rows' texts and problems.
struct Part {
    column: ViewColumn,
    problems: Vec<(usize, CoreError)>,
}

impl Part {
    fn new(rows: usize) -> Self {
        Part { column: ViewColumn::sparse(rows), problems: Vec::new() }
    }
}

/// The key columns, in key order: did, collection (when `with_collection`), rkey, uri and
/// cid.
pub(crate) fn key_columns(leaves: &Leaves, did: &str, with_collection: bool) -> Vec<ViewColumn> {
    let n = leaves.len();
    let mut did_col = ViewColumn::new(n);
    let mut collection = with_collection.then(|| ViewColumn::new(n));
    let mut rkey = ViewColumn::new(n);
    let mut uri = ViewColumn::new(n);
    let mut cid = ViewColumn::new(n);
    let mut text = Vec::with_capacity(256);
    for i in 0..n {
        let key = leaves.key(i);
        let slash = key.iter().position(|&b| b == b'/').unwrap_or(key.len());
        let (coll, rest) = (&key[..slash], &key[(slash + 1).min(key.len())..]);
        if i == 0 {
            did_col.set(0, did.as_bytes());
        } else {
            did_col.share(i, 0);
        }
        if let Some(collection) = collection.as_mut() {
            if i > 0 && leaves.key(i - 1).split(|&b| b == b'/').next() == Some(coll) {
                collection.share(i, i - 1);
            } else {
                collection.set(i, coll);
            }
        }
        rkey.set(i, rest);
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
    let mut columns = vec![did_col];
    columns.extend(collection);
    columns.extend([rkey, uri, cid]);
    columns
}
