"""``atrepo.diff``: what changed between two snapshots of a repository, as a frame.

The work is :func:`atrepo.mst.diff`'s: both trees are expanded a layer at a time and every
subtree with the same CID on both sides is skipped unread, so the cost follows the number
of changes, not the size of the repository. Only the records that changed are decoded.

When the compiled core serves both snapshots' blocks, it does all of that (nodes, record
JSON) in one call with the GIL released, following the pure Python path (kept as the
reference, and used otherwise) step for step: the same nodes read in the same order, the
same rows, the same first error (``tests/unit/test_diff_core.py``). The core hashes every
block it reads against its CID and decodes every node with the walk's strict decoder.

When both snapshots check their blocks against their CIDs (``verify_cids=True``, and every
stored snapshot), both trees were walked and checked when the snapshots were opened (or,
for a snapshot reopened from the store, when it was stored), so the checks across nodes
(depth, cycles, layers) are not repeated, and the pure path decodes the nodes without any
checks at all: the CID says a node is the very node that was checked. A snapshot read with
``verify_cids=False`` gives no such promise (a block may be anything, under any CID; issue
13, item 8): then every block the diff reads is hashed against its CID here, and every node
is decoded and checked as a walk would.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from . import _accel, mst
from ._corecar import CoreCarFile
from ._records import gc_paused
from .car import CarFile, check_block
from .cid import CID, cid_str
from .datamodel import record_json
from .errors import AtrepoError, DecodeError
from .frames import diff_frame
from .snapshot import RepoSnapshot, collection_ranges
from .tables import diff_table

__all__ = ["diff"]

_EMPTY_ROOT, _EMPTY_BLOCKS = mst.build([])
_ACTIONS = {(False, True): "create", (True, True): "update", (True, False): "delete"}
Row = tuple[str, str, str, str, "str | None", "str | None", "str | None", "str | None"]


def diff(old: RepoSnapshot | None, new: RepoSnapshot, *,
         table: str | None = None) -> pl.DataFrame:
    """Return the record changes from ``old`` to ``new``, one row per changed record.

    Columns: ``collection``, ``rkey``, ``uri``, ``action`` ("create", "update" or
    "delete"), ``old_cid``, ``new_cid``, ``record`` (the new record's JSON; null for a
    delete) and ``old_record`` (the previous JSON for an update or delete, when ``old``'s
    blocks hold it), sorted by (collection, rkey). A record whose block cannot be decoded
    keeps its row with a null ``record``/``old_record``; its CIDs still say what changed.

    ``old=None`` stands for an empty repository: every record is a create. When either
    snapshot was opened with ``collections=``, only those key ranges are compared.

    ``table="app.bsky.feed.post"`` returns that collection's changed records as its typed
    table instead, with ``action`` and ``old_cid`` first (:func:`atrepo.tables.diff_table`).

    Raises:
        AtrepoError: the snapshots belong to different repositories.
        MstError: a node that must be compared is missing or malformed.
        CarError: a block of a snapshot read with ``verify_cids=False`` does not match its
            CID.

    Example:
        >>> import atrepo
        >>> snap = atrepo.read_car("examples/data/sample.car")
        >>> atrepo.diff(snap, snap).height
        0
    """
    if old is not None and old.did != new.did:
        raise AtrepoError("cannot diff snapshots of different repositories", old=old.did,
                          new=new.did, hint="diff two snapshots of one DID")
    old_root = bytes(CID.decode(old.data_cid)) if old is not None else bytes(_EMPTY_ROOT)
    new_root = bytes(CID.decode(new.data_cid))
    sources = [new.blocks] if old is None or old.blocks is new.blocks else \
        [new.blocks, old.blocks]
    checked = all(blocks.verify_cids for blocks in sources)
    ranges = _ranges(old.collections_filter if old is not None else None,
                     new.collections_filter)
    rows = _core_rows(sources, old_root, new_root, ranges, checked, new.did)
    if rows is None:
        rows = _rows(sources, old_root, new_root, ranges, checked, new.did)
    frame = diff_frame(rows)
    return frame if table is None else diff_table(frame, table)


def _core_rows(sources: list[CarFile], old_root: bytes, new_root: bytes,
               ranges: list[tuple[str, str]] | None, checked: bool, did: str
               ) -> list[Row] | None:
    """The frame's rows from the compiled core; None when it does not serve the blocks."""
    core = _accel.core
    cars = [blocks for blocks in sources if isinstance(blocks, CoreCarFile)]
    if core is None or len(cars) != len(sources):
        return None
    found = _accel.call(core.diff, [car.core_car() for car in cars], old_root, new_root,
                        ranges=mst.byte_ranges(ranges), checked=checked)
    rows: list[Row] = _accel.call(found.rows, did)
    return rows


def _rows(sources: list[CarFile], old_root: bytes, new_root: bytes,
          ranges: list[tuple[str, str]] | None, checked: bool, did: str) -> list[Row]:
    """The frame's rows by the pure Python path (the reference of :func:`_core_rows`)."""

    def fetch(raw: bytes) -> bytes | None:
        for blocks in sources:
            found = blocks.get_raw(raw)
            if found is not None:
                if not blocks.verify_cids:
                    check_block(raw, found)
                return found
        return _EMPTY_BLOCKS.get(CID.from_raw(raw))

    with gc_paused():
        ops, _created, _deleted = mst.diff_raw(fetch, old_root, new_root, ranges,
                                               checked=checked)
        rows: list[Row] = []
        for key, before, after in ops:
            collection, _, rkey = key.decode("ascii").partition("/")
            rows.append((collection, rkey, f"at://{did}/{collection}/{rkey}",
                         _ACTIONS[before is not None, after is not None],
                         None if before is None else cid_str(before),
                         None if after is None else cid_str(after),
                         _json(fetch, after), _json(fetch, before)))
    return rows


def _json(fetch: mst.Fetch, raw: bytes | None) -> str | None:
    """The record ``raw`` as JSON text, read by ``fetch``; None if absent or undecodable."""
    if raw is None:
        return None
    block = fetch(raw)
    if block is None:
        return None
    try:
        return record_json(block)
    except DecodeError:
        return None


def _ranges(old: Sequence[str] | None, new: Sequence[str] | None
            ) -> list[tuple[str, str]] | None:
    """The key ranges both filters allow (None: no filter on either side)."""
    old_ranges, new_ranges = collection_ranges(old), collection_ranges(new)
    if old_ranges is None or new_ranges is None:
        return new_ranges if old_ranges is None else old_ranges
    both = [(max(a_lo, b_lo), min(a_hi, b_hi))
            for a_lo, a_hi in old_ranges for b_lo, b_hi in new_ranges]
    return [(lo, hi) for lo, hi in both if lo < hi]
