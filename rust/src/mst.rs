//! MST nodes and the walk, with every check the reference (`atrepo.mst`) makes, in its order.
//!
//! A node is `{"e": [{"p", "k", "v", "t"}...], "l"}`; keys are prefix-compressed. The walk is
//! the reference's recursive in-order visit: depth bound, no node twice, every node present
//! and hashed against its CID, keys valid record paths in strictly ascending order, each
//! subtree one layer below its parent and inside its key interval, and `collections=`
//! pruning by key ranges. The first failure in visiting order is the one reported.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use crate::car::{verify, Car};
use crate::cbor::{self, DecodeFailure, Tags, Value};
use crate::error::{CoreError, Field, Result};

pub const MAX_DEPTH: usize = 64;
pub const MAX_ENTRIES: usize = 4096;
pub const MAX_KEY_LENGTH: usize = 1024;

/// One decoded entry: full key, value CID, right subtree.
pub struct Entry<'a> {
    pub key: Vec<u8>,
    pub value: &'a [u8],
    pub right: Option<&'a [u8]>,
}

pub struct Node<'a> {
    pub layer: Option<i64>,
    pub left: Option<&'a [u8]>,
    pub entries: Vec<Entry<'a>>,
}

fn name(raw: &[u8]) -> Field {
    Field::NodeName(raw.to_vec())
}

/// An MST error naming the node `raw`.
pub(crate) fn node_error(message: &'static str, raw: &[u8]) -> CoreError {
    CoreError::mst(message).with("cid", name(raw))
}

/// The MST layer of a key: leading zero bits of sha256(key), halved.
pub fn height(key: &[u8]) -> i64 {
    let digest = Sha256::digest(key);
    let mut zeros = 0;
    for &b in digest.iter() {
        if b == 0 {
            zeros += 8;
            continue;
        }
        zeros += b.leading_zeros();
        break;
    }
    i64::from(zeros / 2)
}

/// A record path `collection/rkey` in the reference's character set.
fn valid_key(key: &[u8]) -> bool {
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"_~:.-".contains(b);
    let mut parts = key.splitn(2, |&b| b == b'/');
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else { return false };
    !a.is_empty() && !b.is_empty() && a.iter().all(allowed) && b.iter().all(allowed)
}

fn get<'v, 'a>(map: &'v [(Value<'a>, Value<'a>)], name: &str) -> Option<&'v Value<'a>> {
    map.iter().find(|(k, _)| matches!(k, Value::Text(t) if *t == name)).map(|(_, v)| v)
}

/// The binary CID of a tag-42 link, checked as the reference checks MST links.
fn link<'a>(node: &[u8], value: &Value<'a>) -> Result<&'a [u8]> {
    if let Value::Tag(42, inner) = value {
        if let Value::Bytes(b) = **inner {
            if b.len() > 1 && b[0] == 0 {
                return Ok(&b[1..]);
            }
        }
    }
    Err(node_error("malformed link in MST node", node))
}

fn optional_link<'a>(node: &[u8], value: &Value<'a>) -> Result<Option<&'a [u8]>> {
    match value {
        Value::Null => Ok(None),
        other => link(node, other).map(Some),
    }
}

fn not_a_node(raw: &[u8], detail: String) -> CoreError {
    let detail: String = detail.chars().take(100).collect();
    node_error("MST node is not a valid DAG-CBOR node", raw).text("detail", detail)
}

/// Decode and check one node; `raw` (its CID) only names it in errors.
///
/// A node in the canonical shape (nearly every node) is read straight from its bytes
/// ([`canonical_node`]); any other goes through the general decoder, with the reference's
/// order of checks and errors. The checks on keys are the same function on both ways.
pub fn decode_node<'a>(raw: &[u8], data: &'a [u8]) -> Result<Node<'a>> {
    if let Some(parsed) = canonical_node(data) {
        let mut entries: Vec<Entry<'a>> = Vec::with_capacity(parsed.entries.len());
        let mut layer: Option<i64> = None;
        for &(prefix, suffix, value, right) in &parsed.entries {
            let prev = entries.last().map(|e| e.key.as_slice());
            let key = entry_key(raw, i128::from(prefix), suffix, prev, &mut layer)?;
            entries.push(Entry { key, value, right });
        }
        return Ok(Node { layer, left: parsed.left, entries });
    }
    let value = match cbor::decode(data, Tags::Keep) {
        Ok((value, _)) => value,
        Err(DecodeFailure::Malformed(detail)) => return Err(not_a_node(raw, detail)),
        Err(_) => return Err(not_a_node(raw, "unsupported CBOR tag".into())),
    };
    let Value::Map(pairs) = value else {
        return Err(not_a_node(raw, format!("{} is not subscriptable", value.type_name())));
    };
    let (Some(items), Some(left)) = (get(&pairs, "e"), get(&pairs, "l")) else {
        let missing = if get(&pairs, "e").is_none() { "'e'" } else { "'l'" };
        return Err(not_a_node(raw, missing.into()));
    };
    let Value::Array(items) = items else {
        return Err(node_error("malformed MST node (expected keys 'e' and 'l')", raw));
    };
    if pairs.len() != 2 {
        return Err(node_error("malformed MST node (expected keys 'e' and 'l')", raw));
    }
    if items.len() > MAX_ENTRIES {
        return Err(node_error("MST node has too many entries", raw).int("entries", items.len() as i128));
    }
    let mut entries: Vec<Entry<'a>> = Vec::with_capacity(items.len());
    let mut layer: Option<i64> = None;
    for item in items {
        let prev = entries.last().map(|e| e.key.as_slice());
        let entry = decode_entry(raw, item, prev, &mut layer)?;
        entries.push(entry);
    }
    let left = optional_link(raw, left)?;
    Ok(Node { layer, left, entries })
}

fn decode_entry<'a>(raw: &[u8], item: &Value<'a>, prev: Option<&[u8]>,
                    layer: &mut Option<i64>) -> Result<Entry<'a>> {
    let expected = || node_error("malformed MST entry (expected keys p, k, v, t)", raw);
    let Value::Map(fields) = item else { return Err(expected()) };
    let (Some(prefix), Some(suffix), Some(value), Some(right)) =
        (get(fields, "p"), get(fields, "k"), get(fields, "v"), get(fields, "t"))
    else {
        return Err(expected());
    };
    let (Value::Int(prefix), Value::Bytes(suffix), 4) = (prefix, suffix, fields.len()) else {
        return Err(node_error("malformed MST entry", raw));
    };
    let key = entry_key(raw, *prefix, suffix, prev, layer)?;
    let value = link(raw, value)?;
    let right = optional_link(raw, right)?;
    Ok(Entry { key, value, right })
}

/// The full key of an entry, checked: prefix, canonical compression, record-path form and
/// height (the node's `layer`, set by its first key), in the reference's order.
fn entry_key(raw: &[u8], prefix: i128, suffix: &[u8], prev: Option<&[u8]>,
             layer: &mut Option<i64>) -> Result<Vec<u8>> {
    if prefix < 0 {
        return Err(node_error("malformed MST entry (negative prefix)", raw).int("p", prefix));
    }
    let prev = prev.unwrap_or(b"");
    let key = if prefix > 0 {
        let p = prefix as usize;
        // the shared prefix must be the whole common prefix (canonical form)
        if prefix > prev.len() as i128 || (p < prev.len() && suffix.first() == Some(&prev[p])) {
            return Err(node_error("non-canonical MST prefix compression", raw).int("p", prefix));
        }
        [&prev[..p], suffix].concat()
    } else if !prev.is_empty() && suffix.first() == prev.first() {
        return Err(node_error("non-canonical MST prefix compression", raw).int("p", prefix));
    } else {
        suffix.to_vec()
    };
    if key.len() > MAX_KEY_LENGTH || !valid_key(&key) {
        return Err(node_error("invalid MST key", raw).with("key", Field::Key(key)));
    }
    let h = height(&key);
    match *layer {
        Some(l) if l != h => {
            return Err(node_error("MST key height does not match its node's layer", raw)
                .with("key", Field::Key(key))
                .int("height", h)
                .int("layer", l))
        }
        _ => *layer = Some(h),
    }
    Ok(key)
}

/// An entry as read from a canonical node: (p, k, v, t).
type RawEntry<'a> = (u64, &'a [u8], &'a [u8], Option<&'a [u8]>);

struct CanonicalNode<'a> {
    entries: Vec<RawEntry<'a>>,
    left: Option<&'a [u8]>,
}

/// A node in exactly the canonical shape, read without a value tree: `{"e": [{"k": bytes,
/// "p": uint, "t": link | null, "v": link}...], "l": link | null}` with its keys in canonical
/// order, definite lengths and well-formed links (bytes with the 0x00 prefix); None for
/// anything else, which the general decoder then reads (and may refuse). What it accepts,
/// the general decoder would decode to the same fields.
fn canonical_node(data: &[u8]) -> Option<CanonicalNode<'_>> {
    let mut r = Heads { data, pos: 0 };
    r.expect(&[0xa2, 0x61, b'e'])?;
    let (4, count) = r.head()? else { return None };
    if count > MAX_ENTRIES as u64 || count > (data.len() / 8) as u64 {
        return None;
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        r.expect(&[0xa4, 0x61, b'k'])?;
        let (2, len) = r.head()? else { return None };
        let suffix = r.take(len)?;
        r.expect(&[0x61, b'p'])?;
        let (0, prefix) = r.head()? else { return None };
        r.expect(&[0x61, b't'])?;
        let right = r.optional_link()?;
        r.expect(&[0x61, b'v'])?;
        let value = r.link()?;
        entries.push((prefix, suffix, value, right));
    }
    r.expect(&[0x61, b'l'])?;
    let left = r.optional_link()?;
    Some(CanonicalNode { entries, left })
}

/// A reader of CBOR heads for [`canonical_node`]; None on anything unexpected.
struct Heads<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Heads<'a> {
    fn expect(&mut self, bytes: &[u8]) -> Option<()> {
        let found = self.data.get(self.pos..self.pos + bytes.len())?;
        self.pos += bytes.len();
        (found == bytes).then_some(())
    }

    /// (major type, argument) of a head of definite length.
    fn head(&mut self) -> Option<(u8, u64)> {
        crate::fast::read_head(self.data, &mut self.pos)
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        if n > (self.data.len() - self.pos) as u64 {
            return None;
        }
        let start = self.pos;
        self.pos += n as usize;
        Some(&self.data[start..self.pos])
    }

    fn link(&mut self) -> Option<&'a [u8]> {
        self.expect(&[0xd8, 0x2a])?;
        let (2, len) = self.head()? else { return None };
        let bytes = self.take(len)?;
        (bytes.len() > 1 && bytes[0] == 0).then(|| &bytes[1..])
    }

    fn optional_link(&mut self) -> Option<Option<&'a [u8]>> {
        if self.data.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            return Some(None);
        }
        self.link().map(Some)
    }
}

/// Keys `lo <= key < hi` to keep; subtrees outside every range are not visited.
pub type Ranges = Vec<(Vec<u8>, Vec<u8>)>;

/// Whether a subtree whose keys lie between `lo` and `hi` (None: no bound) may hold a key
/// of `ranges`.
pub(crate) fn overlaps(lo: Option<&[u8]>, hi: Option<&[u8]>, ranges: &Ranges) -> bool {
    ranges.iter().any(|(r_lo, r_hi)| {
        hi.is_none_or(|h| r_lo.as_slice() < h) && lo.is_none_or(|l| l < r_hi.as_slice())
    })
}

/// Whether `key` lies in any of `ranges`.
pub(crate) fn in_ranges(key: &[u8], ranges: &Ranges) -> bool {
    ranges.iter().any(|(lo, hi)| lo.as_slice() <= key && key < hi.as_slice())
}

/// Byte strings packed end to end (no allocation per string).
#[derive(Default)]
pub struct Packed {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Packed {
    pub fn push(&mut self, item: &[u8]) {
        self.bytes.extend_from_slice(item);
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Append all of `other`'s strings (two copies, not one per string).
    pub fn append(&mut self, other: &Packed) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|end| end + base));
    }
}

/// The leaves of a walk, in key order: keys and value (record) CIDs, copied out of the
/// nodes while they are at hand, so that later passes read them in order.
#[derive(Default)]
pub struct Leaves {
    pub keys: Packed,
    pub values: Packed,
}

impl Leaves {
    /// Leaves with address space reserved for about `blocks` of them (a repository has
    /// fewer records than blocks); pages are only taken as leaves are written.
    pub fn with_room(blocks: usize) -> Self {
        let room = |bytes: usize| Packed { bytes: Vec::with_capacity(blocks * bytes), ends: Vec::with_capacity(blocks) };
        Leaves { keys: room(40), values: room(36) }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn key(&self, i: usize) -> &[u8] {
        self.keys.get(i)
    }

    pub fn value(&self, i: usize) -> &[u8] {
        self.values.get(i)
    }

    /// Append all of `other`'s leaves.
    pub fn extend(&mut self, other: &Leaves) {
        self.keys.append(&other.keys);
        self.values.append(&other.values);
    }
}

struct Walker<'a> {
    car: &'a Car,
    buf: &'a [u8],
    ranges: Option<&'a Ranges>,
    /// nodes met, as (block, CID length): a CID names one block, and a shorter CID that
    /// matches the same stored CID (its suffix) is another name, as in the reference
    visited: Vec<u64>,
    visited_other: HashSet<(u32, usize)>,
    last: Vec<u8>,
    leaves: Leaves,
}

/// Walk the tree at `root` (a binary CID); keys in order, pruned to `ranges` when given.
///
/// A big tree is walked on two threads ([`walk_in_pieces`]); if that meets any problem, the
/// tree is walked again on one, so that the error is the one the reference reports first.
pub fn walk<'a>(car: &'a Car, buf: &'a [u8], root: &'a [u8], ranges: Option<&'a Ranges>)
                -> Result<Leaves> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    if ranges.is_none() && threads > 1 && car.len() >= PARALLEL_BLOCKS {
        if let Some(leaves) = walk_in_pieces(car, buf, root, threads) {
            return Ok(leaves);
        }
    }
    let mut walker = Walker::new(car, buf, ranges, car.len().min(buf.len() / 200));
    walker.subtree(root, None, None, None, 0)?;
    Ok(walker.leaves)
}

/// Trees of CARs with fewer blocks than this are walked on one thread.
const PARALLEL_BLOCKS: usize = 20_000;
/// Subtrees a walk on several threads is cut into.
const PIECES: usize = 48;

/// A subtree to walk on its own: its root, key interval, parent's layer and depth.
struct Piece<'a> {
    raw: &'a [u8],
    lo: Option<Vec<u8>>,
    hi: Option<Vec<u8>>,
    parent_layer: Option<i64>,
    depth: usize,
}

enum Item<'a> {
    Piece(Piece<'a>),
    Leaf(Vec<u8>, &'a [u8]),
}

/// The walk of the reference cut into subtrees shared by `threads` threads; None when it
/// meets any problem (then the caller walks on one thread and reports the first one).
///
/// Top nodes are opened breadth-first (with the checks of any walk) until there are
/// [`PIECES`] subtrees; their keys must ascend, each subtree's keys must lie inside the
/// interval its parent gives it (as in one walk), and no node may be met twice anywhere,
/// which the union of the threads' marks tells. With no problem, the leaves are exactly
/// those of one walk, in the same order.
fn walk_in_pieces<'a>(car: &'a Car, buf: &'a [u8], root: &'a [u8], threads: usize)
                      -> Option<Leaves> {
    let mut planner = Walker::new(car, buf, None, 0);
    let mut items = vec![Item::Piece(Piece { raw: root, lo: None, hi: None, parent_layer: None, depth: 0 })];
    while items.iter().filter(|i| matches!(i, Item::Piece(_))).count() < PIECES {
        let mut opened = Vec::with_capacity(items.len() * 4);
        let mut progressed = false;
        for item in items {
            let Item::Piece(piece) = item else {
                opened.push(item);
                continue;
            };
            let node = planner.node(piece.raw, piece.parent_layer, piece.depth).ok()?;
            let layer = node.layer.or(piece.parent_layer.map(|p| p - 1));
            let mut bound = piece.lo.clone();
            let mut child = node.left;
            for entry in node.entries {
                if let Some(c) = child {
                    opened.push(Item::Piece(Piece { raw: c, lo: bound.clone(), hi: Some(entry.key.clone()),
                                                    parent_layer: layer, depth: piece.depth + 1 }));
                }
                bound = Some(entry.key.clone());
                child = entry.right;
                opened.push(Item::Leaf(entry.key, entry.value));
            }
            if let Some(c) = child {
                opened.push(Item::Piece(Piece { raw: c, lo: bound, hi: piece.hi.clone(),
                                                parent_layer: layer, depth: piece.depth + 1 }));
            }
            progressed = true;
        }
        items = opened;
        if !progressed {
            break;
        }
    }
    let mut previous: Option<&[u8]> = None;
    for item in &items {
        if let Item::Leaf(key, _) = item {
            if previous.is_some_and(|p| p >= key.as_slice()) {
                return None;
            }
            previous = Some(key);
        }
    }
    let pieces: Vec<&Piece<'a>> = items.iter().filter_map(|i| match i {
        Item::Piece(p) => Some(p),
        Item::Leaf(..) => None,
    }).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let work = || {
        let mut walker = Walker::new(car, buf, None, 0);
        let mut done: Vec<(usize, Leaves)> = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= pieces.len() || failed.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let piece = pieces[i];
            walker.leaves = Leaves::default();
            walker.last = piece.lo.clone().unwrap_or_default();
            let walked = walker.subtree(piece.raw, piece.lo.as_deref(), piece.hi.as_deref(),
                                        piece.parent_layer, piece.depth);
            if walked.is_err() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                break;
            }
            done.push((i, std::mem::take(&mut walker.leaves)));
        }
        (walker.visited, walker.visited_other, done)
    };
    let results: Vec<_> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut all = vec![work()];
        // a helper's panic goes on unwinding here, to the entry point's guard, as in a pass
        all.extend(helpers.into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        all
    });
    if failed.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    // a node met by two threads (or by the planner and a thread) is a node met twice
    let mut seen = planner.visited;
    let mut seen_other = planner.visited_other;
    let mut walked: Vec<Option<Leaves>> = (0..pieces.len()).map(|_| None).collect();
    for (visited, other, done) in results {
        for (word, marks) in seen.iter_mut().zip(visited) {
            if *word & marks != 0 {
                return None;
            }
            *word |= marks;
        }
        for mark in other {
            if !seen_other.insert(mark) {
                return None;
            }
        }
        for (i, leaves) in done {
            walked[i] = Some(leaves);
        }
    }
    let mut out = Leaves::with_room(car.len().min(buf.len() / 200));
    let mut walked = walked.into_iter();
    for item in &items {
        match item {
            Item::Leaf(key, value) => {
                out.keys.push(key);
                out.values.push(value);
            }
            Item::Piece(_) => {
                let leaves = walked.next()??;
                out.extend(&leaves);
            }
        }
    }
    Some(out)
}

impl<'a> Walker<'a> {
    fn new(car: &'a Car, buf: &'a [u8], ranges: Option<&'a Ranges>, room: usize) -> Self {
        Walker {
            car,
            buf,
            ranges,
            visited: vec![0; car.len().div_ceil(64)],
            visited_other: HashSet::new(),
            last: Vec::new(),
            leaves: Leaves::with_room(room),
        }
    }
}

impl<'a> Walker<'a> {
    fn node(&mut self, raw: &'a [u8], parent_layer: Option<i64>, depth: usize)
            -> Result<Node<'a>> {
        if depth > MAX_DEPTH {
            return Err(node_error("MST deeper than allowed", raw).int("max_depth", MAX_DEPTH as i128));
        }
        // the reference marks a node visited before fetching it; a node that is not in the
        // CAR fails on its first visit, so only found blocks need marks
        let Some((id, data, alone)) = self.car.locate_id(self.buf, raw) else {
            return Err(node_error("missing MST node block", raw)
                .hint("the CAR is incomplete; fetch the full repository"));
        };
        if !self.mark(id, raw.len()) {
            return Err(node_error("MST node reached twice (cycle or shared subtree)", raw));
        }
        if self.car.verify_cids {
            verify(self.buf, raw, data, alone)?;
        }
        let node = decode_node(raw, &self.buf[data.offset..data.offset + data.length])?;
        if let Some(parent) = parent_layer {
            if let Some(layer) = node.layer {
                if layer != parent - 1 {
                    return Err(node_error("MST subtree is not one layer below its parent", raw)
                        .int("layer", layer)
                        .int("parent_layer", parent));
                }
            } else if node.left.is_none() {
                return Err(node_error("empty MST node below the root", raw));
            }
        }
        Ok(node)
    }

    /// Mark node `id` met under a CID of `len` bytes; false if it was met so before.
    fn mark(&mut self, id: u32, len: usize) -> bool {
        if len != 36 {
            return self.visited_other.insert((id, len));
        }
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        let fresh = self.visited[word] & bit == 0;
        self.visited[word] |= bit;
        fresh
    }

    fn subtree(&mut self, raw: &'a [u8], lo: Option<&[u8]>, hi: Option<&[u8]>,
               parent_layer: Option<i64>, depth: usize) -> Result<()> {
        let node = self.node(raw, parent_layer, depth)?;
        let layer = node.layer.or(parent_layer.map(|p| p - 1));
        let mut bound: Option<&[u8]> = lo;
        let mut child = node.left;
        for entry in &node.entries {
            if let Some(c) = child {
                if self.ranges.is_none_or(|r| overlaps(bound, Some(&entry.key), r)) {
                    self.subtree(c, bound, Some(&entry.key), layer, depth + 1)?;
                }
            }
            if entry.key.as_slice() <= self.last.as_slice() {
                return Err(node_error("MST keys out of order", raw)
                    .with("key", Field::Key(entry.key.clone()))
                    .with("previous", Field::Key(self.last.clone())));
            }
            self.last.clear();
            self.last.extend_from_slice(&entry.key);
            if self.ranges.is_none_or(|r| in_ranges(&entry.key, r)) {
                self.leaves.keys.push(&entry.key);
                self.leaves.values.push(entry.value);
            }
            bound = Some(&entry.key);
            child = entry.right;
        }
        if let Some(c) = child {
            if self.ranges.is_none_or(|r| overlaps(bound, hi, r)) {
                self.subtree(c, bound, hi, layer, depth + 1)?;
            }
        }
        if let Some(h) = hi {
            if self.last.as_slice() >= h {
                return Err(node_error("MST subtree holds keys outside its range", raw)
                    .with("key", Field::Key(self.last.clone())));
            }
        }
        Ok(())
    }
}
