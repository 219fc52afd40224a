//! The `records` frame's columns, built from a walk without a Python object per row.
//!
//! Record blocks are read in file order (sequential reads of the CAR, whatever the order of
//! their keys) and written into the `record` column's buffers as they come; each row's view
//! points at its text, so rows stay in key order. A block that is missing or does not match
//! its CID fails the read, as in the reference, with the error of the first such record in
//! key order; a block that does not decode is a problem of its row (a null `record`).

use crate::arrow::ViewColumn;
use crate::car::{verify, Block, Car};
use crate::error::{CoreError, Field, Result};
use crate::mst::Leaves;
use crate::record::record_json;
use crate::text::push_cid_str;

pub const NAMES: [&str; 6] = ["did", "collection", "rkey", "uri", "cid", "record"];

/// The six columns (in [`NAMES`] order) and the problems (row, text), in key order.
pub struct Decoded {
    pub columns: Vec<ViewColumn>,
    pub problems: Vec<(usize, String)>,
}

/// An upper bound of the JSON text of a block of `n` bytes (the widest growth is a control
/// character, 1 byte of CBOR to 6 of JSON, plus the quotes around its string).
fn json_bound(n: usize) -> usize {
    8 * n + 16
}

pub fn decode_records(car: &Car, buf: &[u8], leaves: &Leaves, did: &str) -> Result<Decoded> {
    let n = leaves.len();
    let raw = |i: usize| {
        let (offset, length) = leaves.values[i];
        &buf[offset..offset + length]
    };
    let mut found: Vec<(Block, bool)> = Vec::with_capacity(n);
    let mut failed: Option<(usize, CoreError)> = None;
    for i in 0..n {
        match car.locate(buf, raw(i)) {
            Some(hit) => found.push(hit),
            None => {
                let error = CoreError::mst("record block missing from CAR")
                    .with("cid", Field::CidText(raw(i).to_vec()))
                    .hint("the CAR is incomplete");
                failed = Some((i, error));
                break; // no later record can fail first
            }
        }
    }
    let limit = failed.as_ref().map_or(n, |(i, _)| *i);
    let mut order: Vec<u32> = (0..limit as u32).collect();
    order.sort_unstable_by_key(|&i| found[i as usize].0.offset);

    let mut record = ViewColumn::new("record", n);
    let mut problems = Vec::new();
    for &i in &order {
        let i = i as usize;
        let (block, alone) = found[i];
        if car.verify_cids {
            if let Err(error) = verify(buf, raw(i), block, alone) {
                if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                    failed = Some((i, error));
                }
                continue;
            }
        }
        if failed.is_some() {
            continue; // the read fails anyway; only an earlier failing record matters now
        }
        let data = &buf[block.offset..block.offset + block.length];
        let out = record.reserve(json_bound(data.len()));
        let start = out.len();
        match record_json(data, out) {
            Ok(()) => {
                let (b, end) = record.cursor();
                record.set_written(i, b, start, end - start);
            }
            Err(text) => {
                record.set_null(i);
                problems.push((i, text));
            }
        }
    }
    if let Some((_, error)) = failed {
        return Err(error);
    }
    problems.sort_unstable_by_key(|p| p.0);
    let mut columns = key_columns(leaves, did, buf);
    columns.push(record);
    Ok(Decoded { columns, problems })
}

/// did, collection, rkey, uri and cid, in key order.
fn key_columns(leaves: &Leaves, did: &str, buf: &[u8]) -> Vec<ViewColumn> {
    let n = leaves.len();
    let mut did_col = ViewColumn::new("did", n);
    let mut collection = ViewColumn::new("collection", n);
    let mut rkey = ViewColumn::new("rkey", n);
    let mut uri = ViewColumn::new("uri", n);
    let mut cid = ViewColumn::new("cid", n);
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
        if i > 0 && leaves.key(i - 1).split(|&b| b == b'/').next() == Some(coll) {
            collection.share(i, i - 1);
        } else {
            collection.set(i, coll);
        }
        rkey.set(i, rest);
        text.clear();
        text.extend_from_slice(b"at://");
        text.extend_from_slice(did.as_bytes());
        text.push(b'/');
        text.extend_from_slice(key);
        uri.set(i, &text);
        text.clear();
        let (offset, length) = leaves.values[i];
        push_cid_str(&mut text, &buf[offset..offset + length]);
        cid.set(i, &text);
    }
    vec![did_col, collection, rkey, uri, cid]
}
