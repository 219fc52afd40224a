"""A sparse fetch as a sans-IO flow: one commit, and only the MST nodes and records of some
key ranges (the ``collections=`` of a call).

The steps (the sparse backfill crawlers use; https://atproto.com/specs/sync):

1. **proof**: ``getRecord`` for a key inside the first range gives a CAR whose root is the
   current commit, with the commit block and the MST nodes from the root down to that key
   (and the record, if it exists). A host that answers ``RecordNotFound`` instead of a
   proof of absence is asked ``getLatestCommit`` and ``getBlocks`` for the commit.
2. **the tree, a layer at a time**: the nodes below the ones known that overlap the ranges
   (:func:`atrepo.mst.expand`), asked with ``getBlocks``, at most
   :data:`~atrepo._flows.repo.MAX_CIDS_PER_REQUEST` per request; one round per layer, so
   the rounds are bounded by the tree's depth (itself bounded by ``MAX_DEPTH``).
3. **the records** of the leaves inside the ranges, the same way.

The requests of a round do not depend on each other: up to ``width`` of them are asked at
once (a :class:`~atrepo._flows.effects.Gather`; the client passes its ``max_per_host``), and
the driver's per-host limits (slots, request rate, pauses) hold for them as for any request.

Blocks the caller holds already (``have``: a stored repository's pack) are not asked for, so
fetching a stored repository again costs the nodes and records that changed.

Invariants: every block is hashed against its CID (the CAR reader does it) and handed to
the caller's ``sink`` as it arrives, so a flow holds at most ``width`` answers (the blocks
of ``width`` requests) and the keys of the next layer; every CID asked for must come back,
else a :class:`BlockMissing` names it (a short table is never the result). The order of
keys across nodes is not checked here: the walk over the finished tree does that when it is
stored. The bytes of all answers together are capped by ``max_bytes``.

A host drops blocks no commit references any more, so a write between two rounds can make a
block of the older commit disappear: the fetch then starts over, once, from a new proof when
the head has moved; a block missing at an unchanged head is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from ..cid import CID
from ..errors import DecodeError, MstError, ResponseTooLarge
from ..models import parse_commit
from .. import mst
from ..mst import KeyRange, Subtree
from ..retry import RetryPolicy
from .effects import Flow, gather
from .repo import (MAX_CIDS_PER_REQUEST, Blocks, BlockMissing, NoProof, get_blocks,
                   get_latest_commit, get_record_proof)

__all__ = ["SPARSE_MIN_RECORDS", "Sparse", "estimated_records", "fetch_sparse", "probe_key"]

# Below about this many records a whole getRepo is one small answer, cheaper than the rounds
# of a sparse fetch; the root node tells the size (see estimated_records).
SPARSE_MIN_RECORDS: Final = 500
_FANOUT: Final = 4  # a key's layer is its sha-256's leading zero bits / 2: four per layer

Sink = Callable[[bytes, bytes], None]


@dataclass(frozen=True, slots=True)
class Sparse:
    """What a sparse fetch got.

    Attributes:
        commit_cid: the commit's binary CID (the blocks were handed to the sink).
        size: the body bytes of every answer, the failed attempt's included.
        requests: how many requests it took (each counted once, whatever its retries).
    """

    commit_cid: bytes
    size: int
    requests: int


def probe_key(key_range: KeyRange) -> tuple[str, str]:
    """The (collection, rkey) whose proof leads into ``key_range``: ``self`` in its collection.

    A range of one collection covers ``collection/...``; one of an NSID prefix (``app.bsky.``)
    covers every collection under it, such as ``app.bsky.x.x``. ``self`` is the rkey of
    the records a repository holds once (a profile), so for them the proof is the fetch.

    Example:
        >>> probe_key(("app.bsky.actor.profile/", "app.bsky.actor.profile0"))
        ('app.bsky.actor.profile', 'self')
        >>> probe_key(("app.bsky.", "app.bsky/"))
        ('app.bsky.x.x', 'self')
    """
    lo = key_range[0]
    return (lo[:-1] if lo.endswith("/") else lo + "x.x"), "self"


def estimated_records(node: mst.Node) -> int:
    """About how many records a tree holds, from its root node: (entries + 1) * 4**layer.

    Each key of layer ``L`` stands for about ``4**L`` keys below it; an empty root is an
    empty tree.

    Example:
        >>> estimated_records(mst.Node(layer=2, left=None, entries=[(b"a/b", b"", None)] * 3))
        64
    """
    if node.layer is None:
        return 0 if node.left is None else _FANOUT
    estimate: int = (len(node.entries) + 1) * _FANOUT ** node.layer
    return estimate


class _Fetch:
    """One attempt: the blocks known, the answers' bytes, and asking for what is missing."""

    def __init__(self, pds: str, did: str, sink: Sink, max_bytes: int,
                 policy: RetryPolicy, have: mst.Fetch | None, width: int) -> None:
        self.pds, self.did, self.sink, self.have = pds, did, sink, have
        self.max_bytes, self.policy, self.width = max_bytes, policy, width
        self.size = 0
        self.requests = 0
        self.known: dict[bytes, bytes] = {}  # the proof's blocks (a few nodes)

    def paid(self, answer: Blocks) -> Blocks:
        """Count ``answer``'s bytes against the cap."""
        self.size += answer.size
        if self.size > self.max_bytes:
            raise ResponseTooLarge(f"{self.pds} (sparse fetch of {self.did})",
                                   max_bytes=self.max_bytes)
        return answer

    def ask(self, cids: Sequence[bytes]) -> Flow[dict[bytes, bytes]]:
        """The blocks ``cids`` (binary), from the proof, the blocks held already or the host;
        each handed to the sink (but those of the proof, which were when it came). The
        requests go ``width`` at a time; ask for at most ``width`` requests' worth of
        blocks at once to hold no more than that many answers.

        Raises:
            BlockMissing: the host left one out, or says it does not hold it.
        """
        found = {raw: self.known[raw] for raw in cids if raw in self.known}
        wanted = []
        for raw in dict.fromkeys(cids):
            held = None if raw in found or self.have is None else self.have(raw)
            if held is not None:
                self.sink(raw, held)
                found[raw] = held
            elif raw not in found:
                wanted.append(raw)
        batches = [wanted[start:start + MAX_CIDS_PER_REQUEST]
                   for start in range(0, len(wanted), MAX_CIDS_PER_REQUEST)]
        for start in range(0, len(batches), self.width):
            group = batches[start:start + self.width]
            self.requests += len(group)
            answers = yield from gather(
                [get_blocks(self.pds, self.did, [_cid_text(raw) for raw in batch],
                            policy=self.policy) for batch in group], self.width)
            for batch, answer in zip(group, answers):
                self.paid(answer)
                for raw in batch:
                    data = answer.blocks.get(raw)
                    if data is None:
                        raise BlockMissing("the host left a block out of its getBlocks "
                                           "answer", cid=CID.from_raw(raw), did=self.did,
                                           host=self.pds)
                    self.sink(raw, data)
                    found[raw] = data
        return found

    @property
    def round_size(self) -> int:
        """How many blocks to ask for at once: ``width`` full requests."""
        return MAX_CIDS_PER_REQUEST * self.width

    def start(self, probe: tuple[str, str]) -> Flow[bytes]:
        """Get the proof (or the commit alone); return the commit's binary CID."""
        self.requests += 1
        try:
            proof = self.paid((yield from get_record_proof(self.pds, self.did, *probe,
                                                           policy=self.policy)))
        except NoProof:
            self.requests += 1
            commit_cid, _rev = yield from get_latest_commit(self.pds, self.did,
                                                            policy=self.policy)
            raw = bytes(CID.decode(commit_cid))
            self.known = yield from self.ask([raw])
            return raw
        for raw, data in proof.blocks.items():
            self.sink(raw, data)
        self.known = proof.blocks
        return proof.roots[0]


def fetch_sparse(pds: str, did: str, key_ranges: Sequence[KeyRange], *, sink: Sink,
                 decide: bool = False, max_bytes: int, policy: RetryPolicy = RetryPolicy(),
                 have: mst.Fetch | None = None, width: int = 1) -> Flow[Sparse | None]:
    """Fetch the commit of ``did`` and the nodes and records of ``key_ranges`` (see above).

    Args:
        pds: the PDS base URL.
        did: the repository's DID.
        key_ranges: the ``[lo, hi)`` key ranges wanted (at least one).
        sink: called with (binary CID, bytes) of every block kept, each checked against its
            CID, as it arrives; blocks may come twice when the fetch starts over.
        decide: give up (return None) before the first ``getBlocks`` when the root node says
            the repository is small (:data:`SPARSE_MIN_RECORDS`): a full fetch is cheaper.
        max_bytes: cap on the bytes of all answers together.
        policy: the retry budgets and delays.
        have: blocks held already (checked against their CIDs before), by binary CID:
            those are not asked for, so fetching a stored repository again costs what
            changed (the nodes and records of the ranges that differ).
        width: how many ``getBlocks`` requests of a round may be in flight at once (1:
            one after another).

    Returns:
        A flow whose value is the :class:`Sparse` outcome, or None when ``decide`` chose a
        full fetch instead.

    Raises:
        BlockMissing: a block of the ranges is not to be had from the host (named).
        MstError: a node is malformed, or the tree is deeper than allowed.
        CarError: an answer is not a CAR or a block does not match its CID; the commit is
            malformed.
        MethodMissing: the host lacks getRecord or getBlocks.
        RepoUnavailable, RateLimited, TransportError: as the requests raise them.
    """
    ranges = mst.byte_ranges(key_ranges) or []
    probe = probe_key(min(key_ranges))
    if width < 1:
        raise ValueError(f"width must be at least 1, not {width}")
    attempt = _Fetch(pds, did, sink, max_bytes, policy, have, width)
    commit = b""
    try:
        commit = yield from attempt.start(probe)
        return (yield from _ranges(attempt, commit, ranges, decide))
    except BlockMissing:
        again = _Fetch(pds, did, sink, max_bytes - attempt.size, policy, have, width)
        moved = yield from again.start(probe)
        if moved == commit:
            raise
        outcome = yield from _ranges(again, moved, ranges, decide)
        return None if outcome is None else Sparse(moved, attempt.size + outcome.size,
                                                   attempt.requests + outcome.requests)


def _ranges(attempt: _Fetch, commit_raw: bytes, ranges: Sequence[tuple[bytes, bytes]],
            decide: bool) -> Flow[Sparse | None]:
    """Steps 2 and 3 below the commit ``commit_raw``; None when ``decide`` gives up."""
    commit, _ = parse_commit((yield from attempt.ask([commit_raw]))[commit_raw],
                             cid=CID.from_raw(commit_raw))
    root = bytes(CID.decode(commit.data))
    blocks: dict[bytes, bytes] = {}
    walker = mst.Walker(blocks.get)
    frontier = [Subtree.whole(root)]
    records: dict[bytes, None] = {}  # value CIDs in key order, each once
    while frontier:
        below: list[Subtree] = []
        for batch in _batches(frontier, attempt.round_size):
            needed = [here.cid for here in batch]
            if decide and any(raw not in attempt.known for raw in needed):
                root_node = (yield from attempt.ask([root]))[root]
                if estimated_records(mst.decode_node(root, root_node)) < SPARSE_MIN_RECORDS:
                    return None
                attempt.known[root] = root_node
                decide = False
            blocks.clear()
            blocks.update((yield from attempt.ask(needed)))
            for here in batch:
                subtrees, leaves = mst.expand(walker, here, ranges)
                below.extend(subtrees)
                records.update(dict.fromkeys(value for _key, value in leaves))
        frontier = below
    wanted = list(records)
    for start in range(0, len(wanted), attempt.round_size):
        yield from attempt.ask(wanted[start:start + attempt.round_size])
    return Sparse(commit_raw, attempt.size, attempt.requests)


def _cid_text(raw: bytes) -> str:
    """A link to ask for, as a string; a link that is no CID is the node's fault.

    Raises:
        MstError: ``raw`` is not a CID.
    """
    try:
        return str(CID.from_raw(raw))
    except DecodeError as exc:
        raise MstError("malformed link in MST node", link=raw.hex()[:100]) from exc


def _batches(frontier: list[Subtree], size: int) -> Iterator[list[Subtree]]:
    """The frontier in pieces of ``size``: a layer's nodes are held a piece at a time."""
    for start in range(0, len(frontier), size):
        yield frontier[start:start + size]
