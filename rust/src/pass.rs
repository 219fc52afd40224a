//! One pass over the record blocks under a walk's leaves, in file order, in two halves side
//! by side: the reading that the `records` frame's columns and a typed table's checks share.
//!
//! Blocks are read in file order (sequential reads of the CAR, whatever the order of their
//! keys), and the pages behind the pass are released as it goes, so that a mapped CAR read
//! a second time does not come back into memory whole. A block that is missing, or does not
//! match its CID, fails the pass, as in the reference, with the error of the first such
//! record in key order.

use crate::car::{verify, Car, Found};
use crate::error::{CoreError, Field, Result};
use crate::mst::Leaves;

/// Fewer items than this are handled on the calling thread alone (a thread costs more).
pub(crate) const PARALLEL_MIN: usize = 20_000;

/// `work` over `items` cut into at most two chunks handled side by side (one chunk below
/// [`PARALLEL_MIN`] items), the first on the calling thread; `work` is given each chunk's
/// first index. The parts come back in the chunks' order.
pub(crate) fn in_halves<T: Sync, P: Send>(items: &[T], work: impl Fn(usize, &[T]) -> P + Sync)
                                          -> Vec<P> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = if items.len() < PARALLEL_MIN { 1 } else { cores.clamp(1, 2) };
    let chunk = items.len().div_ceil(threads).max(1);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .skip(1)
            .map(|(k, part)| scope.spawn(move || work(k * chunk, part)))
            .collect();
        let mut parts = vec![work(0, items.chunks(chunk).next().unwrap_or(&[]))];
        // a panic in a thread goes on unwinding here, on the calling thread, with the thread's
        // own payload (its message), so the entry point's guard (`guarded` in lib.rs) reports
        // it as it reports one of the calling thread
        parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
        parts
    })
}

/// Hand the data of each record block under `leaves` to `each(part, row, data)`, in file
/// order, in parts made by `new_part(rows)` for so many rows; the parts come back in order.
///
/// A block missing from the CAR, or (with `verify_cids`) one that does not match its CID,
/// fails the pass with the error of the first such record in key order; once a part has met
/// one, it hands on no more rows. `release(start, end)` lets the bytes behind the pass go.
pub(crate) fn record_blocks<P: Send>(car: &Car, buf: &[u8], leaves: &Leaves, verify_cids: bool,
                                     release: &(dyn Fn(usize, usize) + Sync),
                                     new_part: impl Fn(usize) -> P + Sync,
                                     each: impl Fn(&mut P, usize, &[u8]) + Sync)
                                     -> Result<Vec<P>> {
    let n = leaves.len();
    let found: Vec<Found> = car.locate_many(buf, n, |i| leaves.value(i));
    let mut failed: Option<(usize, CoreError)> = None;
    if let Some(i) = found.iter().position(|f| f.get().is_none()) {
        let error = CoreError::mst("record block missing from CAR")
            .with("cid", Field::CidText(leaves.value(i).to_vec()))
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
    let reader = Reader { car, buf, leaves, found: &found, verify_cids, release };
    let parts = in_halves(&order, |_, rows| {
        let mut part = new_part(rows.len());
        let failure = reader.read(rows, |row, data| each(&mut part, row, data));
        (part, failure)
    });
    let mut done = Vec::with_capacity(parts.len());
    for (part, failure) in parts {
        if let Some((i, error)) = failure {
            if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                failed = Some((i, error));
            }
        }
        done.push(part);
    }
    match failed {
        Some((_, error)) => Err(error),
        None => Ok(done),
    }
}

/// What every part of a pass reads from: the CAR, the leaves and where their blocks are.
struct Reader<'a> {
    car: &'a Car,
    buf: &'a [u8],
    leaves: &'a Leaves,
    found: &'a [Found],
    verify_cids: bool,
    release: &'a (dyn Fn(usize, usize) + Sync),
}

impl Reader<'_> {
    /// Verify the blocks of `rows` (every one found, in file order) and hand each one's data
    /// to `each`; returns the part's first failing row (in key order) and its error.
    fn read(&self, rows: &[u32], mut each: impl FnMut(usize, &[u8])) -> Option<(usize, CoreError)> {
        const STRETCH: usize = 2 << 20;
        let place = |i: usize| {
            let (id, alone) = self.found[i].get().unwrap_or((0, false));
            (self.car.block(id), alone)
        };
        let mut released = rows.first().map_or(0, |&i| place(i as usize).0.offset);
        let mut failed: Option<(usize, CoreError)> = None;
        for &i in rows {
            let i = i as usize;
            let (block, alone) = place(i);
            if block.offset - released >= STRETCH {
                (self.release)(released, block.offset); // rows come in file order: these are done
                released = block.offset;
            }
            if self.verify_cids {
                // the CID stored before the data is the row's CID (that is how it was found),
                // and it is read in file order, unlike the row's own copy
                let stored = &self.buf[block.offset - self.leaves.value(i).len()..block.offset];
                if let Err(error) = verify(self.buf, stored, block, alone) {
                    if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                        failed = Some((i, error));
                    }
                    continue;
                }
            }
            if failed.is_some() {
                continue; // the pass fails anyway; only an earlier failing record matters now
            }
            each(i, &self.buf[block.offset..block.offset + block.length]);
        }
        if let Some(&last) = rows.last() {
            let (block, _) = place(last as usize);
            (self.release)(released, block.offset + block.length);
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::panic_message;

    #[test]
    fn a_worker_threads_panic_reaches_the_caller_with_its_message() {
        let items = vec![(); PARALLEL_MIN * 2];
        let caller = std::thread::current().id();
        let caught = std::panic::catch_unwind(|| {
            in_halves(&items, |first, _| {
                if first > 0 {
                    assert_ne!(std::thread::current().id(), caller, "later chunks run on a worker");
                    panic!("worker chunk at {first}");
                }
            })
        });
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        match caught {
            Err(payload) => assert_eq!(panic_message(&*payload), format!("worker chunk at {PARALLEL_MIN}")),
            Ok(parts) => assert!(cores == 1 && parts.len() == 1, "no worker ran, yet {cores} cores"),
        }
    }
}
