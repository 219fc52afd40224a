//! A typed table's columns, built row by row and handed to polars as Arrow arrays.
//!
//! A [`Column`] follows one field of the table's shape (`atrepo.lexicon._shape.Shape.dtype`):
//! strings (also CIDs, base64 bytes and JSON text) as `Utf8View`, integers as `Int64`,
//! booleans, datetimes as `Timestamp(us, UTC)`, objects, unions and blobs as structs, arrays
//! as large lists. Rows are appended in the order records are checked; a null struct row gets
//! null children too (as `str.json_decode` gives them), so a column equals the one the
//! reference's route (`str.json_decode` of the fitted JSON) reads. Those children are filled
//! in only when the struct's next valid row or its export needs them, many nulls at once
//! (most posts have no embed, and an embed's struct has dozens of fields), so a struct's
//! fields may hold fewer rows than the struct until then. [`Column::truncate`] takes back a
//! row that was half written when its record turns out to be left to the reference.
//! (https://arrow.apache.org/docs/format/Columnar.html)

use std::ffi::c_void;
use std::ptr;

use crate::arrow::{make_view, View, node_array, node_schema, piece_with_room, view_buffers, ArrowArray, ArrowSchema,
                   Keep};

/// A string column's data buffers are never grown (that would copy them): a full one is
/// followed by a new one, each twice the size of the last, from the first size up to the
/// largest (so a column of few strings stays small and one of many has few buffers).
const FIRST_BUFFER: usize = 1 << 16;
const LARGEST_BUFFER: usize = 16 << 20;

/// A validity (or boolean) bitmap under construction.
#[derive(Default)]
pub struct Bits {
    bytes: Vec<u8>,
    len: usize,
    unset: usize,
}

impl Bits {
    fn push(&mut self, bit: bool) {
        if self.len % 8 == 0 {
            self.bytes.push(0);
        }
        if bit {
            self.bytes[self.len / 8] |= 1 << (self.len % 8);
        } else {
            self.unset += 1;
        }
        self.len += 1;
    }

    /// Append `n` unset bits.
    fn extend_unset(&mut self, n: usize) {
        self.len += n;
        self.unset += n;
        self.bytes.resize(self.len.div_ceil(8), 0);
    }

    fn truncate(&mut self, len: usize) {
        while self.len > len {
            self.len -= 1;
            let (byte, bit) = (self.len / 8, 1 << (self.len % 8));
            if self.bytes[byte] & bit == 0 {
                self.unset -= 1;
            }
            self.bytes[byte] &= !bit;
        }
        self.bytes.truncate(len.div_ceil(8));
    }

    /// The bitmap as a validity buffer: none when every row is valid.
    fn validity(self) -> (Option<Vec<u8>>, usize) {
        if self.unset == 0 { (None, 0) } else { (Some(self.bytes), self.unset) }
    }
}

/// A `Utf8View` column under construction.
#[derive(Default)]
pub struct Strings {
    views: Vec<View>,
    buffers: Vec<Vec<u8>>,
    valid: Bits,
}

impl Strings {
    pub fn push(&mut self, data: &[u8]) {
        if data.len() <= 12 {
            self.views.push(make_view(data, 0, 0));
        } else {
            let last = self.buffers.last().map_or(0, Vec::capacity);
            let size = (2 * last).clamp(FIRST_BUFFER, LARGEST_BUFFER);
            let buffer = piece_with_room(&mut self.buffers, data.len(), size);
            let offset = buffer.len();
            buffer.extend_from_slice(data);
            let b = self.buffers.len() - 1;
            self.views.push(make_view(data, b as u32, offset as u32));
        }
        self.valid.push(true);
    }

    pub fn push_null(&mut self) {
        self.views.push(View::default());
        self.valid.push(false);
    }

    fn truncate(&mut self, len: usize) {
        // the bytes of the rows taken back stay in the buffers, unreferenced (a rare row)
        self.views.truncate(len);
        self.valid.truncate(len);
    }

    fn export(self) -> ArrowArray {
        let length = self.views.len();
        let (validity, nulls) = self.valid.validity();
        let (pointers, keep) = view_buffers(self.views, self.buffers, validity);
        node_array(length, nulls, pointers, keep, Vec::new())
    }
}

/// One column of a typed table, shaped like its field.
pub enum Column {
    Strings(Strings),
    Integers(Vec<i64>, Bits),
    Booleans(Bits, Bits),
    Datetimes(Vec<i64>, Bits),
    Struct(Vec<(String, Column)>, Bits),
    List(Vec<i64>, Box<Column>, Bits),
}

/// How a column is laid out, to make an empty one (see [`Column::new`]).
pub enum Layout<'a> {
    Strings,
    Integers,
    Booleans,
    Datetimes,
    Struct(Vec<(&'a str, Layout<'a>)>),
    List(Box<Layout<'a>>),
}

impl Column {
    /// An empty column of the given layout.
    pub fn new(layout: Layout<'_>) -> Self {
        match layout {
            Layout::Strings => Column::Strings(Strings::default()),
            Layout::Integers => Column::Integers(Vec::new(), Bits::default()),
            Layout::Booleans => Column::Booleans(Bits::default(), Bits::default()),
            Layout::Datetimes => Column::Datetimes(Vec::new(), Bits::default()),
            Layout::Struct(fields) => Column::Struct(
                fields.into_iter().map(|(n, l)| (n.to_string(), Column::new(l))).collect(),
                Bits::default()),
            Layout::List(item) => Column::List(vec![0], Box::new(Column::new(*item)), Bits::default()),
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::Strings(s) => s.views.len(),
            Column::Integers(_, valid) | Column::Booleans(_, valid) | Column::Datetimes(_, valid)
            | Column::Struct(_, valid) | Column::List(_, _, valid) => valid.len,
        }
    }

    /// Append a null row (a list with no items; a struct's fields are null there too, once
    /// they are filled in).
    pub fn push_null(&mut self) {
        self.fill_nulls(self.len() + 1);
    }

    /// Append null rows up to `len` rows.
    fn fill_nulls(&mut self, len: usize) {
        let n = len.saturating_sub(self.len());
        if n == 0 {
            return;
        }
        match self {
            Column::Strings(s) => {
                s.views.resize(len, View::default());
                s.valid.extend_unset(n);
            }
            Column::Integers(values, valid) | Column::Datetimes(values, valid) => {
                values.resize(len, 0);
                valid.extend_unset(n);
            }
            Column::Booleans(values, valid) => {
                values.extend_unset(n);
                valid.extend_unset(n);
            }
            Column::Struct(_, valid) => valid.extend_unset(n), // fields filled when needed
            Column::List(offsets, _, valid) => {
                let end = *offsets.last().unwrap_or(&0);
                offsets.resize(len + 1, end);
                valid.extend_unset(n);
            }
        }
    }

    /// Append a valid row of a scalar column (an integer, datetime or boolean).
    pub fn push_int(&mut self, value: i64) {
        match self {
            Column::Integers(values, valid) | Column::Datetimes(values, valid) => {
                values.push(value);
                valid.push(true);
            }
            Column::Booleans(values, valid) => {
                values.push(value != 0);
                valid.push(true);
            }
            _ => self.push_null(), // not reached: the fitting pushes by the field's kind
        }
    }

    /// The string column (the fitting asks only of a string field).
    pub fn strings(&mut self) -> Option<&mut Strings> {
        match self {
            Column::Strings(s) => Some(s),
            _ => None,
        }
    }

    /// Open a valid struct row: its fields, to each of which the caller appends one row.
    pub fn open_struct(&mut self) -> &mut [(String, Column)] {
        match self {
            Column::Struct(fields, valid) => {
                fields.iter_mut().for_each(|(_, f)| f.fill_nulls(valid.len));
                valid.push(true);
                fields
            }
            _ => &mut [],
        }
    }

    /// Open a valid list row: the item column, to which the caller appends the items;
    /// [`Column::close_list`] ends the row.
    pub fn open_list(&mut self) -> Option<&mut Column> {
        match self {
            Column::List(_, item, valid) => {
                valid.push(true);
                Some(item)
            }
            _ => None,
        }
    }

    pub fn close_list(&mut self) {
        if let Column::List(offsets, item, _) = self {
            offsets.push(item.len() as i64);
        }
    }

    /// Keep only the first `len` rows (a column of no more rows, such as a struct's field
    /// not yet filled in, is left as it is).
    pub fn truncate(&mut self, len: usize) {
        if self.len() <= len {
            return;
        }
        match self {
            Column::Strings(s) => s.truncate(len),
            Column::Integers(values, valid) | Column::Datetimes(values, valid) => {
                values.truncate(len);
                valid.truncate(len);
            }
            Column::Booleans(values, valid) => {
                values.truncate(len);
                valid.truncate(len);
            }
            Column::Struct(fields, valid) => {
                fields.iter_mut().for_each(|(_, f)| f.truncate(len));
                valid.truncate(len);
            }
            Column::List(offsets, item, valid) => {
                offsets.truncate(len + 1);
                item.truncate(offsets[len] as usize);
                valid.truncate(len);
            }
        }
    }

    /// The column's Arrow schema (field `name`) and array, its buffers handed over.
    pub fn export(self, name: &str) -> (ArrowSchema, ArrowArray) {
        let leaf = |format: &str| node_schema(format, name, true, Vec::new());
        match self {
            Column::Strings(s) => (leaf("vu"), s.export()),
            Column::Integers(values, valid) => (leaf("l"), values_array(values, valid)),
            Column::Datetimes(values, valid) => (leaf("tsu:UTC"), values_array(values, valid)),
            Column::Booleans(values, valid) => {
                let length = valid.len;
                let (validity, nulls) = valid.validity();
                let pointers = vec![validity_pointer(&validity), values.bytes.as_ptr() as *const c_void];
                let keep: Vec<Keep> = vec![Box::new(validity), Box::new(values.bytes)];
                (leaf("b"), node_array(length, nulls, pointers, keep, Vec::new()))
            }
            Column::Struct(fields, valid) => {
                let length = valid.len;
                let (validity, nulls) = valid.validity();
                let (schemas, arrays): (Vec<_>, Vec<_>) = fields.into_iter().map(|(n, mut f)| {
                    f.fill_nulls(length);
                    f.export(&n)
                }).unzip();
                let pointers = vec![validity_pointer(&validity)];
                (node_schema("+s", name, true, schemas),
                 node_array(length, nulls, pointers, vec![Box::new(validity)], arrays))
            }
            Column::List(offsets, item, valid) => {
                let length = valid.len;
                let (validity, nulls) = valid.validity();
                let (schema, array) = item.export("item");
                let pointers = vec![validity_pointer(&validity), offsets.as_ptr() as *const c_void];
                let keep: Vec<Keep> = vec![Box::new(validity), Box::new(offsets)];
                (node_schema("+L", name, true, vec![schema]),
                 node_array(length, nulls, pointers, keep, vec![array]))
            }
        }
    }
}

fn validity_pointer(validity: &Option<Vec<u8>>) -> *const c_void {
    validity.as_ref().map_or(ptr::null(), |v| v.as_ptr() as *const c_void)
}

fn values_array(values: Vec<i64>, valid: Bits) -> ArrowArray {
    let length = valid.len;
    let (validity, nulls) = valid.validity();
    let pointers = vec![validity_pointer(&validity), values.as_ptr() as *const c_void];
    node_array(length, nulls, pointers, vec![Box::new(validity), Box::new(values)], Vec::new())
}

/// A struct array of the given columns (all of one length) and a `row` column (UInt32):
/// one part of a table, its rows in the order they were checked.
pub fn export_part(columns: Vec<(String, Column)>, rows: Vec<u32>) -> (ArrowSchema, ArrowArray) {
    let length = rows.len();
    let (mut schemas, mut arrays): (Vec<_>, Vec<_>) =
        columns.into_iter().map(|(n, c)| c.export(&n)).unzip();
    let pointers = vec![ptr::null(), rows.as_ptr() as *const c_void];
    schemas.push(node_schema("I", "row", false, Vec::new()));
    arrays.push(node_array(length, 0, pointers, vec![Box::new(rows)], Vec::new()));
    (node_schema("+s", "", false, schemas), node_array(length, 0, vec![ptr::null()], Vec::new(), arrays))
}
