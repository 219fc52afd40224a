"""Record blocks to table columns, in batches: the unit of work shared out to processes.

A batch is a list of record CIDs; whoever decodes it fetches the blocks from its own open
:class:`~atrepo.car.CarFile` (a worker process opens the same file by path), so only CIDs
go out and only columns come back. Each batch returns the ``record`` JSON texts, the
``cid`` strings and the problems (index, message) of records that could not be decoded.
A block whose bytes do not match its CID is not a "problem" but tampering or corruption:
fetching it raises :class:`~atrepo.CarError`; a missing block raises
:class:`~atrepo.MstError`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .cid import cid_str, cid_strs
from .datamodel import record_json
from .errors import DecodeError, MstError

__all__ = ["DecodedBatch", "decode_batch", "gc_paused"]


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
    bulk decoding slower (each pass scans every live dict) and finds nothing: records are trees.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def decode_batch(cids: list[bytes], fetch: Callable[[bytes], bytes | None]) -> DecodedBatch:
    """Return the ``record`` JSON, ``cid`` strings and problems for one batch of records.

    Args:
        cids: binary CIDs of the record blocks.
        fetch: returns a block's bytes, checked against its CID (``CarFile.get_raw``).

    Raises:
        CarError: when a block does not match its CID.
        MstError: when a block is missing.
    """
    records: list[str | None] = []
    problems: list[tuple[int, str]] = []
    append = records.append
    with gc_paused():
        for raw in cids:
            data = fetch(raw)
            if data is None:
                raise MstError("record block missing from CAR", cid=cid_str(raw),
                               hint="the CAR is incomplete")
            try:
                append(record_json(data))
            except DecodeError as exc:
                problems.append((len(records), str(exc)))
                append(None)
    return DecodedBatch(records, cid_strs(cids), problems)
