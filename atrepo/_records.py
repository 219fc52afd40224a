"""Record blocks to table columns, in batches: the unit of work shared out to processes.

A batch names its blocks either by bytes or by (offset, length) in a file, so a worker
process can read them itself instead of receiving them through a pipe. Each batch returns
the ``record`` JSON texts, the ``cid`` strings and the problems (index, message) of
records that could not be decoded. A block whose bytes do not match its CID is not a
"problem" but tampering or corruption: it raises :class:`~atrepo.CarError`.
"""

from __future__ import annotations

import gc
import hashlib
import mmap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from .car import check_block
from .cid import cid_strs
from .datamodel import record_json
from .errors import DecodeError

__all__ = ["Batch", "DecodedBatch", "decode_batch", "gc_paused"]


@dataclass(frozen=True, slots=True)
class Batch:
    """Record blocks to decode: binary CIDs plus either their bytes or file locations."""

    cids: list[bytes]
    blocks: list[bytes] | None = None     # the blocks' bytes, or
    path: str | None = None               # a file and (offset, length) of each block
    offsets: list[int] | None = None
    lengths: list[int] | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """Columns for a batch, in its order; ``record`` is None where decoding failed."""

    records: list[str | None]
    cids: list[str]
    problems: list[tuple[int, str]]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk loop that makes no reference cycles.

    Decoding allocates millions of short-lived dicts; collecting them as they go makes
    bulk decoding 2-3x slower (see PERF-NOTES) and finds nothing, since records are trees.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_blocks(batch: Batch) -> Sequence[bytes]:
    if batch.blocks is not None:
        return batch.blocks
    assert batch.path is not None and batch.offsets is not None and batch.lengths is not None
    with open(batch.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return [m[offset:offset + length]
                for offset, length in zip(batch.offsets, batch.lengths)]


def decode_batch(batch: Batch) -> DecodedBatch:
    """Return the ``record`` JSON, ``cid`` strings and problems for one batch.

    Raises:
        CarError: when a block does not match its CID (with verification on).
    """
    blocks = _read_blocks(batch)
    records: list[str | None] = []
    problems: list[tuple[int, str]] = []
    append = records.append
    verify = batch.verify
    sha256 = hashlib.sha256
    with gc_paused():
        for i, (raw, data) in enumerate(zip(batch.cids, blocks)):
            if verify and sha256(data).digest() != raw[-32:]:
                check_block(raw, data)  # raises, naming the CID and the reason
            try:
                append(record_json(data))
            except DecodeError as exc:
                append(None)
                problems.append((i, str(exc)))
    return DecodedBatch(records, cid_strs(batch.cids), problems)
