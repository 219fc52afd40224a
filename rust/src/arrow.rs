//! String columns as Arrow `Utf8View` arrays, and the Arrow C data interface's structs
//! ([`node_schema`], [`node_array`]) through which every column the core builds is exported.
//!
//! A view array keeps one 16-byte view per row (strings of up to 12 bytes inline, longer
//! ones as length, prefix, buffer index and offset) over data buffers in any order. That is
//! what lets records be decoded in file order, for sequential reads of the CAR, while their
//! rows stay in MST key order; and it is polars' own string layout, so polars takes the
//! buffers without copying (https://arrow.apache.org/docs/format/Columnar.html#variable-size-binary-view-layout,
//! https://arrow.apache.org/docs/format/CDataInterface.html).

use std::ffi::{c_char, c_void, CString};
use std::ptr;

/// Data buffers are allocated in pieces of this size, so no buffer is ever grown by copying.
const PIECE: usize = 16 << 20;

/// One row's view: the string's length, then the string itself (up to 12 bytes) or its
/// first 4 bytes, data buffer and offset, little-endian.
///
/// Aligned to 16 bytes by its type, as consumers read a view buffer as 128-bit structs: the
/// buffer's alignment then holds whatever the allocator does, and for an empty column too
/// (whose pointer is the vector's dangling, but aligned, one).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View(pub [u8; 16]);

const _: () = assert!(std::mem::size_of::<View>() == 16 && std::mem::align_of::<View>() == 16);

/// One string column under construction.
pub struct ViewColumn {
    views: Vec<View>,
    /// rows written out of place, (row, view), for a column built in parts
    placed: Vec<(u32, View)>,
    buffers: Vec<Vec<u8>>,
    validity: Option<Vec<u8>>,
    null_count: usize,
}

impl ViewColumn {
    /// A column of `rows` empty strings, to be filled in any order with [`ViewColumn::set`].
    pub fn new(rows: usize) -> Self {
        ViewColumn {
            views: vec![View::default(); rows],
            placed: Vec::new(),
            buffers: Vec::new(),
            validity: None,
            null_count: 0,
        }
    }

    /// A part of a column: strings of `rows` rows, placed with [`ViewColumn::adopt`].
    pub fn sparse(rows: usize) -> Self {
        let mut part = Self::new(0);
        part.placed.reserve_exact(rows);
        part
    }

    /// Record row `row` as the string written at `(buffer, offset)` (for [`sparse`] parts).
    pub fn push_written(&mut self, row: usize, buffer: usize, offset: usize, length: usize) {
        let data = &self.buffers[buffer][offset..offset + length];
        self.placed.push((row as u32, make_view(data, buffer as u32, offset as u32)));
    }

    /// Take over a part's buffers and place its rows; rows it does not name become null.
    pub fn adopt(&mut self, part: ViewColumn) {
        let base = self.buffers.len() as u32;
        for (row, View(mut view)) in part.placed {
            if u32::from_le_bytes([view[0], view[1], view[2], view[3]]) > 12 {
                let b = u32::from_le_bytes([view[8], view[9], view[10], view[11]]) + base;
                view[8..12].copy_from_slice(&b.to_le_bytes());
            }
            let view = View(view);
            self.views[row as usize] = view;
            self.mark_valid(row as usize);
        }
        self.buffers.extend(part.buffers);
    }

    /// Mark every row null; [`adopt`] then marks the rows it places valid.
    pub fn all_null(&mut self) {
        let rows = self.views.len();
        self.validity = Some(vec![0u8; rows.div_ceil(8)]);
        self.null_count = rows;
    }

    fn mark_valid(&mut self, row: usize) {
        if let Some(validity) = self.validity.as_mut() {
            validity[row / 8] |= 1 << (row % 8);
            self.null_count -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Room for at least `bytes` more bytes in the current buffer.
    pub fn reserve(&mut self, bytes: usize) -> &mut Vec<u8> {
        piece_with_room(&mut self.buffers, bytes, PIECE)
    }

    /// The place (buffer, offset) where the next bytes written by [`reserve`] start.
    pub fn cursor(&self) -> (usize, usize) {
        let b = self.buffers.len().saturating_sub(1);
        (b, self.buffers.last().map_or(0, Vec::len))
    }

    /// Make row `row` the string written at `(buffer, offset)` with `length` bytes.
    pub fn set_written(&mut self, row: usize, buffer: usize, offset: usize, length: usize) {
        let data = &self.buffers[buffer][offset..offset + length];
        self.views[row] = make_view(data, buffer as u32, offset as u32);
    }

    /// Make row `row` the string `data`, copying it into the column's buffers.
    pub fn set(&mut self, row: usize, data: &[u8]) {
        if data.len() <= 12 {
            self.views[row] = make_view(data, 0, 0);
            return;
        }
        let buf = self.reserve(data.len());
        buf.extend_from_slice(data);
        let (b, end) = self.cursor();
        self.set_written(row, b, end - data.len(), data.len());
    }

    /// Make row `row` the same string as row `other` (no bytes are copied).
    pub fn share(&mut self, row: usize, other: usize) {
        self.views[row] = self.views[other];
    }
}

/// The last of `pieces` if it has room for `bytes` more bytes, else a new last one of
/// `size` bytes (or `bytes`, when more): pieces are never grown, as growing one would copy it.
pub fn piece_with_room(pieces: &mut Vec<Vec<u8>>, bytes: usize, size: usize) -> &mut Vec<u8> {
    if pieces.last().is_none_or(|p| p.capacity() - p.len() < bytes) {
        pieces.push(Vec::with_capacity(size.max(bytes)));
    }
    let last = pieces.len() - 1;
    &mut pieces[last]
}

pub fn make_view(data: &[u8], buffer: u32, offset: u32) -> View {
    let mut view = [0u8; 16];
    view[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    if data.len() <= 12 {
        view[4..4 + data.len()].copy_from_slice(data);
    } else {
        view[4..8].copy_from_slice(&data[..4]);
        view[8..12].copy_from_slice(&buffer.to_le_bytes());
        view[12..16].copy_from_slice(&offset.to_le_bytes());
    }
    View(view)
}

/// `struct ArrowSchema` of the C data interface.
#[repr(C)]
pub struct ArrowSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut ArrowSchema,
    dictionary: *mut ArrowSchema,
    release: Option<unsafe extern "C" fn(*mut ArrowSchema)>,
    private_data: *mut c_void,
}

/// `struct ArrowArray` of the C data interface.
#[repr(C)]
pub struct ArrowArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut ArrowArray,
    dictionary: *mut ArrowArray,
    release: Option<unsafe extern "C" fn(*mut ArrowArray)>,
    private_data: *mut c_void,
}

// SAFETY: both structs are plain data handed from one owner to the next (the capsule, then
// the consumer); whatever they point to is owned through `private_data` and never shared.
unsafe impl Send for ArrowSchema {}
unsafe impl Send for ArrowArray {}

const NULLABLE: i64 = 2;

struct SchemaPrivate {
    _strings: Vec<CString>,
    children: Vec<*mut ArrowSchema>,
}

unsafe extern "C" fn release_schema(schema: *mut ArrowSchema) {
    // SAFETY: called by the consumer once, on a schema built by `node_schema` whose
    // private_data is a leaked Box<SchemaPrivate> and whose children are leaked Boxes.
    unsafe {
        let schema = &mut *schema;
        let private = Box::from_raw(schema.private_data as *mut SchemaPrivate);
        for &child in &private.children {
            if let Some(release) = (*child).release {
                release(child);
            }
            drop(Box::from_raw(child));
        }
        schema.release = None;
    }
}

/// The schema of one array: its format string (`vu`, `l`, `+s`, ...), field name,
/// nullability and children (a struct's fields, a list's item).
pub fn node_schema(format: &str, name: &str, nullable: bool, children: Vec<ArrowSchema>)
                   -> ArrowSchema {
    let format = CString::new(format).expect("formats have no NUL");
    let name = CString::new(name).expect("field names have no NUL");
    let (f, n) = (format.as_ptr(), name.as_ptr());
    let mut children: Vec<*mut ArrowSchema> =
        children.into_iter().map(|c| Box::into_raw(Box::new(c))).collect();
    let children_ptr = if children.is_empty() { ptr::null_mut() } else { children.as_mut_ptr() };
    let count = children.len() as i64;
    let private = Box::new(SchemaPrivate { _strings: vec![format, name], children });
    ArrowSchema {
        format: f,
        name: n,
        metadata: ptr::null(),
        flags: if nullable { NULLABLE } else { 0 },
        n_children: count,
        children: children_ptr,
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: Box::into_raw(private) as *mut c_void,
    }
}

/// The schema of a struct array whose fields are the given string columns.
pub fn schema_for(names: &[&str]) -> ArrowSchema {
    node_schema("+s", "", false, names.iter().map(|c| node_schema("vu", c, true, Vec::new())).collect())
}

/// Memory an exported array owns (its buffers' vectors), freed when the consumer releases it
/// (on whichever thread it does: hence `Send`).
pub type Keep = Box<dyn std::any::Any + Send>;

struct ArrayPrivate {
    _keep: Vec<Keep>,
    pointers: Vec<*const c_void>,
    children: Vec<*mut ArrowArray>,
}

unsafe extern "C" fn release_array(array: *mut ArrowArray) {
    // SAFETY: called by the consumer once, on an array built by `node_array` whose
    // private_data is a leaked Box<ArrayPrivate> and whose children are leaked Boxes.
    unsafe {
        let array = &mut *array;
        let private = Box::from_raw(array.private_data as *mut ArrayPrivate);
        for &child in &private.children {
            if let Some(release) = (*child).release {
                release(child);
            }
            drop(Box::from_raw(child));
        }
        array.release = None;
    }
}

/// One array of `length` rows: its buffers (pointers into the vectors in `keep`, which
/// the array then owns; a vector's heap memory does not move with it) and children.
pub fn node_array(length: usize, null_count: usize, pointers: Vec<*const c_void>, keep: Vec<Keep>,
                  children: Vec<ArrowArray>) -> ArrowArray {
    let mut children: Vec<*mut ArrowArray> =
        children.into_iter().map(|c| Box::into_raw(Box::new(c))).collect();
    let children_ptr = if children.is_empty() { ptr::null_mut() } else { children.as_mut_ptr() };
    let count = children.len() as i64;
    let n_buffers = pointers.len() as i64;
    let mut private = Box::new(ArrayPrivate { _keep: keep, pointers, children });
    let buffers_ptr = private.pointers.as_mut_ptr();
    ArrowArray {
        length: length as i64,
        null_count: null_count as i64,
        offset: 0,
        n_buffers,
        n_children: count,
        buffers: buffers_ptr,
        children: children_ptr,
        dictionary: ptr::null_mut(),
        release: Some(release_array),
        private_data: Box::into_raw(private) as *mut c_void,
    }
}

/// The buffers of a `Utf8View` array (validity, views, data buffers, their sizes) and the
/// vectors behind them.
pub fn view_buffers(views: Vec<View>, buffers: Vec<Vec<u8>>, validity: Option<Vec<u8>>)
                    -> (Vec<*const c_void>, Vec<Keep>) {
    let sizes: Vec<i64> = buffers.iter().map(|b| b.len() as i64).collect();
    let mut pointers: Vec<*const c_void> = Vec::with_capacity(buffers.len() + 3);
    pointers.push(validity.as_ref().map_or(ptr::null(), |v| v.as_ptr() as *const c_void));
    pointers.push(views.as_ptr() as *const c_void);
    pointers.extend(buffers.iter().map(|b| b.as_ptr() as *const c_void));
    pointers.push(sizes.as_ptr() as *const c_void);
    (pointers, vec![Box::new(views), Box::new(buffers), Box::new(validity), Box::new(sizes)])
}

fn leaf_array(column: ViewColumn) -> ArrowArray {
    let ViewColumn { views, buffers, validity, null_count, .. } = column;
    let length = views.len();
    let (pointers, keep) = view_buffers(views, buffers, validity);
    node_array(length, null_count, pointers, keep, Vec::new())
}

/// A struct array of the given columns (all of one length), handing their buffers over.
pub fn array_for(columns: Vec<ViewColumn>) -> ArrowArray {
    let length = columns.first().map_or(0, ViewColumn::len);
    let children = columns.into_iter().map(leaf_array).collect();
    node_array(length, 0, vec![ptr::null()], Vec::new(), children)
}

/// Release a schema the consumer did not take (the capsule's destructor).
pub fn drop_schema(mut schema: ArrowSchema) {
    if let Some(release) = schema.release {
        // SAFETY: a schema still holding its release callback was never moved out, so
        // its private data is still ours to free, exactly once.
        unsafe { release(&mut schema) }
    }
}

/// Release an array the consumer did not take (the capsule's destructor).
pub fn drop_array(mut array: ArrowArray) {
    if let Some(release) = array.release {
        // SAFETY: as for `drop_schema`.
        unsafe { release(&mut array) }
    }
}
