"""RepoSnapshot: one repository at one commit, verified, walked, and decoded on demand.

Opening a snapshot checks what makes the data trustworthy: the commit block, its signature
(when a key is given), and the whole MST structure (every node hashed against its CID and
checked against the tree invariants). The walk keeps only the (key, record CID) list.
Records are decoded the first time ``records``/``table``/``problems`` is asked for, in
batches spread over worker processes for big repositories, and the frame is cached.

Words (one name per concept, shared with :mod:`atrepo._io.store`):

*snapshot*
    A :class:`RepoSnapshot`, and nothing else: one repository at one commit, opened over
    its blocks.
*walk*
    Reading the MST from the root to list every (key, record CID), checking every node on
    the way. ``RepoSnapshot._walk`` does it, once; ``records``, ``problems``, ``table``
    and ``get`` call it when it has not happened yet.
*counts*
    Records per collection. Known after the walk, or without one when the store recorded
    them with the entry a snapshot was opened from; ``len``, ``collections``, ``repr`` and
    ``_repr_html_`` use them. ``repr`` shows only what is known and never walks.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _accel, mst
from .car import CarFile
from .cid import cid_str, cid_text, raw_cid
from .errors import AtrepoError, CarError, MstError, SignatureError
from .models import Commit, parse_commit

# Imported where they are used, not here: a read through the compiled core needs none of
# the pure path's decoding, worker processes, progress bars, signature checks, orjson or html
# (nor, reading every collection, the NSID syntax). The frames layer (and polars, ~0.15 s
# of imports) loads with the first frame, so that ``read_car`` can import it while the core
# indexes the CAR.
if TYPE_CHECKING:
    import polars as pl

    from ._parallel import Worker
    from ._records import DecodedBatch

__all__ = ["RepoSnapshot", "check_commit", "check_complete", "collection_ranges",
           "count_collections", "covers", "narrowed", "open_snapshot"]

BATCH_SIZE = 20_000        # records per unit of parallel decoding
PARALLEL_MIN = 40_000      # fewer records than this are decoded in this process alone
PARALLEL_WALK_BYTES = 8 << 20  # smaller CARs are walked in this process alone
WALK_PIECES = 64           # subtrees a parallel walk is split into


def walks_in_parallel(size: int, collections: Sequence[str] | None, workers: int) -> bool:
    """Whether a CAR of ``size`` bytes is worth walking with worker processes.

    A filtered walk reads a few nodes and never is; a big CAR's workers index the file
    themselves, alongside the caller, so their start-up costs no extra time.
    """
    return workers > 0 and collections is None and size >= PARALLEL_WALK_BYTES


def collection_ranges(collections: Sequence[str] | None) -> list[tuple[str, str]] | None:
    """Return MST key ranges [lo, hi) for NSIDs and ``prefix.*`` patterns; None = all.

    ``"app.bsky.feed.post"`` covers keys ``app.bsky.feed.post/...``; ``"app.bsky.*"``
    covers every collection whose NSID starts with ``app.bsky.``.

    Raises:
        AtrepoError: on something that is neither an NSID nor an NSID prefix with ``.*``.
    """
    if collections is None:
        return None
    from . import syntax  # a read of every collection never needs it

    if isinstance(collections, str):
        collections = [collections]
    ranges = []
    for pattern in collections:
        if pattern.endswith(".*") and pattern[:-2] and all(
                part and part.replace("-", "").isalnum() for part in pattern[:-2].split(".")):
            prefix = pattern[:-1]                      # "app.bsky."
            ranges.append((prefix, prefix[:-1] + "/"))  # "/" sorts right after "."
        elif syntax.is_nsid(pattern):
            ranges.append((pattern + "/", pattern + "0"))  # "0" sorts right after "/"
        else:
            raise AtrepoError("invalid collection filter", value=pattern,
                              hint="use NSIDs like 'app.bsky.feed.post' or prefixes like "
                                   "'app.bsky.*'")
    return sorted(ranges)


def covers(held: Sequence[str] | None, wanted: Sequence[str] | None) -> bool:
    """Whether blocks holding the collections ``held`` hold all of ``wanted``.

    None stands for every collection (a whole tree); patterns are those of
    :func:`collection_ranges`.

    Example:
        >>> covers(["app.bsky.*"], ["app.bsky.feed.post"]), covers(["app.bsky.feed.post"], None)
        (True, False)
    """
    held_ranges, wanted_ranges = collection_ranges(held), collection_ranges(wanted)
    if held_ranges is None:
        return True
    if wanted_ranges is None:
        return False
    merged = _merged(held_ranges)
    return all(any(m_lo <= lo and hi <= m_hi for m_lo, m_hi in merged)
               for lo, hi in wanted_ranges)


def _merged(ranges: Sequence[tuple[str, str]]) -> list[list[str]]:
    """Sorted ``ranges`` with the overlapping and adjacent ones joined."""
    merged: list[list[str]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def count_collections(keys: Sequence[str]) -> dict[str, int]:
    """Return records per collection of sorted MST keys, in a jump per collection.

    A collection's keys ``collection/rkey`` are contiguous in key order and end before
    ``collection0`` ("0" sorts right after "/"), so each count is one binary search.
    """
    counts: dict[str, int] = {}
    start = 0
    while start < len(keys):
        collection = keys[start].partition("/")[0]
        end = bisect.bisect_left(keys, collection + "0", start)
        counts[collection] = end - start
        start = end
    return counts


def _counts_within(counts: Mapping[str, int] | None,
                   collections: Sequence[str] | None) -> dict[str, int] | None:
    """The part of known ``counts`` that ``collections`` lets through (None: not known)."""
    if counts is None:
        return None
    ranges = collection_ranges(collections)
    return {name: n for name, n in counts.items()
            if ranges is None or any(lo <= name + "/" < hi for lo, hi in ranges)}


def open_snapshot(car: CarFile, *, did: str | None = None, signing_key: str | None = None,
                  collections: Sequence[str] | None = None, handle: str | None = None,
                  fetched_at: datetime | None = None, progress_bar: bool | None = None,
                  workers: int | None = None, root: str | None = None,
                  source: str = "file", bytes_downloaded: int = 0,
                  walk_now: bool = True, counts: Mapping[str, int] | None = None
                  ) -> RepoSnapshot:
    """Return the verified, walked :class:`RepoSnapshot` of a repository CAR.

    ``root`` names the commit to open in a CAR that holds several (a store pack); by
    default the CAR's single root. ``source`` and ``bytes_downloaded`` say how the blocks
    were obtained (see :attr:`RepoSnapshot.source`). ``walk_now=False`` defers the MST walk
    (and its checks) to the first use of the records: for a stored snapshot whose tree was
    checked when it was stored, and which may only be diffed. ``counts`` are the records
    per collection of the whole tree when known without a walk (from the store's entry).

    Raises:
        CarError: no single root, a missing or malformed commit, or a corrupt block.
        SignatureError: the commit is for another DID or fails ``signing_key``.
        MstError: the tree is incomplete or malformed.
    """
    commit_cid, commit, verified = check_commit(car, root=root, did=did,
                                                signing_key=signing_key)
    ranges = collection_ranges(collections)
    root_node = raw_cid(commit.data)

    def walk() -> tuple[Sequence[str], Sequence[bytes]]:
        walked = _accel.walk(car, root_node, ranges)
        if walked is not None:
            return walked
        from ._records import gc_paused

        n_workers = _workers_or_default(workers)
        with gc_paused():
            if car.reopenable() and walks_in_parallel(car.size, collections, n_workers):
                raw_keys, values = _walk_in_parallel(car, root_node, n_workers)
            else:
                raw_keys, values = mst.collect(car.get_raw, root_node, ranges)
            return [key.decode("ascii") for key in raw_keys], values

    snap = RepoSnapshot(car=car, commit=commit, commit_cid=commit_cid,
                        verified=verified, walk=walk,
                        collections_filter=None if collections is None else list(collections),
                        handle=handle, fetched_at=fetched_at or datetime.now(timezone.utc),
                        progress_bar=progress_bar, workers=workers,
                        counts=_counts_within(counts, collections))
    if walk_now:
        snap._walk()
    snap.source, snap.bytes_downloaded = source, bytes_downloaded
    return snap


def narrowed(snap: RepoSnapshot, collections: Sequence[str]) -> RepoSnapshot:
    """``snap`` limited to ``collections``, cut from its walked keys (no second walk)."""
    merged = _merged(collection_ranges(collections) or [])

    def walk() -> tuple[list[str], list[bytes]]:
        keys, values = snap._walk()
        kept_keys: list[str] = []
        kept_values: list[bytes] = []
        for lo, hi in merged:
            start, end = bisect.bisect_left(keys, lo), bisect.bisect_left(keys, hi)
            kept_keys += keys[start:end]
            kept_values += values[start:end]
        return kept_keys, kept_values

    narrow = RepoSnapshot(car=snap.blocks, commit=snap.commit, commit_cid=snap.commit_cid,
                          verified=snap.verified, walk=walk,
                          collections_filter=list(collections), handle=snap.handle,
                          fetched_at=snap.fetched_at, progress_bar=snap._progress,
                          workers=snap._workers,
                          counts=_counts_within(snap._known_counts(), collections))
    narrow.source, narrow.bytes_downloaded = snap.source, snap.bytes_downloaded
    return narrow


def _workers_or_default(workers: int | None) -> int:
    """``workers``, or when None the default number of worker processes."""
    if workers is not None:
        return workers
    from ._parallel import default_workers

    return default_workers()


def check_commit(car: CarFile, *, root: str | None = None, did: str | None = None,
                 signing_key: str | None = None) -> tuple[str, Commit, bool]:
    """Return (CID string, :class:`Commit`, verified) of the commit ``root`` (default: the
    root).

    Raises:
        CarError: no single root, or the commit block is missing or malformed.
        SignatureError: the commit is for another DID than ``did`` or fails ``signing_key``.
    """
    if root is None and len(car.raw_roots) != 1:
        raise CarError("a repository CAR needs exactly one root (the commit)",
                       did=did, roots=len(car.raw_roots))
    raw = raw_cid(root) if root is not None else car.raw_roots[0]
    commit_cid = cid_text(raw)
    block = car.get_raw(raw)
    if block is None:
        raise CarError("commit block missing from CAR", did=did, cid=commit_cid,
                       hint="the CAR is incomplete")
    commit, unsigned = parse_commit(block, cid=commit_cid)
    if did is not None and commit.did != did:
        raise SignatureError("commit belongs to another DID", did=did, commit_did=commit.did)
    if signing_key is not None:
        from . import crypto

        crypto.verify_commit(unsigned, commit.sig, signing_key, did=commit.did)
    return commit_cid, commit, signing_key is not None


def check_complete(snap: RepoSnapshot) -> None:
    """Raise MstError unless the snapshot's CAR holds the block of every record it lists.

    Opening a snapshot already checks every MST node; this adds the record blocks, without
    decoding them: what makes a tree assembled from several downloads whole.
    """
    locate = snap.blocks.locate
    for key, raw in zip(*snap._walk()):
        if locate(raw) is None:
            raise MstError("record block missing", did=snap.did, key=key, cid=cid_str(raw),
                           hint="the repository's blocks are incomplete")


def _walk_in_parallel(car: CarFile, root: bytes, workers: int) -> tuple[list[bytes], list[bytes]]:
    """Walk the whole tree as :data:`WALK_PIECES` subtrees shared with worker processes."""
    from ._parallel import run_jobs

    pieces = mst.plan(car.get_raw, root, WALK_PIECES)
    subtrees = [p for p in pieces if isinstance(p, mst.Subtree)]

    def local(piece: mst.Subtree) -> tuple[list[bytes], list[bytes]]:
        return mst.collect_subtree(car.get_raw, piece)

    def remote(worker: Worker, piece: mst.Subtree) -> tuple[list[bytes], list[bytes]]:
        result: tuple[list[bytes], list[bytes]] = worker.call(
            "walk", car.path, car.size, car.mem_limit_mb, car.verify_cids, piece)
        return result

    walked = iter(run_jobs(subtrees, local, remote, workers))
    keys: list[bytes] = []
    values: list[bytes] = []
    for piece in pieces:
        if isinstance(piece, mst.Subtree):
            piece_keys, piece_values = next(walked)
            keys.extend(piece_keys)
            values.extend(piece_values)
        else:
            keys.append(piece[0])
            values.append(piece[1])
    return keys, values


class RepoSnapshot:
    """One repository at one commit, as data.

    Attributes:
        did: the account's DID (from the commit).
        handle: the account's handle when known and verified, else None.
        rev: the commit's revision (a TID).
        data_cid: CID of the MST root, as a string.
        commit: the :class:`~atrepo.models.Commit`.
        commit_cid: CID of the commit block.
        verified: True when the commit signature was checked against the DID's key.
        fetched_at: when the repository was read or downloaded (UTC).
        collections_filter: the ``collections=`` the snapshot was opened with, or None.
        source: how its blocks were obtained: ``"file"`` (read locally), ``"full"`` (a whole
            getRepo download), ``"incremental"`` (``getRepo?since=`` plus stored blocks),
            ``"sparse"`` (the commit and only the ``collections=`` part of the tree, by
            ``getRecord`` and ``getBlocks``) or ``"cache"`` (a stored snapshot, nothing
            downloaded).
        bytes_downloaded: the bytes downloaded to obtain it (0 for "file" and "cache").
    """

    source: str = "file"
    bytes_downloaded: int = 0

    def __init__(self, *, car: CarFile, commit: Commit, commit_cid: str, verified: bool,
                 walk: Callable[[], tuple[Sequence[str], Sequence[bytes]]],
                 collections_filter: list[str] | None, handle: str | None,
                 fetched_at: datetime, progress_bar: bool | None, workers: int | None,
                 counts: Mapping[str, int] | None = None) -> None:
        self.did = commit.did
        self.handle = handle
        self.rev = commit.rev
        self.data_cid = commit.data
        self.commit = commit
        self.commit_cid = commit_cid
        self.verified = verified
        self.fetched_at = fetched_at
        self.collections_filter = collections_filter
        self._car = car
        self._walker = walk
        self._tree: tuple[Sequence[str], Sequence[bytes]] | None = None
        self._counts = None if counts is None else dict(counts)
        self._progress = progress_bar
        self._workers = workers
        self._tables: dict[str, tuple[pl.DataFrame, pl.DataFrame]] = {}  # table, problems

    def _walk(self) -> tuple[Sequence[str], Sequence[bytes]]:
        """Return (MST keys, binary record CIDs) in key order, walking the tree on first use.

        The walk checks every MST node; it happens once per snapshot (when it was opened,
        or for a snapshot reopened from the store, the first time its records are needed).

        Raises:
            MstError: the tree is incomplete or malformed.
            CarError: a block does not match its CID.
        """
        if self._tree is None:
            self._tree = self._walker()
            self._counts = count_collections(self._tree[0])
        return self._tree

    def _known_counts(self) -> dict[str, int] | None:
        """Records per collection if known without a walk (walked, or from the store)."""
        return None if self._counts is None else dict(self._counts)

    def _collection_counts(self) -> dict[str, int]:
        """Records per collection: the known counts, else the walk's."""
        if self._counts is None:
            self._walk()
        assert self._counts is not None  # set by the walk
        return self._counts

    @property
    def blocks(self) -> CarFile:
        """The blocks behind this snapshot (for :func:`atrepo.mst.diff` and friends)."""
        return self._car

    # -- frames ---------------------------------------------------------------------------

    @cached_property
    def _decoded(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        return self._decode(*self._walk())

    def _decode(self, keys: Sequence[str], values: Sequence[bytes]
                ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The ``records`` and ``problems`` frames of these MST keys and record CIDs."""
        import polars as pl

        from .frames import problems_frame, records_frame

        car = self._car
        decoded = _accel.records(car, self.did, keys, values)
        if decoded is not None:
            columns, found = decoded
            rows = [(*keys[i].partition("/")[::2], cid_str(values[i]), text) for i, text in found]
            return pl.DataFrame(columns), problems_frame(rows)
        from ._parallel import run_jobs
        from ._progress import progress
        from ._records import decode_batch

        batches = [list(values[i:i + BATCH_SIZE]) for i in range(0, len(values), BATCH_SIZE)]
        parallel = len(keys) >= PARALLEL_MIN and car.reopenable()

        def local(cids: list[bytes]) -> DecodedBatch:
            return decode_batch(cids, car.get_raw)

        def remote(worker: Worker, cids: list[bytes]) -> DecodedBatch:
            result: DecodedBatch = worker.call("decode", car.path, car.size,
                                               car.mem_limit_mb, car.verify_cids, cids)
            return result

        with progress(len(keys), f"decoding {self.did}", self._progress,
                      unit="rec") as bar:
            results = run_jobs(batches, local, remote,
                               _workers_or_default(self._workers) if parallel else 0,
                               lambda cids: bar.update(len(cids)))
        records: list[str | None] = []
        cids: list[str] = []
        problems = []
        for start, result in zip(range(0, len(keys), BATCH_SIZE), results):
            records.extend(result.records)
            cids.extend(result.cids)
            for i, message in result.problems:
                collection, _, rkey = keys[start + i].partition("/")
                problems.append((collection, rkey, result.cids[i], message))
        frame = records_frame(self.did, keys, cids, records)
        return frame, problems_frame(problems)

    @property
    def records(self) -> pl.DataFrame:
        """Every record: did, collection, rkey, uri, cid, record (JSON text), in key order."""
        return self._decoded[0]

    @property
    def problems(self) -> pl.DataFrame:
        """Problems: collection, rkey, cid, error (empty if none).

        Records that could not be decoded, then what each :meth:`table` built so far found
        (invalid records, values that do not fit their declared column).
        """
        import polars as pl

        found = [problems for _, problems in self._tables.values()]
        return pl.concat([self._decoded[1], *found])

    def table(self, collection: str) -> pl.DataFrame:
        """Return one collection's records as a typed table declared by its lexicon.

        Columns ``did, rkey, uri, cid``, the lexicon's fields in lexicon order (see
        :func:`atrepo.lexicon_schema`), then ``extra`` (JSON text of undeclared fields):
        the same columns for every repository and call, also when there are no records.
        A collection without a lexicon gets a deterministic inferred schema. Values that
        do not fit become null with a row in :attr:`problems`; :mod:`atrepo.tables` says
        how. Built once per collection; before :attr:`records` exists, only this
        collection's records are decoded.

        Raises:
            AtrepoError: a pattern, or a collection the repository does not hold and no
                lexicon defines (the message lists the collections there are).
        """
        if collection not in self._tables:
            # imported here, not with the module: the lexicons and the checking pass
            # (about 20 ms of imports) load with the first table, not with every read
            from .tables import check_collection, snapshot_table

            check_collection(collection, list(self._collection_counts()), did=self.did)
            self._tables[collection] = snapshot_table(self, collection)
        return self._tables[collection][0]

    def _collection_records(self, collection: str) -> pl.DataFrame:
        """One collection's rows of :attr:`records`, decoding only those when not built."""
        if "_decoded" in self.__dict__:
            import polars as pl

            return self.records.filter(pl.col("collection") == collection)
        keys, values = self._walk()
        start = bisect.bisect_left(keys, collection + "/")
        end = bisect.bisect_left(keys, collection + "0", start)  # "0" sorts after "/"
        return self._decode(keys[start:end], values[start:end])[0]

    @cached_property
    def collections(self) -> pl.DataFrame:
        """Record counts per collection: [collection, count], sorted by collection."""
        from .frames import collections_frame

        return collections_frame(self._collection_counts())

    def get(self, collection: str, rkey: str) -> dict[str, Any] | None:
        """Return one record in the JSON data model, or None when the repo does not hold it.

        Raises:
            DecodeError: when the record block cannot be decoded.
        """
        key = f"{collection}/{rkey}"
        keys, values = self._walk()
        i = bisect.bisect_left(keys, key)
        if i == len(keys) or keys[i] != key:
            return None
        raw = values[i]
        block = self._car.get_raw(raw)
        if block is None:
            raise MstError("record block missing from CAR", cid=cid_str(raw), did=self.did)
        import orjson

        from .datamodel import record_json

        value: dict[str, Any] = orjson.loads(record_json(block))
        return value

    def __len__(self) -> int:
        """The number of records (from the known counts, else by walking the tree)."""
        return sum(self._collection_counts().values())

    def write_parquet(self, path: str | Path) -> None:
        """Write the ``records`` frame to a Parquet file."""
        self.records.write_parquet(path)

    # -- display (cheap: only what is known, never a walk or a frame) ---------------------

    def _summary(self) -> list[tuple[str, str]]:
        counts = self._counts
        summary = [("did", self.did), ("handle", self.handle or "—"), ("rev", self.rev),
                   ("verified", str(self.verified)),
                   ("records", "?" if counts is None else f"{sum(counts.values()):,}"),
                   ("collections", "?" if counts is None else str(len(counts))),
                   ("decoder", "compiled" if _accel.serves(self._car) else "python")]
        if self.collections_filter is not None:   # opened with collections= (a sparse one is)
            summary.append(("holds", ",".join(self.collections_filter)))
        if self.source != "file":
            summary.append(("source", f"{self.source} ({self.bytes_downloaded:,} B)"))
        return summary

    def __repr__(self) -> str:
        fields = " ".join(f"{k}={v}" for k, v in self._summary())
        return f"<RepoSnapshot {fields}>"

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                       for k, v in self._summary())
        coll = "".join(f"<tr><td style='text-align:left'>{html.escape(c)}</td>"
                       f"<td>{n:,}</td></tr>" for c, n in sorted((self._counts or {}).items()))
        return (f"<div><b>RepoSnapshot</b><table>{rows}</table>"
                f"<table><tr><th>collection</th><th>count</th></tr>{coll}</table></div>")
