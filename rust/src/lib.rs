//! `atrepo._core`: the compiled hot path of atrepo, behind a narrow contract over buffers.
//!
//! Python hands over a CAR (its bytes, or a path that is mapped) and the offset where its
//! blocks start (the header is parsed by the pure Python code, one small block); the core
//! frames and indexes the blocks, walks the MST with every structural check, and decodes
//! records into Arrow string columns that polars adopts without copying. Failures leave as
//! `CoreError(kind, message, fields, hint)`, which `atrepo._accel` raises as the matching
//! `AtrepoError`. The GIL is released while the core works.
//!
//! No panic crosses into Python. The code is written to have none, and should one happen (a
//! bug: a slice out of range, a capacity overflow), [`guarded`], around the body of every
//! entry point, catches it, wherever it began (the calling thread, a worker thread of a pass,
//! code running without the GIL), and it leaves as a failure of kind `internal` naming the
//! call, the CIDs it was given and the panic's message, raised as the `CarError` that
//! `atrepo._accel` makes of it, whose hint says to use the pure Python path and report the
//! input, whichever way the call came (through `atrepo._accel.call` or not); never as
//! PyO3's `PanicException`, a `BaseException` that `except Exception` lets through. (An
//! allocation the system refuses is no panic: Rust aborts the process, which is why declared
//! lengths and depths are bounded before anything is allocated for them.)

mod arrow;
mod car;
mod cbor;
mod columns;
mod diff;
mod error;
mod fast;
mod lexcheck;
mod mst;
mod pass;
mod record;
mod table;
mod tablecols;
mod tablefit;
mod text;

use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Mutex;

use memmap2::{Mmap, UncheckedAdvice};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCapsule, PyList, PySlice, PyString, PyTuple};

use crate::error::{CoreError as Failure, Field};
use crate::mst::Leaves;

create_exception!(_core, CoreError, PyException, "A failure of the core, as (kind, message, fields, hint).");

/// A failure as the Python tuple (kind, message, [(name, tag, value)], hint).
fn as_args<'py>(py: Python<'py>, failure: Failure) -> PyResult<Bound<'py, PyTuple>> {
    let mut fields = Vec::with_capacity(failure.fields.len());
    for (name, field) in failure.fields {
        let (tag, value): (&str, Bound<'py, PyAny>) = match field {
            Field::Int(v) => ("int", v.into_pyobject(py)?.into_any()),
            Field::Text(t) => ("text", PyString::new(py, &t).into_any()),
            Field::Cid(b) => ("cid", PyBytes::new(py, &b).into_any()),
            Field::NodeName(b) => ("node", PyBytes::new(py, &b).into_any()),
            Field::CidText(b) => ("cidtext", PyBytes::new(py, &b).into_any()),
            Field::Key(b) => ("key", PyBytes::new(py, &b).into_any()),
            Field::PreviewInt(v) => ("preview", v.into_pyobject(py)?.into_any()),
            Field::PreviewKey(b) => ("preview50", PyBytes::new(py, &b).into_any()),
            Field::Float(x) => ("float", x.into_pyobject(py)?.into_any()),
        };
        fields.push(PyTuple::new(py, [PyString::new(py, name).into_any(), PyString::new(py, tag).into_any(), value])?);
    }
    let fields = PyList::new(py, fields)?;
    (failure.kind.name(), failure.message, fields, failure.hint).into_pyobject(py)
}

fn raise(py: Python<'_>, failure: Failure) -> PyErr {
    match as_args(py, failure) {
        Ok(args) => CoreError::new_err(args.unbind()),
        Err(err) => err,
    }
}

/// A caught panic's failure as the `AtrepoError` that `atrepo._accel.error` makes of it.
///
/// Raised as that error here, not as a `CoreError` for `atrepo._accel.call` to turn into
/// one, so that it is an `AtrepoError` whichever way the call came: through `call`, a
/// sequence's `__getitem__`, polars taking the Arrow columns. The plain `CoreError` (still an
/// `Exception`) only if `atrepo._accel` itself cannot be had.
fn raise_internal(py: Python<'_>, failure: Failure) -> PyErr {
    let args = match as_args(py, failure) {
        Ok(args) => args,
        Err(err) => return err,
    };
    let made = py.import("atrepo._accel").and_then(|accel| accel.getattr("error"))
        .and_then(|error| error.call1((args.clone(),)));
    match made {
        Ok(error) => PyErr::from_value(error),
        Err(_) => CoreError::new_err(args.unbind()),
    }
}

/// `work`, the body of the entry point `call` (as Python names it: `Car.walk`, `diff`), with
/// a panic in it turned into a failure of kind internal naming `call`, the binary CIDs
/// `cids` the call was given (`(field name, CID)`) and the panic's message, raised as its
/// `AtrepoError` ([`raise_internal`]).
///
/// This is the one place a panic stops, wherever it began: on the calling thread, in a worker
/// thread of a pass (whose join goes on unwinding on the calling thread) or with the GIL
/// released (`detach` takes the GIL back as the panic unwinds out of it). Every
/// `#[pyfunction]` and `#[pymethods]` body runs under it, except lengths and getters, which
/// return what was stored when the object was built.
pub(crate) fn guarded<T>(py: Python<'_>, call: &'static str, cids: &[(&'static str, &[u8])],
                         work: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    // AssertUnwindSafe is sound because nothing a panic interrupts is used again:
    // - what the work builds (an index, leaves, columns, the copied index of `Car.extended`,
    //   Python lists) is owned by the closure and dropped while unwinding (Python objects
    //   with the GIL held again); a result leaves only when the work finished;
    // - what it reads (a `Car`, `Tree`, `Keys`, `Values`, `Diff` or `TableChecker`, the
    //   caller's bytes) is frozen or immutable, never changed by the work, so none is left
    //   half-changed (letting a mapped file's pages go changes nothing a later read sees);
    // - the one state it changes in place, an `ArrowColumns`' data, is taken in one step
    //   (`Option::take` under its mutex); a panic while the mutex is held poisons it, and
    //   every later taking reports that instead of seeing the data.
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|payload| Err(raise_internal(py, Failure::internal(call, cids, &*payload))))
}

/// The bytes of a CAR: a Python `bytes` object (immutable, kept alive here) or a mapped file.
enum Source {
    Bytes(Py<PyBytes>),
    Mapped(Mmap, usize),
}

impl Source {
    /// `bytes` as they are, or a path mapped (its first `length` bytes when given).
    fn open(source: &Bound<'_, PyAny>, length: Option<usize>) -> PyResult<Self> {
        if let Ok(bytes) = source.cast::<PyBytes>() {
            return Ok(Source::Bytes(bytes.clone().unbind()));
        }
        let Ok(path) = source.extract::<std::path::PathBuf>() else {
            return Err(PyTypeError::new_err("source must be bytes or a path"));
        };
        let file = File::open(&path)
            .map_err(|e| PyValueError::new_err(format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: the mapping is read-only and atrepo only ever appends to or replaces CAR
        // files, never rewrites them in place; a file truncated by another program under a
        // live mapping is beyond what any reader that maps files (the pure Python path's
        // mmap included) can defend against.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| PyValueError::new_err(format!("cannot map {}: {e}", path.display())))?;
        let size = length.unwrap_or(map.len());
        if size > map.len() {
            return Err(PyValueError::new_err("length is beyond the end of the file"));
        }
        Ok(Source::Mapped(map, size))
    }

    /// Let the pages of bytes [start, end) go from this process's memory (a mapped file's
    /// pages come back from the page cache when read again; held bytes stay as they are).
    fn release(&self, start: usize, end: usize) {
        const ALIGN: usize = 1 << 16; // a multiple of every page size in use
        let Source::Mapped(map, _) = self else { return };
        let (start, end) = (start.next_multiple_of(ALIGN), end.min(map.len()) / ALIGN * ALIGN);
        if end > start {
            // SAFETY: the mapping is a read-only map of a file; MADV_DONTNEED only drops
            // its pages from the page tables, and the next read faults the same bytes back
            // in from the file, so no slice into the mapping ever sees other contents.
            let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start) };
        }
    }

    fn slice<'a>(&'a self, py: Python<'a>) -> &'a [u8] {
        match self {
            Source::Bytes(b) => b.as_bytes(py),
            Source::Mapped(map, length) => &map[..*length],
        }
    }
}

/// The indexed blocks of one CAR.
#[pyclass(module = "atrepo._core", name = "Car", frozen)]
struct PyCar {
    source: Source,
    car: car::Car,
}

impl PyCar {
    /// Frame the blocks of `source` from `start` on into `car`.
    fn framed(py: Python<'_>, source: Source, mut car: car::Car, start: usize) -> PyResult<Self> {
        let buf = source.slice(py);
        if start > buf.len() {
            return Err(PyValueError::new_err("start is beyond the end of the CAR"));
        }
        let release = |a: usize, b: usize| source.release(a, b);
        py.detach(|| car.index(buf, start, &release)).map_err(|f| raise(py, f))?;
        Ok(PyCar { source, car })
    }
}

#[pymethods]
impl PyCar {
    /// Index the blocks of a CAR whose blocks start at `start`.
    ///
    /// `source` is the CAR's bytes or a path (mapped, of which the first `length` bytes are
    /// used when given).
    #[new]
    #[pyo3(signature = (source, start, *, verify_cids = true, length = None))]
    fn new(py: Python<'_>, source: &Bound<'_, PyAny>, start: usize, verify_cids: bool,
           length: Option<usize>) -> PyResult<Self> {
        guarded(py, "Car", &[], || {
            let source = Source::open(source, length)?;
            Self::framed(py, source, car::Car::new(verify_cids), start)
        })
    }

    /// This CAR with the blocks appended to its file (or bytes) since, up to `length`.
    ///
    /// For a file that only grows (a store pack): the blocks indexed so far stay as they
    /// are and only the new tail is framed.
    #[pyo3(signature = (source, *, length = None))]
    fn extended(&self, py: Python<'_>, source: &Bound<'_, PyAny>, length: Option<usize>)
                -> PyResult<Self> {
        guarded(py, "Car.extended", &[], || {
            let indexed = self.source.slice(py).len();
            let source = Source::open(source, length)?;
            Self::framed(py, source, self.car.clone(), indexed)
        })
    }

    /// Bytes in the CAR.
    #[getter]
    fn size(&self, py: Python<'_>) -> usize {
        self.source.slice(py).len()
    }

    #[getter]
    fn verify_cids(&self) -> bool {
        self.car.verify_cids
    }

    fn __len__(&self) -> usize {
        self.car.len()
    }

    /// (offset, length) of the data of block `cid` (binary), or None.
    fn locate(&self, py: Python<'_>, cid: &[u8]) -> PyResult<Option<(usize, usize)>> {
        guarded(py, "Car.locate", &[("cid", cid)], || {
            Ok(self.car.locate(self.source.slice(py), cid).map(|(b, _)| (b.offset, b.length)))
        })
    }

    /// The data of block `cid` (binary), verified when `verify_cids` is on; None if absent.
    fn get<'py>(&self, py: Python<'py>, cid: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        guarded(py, "Car.get", &[("cid", cid)], || {
            let buf = self.source.slice(py);
            match self.car.get_verified(buf, cid) {
                Ok(Some(b)) => Ok(Some(PyBytes::new(py, &buf[b.offset..b.offset + b.length]))),
                Ok(None) => Ok(None),
                Err(f) => Err(raise(py, f)),
            }
        })
    }

    /// Data offsets and lengths of every block, in file order (not verified).
    fn spans(&self, py: Python<'_>) -> PyResult<Vec<(usize, usize)>> {
        guarded(py, "Car.spans", &[], || {
            Ok((0..self.car.len()).map(|i| self.car.block(i)).map(|b| (b.offset, b.length)).collect())
        })
    }

    /// Walk the MST at `root` (binary CID); `ranges` of byte keys [lo, hi) prune it.
    #[pyo3(signature = (root, ranges = None))]
    fn walk(&self, py: Python<'_>, root: &[u8], ranges: Option<Vec<(Vec<u8>, Vec<u8>)>>)
            -> PyResult<PyTree> {
        guarded(py, "Car.walk", &[("cid", root)], || {
            let buf = self.source.slice(py);
            let walked = py.detach(|| {
                let walked = mst::walk(&self.car, buf, root, ranges.as_ref());
                self.source.release(0, buf.len()); // the nodes were read all over the file
                walked
            });
            Ok(PyTree { leaves: walked.map_err(|f| raise(py, f))? })
        })
    }

    /// Decode the records `values` (binary CIDs) under `keys`: (columns, [(row, failure)]).
    ///
    /// `keys` and `values` are a walk's views (used as they are) or any sequences.
    fn records<'py>(&self, py: Python<'py>, did: &str, keys: &Bound<'py, PyAny>,
                    values: &Bound<'py, PyAny>)
                    -> PyResult<(ArrowColumns, Problems<'py>)> {
        guarded(py, "Car.records", &[], || {
            let owned;
            let leaves = match (keys.cast::<PyKeys>(), values.cast::<PyValues>()) {
                (Ok(k), Ok(v)) if k.get().tree.is(&v.get().tree) => &k.get().tree.get().leaves,
                _ => {
                    owned = leaves_of(keys, values)?;
                    &owned
                }
            };
            let buf = self.source.slice(py);
            let car = &self.car;
            let release = |a: usize, b: usize| self.source.release(a, b);
            let decoded = py
                .detach(|| columns::decode_records(car, buf, leaves, did, &release))
                .map_err(|f| raise(py, f))?;
            let columns = ArrowColumns::of_views("record columns", &columns::NAMES, decoded.columns);
            let problems = decoded
                .problems
                .into_iter()
                .map(|(row, problem)| Ok((row, as_args(py, problem)?)))
                .collect::<PyResult<Vec<_>>>()?;
            Ok((columns, problems))
        })
    }
}

/// Record problems as (row, failure as CoreError args), in key order.
type Problems<'py> = Vec<(usize, Bound<'py, PyTuple>)>;

/// The leaves of one walk: keys and value CIDs, in key order.
#[pyclass(module = "atrepo._core", name = "Tree", frozen)]
struct PyTree {
    leaves: mst::Leaves,
}

/// Index `index` (negative from the end) of a sequence of `len`, or IndexError.
fn position(index: isize, len: usize) -> PyResult<usize> {
    let i = if index < 0 { index + len as isize } else { index };
    if i < 0 || i as usize >= len {
        return Err(PyIndexError::new_err("index out of range"));
    }
    Ok(i as usize)
}

/// Rows `slice` of a sequence of `len`, in order.
fn rows(slice: &Bound<'_, PySlice>, len: usize) -> PyResult<Vec<usize>> {
    let s = slice.indices(len as isize)?;
    Ok((0..s.slicelength).map(|k| (s.start + k as isize * s.step) as usize).collect())
}

/// The keys of a walk as a read-only sequence of str, made one by one when asked for.
#[pyclass(module = "atrepo._core", name = "Keys", frozen, sequence)]
struct PyKeys {
    tree: Py<PyTree>,
}

fn key_str<'py>(py: Python<'py>, leaves: &mst::Leaves, i: usize) -> Bound<'py, PyString> {
    // keys passed the record-path check, so they are ASCII
    PyString::new(py, std::str::from_utf8(leaves.key(i)).unwrap_or(""))
}

#[pymethods]
impl PyKeys {
    fn __len__(&self) -> usize {
        self.tree.get().leaves.len()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        guarded(py, "Keys.__getitem__", &[], || {
            let leaves = &self.tree.get().leaves;
            if let Ok(slice) = index.cast::<PySlice>() {
                let items = rows(slice, leaves.len())?.into_iter().map(|i| key_str(py, leaves, i));
                return Ok(PyList::new(py, items)?.into_any());
            }
            Ok(key_str(py, leaves, position(index.extract()?, leaves.len())?).into_any())
        })
    }
}

/// The value (record) CIDs of a walk as a read-only sequence of bytes.
#[pyclass(module = "atrepo._core", name = "Values", frozen, sequence)]
struct PyValues {
    tree: Py<PyTree>,
}

#[pymethods]
impl PyValues {
    fn __len__(&self) -> usize {
        self.tree.get().leaves.len()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        guarded(py, "Values.__getitem__", &[], || {
            let leaves = &self.tree.get().leaves;
            if let Ok(slice) = index.cast::<PySlice>() {
                let items = rows(slice, leaves.len())?.into_iter().map(|i| PyBytes::new(py, leaves.value(i)));
                return Ok(PyList::new(py, items)?.into_any());
            }
            Ok(PyBytes::new(py, leaves.value(position(index.extract()?, leaves.len())?)).into_any())
        })
    }
}

#[pymethods]
impl PyTree {
    fn __len__(&self) -> usize {
        self.leaves.len()
    }

    /// (keys, values) as sequences over this tree.
    fn views(slf: &Bound<'_, Self>) -> PyResult<(PyKeys, PyValues)> {
        guarded(slf.py(), "Tree.views", &[], || {
            let tree = slf.clone().unbind();
            Ok((PyKeys { tree: tree.clone_ref(slf.py()) }, PyValues { tree }))
        })
    }

    /// The keys (`collection/rkey`), as a list of str.
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        guarded(py, "Tree.keys", &[], || {
            PyList::new(py, (0..self.leaves.len()).map(|i| key_str(py, &self.leaves, i)))
        })
    }

    /// The value (record) CIDs, binary, as a list of bytes.
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        guarded(py, "Tree.values", &[], || {
            let values = (0..self.leaves.len()).map(|i| PyBytes::new(py, self.leaves.value(i)));
            PyList::new(py, values)
        })
    }
}

/// Leaves from Python sequences of keys (str) and values (bytes), or a walk's own views.
fn leaves_of(keys: &Bound<'_, PyAny>, values: &Bound<'_, PyAny>) -> PyResult<Leaves> {
    let mut leaves = Leaves::default();
    for key in keys.try_iter()? {
        leaves.keys.push(key?.extract::<&str>()?.as_bytes());
    }
    for value in values.try_iter()? {
        leaves.values.push(value?.extract::<&[u8]>()?);
    }
    if leaves.keys.len() != leaves.values.len() {
        return Err(PyValueError::new_err("keys and values differ in length"));
    }
    Ok(leaves)
}

/// Arrow data handed to polars once, through `__arrow_c_array__` (the Arrow PyCapsule
/// interface): a `records` frame's columns, a table's key columns, one part of a table's
/// rows. The capsules take the data with them, so a second call fails; data never taken is
/// released when the object goes.
#[pyclass(module = "atrepo._core", name = "ArrowColumns", frozen)]
pub(crate) struct ArrowColumns {
    /// what the data is ("record columns", "table rows", ...), for the error of a second taking
    what: &'static str,
    data: Mutex<Option<(arrow::ArrowSchema, arrow::ArrowArray)>>,
}

impl ArrowColumns {
    pub(crate) fn new(what: &'static str, schema: arrow::ArrowSchema, array: arrow::ArrowArray)
                      -> Self {
        ArrowColumns { what, data: Mutex::new(Some((schema, array))) }
    }

    /// String-view `columns` under the last of `names` (the widest set of columns: fewer
    /// columns are named by the last ones).
    pub(crate) fn of_views(what: &'static str, names: &[&str], columns: Vec<arrow::ViewColumn>)
                           -> Self {
        let schema = arrow::schema_for(&names[names.len() - columns.len()..]);
        Self::new(what, schema, arrow::array_for(columns))
    }
}

#[pymethods]
impl ArrowColumns {
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>)
            -> PyResult<Bound<'py, PyTuple>> {
        guarded(py, "ArrowColumns.__arrow_c_array__", &[], || {
            let _ = requested_schema; // the data has one natural schema; consumers adapt
            let what = self.what;
            let (schema, array) = self
                .data
                .lock()
                .map_err(|_| PyValueError::new_err(format!("{what} are poisoned")))?
                .take()
                .ok_or_else(|| PyValueError::new_err(format!("{what} were already taken")))?;
            let schema = PyCapsule::new_with_destructor(
                py, schema, Some(c"arrow_schema".to_owned()), |s, _| arrow::drop_schema(s))?;
            let array = PyCapsule::new_with_destructor(
                py, array, Some(c"arrow_array".to_owned()), |a, _| arrow::drop_array(a))?;
            PyTuple::new(py, [schema.into_any(), array.into_any()])
        })
    }
}

impl Drop for ArrowColumns {
    fn drop(&mut self) {
        if let Some((schema, array)) = self.data.get_mut().ok().and_then(Option::take) {
            arrow::drop_schema(schema);
            arrow::drop_array(array);
        }
    }
}

/// The JSON text of one record block, or its problem (as CoreError args).
#[pyfunction]
fn record_json<'py>(py: Python<'py>, data: &[u8])
                    -> PyResult<(Option<String>, Option<Bound<'py, PyTuple>>)> {
    guarded(py, "record_json", &[], || {
        let mut out = Vec::with_capacity(data.len() * 2);
        match py.detach(|| record::record_json(data, &mut out)) {
            Ok(()) => Ok((Some(String::from_utf8(out).unwrap_or_default()), None)),
            Err(problem) => Ok((None, Some(as_args(py, problem)?))),
        }
    })
}

/// Panic with `message`, to test [`guarded`]; it exists for that alone.
///
/// The panic comes with the GIL released, on the calling thread, or (`in_thread`) on the
/// worker thread of a two-thread pass (then a `ValueError` if the pass found one core only
/// and started none), and its message says which thread it was. `wait`, a FIFO, is read to
/// its end first: a writer must open it and close it again, which a Python thread can do
/// meanwhile only if this call let the GIL go (see `tests/unit/test_core_panics.py`).
#[pyfunction(name = "_panic_for_tests")]
#[pyo3(signature = (message, *, in_thread = false, wait = None))]
fn panic_for_tests(py: Python<'_>, message: &str, in_thread: bool, wait: Option<PathBuf>)
                   -> PyResult<()> {
    guarded(py, "_panic_for_tests", &[], || {
        py.detach(|| {
            if let Some(fifo) = &wait {
                std::io::copy(&mut File::open(fifo)?, &mut std::io::sink())?;
            }
            let caller = std::thread::current().id();
            let rows = vec![(); pass::PARALLEL_MIN]; // two chunks, the second on a worker
            pass::in_halves(&rows, |_, _| {
                let worker = std::thread::current().id() != caller;
                if worker == in_thread {
                    panic!("{message} (on {} thread)", if worker { "a worker" } else { "the calling" });
                }
            });
            Ok::<(), std::io::Error>(())
        })
        .map_err(|e| PyValueError::new_err(format!("cannot read the FIFO: {e}")))?;
        Err(PyValueError::new_err("no worker thread started: the pass found one core"))
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCar>()?;
    m.add_class::<PyTree>()?;
    m.add_class::<PyKeys>()?;
    m.add_class::<PyValues>()?;
    m.add_class::<ArrowColumns>()?;
    m.add_function(wrap_pyfunction!(record_json, m)?)?;
    m.add_function(wrap_pyfunction!(panic_for_tests, m)?)?;
    m.add_class::<table::PyTableChecker>()?;
    m.add_function(wrap_pyfunction!(table::check_table, m)?)?;
    m.add_function(wrap_pyfunction!(table::check_texts_table, m)?)?;
    diff::register(m)?;
    m.add("CoreError", m.py().get_type::<CoreError>())?;
    m.add("MAX_BLOCK_SIZE", car::MAX_BLOCK_SIZE)?;
    Ok(())
}
