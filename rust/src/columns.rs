//! The `records` frame's columns, built from a walk without a Python object per row.
//!
//! Record blocks are read in file order (sequential reads of the CAR, whatever the order of
//! their keys) and written into the `record` column's buffers as they come; each row's view
//! points at its text, so rows stay in key order. A block that is missing or does not match
//! its CID fails the read, as in the reference, with the error of the first such record in
//! key order; a block that does not decode is a problem of its row (a null `record`).

use crate::arrow::ViewColumn;
use crate::car::{verify, Car, Found};
use crate::error::{CoreError, Field, Result};
use crate::mst::Leaves;
use crate::record::record_json;
use crate::text::push_cid_str;

/// Fewer records than this are decoded on the calling thread alone (a thread costs more).
const PARALLEL_MIN: usize = 20_000;

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
    let n = leaves.len();
    let raw = |i: usize| leaves.value(i);
    let found: Vec<Found> = car.locate_many(buf, n, raw);
    let mut failed: Option<(usize, CoreError)> = None;
    if let Some(i) = found.iter().position(|f| f.get().is_none()) {
        let error = CoreError::mst("record block missing from CAR")
            .with("cid", Field::CidText(raw(i).to_vec()))
            .hint("the CAR is incomplete");
        failed = Some((i, error)); // no later record can fail first
    }
    let limit = failed.as_ref().map_or(n, |(i, _)| *i);
    // blocks are numbered in file order: sorting rows by block number reads the file in order
    let mut by_block: Vec<(u32, u32)> = (0..limit)
        .map(|i| (found[i].get().map_or(0, |(id, _)| id as u32), i as u32))
        .collect();
    by_block.sort_unstable();
    let order: Vec<u32> = by_block.into_iter().map(|(_, i)| i).collect();

    // two halves of the file, decoded side by side (the GIL is released around all this)
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if order.len() < PARALLEL_MIN { 1 } else { cores.clamp(1, 2) };
    let chunk = order.len().div_ceil(threads).max(1);
    let parts: Vec<Part> = std::thread::scope(|scope| {
        let handles: Vec<_> = order
            .chunks(chunk)
            .skip(1)
            .map(|rows| scope.spawn(|| decode_part(car, buf, leaves, &found, rows, release)))
            .collect();
        let first = decode_part(car, buf, leaves, &found, order.chunks(chunk).next().unwrap_or(&[]),
                                release);
        let mut parts = vec![first];
        // a panic in a thread is re-raised here, and PyO3 turns it into an exception
        parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
        parts
    });
    let mut record = ViewColumn::new(n);
    record.all_null();
    let mut problems = Vec::new();
    for part in parts {
        if let Some((i, error)) = part.failed {
            if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                failed = Some((i, error));
            }
        }
        problems.extend(part.problems);
        record.adopt(part.column);
    }
    if let Some((_, error)) = failed {
        return Err(error);
    }
    drop((found, order)); // before the key columns take their memory
    problems.sort_unstable_by_key(|p| p.0);
    let mut columns = key_columns(leaves, did);
    columns.push(record);
    Ok(Decoded { columns, problems })
}

/// What one thread decoded: its rows' texts, problems, and its first failing row.
struct Part {
    column: ViewColumn,
    problems: Vec<(usize, CoreError)>,
    failed: Option<(usize, CoreError)>,
}

/// Verify and decode the records `rows` (in file order) into a column of their own.
fn decode_part(car: &Car, buf: &[u8], leaves: &Leaves, found: &[Found], rows: &[u32],
               release: &(dyn Fn(usize, usize) + Sync)) -> Part {
    const STRETCH: usize = 2 << 20;
    // every row given here was found (rows stop before the first missing one)
    let place = |i: u32| {
        let (id, alone) = found[i as usize].get().unwrap_or((0, false));
        (car.block(id), alone)
    };
    let mut released = rows.first().map_or(0, |&i| place(i).0.offset);
    let mut column = ViewColumn::sparse(rows.len());
    let mut problems = Vec::new();
    let mut failed: Option<(usize, CoreError)> = None;
    for &i in rows {
        let i = i as usize;
        let (block, alone) = place(i as u32);
        if block.offset - released >= STRETCH {
            release(released, block.offset); // rows come in file order: these are done
            released = block.offset;
        }
        if car.verify_cids {
            // the CID stored before the data is the row's CID (that is how it was found),
            // and it is read in file order, unlike the row's own copy
            let stored = &buf[block.offset - leaves.value(i).len()..block.offset];
            if let Err(error) = verify(buf, stored, block, alone) {
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
        let out = column.reserve(json_bound(data.len()));
        let start = out.len();
        match record_json(data, out) {
            Ok(()) => {
                let (b, end) = column.cursor();
                column.push_written(i, b, start, end - start);
            }
            Err(problem) => problems.push((i, problem)),
        }
    }
    if let Some(&last) = rows.last() {
        let (block, _) = place(last);
        release(released, block.offset + block.length);
    }
    Part { column, problems, failed }
}

/// did, collection, rkey, uri and cid, in key order.
fn key_columns(leaves: &Leaves, did: &str) -> Vec<ViewColumn> {
    let n = leaves.len();
    let mut did_col = ViewColumn::new(n);
    let mut collection = ViewColumn::new(n);
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
        push_cid_str(&mut text, leaves.value(i));
        cid.set(i, &text);
    }
    vec![did_col, collection, rkey, uri, cid]
}
