//! Diffing two trees in the core: the record operations and the node changes, at the cost
//! of the change.
//!
//! The reference is `atrepo.mst._diff` (with the block reads of `atrepo._diff`), followed
//! step for step so that both paths read the same nodes in the same order and report the
//! same first problem. Identical subtrees always sit at the same layer (a node's layer
//! follows from its keys), so both trees are expanded one layer at a time from the top, and
//! at each layer the subtrees present on both sides (by CID) are dropped before anything
//! below them is read. The leaves of the expanded nodes are then compared by key.
//!
//! Every block read is hashed against its CID (by its CAR's own check when it verifies
//! CIDs, else here, as the reference checks the blocks of an unverified CAR), and every node
//! is decoded with the strict decoder of the walk. Trees that were not walked before
//! (`checked = false`) also get the walk's checks across nodes, as in the reference: depth,
//! no node twice on one side, every node present, each subtree one layer below its parent.
//!
//! Where this differs from the reference is only in how, not in what: a key sits in the
//! layer of its height on both sides (the decoder checks that all keys of a node share a
//! height, and the node's layer is checked against its place, or was checked by the walk
//! that made the tree `checked`), so the leaves are compared layer by layer, as two lists
//! that arrive in key order, instead of as two dictionaries at the end; and the blocks of a
//! layer are looked up together, so that their cache misses overlap.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use sha2::{Digest, Sha256};

use crate::car::{check_block, verify, Block, Car};
use crate::error::Result;
use crate::mst::{decode_node, in_ranges, node_error, overlaps, Entry, Node, Ranges, MAX_DEPTH};
use crate::text::push_cid_str;
use crate::{guarded, PyCar};

/// The one node of an empty tree, `{"e": [], "l": null}`: an old side that is no
/// repository at all is this tree, whether or not any CAR holds its block.
const EMPTY_NODE: &[u8] = &[0xa2, 0x61, b'e', 0x80, 0x61, b'l', 0xf6];

fn empty_cid() -> &'static [u8] {
    static CID: OnceLock<Vec<u8>> = OnceLock::new();
    CID.get_or_init(|| [&[0x01, 0x71, 0x12, 0x20][..], &Sha256::digest(EMPTY_NODE)].concat())
}

/// One CAR the diff reads blocks from: its index and its bytes.
pub struct Blocks<'a> {
    pub car: &'a Car,
    pub buf: &'a [u8],
}

/// Where a block was found: which CAR, where, and whether it is alone under its index key.
type Place = Option<(usize, Block, bool)>;

/// The CARs of both snapshots, asked in order (the new snapshot's first).
pub struct Sources<'a>(pub Vec<Blocks<'a>>);

impl<'a> Sources<'a> {
    /// Where block `raw` is: in the first CAR that holds it.
    fn locate(&self, raw: &[u8]) -> Place {
        self.0.iter().enumerate().find_map(|(i, blocks)| {
            blocks.car.locate(blocks.buf, raw).map(|(block, alone)| (i, block, alone))
        })
    }

    /// [`Sources::locate`] of many blocks, looked up together in the first CAR.
    fn locate_all(&self, raws: &[&[u8]]) -> Vec<Place> {
        let Some(first) = self.0.first() else { return vec![None; raws.len()] };
        let found = first.car.locate_many(first.buf, raws.len(), |i| raws[i]);
        found.into_iter().zip(raws).map(|(hit, raw)| match hit.get() {
            Some((id, alone)) => Some((0, first.car.block(id), alone)),
            None => self.locate(raw),
        }).collect()
    }

    /// The data of block `raw` found at `place`, checked against its CID; the empty
    /// tree's node when it was found nowhere; else None.
    fn read(&self, raw: &[u8], place: Place) -> Result<Option<&'a [u8]>> {
        let Some((i, block, alone)) = place else {
            return Ok((raw == empty_cid()).then_some(EMPTY_NODE));
        };
        let blocks = &self.0[i];
        let data = &blocks.buf[block.offset..block.offset + block.length];
        if blocks.car.verify_cids {
            verify(blocks.buf, raw, block, alone)?;
        } else {
            // the reference checks a block of an unverified CAR as bytes alone, so its
            // error names no offset
            check_block(raw, data, 0).map_err(|mut failure| {
                failure.fields.retain(|(name, _)| *name != "offset");
                failure
            })?;
        }
        Ok(Some(data))
    }

    /// The data of block `raw`, checked against its CID, or None.
    pub fn fetch(&self, raw: &[u8]) -> Result<Option<&'a [u8]>> {
        self.read(raw, self.locate(raw))
    }
}

/// A subtree to expand: its node, the open key interval it covers (kept only when ranges
/// prune the diff) and its depth below the root.
struct Subtree<'a> {
    cid: &'a [u8],
    lo: Option<Vec<u8>>,
    hi: Option<Vec<u8>>,
    depth: usize,
}

/// The subtrees of one layer by CID, in the order they were first met (a CID met again
/// keeps its place and takes the later interval, as a dictionary does in the reference).
#[derive(Default)]
struct Layer<'a> {
    order: Vec<Subtree<'a>>,
    at: HashMap<&'a [u8], usize>,
}

impl<'a> Layer<'a> {
    fn insert(&mut self, subtree: Subtree<'a>) {
        match self.at.get(subtree.cid) {
            Some(&i) => self.order[i] = subtree,
            None => {
                self.at.insert(subtree.cid, self.order.len());
                self.order.push(subtree);
            }
        }
    }
}

/// A leaf: its key and value CID.
type Leaf<'a> = (Vec<u8>, &'a [u8]);

/// One tree in a diff: its unexpanded subtrees by layer, the nodes expanded, and the
/// leaves of the layer being expanded.
struct Side<'a, 's> {
    sources: &'s Sources<'a>,
    checked: bool,
    visited: HashSet<&'a [u8]>,
    frontier: HashMap<i64, Layer<'a>>,
    leaves: Vec<Leaf<'a>>,
    expanded: Vec<&'a [u8]>,
}

impl<'a, 's> Side<'a, 's> {
    fn new(sources: &'s Sources<'a>, root: &'a [u8], checked: bool) -> Result<Self> {
        let mut side = Side { sources, checked, visited: HashSet::new(), frontier: HashMap::new(),
                              leaves: Vec::new(), expanded: Vec::new() };
        let node = side.node(root, sources.locate(root), None, 0)?;
        side.visited.remove(root);
        let layer = side.root_layer(node)?;
        side.frontier.entry(layer).or_default()
            .insert(Subtree { cid: root, lo: None, hi: None, depth: 0 });
        Ok(side)
    }

    /// The root's layer: its keys' height, else (no entries) one above the first node
    /// down its left links that has keys.
    fn root_layer(&mut self, node: Node<'a>) -> Result<i64> {
        let (mut depth, mut current) = (0i64, node);
        while current.layer.is_none() {
            let Some(left) = current.left else { break };
            depth += 1;
            current = self.node(left, self.sources.locate(left), None, depth as usize)?;
            self.visited.remove(left); // expanded (and checked in place) later
        }
        Ok(current.layer.unwrap_or(0) + depth)
    }

    /// Read (from `place`), decode and check the node `raw` found at `depth` below a
    /// parent of `parent_layer`, as the walk does.
    fn node(&mut self, raw: &'a [u8], place: Place, parent_layer: Option<i64>, depth: usize)
            -> Result<Node<'a>> {
        if depth > MAX_DEPTH {
            return Err(node_error("MST deeper than allowed", raw).int("max_depth", MAX_DEPTH as i128));
        }
        if !self.visited.insert(raw) {
            return Err(node_error("MST node reached twice (cycle or shared subtree)", raw));
        }
        let Some(data) = self.sources.read(raw, place)? else {
            return Err(node_error("missing MST node block", raw)
                .hint("the CAR is incomplete; fetch the full repository"));
        };
        let node = decode_node(raw, data)?;
        if let Some(parent) = parent_layer {
            match node.layer {
                Some(layer) if layer != parent - 1 => {
                    return Err(node_error("MST subtree is not one layer below its parent", raw)
                        .int("layer", layer)
                        .int("parent_layer", parent));
                }
                None if node.left.is_none() => {
                    return Err(node_error("empty MST node below the root", raw));
                }
                _ => {}
            }
        }
        Ok(node)
    }

    /// The left link and entries of the subtree `here` (its block at `place`), at `layer`.
    fn entries(&mut self, here: &Subtree<'a>, place: Place, layer: i64)
               -> Result<(Option<&'a [u8]>, Vec<Entry<'a>>)> {
        if !self.checked {
            let parent = if here.depth == 0 { None } else { Some(layer + 1) };
            let node = self.node(here.cid, place, parent, here.depth)?;
            return Ok((node.left, node.entries));
        }
        let Some(data) = self.sources.read(here.cid, place)? else {
            return Err(node_error("missing MST node block", here.cid)
                .hint("the snapshot's blocks are incomplete"));
        };
        let node = decode_node(here.cid, data)?;
        Ok((node.left, node.entries))
    }

    fn top_layer(&self) -> i64 {
        self.frontier.keys().copied().max().unwrap_or(0)
    }

    fn pending(&self) -> bool {
        self.frontier.values().any(|layer| !layer.order.is_empty())
    }

    /// Decode `subtrees` (all at `layer`): queue their children, keep their leaves.
    fn expand(&mut self, subtrees: Vec<Subtree<'a>>, layer: i64, ranges: Option<&Ranges>) -> Result<()> {
        let mut below = self.frontier.remove(&(layer - 1)).unwrap_or_default();
        let expanded = self.expand_into(&mut below, subtrees, layer, ranges);
        self.frontier.insert(layer - 1, below);
        expanded
    }

    fn expand_into(&mut self, below: &mut Layer<'a>, subtrees: Vec<Subtree<'a>>, layer: i64,
                   ranges: Option<&Ranges>) -> Result<()> {
        let raws: Vec<&[u8]> = subtrees.iter().map(|here| here.cid).collect();
        let places = self.sources.locate_all(&raws);
        for (here, place) in subtrees.into_iter().zip(places) {
            let (left, entries) = self.entries(&here, place, layer)?;
            self.expanded.push(here.cid);
            let depth = here.depth + 1;
            // intervals are kept only when ranges prune: then `bound` is the previous key
            let (mut bound, mut child) = (here.lo, left);
            for entry in entries {
                if let Some(cid) = child {
                    if ranges.is_none_or(|r| overlaps(bound.as_deref(), Some(&entry.key), r)) {
                        let hi = ranges.map(|_| entry.key.clone());
                        below.insert(Subtree { cid, lo: bound.clone(), hi, depth });
                    }
                }
                child = entry.right;
                match ranges {
                    None => self.leaves.push((entry.key, entry.value)),
                    Some(r) => {
                        if in_ranges(&entry.key, r) {
                            self.leaves.push((entry.key.clone(), entry.value));
                        }
                        bound = Some(entry.key);
                    }
                }
            }
            if let Some(cid) = child {
                if ranges.is_none_or(|r| overlaps(bound.as_deref(), here.hi.as_deref(), r)) {
                    below.insert(Subtree { cid, lo: bound, hi: here.hi, depth });
                }
            }
        }
        Ok(())
    }
}

/// A changed record: (key, old value CID, new value CID), binary.
pub type Op = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// What changed between two trees: the ops sorted by key, and the nodes created and
/// deleted (each sorted).
pub struct Changes {
    pub ops: Vec<Op>,
    pub created: Vec<Vec<u8>>,
    pub deleted: Vec<Vec<u8>>,
}

/// Leaves in key order, each key once with the last value met for it (the reference's
/// dictionary). A valid tree's leaves already arrive in key order.
fn settle(leaves: &mut Vec<Leaf<'_>>) {
    if leaves.windows(2).all(|pair| pair[0].0 < pair[1].0) {
        return;
    }
    leaves.reverse(); // a stable sort then puts the last value met first among equals
    leaves.sort_by(|a, b| a.0.cmp(&b.0));
    leaves.dedup_by(|later, first| later.0 == first.0);
}

/// Append the ops of one layer's leaves (both sides), emptying both lists.
fn compare(old: &mut Vec<Leaf<'_>>, new: &mut Vec<Leaf<'_>>, ops: &mut Vec<Op>) {
    use std::cmp::Ordering::{Equal, Greater, Less};
    settle(old);
    settle(new);
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = if j == new.len() {
            Less
        } else if i == old.len() {
            Greater
        } else {
            old[i].0.cmp(&new[j].0)
        };
        match order {
            Less => {
                ops.push((std::mem::take(&mut old[i].0), Some(old[i].1.to_vec()), None));
                i += 1;
            }
            Greater => {
                ops.push((std::mem::take(&mut new[j].0), None, Some(new[j].1.to_vec())));
                j += 1;
            }
            Equal => {
                if old[i].1 != new[j].1 {
                    let key = std::mem::take(&mut old[i].0);
                    ops.push((key, Some(old[i].1.to_vec()), Some(new[j].1.to_vec())));
                }
                i += 1;
                j += 1;
            }
        }
    }
    old.clear();
    new.clear();
}

/// The CIDs in `a` and not in `b` (both sorted), sorted.
fn only_in(a: &[&[u8]], b: &[&[u8]]) -> Vec<Vec<u8>> {
    a.iter().filter(|cid| b.binary_search(cid).is_err()).map(|cid| cid.to_vec()).collect()
}

/// The diff from the tree at `old_root` to the one at `new_root` (binary CIDs), reading
/// blocks from `sources`; `ranges` limit the keys compared, and `checked` says both trees
/// were walked and checked before (their nodes then get no checks across nodes).
pub fn diff<'a>(sources: &Sources<'a>, old_root: &'a [u8], new_root: &'a [u8],
                ranges: Option<&Ranges>, checked: bool) -> Result<Changes> {
    let old = Side::new(sources, old_root, checked)?;
    let new = Side::new(sources, new_root, checked)?;
    let mut sides = [old, new];
    let mut ops = Vec::new();
    let mut layer = sides[0].top_layer().max(sides[1].top_layer());
    while sides.iter().any(Side::pending) && layer >= -1 {
        let [old_here, new_here] = [0, 1].map(|i| sides[i].frontier.remove(&layer).unwrap_or_default());
        let (Layer { order: old_order, at: old_at }, Layer { order: new_order, at: new_at }) =
            (old_here, new_here);
        // the subtrees on both sides are equal: neither is expanded
        let old_todo = old_order.into_iter().filter(|s| !new_at.contains_key(s.cid)).collect();
        let new_todo = new_order.into_iter().filter(|s| !old_at.contains_key(s.cid)).collect();
        sides[0].expand(old_todo, layer, ranges)?;
        sides[1].expand(new_todo, layer, ranges)?;
        let [old, new] = &mut sides;
        compare(&mut old.leaves, &mut new.leaves, &mut ops);
        layer -= 1;
    }
    ops.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let [old, new] = sides.map(|mut side| {
        side.expanded.sort_unstable();
        side.expanded.dedup();
        side.expanded
    });
    Ok(Changes { created: only_in(&new, &old), deleted: only_in(&old, &new), ops })
}

/// The JSON text of the record `raw` read from `sources`; None if absent or undecodable.
fn record_text(sources: &Sources<'_>, raw: Option<&[u8]>, out: &mut Vec<u8>) -> Result<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    let Some(data) = sources.fetch(raw)? else { return Ok(None) };
    out.clear();
    if crate::record::record_json(data, out).is_err() {
        return Ok(None);
    }
    Ok(std::str::from_utf8(out).ok().map(str::to_owned))
}

/// (new record, old record) JSON of every op, in op order; the new one is read first.
fn record_texts(sources: &Sources<'_>, ops: &[Op]) -> Result<Vec<(Option<String>, Option<String>)>> {
    let mut out = Vec::new();
    ops.iter()
        .map(|(_, before, after)| {
            let new = record_text(sources, after.as_deref(), &mut out)?;
            Ok((new, record_text(sources, before.as_deref(), &mut out)?))
        })
        .collect()
}

// --- the Python binding ---------------------------------------------------------------

/// What changed between two trees, with the CARs it was read from (for the records).
#[pyclass(module = "atrepo._core", name = "Diff", frozen)]
pub struct PyDiff {
    cars: Vec<Py<PyCar>>,
    changes: Changes,
}

fn sources_of<'a>(py: Python<'a>, cars: &'a [Py<PyCar>]) -> Sources<'a> {
    Sources(cars.iter().map(|car| {
        let car = car.get();
        Blocks { car: &car.car, buf: car.source.slice(py) }
    }).collect())
}

/// The diff from the tree at `old_root` to the one at `new_root` (binary CIDs), reading
/// blocks from `cars` in order; `ranges` of byte keys [lo, hi) limit what is compared.
#[pyfunction(name = "diff")]
#[pyo3(signature = (cars, old_root, new_root, *, ranges = None, checked = false))]
pub fn py_diff(py: Python<'_>, cars: Vec<Py<PyCar>>, old_root: &[u8], new_root: &[u8],
               ranges: Option<Ranges>, checked: bool) -> PyResult<PyDiff> {
    guarded(py, "diff", &[("old_root", old_root), ("new_root", new_root)], || {
        let changes = {
            let sources = sources_of(py, &cars);
            py.detach(|| diff(&sources, old_root, new_root, ranges.as_ref(), checked))
                .map_err(|f| crate::raise(py, f))?
        };
        Ok(PyDiff { cars, changes })
    })
}

fn optional_bytes<'py>(py: Python<'py>, raw: &Option<Vec<u8>>) -> Option<Bound<'py, PyBytes>> {
    raw.as_deref().map(|v| PyBytes::new(py, v))
}

fn optional_cid_str(raw: &Option<Vec<u8>>) -> Option<String> {
    raw.as_deref().map(|v| {
        let mut text = Vec::with_capacity(60);
        push_cid_str(&mut text, v);
        String::from_utf8(text).unwrap_or_default() // base32 is ASCII
    })
}

#[pymethods]
impl PyDiff {
    fn __len__(&self) -> usize {
        self.changes.ops.len()
    }

    /// The changed records, [(key, old CID | None, new CID | None)] binary, sorted by key.
    fn ops<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        guarded(py, "Diff.ops", &[], || {
            PyList::new(py, self.changes.ops.iter().map(|(key, before, after)| {
                (PyBytes::new(py, key), optional_bytes(py, before), optional_bytes(py, after))
            }))
        })
    }

    /// The binary CIDs of the nodes in the new tree but not the old, sorted.
    fn created<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        guarded(py, "Diff.created", &[], || {
            PyList::new(py, self.changes.created.iter().map(|cid| PyBytes::new(py, cid)))
        })
    }

    /// The binary CIDs of the nodes in the old tree but not the new, sorted.
    fn deleted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        guarded(py, "Diff.deleted", &[], || {
            PyList::new(py, self.changes.deleted.iter().map(|cid| PyBytes::new(py, cid)))
        })
    }

    /// The rows of the `diff` frame, in key order: (collection, rkey, uri, action,
    /// old_cid, new_cid, record, old_record), the records' JSON read from the CARs.
    fn rows<'py>(&self, py: Python<'py>, did: &str) -> PyResult<Bound<'py, PyList>> {
        guarded(py, "Diff.rows", &[], || {
            let texts = {
                let sources = sources_of(py, &self.cars);
                py.detach(|| record_texts(&sources, &self.changes.ops)).map_err(|f| crate::raise(py, f))?
            };
            let mut rows = Vec::with_capacity(texts.len());
            for ((key, before, after), (record, old_record)) in self.changes.ops.iter().zip(texts) {
                // keys passed the record-path check: ASCII, one "/"
                let key = std::str::from_utf8(key).unwrap_or("");
                let (collection, rkey) = key.split_once('/').unwrap_or((key, ""));
                let action = match (before.is_some(), after.is_some()) {
                    (false, _) => "create",
                    (true, true) => "update",
                    (true, false) => "delete",
                };
                let row = (PyString::new(py, collection), PyString::new(py, rkey),
                           format!("at://{did}/{collection}/{rkey}"), action,
                           optional_cid_str(before), optional_cid_str(after), record, old_record);
                rows.push(row.into_pyobject(py)?);
            }
            PyList::new(py, rows)
        })
    }
}

/// The Python names of this module, added to `atrepo._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDiff>()?;
    m.add_function(wrap_pyfunction!(py_diff, m)?)
}
