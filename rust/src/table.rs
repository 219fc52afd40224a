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


use serde_json::Value as Json;

use crate::arrow::ViewColumn;
use crate::car::{verify, Car, Found};
use crate::cbor::{self, Tags, Value};
use crate::error::{CoreError, Field, Result};
use crate::lexcheck::{bad, get, text, Lexicon};
use crate::mst::Leaves;
use crate::tablefit::{fit_object, parse_shape, push_json, representable, Shape};
use crate::text::{push_cid_str, push_json_str};

/// The table's columns, in order: the key columns (when asked for), then the checked ones.
pub const NAMES: [&str; 6] = ["did", "rkey", "uri", "cid", "fitted", "extra"];

/// How a problem is worded: by the validator (Python adds `invalid record: `), by the
/// fitting (as is), or a `$type` that is not the collection (the value's JSON; empty when
/// missing), which Python words with the value's repr.
pub const VALIDATOR: u8 = 0;
pub const FITTED: u8 = 1;
pub const RECORD_TYPE: u8 = 2;
/// A collection's compiled checks: its record definition and table shape.
pub struct Checker {
    collection: String,
    lexicon: Lexicon,
    shape: Shape,
    declared: Vec<String>,
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
        let lexicon = Lexicon::parse(&doc)?;
        let shape = parse_shape(doc.get("shape").ok_or_else(|| bad("shape"))?)?;
        let mut declared: Vec<String> = shape.fields.iter().map(|(n, _)| n.clone()).collect();
        declared.push("$type".to_string());
        Ok(Checker { collection, lexicon, shape, declared })
    }

    /// Check the record block `data`, appending its fitted JSON to `fitted` and its extra
    /// JSON to `extra` (None: no JSON text, or left to the reference).
    pub fn record(&self, data: &[u8], fitted: &mut Vec<u8>, extra: &mut Vec<u8>) -> Option<Outcome> {
        let (value, _) = cbor::decode(data, Tags::Links).ok()?;
        if !matches!(value, Value::Map(_)) || !representable(&value) {
            return None;
        }
        Some(self.value(&value, fitted, extra))
    }

    /// Check the record JSON text `text`, as [`Checker::record`] checks a block. A text the
    /// reference would read differently from here (a float, an integer outside Int64, a
    /// top level that is not an object, JSON that does not parse) is left to it.
    pub fn record_text(&self, text: &str, fitted: &mut Vec<u8>, extra: &mut Vec<u8>) -> Outcome {
        let deferred = Outcome { problems: Vec::new(), deferred: true, extra: false };
        let Ok(json) = serde_json::from_str::<Json>(text) else { return deferred };
        match from_json(&json) {
            Some(value @ Value::Map(_)) => self.value(&value, fitted, extra),
            _ => deferred,
        }
    }

    /// Check and fit one decoded record (a map).
    fn value(&self, value: &Value<'_>, fitted: &mut Vec<u8>, extra: &mut Vec<u8>) -> Outcome {
        let mut found: Vec<(u8, String)> = Vec::new();
        match get(value, "$type") {
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
        if self.lexicon.check_record(value, &mut path, &mut messages).is_err() {
            return deferred;
        }
        found.extend(messages.into_iter().map(|m| (VALIDATOR, m)));
        let mut nulled = Vec::new();
        fit_object(&self.shape, value, &mut path, &mut nulled, fitted);
        let has_extra = self.push_extra(value, extra);
        if !nulled.is_empty() {
            // the table's own message replaces the validator's for a nulled field
            let paths: Vec<String> = nulled.iter().map(|(p, _)| format!("{p} ")).collect();
            found.retain(|(kind, m)| {
                let shown = if *kind == RECORD_TYPE { "Record/$type is " } else { m.as_str() };
                !paths.iter().any(|p| shown.starts_with(p.as_str()))
            });
            found.extend(nulled.into_iter().map(|(_, m)| (FITTED, m)));
        }
        Outcome { problems: found, deferred: false, extra: has_extra }
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
}

/// A parsed JSON value as the checks read values, its strings borrowed; None for a number
/// that is not an integer in Int64's range (the reference reads those otherwise).
fn from_json(json: &Json) -> Option<Value<'_>> {
    Some(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Int(i128::from(n.as_i64()?)),
        Json::String(t) => Value::Text(t),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect::<Option<_>>()?),
        Json::Object(map) => Value::Map(
            map.iter().map(|(k, v)| Some((Value::Text(k), from_json(v)?))).collect::<Option<_>>()?),
    })
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

/// Check the records under `leaves` (one collection's keys and record CIDs); with `did`, the
/// key columns of the table are built too.
///
/// A record block that is missing, or does not match its CID when `verify_cids`, fails the
/// call with the error of the first such record in key order, as decoding `records` does.
/// Blocks are read in file order (sequential reads of the CAR), the pages behind released
/// as the pass goes (`release`, as decoding `records` does, so a mapped CAR read a second
/// time does not come back into memory whole); a big collection is checked in two halves
/// of the file side by side (the GIL is released).
pub fn check_records(checker: &Checker, car: &Car, buf: &[u8], leaves: &Leaves,
                     did: Option<&str>, verify_cids: bool,
                     release: &(dyn Fn(usize, usize) + Sync)) -> Result<Table> {
    let n = leaves.len();
    let found = car.locate_many(buf, n, |i| leaves.value(i));
    if let Some(i) = found.iter().position(|f| f.get().is_none()) {
        return Err(CoreError::mst("record block missing from CAR")
            .with("cid", Field::CidText(leaves.value(i).to_vec()))
            .hint("the CAR is incomplete"));
    }
    let mut order: Vec<(u32, u32)> = (0..n)
        .map(|i| (found[i].get().map_or(0, |(id, _)| id as u32), i as u32))
        .collect();
    order.sort_unstable();
    let order: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = if n < PARALLEL_MIN { 1 } else { cores.clamp(1, 2) };
    let chunk = n.div_ceil(threads).max(1);
    let parts: Vec<Part> = std::thread::scope(|scope| {
        let work = |rows: &[u32]| check_part(checker, car, buf, leaves, &found, rows, verify_cids, release);
        let handles: Vec<_> = order.chunks(chunk).skip(1).map(|rows| scope.spawn(move || work(rows))).collect();
        let mut parts = vec![work(order.chunks(chunk).next().unwrap_or(&[]))];
        // a panic in a thread is re-raised here, and PyO3 turns it into an exception
        parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
        parts
    });
    let mut fitted = ViewColumn::new(n);
    let mut extra = ViewColumn::new(n);
    fitted.all_null();
    extra.all_null();
    let (mut problems, mut deferred) = (Vec::new(), Vec::new());
    let mut failed: Option<(usize, CoreError)> = None;
    for part in parts {
        if let Some((i, error)) = part.failed {
            if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                failed = Some((i, error));
            }
        }
        fitted.adopt(part.fitted);
        extra.adopt(part.extra);
        problems.extend(part.problems);
        deferred.extend(part.deferred);
    }
    if let Some((_, error)) = failed {
        return Err(error);
    }
    // rows were read in file order: back to key order (a row's own problems stay in order)
    problems.sort_by_key(|p: &(usize, u8, String)| p.0);
    deferred.sort_unstable();
    let mut columns = did.map_or_else(Vec::new, |did| key_columns(leaves, did));
    columns.extend([fitted, extra]);
    Ok(Table { columns, problems, deferred })
}

/// What one thread checked: its rows' fitted and extra texts, problems, rows left to the
/// reference, and its first (in key order) block that does not match its CID.
struct Part {
    fitted: ViewColumn,
    extra: ViewColumn,
    problems: Vec<(usize, u8, String)>,
    deferred: Vec<usize>,
    failed: Option<(usize, CoreError)>,
}

/// Check the records `rows` (every one found, in file order).
#[allow(clippy::too_many_arguments)]
fn check_part(checker: &Checker, car: &Car, buf: &[u8], leaves: &Leaves, found: &[Found],
              rows: &[u32], verify_cids: bool, release: &(dyn Fn(usize, usize) + Sync)) -> Part {
    const STRETCH: usize = 2 << 20;
    let place = |i: usize| {
        let (id, alone) = found[i].get().unwrap_or((0, false));
        (car.block(id), alone)
    };
    let mut part = Part { fitted: ViewColumn::sparse(rows.len()), extra: ViewColumn::sparse(0),
                          problems: Vec::new(), deferred: Vec::new(), failed: None };
    let mut released = rows.first().map_or(0, |&i| place(i as usize).0.offset);
    let mut extra_text = Vec::new();
    for &i in rows {
        let i = i as usize;
        let (block, alone) = place(i);
        if block.offset - released >= STRETCH {
            release(released, block.offset); // rows come in file order: these are done
            released = block.offset;
        }
        if verify_cids {
            if let Err(error) = verify(buf, leaves.value(i), block, alone) {
                if part.failed.as_ref().is_none_or(|(j, _)| i < *j) {
                    part.failed = Some((i, error));
                }
                continue;
            }
        }
        if part.failed.is_some() {
            continue; // the call fails anyway; only an earlier failing record matters now
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
        put(&mut part, i, start, outcome, &extra_text);
    }
    if let Some(&last) = rows.last() {
        let (block, _) = place(last as usize);
        release(released, block.offset + block.length);
    }
    part
}

/// Check record JSON texts (`None`: no record, a null row), as [`check_records`] checks
/// blocks; the columns are fitted and extra. Two halves side by side when there are many.
pub fn check_texts(checker: &Checker, texts: &[Option<&str>]) -> Table {
    let n = texts.len();
    let threads = if n < PARALLEL_MIN { 1 } else { 2 };
    let chunk = n.div_ceil(threads).max(1);
    let parts: Vec<Part> = std::thread::scope(|scope| {
        let work = |from: usize| texts_part(checker, texts, from..(from + chunk).min(n));
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
        fitted.adopt(part.fitted);
        extra.adopt(part.extra);
        problems.extend(part.problems);
        deferred.extend(part.deferred);
    }
    Table { columns: vec![fitted, extra], problems, deferred }
}

fn texts_part(checker: &Checker, texts: &[Option<&str>], rows: std::ops::Range<usize>) -> Part {
    let mut part = Part { fitted: ViewColumn::sparse(rows.len()), extra: ViewColumn::sparse(0),
                          problems: Vec::new(), deferred: Vec::new(), failed: None };
    let mut extra_text = Vec::new();
    for i in rows {
        let Some(text) = texts[i] else { continue };
        extra_text.clear();
        let out = part.fitted.reserve(2 * text.len() + 64);
        let start = out.len();
        let outcome = checker.record_text(text, out, &mut extra_text);
        put(&mut part, i, start, outcome, &extra_text);
    }
    part
}

/// Put one record's outcome into its part: its fitted text (written at `start`), its extra
/// text, its problems, or its row among those left to the reference.
fn put(part: &mut Part, i: usize, start: usize, outcome: Outcome, extra_text: &[u8]) {
    if outcome.deferred {
        part.fitted.reserve(0).truncate(start);
        part.deferred.push(i);
        return;
    }
    let (b, end) = part.fitted.cursor();
    part.fitted.push_written(i, b, start, end - start);
    if outcome.extra {
        let buffer = part.extra.reserve(extra_text.len());
        let at = buffer.len();
        buffer.extend_from_slice(extra_text);
        let (b, _) = part.extra.cursor();
        part.extra.push_written(i, b, at, extra_text.len());
    }
    part.problems.extend(outcome.problems.into_iter().map(|(kind, text)| (i, kind, text)));
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
        let names = &NAMES[NAMES.len() - columns.len()..];
        let schema = arrow::schema_for(names);
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
/// keys and record CIDs): (columns, problems, rows left to the reference). The columns are
/// did, rkey, uri, cid, fitted, extra; without a `did`, only fitted and extra.
#[pyfunction]
#[pyo3(signature = (checker, car, did, keys, values, *, start = 0, end = None, verify_cids = true))]
#[allow(clippy::too_many_arguments)]
pub fn check_table(py: Python<'_>, checker: &PyTableChecker, car: &PyCar, did: Option<&str>,
                   keys: &Bound<'_, PyAny>, values: &Bound<'_, PyAny>, start: usize,
                   end: Option<usize>, verify_cids: bool)
                   -> PyResult<(TableColumns, TableProblems, Vec<usize>)> {
    let leaves = rows_of(keys, values, start, end)?;
    let buf = car.source.slice(py);
    let verify_cids = verify_cids && car.car.verify_cids;
    let release = |a: usize, b: usize| car.source.release(a, b);
    let table = py
        .detach(|| check_records(&checker.checker, &car.car, buf, &leaves, did, verify_cids, &release))
        .map_err(|f| raise(py, f))?;
    let columns = TableColumns { columns: Mutex::new(Some(table.columns)) };
    Ok((columns, table.problems, table.deferred))
}

/// Check record JSON texts (`None`: no record): (fitted and extra columns, problems, rows
/// left to the reference), as [`check_table`] checks blocks.
#[pyfunction]
pub fn check_texts_table(py: Python<'_>, checker: &PyTableChecker, texts: &Bound<'_, PyAny>)
                         -> PyResult<(TableColumns, TableProblems, Vec<usize>)> {
    // copied out of the Python strings, so that the work runs without the GIL
    let mut data = String::new();
    let mut spans: Vec<Option<(usize, usize)>> = Vec::new();
    for text in texts.try_iter()? {
        let text = text?;
        if text.is_none() {
            spans.push(None);
        } else {
            let text: &str = text.extract()?;
            spans.push(Some((data.len(), data.len() + text.len())));
            data.push_str(text);
        }
    }
    let table = py.detach(|| {
        let texts: Vec<Option<&str>> = spans.iter().map(|s| s.map(|(a, b)| &data[a..b])).collect();
        check_texts(&checker.checker, &texts)
    });
    let columns = TableColumns { columns: Mutex::new(Some(table.columns)) };
    Ok((columns, table.problems, table.deferred))
}
