//! CAR v1 framing, the block index and verified block access.
//!
//! Framing follows the reference (`atrepo.car`) rule for rule and reports the same offsets:
//! minimal varints of at most 9 bytes, block lengths in 1..=[`MAX_BLOCK_SIZE`], a whole CID
//! inside each block, the input ending exactly at a block boundary. The index maps the last
//! 7 bytes of each stored CID to the block (collisions chained in file order) and a lookup
//! compares the full CID stored before the data, exactly as the reference does, so the same
//! CID finds the same block (the first of duplicates) on both paths. Blocks are hashed when
//! they are used, never when they are framed, so an unused corrupt block is no error here
//! either.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use sha2::{Digest, Sha256};

use crate::error::{CoreError, Field, Result};

pub const MAX_BLOCK_SIZE: u64 = 1 << 23;
const KEY_BYTES: usize = 7;
const BLESSED_HEAD: [[u8; 4]; 2] = [[0x01, 0x71, 0x12, 0x20], [0x01, 0x55, 0x12, 0x20]];

/// The result of one lookup of [`Car::locate_many`]: 0 when not found, else (block number
/// << 1 | alone) + 1.
#[derive(Clone, Copy)]
pub struct Found(u64);

impl Found {
    fn of(hit: Option<(u32, Block, bool)>) -> Self {
        Found(hit.map_or(0, |(id, _, alone)| ((u64::from(id) << 1) | u64::from(alone)) + 1))
    }

    /// (block number, alone under its key), or None when the CID was not found.
    pub fn get(self) -> Option<(usize, bool)> {
        (self.0 != 0).then(|| (((self.0 - 1) >> 1) as usize, (self.0 - 1) & 1 == 1))
    }
}

/// Where one block's data lies.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub offset: usize,
    pub length: usize,
}

/// The block index of one CAR; the bytes themselves are held by the caller.
///
/// About 25 bytes per block: each block's place packed in a u64, and an open-addressing
/// table from key to the first block filed under it (a slot holds the block and 32 bits of
/// the key's hash; the key itself is read back from the CAR, right before the CID that a
/// lookup compares next). The hash is keyed at random, so a hostile CAR cannot aim its
/// keys at one slot. Blocks sharing a key (rare, unless the CAR is hostile) are chained in
/// file order in side tables that stay empty otherwise.
#[derive(Default, Clone)]
pub struct Car {
    /// (data offset << LEN_BITS) | length, in file order
    places: Vec<u64>,
    /// 0 = empty, else (hash tag << 32) | (first block under the key + 1); a power of two long
    slots: Vec<u64>,
    hasher: RandomState,
    /// block -> the next block under the same key; key -> the last block under it
    next: HashMap<u32, u32>,
    last: HashMap<u64, u32>,
    pub verify_cids: bool,
}

/// Bytes framed between two releases of a mapped file's pages by [`Car::index`].
///
/// 16 MiB: each release of a mapped stretch is a TLB shootdown, which interrupts every other
/// core running a thread of the process (`read_car` imports polars on one while the index
/// runs), and in a virtual machine each such interrupt is dear: fewer, larger releases
/// (docs/performance.md has the measurements).
const STRETCH: usize = 16 << 20;

/// Bits of a packed place that hold the length (a block is at most 8 MiB).
const LEN_BITS: u32 = 24;

/// Hint the CPU to load the cache line at `p` (no effect on what the program computes).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and changes no state the program
    // can observe, whatever the address (and callers pass addresses inside live slices).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

fn key_of(cid: &[u8]) -> u64 {
    let tail = &cid[cid.len().saturating_sub(KEY_BYTES)..];
    tail.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// The index key of the block whose data starts at `offset`: the 7 bytes before it (the
/// end of its CID), as [`key_of`] reads them.
#[inline]
fn key_before(buf: &[u8], offset: usize) -> u64 {
    if offset >= 8 {
        let word: [u8; 8] = buf[offset - 8..offset].try_into().expect("8 bytes");
        u64::from_be_bytes(word) & ((1 << (8 * KEY_BYTES)) - 1)
    } else {
        key_of(&buf[..offset])
    }
}

fn is_blessed_head(head: &[u8]) -> bool {
    head == BLESSED_HEAD[0] || head == BLESSED_HEAD[1]
}

/// A block's length varint at `pos`, read as [`varint`] reads it; the one- and two-byte
/// lengths of almost every block are read inline.
#[inline]
fn block_length(buf: &[u8], pos: usize, end: usize) -> Result<(u64, usize)> {
    if end - pos >= 2 {
        let (b0, b1) = (buf[pos], buf[pos + 1]);
        if b0 < 0x80 {
            return Ok((u64::from(b0), pos + 1));
        }
        if b1 < 0x80 && b1 != 0 {
            return Ok((u64::from(b0 & 0x7f) | u64::from(b1) << 7, pos + 2));
        }
    }
    varint(buf, pos, end).map_err(|_| {
        CoreError::car("truncated or malformed block length").int("offset", pos as i128)
    })
}

/// (value, next position) of the unsigned varint at `pos`; strict and bounded.
pub fn varint(buf: &[u8], pos: usize, end: usize) -> Result<(u64, usize)> {
    let (start, mut pos) = (pos, pos);
    let (mut value, mut shift) = (0u64, 0u32);
    loop {
        if pos >= end {
            return Err(CoreError::car("truncated varint").int("offset", start as i128));
        }
        let byte = buf[pos];
        pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            if byte == 0 && pos - start > 1 {
                return Err(CoreError::car("non-minimal varint").int("offset", start as i128));
            }
            return Ok((value, pos));
        }
        shift += 7;
        if shift >= 63 {
            return Err(CoreError::car("varint longer than 9 bytes").int("offset", start as i128));
        }
    }
}

/// Byte length of the binary CID at `pos` (CIDv1 or a bare sha2-256 CIDv0).
fn cid_length(buf: &[u8], pos: usize, end: usize) -> Result<usize> {
    if end - pos >= 36 && is_blessed_head(&buf[pos..pos + 4]) {
        return Ok(36);
    }
    if end - pos >= 34 && buf[pos] == 0x12 && buf[pos + 1] == 0x20 {
        return Ok(34);
    }
    let (version, p) = varint(buf, pos, end)?;
    if version != 1 {
        return Err(CoreError::car("unsupported CID version in block")
            .int("offset", pos as i128)
            .int("version", version));
    }
    let (_codec, p) = varint(buf, p, end)?;
    let (_hash, p) = varint(buf, p, end)?;
    let (digest_len, p) = varint(buf, p, end)?;
    if digest_len > (end - p) as u64 {
        return Err(CoreError::car("truncated CID in block").int("offset", pos as i128));
    }
    Ok(p + digest_len as usize - pos)
}

impl Car {
    pub fn new(verify_cids: bool) -> Self {
        Car { verify_cids, ..Car::default() }
    }

    /// Frame every block of `buf[pos..]` into the index (the whole rest must be blocks).
    ///
    /// `release(start, end)` is told of each stretch of `buf` framed (so a mapped file's
    /// pages need not stay in memory).
    ///
    /// One pass over the bytes: each block's key and its hash are taken while its CID is in
    /// the cache, and the stretch's blocks are filed in the table before its pages go.
    pub fn index(&mut self, buf: &[u8], mut pos: usize, release: &dyn Fn(usize, usize))
                 -> Result<()> {
        const AHEAD_BYTES: usize = 4096;
        let end = buf.len();
        let rest = end - pos.min(end);
        // Real blocks are hundreds of bytes. The places are reserved for blocks of half that
        // (address space only: pages never written are never backed, and it spares copying
        // the vector when it grows); the table is sized for the real average, and grows
        // only for a CAR of unusually small (or hostile 40-byte) blocks.
        self.places.reserve(rest / 128);
        self.grow_to(buf, self.places.len() + rest / 300);
        let mut stretch: Vec<(u64, u64)> = Vec::with_capacity(STRETCH / 128);
        let mut released = pos;
        let mut fetched = pos;
        while pos < end {
            // ask for the lines ahead: the blocks' heads are a few lines apart, too sparse
            // for the hardware's own stream prefetcher to follow
            while fetched < pos + AHEAD_BYTES && fetched < end {
                prefetch(buf.as_ptr().wrapping_add(fetched));
                fetched += 64;
            }
            if pos - released >= STRETCH {
                self.file(buf, &stretch);
                stretch.clear();
                release(released, pos);
                released = pos;
            }
            let start = pos;
            let (size, p) = block_length(buf, pos, end)?;
            pos = p;
            if size > MAX_BLOCK_SIZE || size == 0 {
                return Err(CoreError::car("block length out of range")
                    .int("offset", start as i128)
                    .int("length", size));
            }
            let size = size as usize;
            if size > end - pos {
                return Err(CoreError::car("truncated CAR: block runs past the end")
                    .int("offset", start as i128)
                    .hint("the download or file was cut short"));
            }
            let data = if size > 36 && is_blessed_head(&buf[pos..pos + 4]) {
                pos + 36
            } else {
                pos + cid_length(buf, pos, pos + size)?
            };
            let key = key_before(buf, data);
            stretch.push((key, self.hasher.hash_one(key)));
            self.places.push(((data as u64) << LEN_BITS) | (pos + size - data) as u64);
            pos += size;
        }
        self.file(buf, &stretch);
        release(released, end);
        Ok(())
    }

    /// File the last `hashed.len()` blocks framed, given their (key, hash), under their
    /// keys in file order, each slot requested a few blocks ahead so the cache misses overlap.
    fn file(&mut self, buf: &[u8], hashed: &[(u64, u64)]) {
        const AHEAD: usize = 16;
        let from = self.places.len() - hashed.len();
        self.grow_to(buf, self.places.len());
        for (k, &(key, hash)) in hashed.iter().enumerate() {
            if let Some(&(_, ahead)) = hashed.get(k + AHEAD) {
                prefetch(self.slots.as_ptr().wrapping_add(self.home(ahead)));
            }
            let id = (from + k) as u32;
            match self.find(buf, key, hash) {
                Ok(slot) => {
                    let first = (self.slots[slot] as u32) - 1;
                    let tail = self.last.get(&key).copied().unwrap_or(first);
                    self.next.insert(tail, id);
                    self.last.insert(key, id);
                }
                Err(slot) => self.slots[slot] = (hash >> 32 << 32) | u64::from(id + 1),
            }
        }
    }

    /// Make the table hold at least `blocks` keys at three quarters full, at most.
    ///
    /// Growing reads every filed block's key back from `buf`; the table is sized from the
    /// CAR's length up front, so only a CAR of unusually small blocks (or a pack that grew)
    /// gets here more than once.
    fn grow_to(&mut self, buf: &[u8], blocks: usize) {
        let size = (blocks * 4 / 3 + 1).next_power_of_two().max(16);
        if size <= self.slots.len() {
            return;
        }
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        let mask = size - 1;
        for slot in old.into_iter().filter(|&s| s != 0) {
            let key = self.key_at(buf, (slot as u32) - 1);
            let mut i = self.home(self.hasher.hash_one(key));
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    /// The first slot to try for a key of hash `hash` (its low bits; the tag is its high 32).
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.slots.len() - 1)
    }

    /// The index key of block `id`: the 7 bytes before its data (the end of its CID).
    fn key_at(&self, buf: &[u8], id: u32) -> u64 {
        key_before(buf, self.block(id as usize).offset)
    }

    /// The slot holding `key` (Ok), or the free slot where it would go (Err).
    fn find(&self, buf: &[u8], key: u64, hash: u64) -> std::result::Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let tag = hash >> 32;
        let mut i = self.home(hash);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return Err(i);
            }
            if slot >> 32 == tag && self.key_at(buf, (slot as u32) - 1) == key {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Blocks in the index.
    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Where block `id` (in file order) lies.
    pub fn block(&self, id: usize) -> Block {
        let place = self.places[id];
        Block { offset: (place >> LEN_BITS) as usize, length: (place & ((1 << LEN_BITS) - 1)) as usize }
    }

    /// The first block whose stored CID ends with `raw`, and whether it was the only block
    /// under its key (the reference's fast path, which checks only the digest).
    pub fn locate(&self, buf: &[u8], raw: &[u8]) -> Option<(Block, bool)> {
        self.locate_id(buf, raw).map(|(_, block, alone)| (block, alone))
    }

    /// [`Car::locate`], with the block's number (its place in file order).
    pub fn locate_id(&self, buf: &[u8], raw: &[u8]) -> Option<(u32, Block, bool)> {
        let key = key_of(raw);
        self.locate_hashed(buf, raw, key, self.hasher.hash_one(key))
    }

    fn locate_hashed(&self, buf: &[u8], raw: &[u8], key: u64, hash: u64)
                     -> Option<(u32, Block, bool)> {
        if self.slots.is_empty() {
            return None;
        }
        let first = (self.slots[self.find(buf, key, hash).ok()?] as u32) - 1;
        let alone = self.last.is_empty() || !self.last.contains_key(&key);
        let mut id = Some(first);
        while let Some(i) = id {
            let block = self.block(i as usize);
            if block.offset >= raw.len() && &buf[block.offset - raw.len()..block.offset] == raw {
                return Some((i, block, alone));
            }
            id = if alone { None } else { self.next.get(&i).copied() };
        }
        None
    }

    /// [`Car::locate`] of `count` CIDs (`raw(i)`), with each lookup's memory requested a few
    /// lookups ahead, so that the cache misses of many lookups overlap instead of queueing.
    ///
    /// Each result is packed in 8 bytes ([`Found`]), as there may be millions of them.
    pub fn locate_many<'r>(&self, buf: &[u8], count: usize, raw: impl Fn(usize) -> &'r [u8])
                           -> Vec<Found> {
        const AHEAD: usize = 16;
        let hashed = |i: usize| {
            let key = key_of(raw(i));
            (key, self.hasher.hash_one(key))
        };
        // the (key, hash) of the next AHEAD lookups, in a ring
        let mut ring: [(u64, u64); AHEAD] = [(0, 0); AHEAD];
        for (i, slot) in ring.iter_mut().enumerate().take(count) {
            *slot = hashed(i);
        }
        (0..count)
            .map(|i| {
                let (key, hash) = ring[i % AHEAD];
                if i + AHEAD < count {
                    let ahead = hashed(i + AHEAD);
                    ring[i % AHEAD] = ahead;
                    if !self.slots.is_empty() {
                        prefetch(self.slots.as_ptr().wrapping_add(self.home(ahead.1)));
                    }
                }
                if !self.slots.is_empty() {
                    let (_, near) = ring[(i + AHEAD / 2) % AHEAD];
                    let slot = self.slots[self.home(near)];
                    if i + AHEAD / 2 < count && slot != 0 {
                        let offset = self.block((slot as u32) as usize - 1).offset;
                        prefetch(buf.as_ptr().wrapping_add(offset.saturating_sub(40)));
                    }
                }
                Found::of(self.locate_hashed(buf, raw(i), key, hash))
            })
            .collect()
    }

    /// The block with binary CID `raw`, checked against it when `verify_cids` is on.
    pub fn get_verified(&self, buf: &[u8], raw: &[u8]) -> Result<Option<Block>> {
        let Some((block, alone)) = self.locate(buf, raw) else { return Ok(None) };
        if self.verify_cids {
            verify(buf, raw, block, alone)?;
        }
        Ok(Some(block))
    }
}

/// Check a block against the whole multihash of its CID, as the reference does.
///
/// The common case, alone under its index key, is a 36-byte sha2-256 CIDv1 whose digest
/// matches; anything else goes through [`check_block`].
pub fn verify(buf: &[u8], raw: &[u8], block: Block, alone: bool) -> Result<()> {
    let data = &buf[block.offset..block.offset + block.length];
    let sha256_v1 = raw.len() == 36 && raw[0] == 1 && raw[1] < 0x80 && raw[2] == 0x12 && raw[3] == 0x20;
    if alone && sha256_v1 && Sha256::digest(data).as_slice() == &raw[4..] {
        return Ok(());
    }
    check_block(raw, data, block.offset)
}

const SHA2_256: u64 = 0x12;
const IDENTITY: u64 = 0x00;

/// Raise unless `data` is the block that the binary CID `raw` names (sha2-256 or identity).
pub fn check_block(raw: &[u8], data: &[u8], offset: usize) -> Result<()> {
    let malformed = || {
        let hex: String = raw.iter().take(50).map(|b| format!("{b:02x}")).collect();
        CoreError::car("cannot verify block: malformed CID")
            .int("offset", offset as i128)
            .text("cid", hex)
    };
    let (code, digest) = if raw.len() == 34 && raw[0] == 0x12 && raw[1] == 0x20 {
        (SHA2_256, &raw[2..])
    } else {
        let n = raw.len();
        let (version, p) = varint(raw, 0, n).map_err(|_| malformed())?;
        let (_codec, p) = varint(raw, p, n).map_err(|_| malformed())?;
        let (code, p) = varint(raw, p, n).map_err(|_| malformed())?;
        let (length, p) = varint(raw, p, n).map_err(|_| malformed())?;
        if version != 1 || p as u64 + length != n as u64 {
            return Err(malformed());
        }
        (code, &raw[p..])
    };
    let matches = if code == SHA2_256 && digest.len() == 32 {
        Sha256::digest(data).as_slice() == digest
    } else if code == IDENTITY {
        digest == data
    } else {
        return Err(CoreError::car("cannot verify block: CID is not sha2-256")
            .int("offset", offset as i128)
            .with("cid", Field::Cid(raw.to_vec()))
            .hint("pass verify_cids=False to read it unchecked"));
    };
    if !matches {
        return Err(CoreError::car("block does not match its CID")
            .int("offset", offset as i128)
            .with("cid", Field::Cid(raw.to_vec()))
            .hint("the CAR is corrupt or was tampered with"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const DATA: usize = 400;

    /// The blocks of a CAR body (no header): `count` dag-cbor blocks of `DATA` bytes whose
    /// CIDs differ in their last 8 bytes, then a second block under the first one's CID.
    fn body(count: usize) -> (Vec<u8>, Vec<[u8; 36]>) {
        let mut buf = Vec::new();
        let mut cids = Vec::new();
        for i in 0..=count {
            let mut cid = [0u8; 36];
            cid[..4].copy_from_slice(&BLESSED_HEAD[0]);
            cid[28..].copy_from_slice(&(i % count).to_be_bytes());
            let length = cid.len() + DATA;
            buf.extend_from_slice(&[(length as u8) | 0x80, (length >> 7) as u8]);
            buf.extend_from_slice(&cid);
            buf.extend(std::iter::repeat_n((i % 251) as u8, DATA));
            cids.push(cid);
        }
        (buf, cids)
    }

    #[test]
    fn an_index_over_several_stretches_finds_every_block_and_releases_the_whole_file() {
        let count = (2 * STRETCH + STRETCH / 2) / (DATA + 38);   // three stretches' worth
        let (buf, cids) = body(count);
        let released = RefCell::new(Vec::new());
        let mut car = Car::new(true);
        car.index(&buf, 0, &|a, b| released.borrow_mut().push((a, b))).expect("well framed");
        assert_eq!(car.len(), count + 1);
        for (i, cid) in cids[..count].iter().enumerate() {
            let (block, alone) = car.locate(&buf, cid).expect("every block is found");
            let data = 38 * (i + 1) + DATA * i;   // the varints and CIDs before it, and data
            assert_eq!((block.offset, block.length), (data, DATA), "block {i}");
            assert_eq!(alone, i != 0, "only the first CID has a second block");
        }
        // the stretches follow one another from the start to the end, each of STRETCH
        // bytes at least but the last (a release comes at the first block boundary after)
        let released = released.into_inner();
        assert!(released.len() >= 3, "{released:?}");
        assert_eq!((released[0].0, released[released.len() - 1].1), (0, buf.len()));
        for pair in released.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
            assert!(pair[0].1 - pair[0].0 >= STRETCH);
        }
    }
}
