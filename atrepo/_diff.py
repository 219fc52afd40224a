"""``atrepo.diff``: what changed between two snapshots of a repository, as a frame.

The work is :func:`atrepo.mst.diff`'s: both trees are expanded a layer at a time and every
subtree with the same CID on both sides is skipped unread, so the cost follows the number
of changes, not the size of the repository. Only the records that changed are decoded.
When both snapshots check their blocks against their CIDs (``verify_cids=True``, and every
stored snapshot), both trees were walked and checked when the snapshots were opened (or,
for a snapshot reopened from the store, when it was stored), so their nodes are decoded
here without repeating those checks: the CID says a node is the very node that was checked.
A snapshot read with ``verify_cids=False`` gives no such promise (a block may be anything,
under any CID; issue 13, item 8): then every block the diff reads is hashed against its CID
here, and every node is decoded and checked as a walk would.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from . import mst
from ._records import gc_paused
from .car import check_block
from .cid import CID, cid_str
from .datamodel import record_json
from .errors import AtrepoError, DecodeError
from .frames import diff_frame
from .snapshot import RepoSnapshot, collection_ranges
from .tables import diff_table

__all__ = ["diff"]

_EMPTY_ROOT, _EMPTY_BLOCKS = mst.build([])
_ACTIONS = {(False, True): "create", (True, True): "update", (True, False): "delete"}


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

    sources = [new.blocks] if old is None or old.blocks is new.blocks else \
        [new.blocks, old.blocks]
    checked = all(blocks.verify_cids for blocks in sources)

    def fetch(raw: bytes) -> bytes | None:
        for blocks in sources:
            found = blocks.get_raw(raw)
            if found is not None:
                if not blocks.verify_cids:
                    check_block(raw, found)
                return found
        return _EMPTY_BLOCKS.get(CID.from_raw(raw))

    ranges = _ranges(old.collections_filter if old is not None else None,
                     new.collections_filter)
    with gc_paused():
        ops, _created, _deleted = mst.diff_raw(fetch, old_root,
                                               bytes(CID.decode(new.data_cid)), ranges,
                                               checked=checked)
        rows = []
        for key, before, after in ops:
            collection, _, rkey = key.decode("ascii").partition("/")
            rows.append((collection, rkey, f"at://{new.did}/{collection}/{rkey}",
                         _ACTIONS[before is not None, after is not None],
                         None if before is None else cid_str(before),
                         None if after is None else cid_str(after),
                         _json(fetch, after), _json(fetch, before)))
    frame = diff_frame(rows)
    return frame if table is None else diff_table(frame, table)


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
