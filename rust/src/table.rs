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
use crate::car::Car;
use crate::cbor::{self, Tags, Value};
use crate::columns::key_columns;
use crate::error::Result;
use crate::lexcheck::{bad, get, text, Lexicon};
use crate::mst::Leaves;
use crate::pass::{in_halves, record_blocks};
use crate::record::{push_json, representable};
use crate::tablefit::{fit_object, parse_shape, Shape};
use crate::text::push_json_str;

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

/// Check the records under `leaves` (one collection's keys and record CIDs); with `did`, the
/// key columns of the table are built too.
///
/// Blocks are read as decoding `records` reads them ([`record_blocks`]): a record block that
/// is missing, or does not match its CID when `verify_cids`, fails the call with the error of
/// the first such record in key order.
pub fn check_records(checker: &Checker, car: &Car, buf: &[u8], leaves: &Leaves,
                     did: Option<&str>, verify_cids: bool,
                     release: &(dyn Fn(usize, usize) + Sync)) -> Result<Table> {
    let parts = record_blocks(car, buf, leaves, verify_cids, release, Part::new, |part, i, data| {
        part.extra_text.clear();
        // the fitted JSON is at most the record's JSON (8 bytes a byte), twice for JSON
        // kept as text inside a string
        let out = part.fitted.reserve(16 * data.len() + 64);
        let start = out.len();
        match checker.record(data, out, &mut part.extra_text) {
            Some(outcome) => part.put(i, start, outcome),
            None => out.truncate(start),
        }
    })?;
    let mut table = Table::of(leaves.len(), parts);
    if let Some(did) = did {
        table.columns.splice(0..0, key_columns(leaves, did, false));
    }
    Ok(table)
}

/// Check record JSON texts (`None`: no record, a null row), as [`check_records`] checks
/// blocks; the columns are fitted and extra. Two halves side by side when there are many.
pub fn check_texts(checker: &Checker, texts: &[Option<&str>]) -> Table {
    let parts = in_halves(texts, |from, chunk| {
        let mut part = Part::new(chunk.len());
        for (k, text) in chunk.iter().enumerate() {
            let Some(text) = text else { continue };
            part.extra_text.clear();
            let out = part.fitted.reserve(2 * text.len() + 64);
            let start = out.len();
            let outcome = checker.record_text(text, out, &mut part.extra_text);
            part.put(from + k, start, outcome);
        }
        part
    });
    Table::of(texts.len(), parts)
}

impl Table {
    /// The fitted and extra columns of `n` rows, with the problems and deferred rows in row
    /// order, from the parts of a pass (each row in at most one part).
    fn of(n: usize, parts: Vec<Part>) -> Self {
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
        // a pass may read rows out of order (blocks in file order): back to row order (a
        // row's own problems stay in order)
        problems.sort_by_key(|p: &(usize, u8, String)| p.0);
        deferred.sort_unstable();
        Table { columns: vec![fitted, extra], problems, deferred }
    }
}

/// What one thread checked: its rows' fitted and extra texts, problems and rows left to the
/// reference, and the extra text of the row being checked.
struct Part {
    fitted: ViewColumn,
    extra: ViewColumn,
    problems: Vec<(usize, u8, String)>,
    deferred: Vec<usize>,
    extra_text: Vec<u8>,
}

impl Part {
    /// A part for `rows` rows.
    fn new(rows: usize) -> Self {
        Part { fitted: ViewColumn::sparse(rows), extra: ViewColumn::sparse(0), problems: Vec::new(),
               deferred: Vec::new(), extra_text: Vec::new() }
    }

    /// Put row `i`'s outcome into the part: its fitted text (written at `start`), its extra
    /// text (`extra_text`), its problems, or its row among those left to the reference.
    fn put(&mut self, i: usize, start: usize, outcome: Outcome) {
        if outcome.deferred {
            self.fitted.reserve(0).truncate(start);
            self.deferred.push(i);
            return;
        }
        let (b, end) = self.fitted.cursor();
        self.fitted.push_written(i, b, start, end - start);
        if outcome.extra {
            let buffer = self.extra.reserve(self.extra_text.len());
            let at = buffer.len();
            buffer.extend_from_slice(&self.extra_text);
            let (b, _) = self.extra.cursor();
            self.extra.push_written(i, b, at, self.extra_text.len());
        }
        self.problems.extend(outcome.problems.into_iter().map(|(kind, text)| (i, kind, text)));
    }
}

// -- the Python interface ---------------------------------------------------------------

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::{leaves_of, raise, Handover, PyCar, PyKeys, PyValues};

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
pub struct TableColumns(Handover);

#[pymethods]
impl TableColumns {
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>)
            -> PyResult<Bound<'py, PyTuple>> {
        self.0.capsules(py, requested_schema)
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
    Ok((TableColumns(Handover::new("table", &NAMES, table.columns)), table.problems, table.deferred))
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
    Ok((TableColumns(Handover::new("table", &NAMES, table.columns)), table.problems, table.deferred))
}
