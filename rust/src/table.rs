//! The checking pass of a typed table (`atrepo.tables`), from each record's CBOR block.
//!
//! Python compiles a collection's lexicon and table shape once into a descriptor (JSON text,
//! `atrepo._table_check.descriptor`); [`Checker`] holds it. For every record it does what the Python
//! reference (`atrepo._table_check.Checker`, over `atrepo.lexicon._validate`) does over the
//! record's JSON: validate against the lexicon rule for rule, with the same messages in the
//! same order; fit the record to the table's shape (a value of the wrong type becomes null,
//! with a message naming the field); and collect the fields the lexicon does not declare
//! (`extra`). The fitted record goes straight into the table's typed columns
//! ([`crate::tablefit`], [`crate::tablecols`]), handed to polars as Arrow arrays; no JSON is
//! written for polars to parse again.
//!
//! Where a rule needs more than is written here (a string format or datetime whose value is
//! not in the common shape, a CID that is not the common sha2-256 v1 kind, `$bytes` spelled
//! out as a map), the record is handed back as *deferred*: the Python reference checks and
//! reads that one record, so the two paths agree by construction on everything the core does
//! not decide. A block that does not turn into JSON (the `records` frame's null) gives a
//! null row.


use serde_json::Value as Json;

use crate::arrow::{piece_with_room, ArrowArray, ArrowSchema};
use crate::car::Car;
use crate::cbor::{self, Tags, Value};
use crate::columns::key_columns;
use crate::error::Result;
use crate::lexcheck::{bad, get, text, Lexicon};
use crate::mst::Leaves;
use crate::pass::{in_halves, record_blocks};
use crate::record::{push_json, representable};
use crate::tablecols::{export_part, Column};
use crate::tablefit::{fit_record, parse_shape, Fitting, Shape};
use crate::text::push_json_str;

/// The key columns of a table, when asked for.
pub const NAMES: [&str; 4] = ["did", "rkey", "uri", "cid"];

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

    /// Check the record block `data` (row `i`) into `part`; a block without a JSON text
    /// (a null record) is a null row.
    fn record(&self, data: &[u8], i: usize, part: &mut Part) {
        match cbor::decode(data, Tags::Links) {
            Ok((value @ Value::Map(_), _)) if representable(&value) => self.value(&value, i, part),
            _ => part.null_row(i),
        }
    }

    /// Check the record JSON text `text` (row `i`), as [`Checker::record`] checks a block.
    /// A text the reference would read differently from here (a float, an integer outside
    /// Int64, a top level that is not an object, JSON that does not parse) is left to it.
    fn record_text(&self, text: &str, i: usize, part: &mut Part) {
        let Ok(json) = serde_json::from_str::<Json>(text) else { return part.deferred.push(i) };
        match from_json(&json) {
            Some(value @ Value::Map(_)) => self.value(&value, i, part),
            _ => part.deferred.push(i),
        }
    }

    /// Check and fit one decoded record (a map) as row `i` of `part`, or leave it to the
    /// reference (nothing of it kept but its row among the deferred).
    fn value(&self, value: &Value<'_>, i: usize, part: &mut Part) {
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
        if self.lexicon.check_record(value, &mut path, &mut messages).is_err() {
            return part.deferred.push(i);
        }
        found.extend(messages.into_iter().map(|m| (VALIDATOR, m)));
        let fitting = &mut part.fitting;
        fitting.nulled.clear();
        let mut lost = Vec::new();
        if fit_record(&self.shape, value, &mut path, fitting, &mut part.columns, &mut lost).is_err() {
            let rows = part.rows.len();
            part.columns.iter_mut().for_each(|(_, c)| c.truncate(rows));
            return part.deferred.push(i);
        }
        part.extra_text.clear();
        if self.push_extra(value, &mut part.extra_text) {
            part.extra.push(&part.extra_text);
        } else {
            part.extra.push_null();
        }
        let nulled = &mut part.fitting.nulled;
        if !nulled.is_empty() {
            // the table's own message replaces the validator's for a nulled field
            let paths: Vec<String> = nulled.iter().map(|(p, _)| format!("{p} ")).collect();
            found.retain(|(kind, m)| {
                let shown = if *kind == RECORD_TYPE { "Record/$type is " } else { m.as_str() };
                !paths.iter().any(|p| shown.starts_with(p.as_str()))
            });
            found.extend(nulled.drain(..).map(|(_, m)| (FITTED, m)));
        }
        part.rows.push(i as u32);
        part.problems.extend(found.into_iter().map(|(kind, text)| (i, kind, text)));
        part.lost.extend(lost.into_iter().map(|(field, shown)| (i, field, shown)));
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

    /// The empty columns of a part: one per top-level field of the shape.
    fn columns(&self) -> Vec<(String, Column)> {
        self.shape.fields.iter().map(|(n, f)| (n.clone(), Column::new(f.layout()))).collect()
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

/// What a table's checking pass hands back: the key columns (when asked for), the parts of
/// the checked rows (each a struct array of the fields, `extra` and `row`: the row each is,
/// in the order the part checked them), the problems (row, kind, text) in row order, the
/// rows left to the reference, and the datetimes that became null (row, field, the field's
/// string), in row order.
pub struct Table {
    pub keys: Option<Vec<crate::arrow::ViewColumn>>,
    pub parts: Vec<(ArrowSchema, ArrowArray)>,
    pub problems: Vec<(usize, u8, String)>,
    pub deferred: Vec<usize>,
    pub lost: Vec<(usize, u32, Option<String>)>,
}

/// Check the records under `leaves` (one collection's keys and record CIDs); with `did`, the
/// key columns of the table are built too.
///
/// Blocks are read as decoding `records` reads them ([`record_blocks`]): a record block that
/// is missing, or does not match its CID when `verify_cids`, fails the call with the error of
/// the first such record in key order. They are read in file order and copied aside, then
/// checked in key order, so the table's rows come out in key order: reordering the raw
/// blocks moves far fewer bytes than reordering the typed columns would.
pub fn check_records(checker: &Checker, car: &Car, buf: &[u8], leaves: &Leaves,
                     did: Option<&str>, verify_cids: bool,
                     release: &(dyn Fn(usize, usize) + Sync)) -> Result<Table> {
    let copies = record_blocks(car, buf, leaves, verify_cids, release, Copies::new,
                               |copies, i, data| copies.put(i, data))?;
    let mut at: Vec<&[u8]> = vec![&[]; leaves.len()];
    for copies in &copies {
        for &(row, k, start, end) in &copies.spans {
            at[row as usize] = &copies.pieces[k as usize][start..end];
        }
    }
    let parts = in_halves(&at, |from, chunk| {
        let mut part = Part::new(checker);
        for (row, data) in (from..).zip(chunk) {
            checker.record(data, row, &mut part);
        }
        part
    });
    let mut table = Table::of(parts);
    table.keys = did.map(|did| key_columns(leaves, did, false));
    Ok(table)
}

/// Check record JSON texts (`None`: no record, a null row), as [`check_records`] checks
/// blocks. Two halves side by side when there are many.
pub fn check_texts(checker: &Checker, texts: &[Option<&str>]) -> Table {
    let parts = in_halves(texts, |from, chunk| {
        let mut part = Part::new(checker);
        for (k, text) in chunk.iter().enumerate() {
            match text {
                Some(text) => checker.record_text(text, from + k, &mut part),
                None => part.null_row(from + k),
            }
        }
        part
    });
    Table::of(parts)
}

impl Table {
    /// The exported parts, with the problems, deferred rows and lost datetimes in row order.
    fn of(parts: Vec<Part>) -> Self {
        let (mut problems, mut deferred, mut lost) = (Vec::new(), Vec::new(), Vec::new());
        let mut exported = Vec::with_capacity(parts.len());
        for part in parts {
            problems.extend(part.problems);
            deferred.extend(part.deferred);
            lost.extend(part.lost);
            let mut columns = part.columns;
            columns.push(("extra".to_string(), Column::Strings(part.extra)));
            exported.push(export_part(columns, part.rows));
        }
        // a pass may read rows out of order (blocks in file order): back to row order (a
        // row's own problems stay in order)
        problems.sort_by_key(|p: &(usize, u8, String)| p.0);
        deferred.sort_unstable();
        lost.sort_by_key(|l: &(usize, u32, Option<String>)| l.0);
        Table { keys: None, parts: exported, problems, deferred, lost }
    }
}

/// Record blocks copied out of the CAR by one thread of a pass: their bytes, in pieces that
/// are never grown (growing would copy them), and each one's (row, piece, start, end).
struct Copies {
    pieces: Vec<Vec<u8>>,
    spans: Vec<(u32, u32, usize, usize)>,
}

impl Copies {
    /// Bytes copied into one piece before the next is started.
    const PIECE: usize = 8 << 20;

    fn new(rows: usize) -> Self {
        Copies { pieces: Vec::new(), spans: Vec::with_capacity(rows) }
    }

    fn put(&mut self, row: usize, data: &[u8]) {
        let piece = piece_with_room(&mut self.pieces, data.len(), Self::PIECE);
        let start = piece.len();
        piece.extend_from_slice(data);
        let (k, end) = (self.pieces.len() - 1, start + data.len());
        self.spans.push((row as u32, k as u32, start, end));
    }
}

/// What one thread checked: its rows' columns (appended in the order checked), the rows
/// they are, their problems and lost datetimes, and the rows left to the reference.
struct Part {
    columns: Vec<(String, Column)>,
    extra: crate::tablecols::Strings,
    rows: Vec<u32>,
    problems: Vec<(usize, u8, String)>,
    deferred: Vec<usize>,
    lost: Vec<(usize, u32, Option<String>)>,
    extra_text: Vec<u8>,
    fitting: Fitting,
}

impl Part {
    fn new(checker: &Checker) -> Self {
        Part { columns: checker.columns(), extra: Default::default(), rows: Vec::new(),
               problems: Vec::new(), deferred: Vec::new(), lost: Vec::new(),
               extra_text: Vec::new(), fitting: Fitting::default() }
    }

    /// Row `i` without a record: null in every column.
    fn null_row(&mut self, i: usize) {
        self.columns.iter_mut().for_each(|(_, c)| c.push_null());
        self.extra.push_null();
        self.rows.push(i as u32);
    }
}

// -- the Python interface ---------------------------------------------------------------

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{guarded, leaves_of, raise, ArrowColumns, PyCar, PyKeys, PyValues};

/// A collection's compiled checks, built once from its descriptor.
#[pyclass(module = "atrepo._core", name = "TableChecker", frozen)]
pub struct PyTableChecker {
    checker: Checker,
}

#[pymethods]
impl PyTableChecker {
    #[new]
    fn new(py: Python<'_>, descriptor: &str) -> PyResult<Self> {
        guarded(py, "TableChecker", &[], || {
            Checker::new(descriptor).map(|checker| PyTableChecker { checker }).map_err(|f| raise(py, f))
        })
    }
}

/// What [`check_table`] and [`check_texts_table`] give Python: the key columns (None when
/// not asked for), the parts of the rows, the problems, the rows left to the reference and
/// the lost datetimes (see [`Table`]).
type Checked = (Option<ArrowColumns>, Vec<ArrowColumns>, TableProblems, Vec<usize>,
                Vec<(usize, u32, Option<String>)>);

fn handed(table: Table) -> Checked {
    let keys = table.keys.map(|k| ArrowColumns::of_views("table key columns", &NAMES, k));
    let parts = table.parts.into_iter()
        .map(|(schema, array)| ArrowColumns::new("table rows", schema, array)).collect();
    (keys, parts, table.problems, table.deferred, table.lost)
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
/// keys and record CIDs): see [`Checked`]; the key columns only with a `did`.
#[pyfunction]
#[pyo3(signature = (checker, car, did, keys, values, *, start = 0, end = None, verify_cids = true))]
#[allow(clippy::too_many_arguments)]
pub fn check_table(py: Python<'_>, checker: &PyTableChecker, car: &PyCar, did: Option<&str>,
                   keys: &Bound<'_, PyAny>, values: &Bound<'_, PyAny>, start: usize,
                   end: Option<usize>, verify_cids: bool)
                   -> PyResult<Checked> {
    guarded(py, "check_table", &[], || {
        let leaves = rows_of(keys, values, start, end)?;
        let buf = car.source.slice(py);
        let verify_cids = verify_cids && car.car.verify_cids;
        let release = |a: usize, b: usize| car.source.release(a, b);
        let table = py
            .detach(|| check_records(&checker.checker, &car.car, buf, &leaves, did, verify_cids, &release))
            .map_err(|f| raise(py, f))?;
        Ok(handed(table))
    })
}

/// Check record JSON texts (`None`: no record), as [`check_table`] checks blocks (no key
/// columns).
#[pyfunction]
pub fn check_texts_table(py: Python<'_>, checker: &PyTableChecker, texts: &Bound<'_, PyAny>)
                         -> PyResult<Checked> {
    guarded(py, "check_texts_table", &[], || {
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
        Ok(handed(table))
    })
}
