"""Walking a tree: every leaf in key order, with every invariant across nodes checked.

On top of what :func:`~atrepo.mst._node.decode_node` checks in one node, the walk checks
the tree: keys strictly ascend in in-order traversal (which also keeps every subtree inside
its key interval); a subtree sits exactly one layer below its parent; only the root may be
an empty node, and a node with no entries below the root must have a left subtree (it keeps
layers contiguous when a layer has no keys in that range); depth is at most
:data:`MAX_DEPTH`; no node is reached twice (no cycles); every referenced node is present.
An :class:`~atrepo.MstError` names the node's CID.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..cid import CID, is_blessed, raw_cid
from ..errors import DecodeError, MstError
from ._node import Node, decode_node, name, show
from ._ranges import ByteRanges, KeyRange, Subtree, byte_ranges, in_order, in_ranges
from ._source import BlockSource, Fetch, RawBlockSource, fetcher

__all__ = ["MAX_DEPTH", "Walker", "collect", "layer_of", "walk"]

MAX_DEPTH = 64          # heights above ~20 need 2^40 keys; deeper trees are hostile


class Walker:
    """Walks one tree: fetches and checks nodes, remembers them, and collects leaves.

    The walk is a recursive in-order visit (depth is bounded by MAX_DEPTH) that appends to
    two lists, cheaper per leaf than a stack of tuples or a generator per level: the walk
    is the hot path of reading a repository.
    """

    def __init__(self, fetch: Fetch, ranges: ByteRanges | None = None,
                 last: bytes = b"") -> None:
        self.fetch = fetch
        self.ranges = ranges
        self.visited: set[bytes] = set()
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.last = last

    def node(self, raw: bytes, parent_layer: int | None, depth: int) -> Node:
        """Fetch, decode and check the node ``raw`` found at ``depth`` below a parent."""
        if depth > MAX_DEPTH:
            raise MstError("MST deeper than allowed", cid=name(raw), max_depth=MAX_DEPTH)
        if raw in self.visited:
            raise MstError("MST node reached twice (cycle or shared subtree)", cid=name(raw))
        self.visited.add(raw)
        data = self.fetch(raw)
        if data is None:
            raise MstError("missing MST node block", cid=name(raw),
                           hint="the CAR is incomplete; fetch the full repository")
        node = decode_node(raw, data)
        if parent_layer is not None:
            if node.layer is not None and node.layer != parent_layer - 1:
                raise MstError("MST subtree is not one layer below its parent",
                               cid=name(raw), layer=node.layer, parent_layer=parent_layer)
            if node.layer is None and not node.left:
                raise MstError("empty MST node below the root", cid=name(raw))
        return node

    def subtree(self, here: Subtree) -> None:
        """Collect the leaves of the subtree ``here``, whose keys lie in (lo, hi)."""
        node = self.node(here.cid, here.parent_layer, here.depth)
        ranges, keys, values = self.ranges, self.keys, self.values
        for piece in in_order(node.left, node.entries, here,
                              layer_of(node, here.parent_layer), ranges):
            if isinstance(piece, Subtree):
                self.subtree(piece)
                continue
            key = piece[0]
            if key <= self.last:
                raise MstError("MST keys out of order", cid=name(here.cid), key=show(key),
                               previous=show(self.last))
            self.last = key
            if ranges is None or in_ranges(key, ranges):
                keys.append(key)
                values.append(piece[1])
        if here.hi is not None and self.last >= here.hi:
            raise MstError("MST subtree holds keys outside its range", cid=name(here.cid),
                           key=show(self.last))


class _LinkCheckingWalker(Walker):
    """A :class:`Walker` that also checks that every link of each node is a whole CID.

    :func:`walk` hands out value CIDs as :class:`~atrepo.cid.CID` objects, which a link of
    arbitrary bytes cannot become; checking the links where the node is at hand lets the
    error name the node that holds them. The engine (:func:`collect`) leaves this to the
    lookups that follow, as the compiled core does.
    """

    def node(self, raw: bytes, parent_layer: int | None, depth: int) -> Node:
        """Fetch, decode and check the node ``raw``, its links included."""
        node = super().node(raw, parent_layer, depth)
        for link in (node.left, *(cid for _, value, right in node.entries
                                  for cid in (value, right))):
            if link is not None and not is_blessed(link):
                try:
                    CID.from_raw(link)
                except DecodeError as exc:
                    raise MstError("malformed link in MST node", cid=name(raw),
                                   link=link.hex()[:100]) from exc
        return node


def layer_of(node: Node, parent_layer: int | None) -> int | None:
    """A node's layer: its keys' height, else one below its parent's (None when unknown)."""
    if node.layer is not None:
        return node.layer
    return None if parent_layer is None else parent_layer - 1


def collect(fetch: Fetch, root: bytes,
            key_ranges: Sequence[KeyRange] | None = None) -> tuple[list[bytes], list[bytes]]:
    """Return (keys, value binary CIDs) of a tree, in key order; the engine of :func:`walk`.

    Args:
        fetch: returns a block's (verified) bytes for a binary CID, or None.
        root: binary CID of the root node.
        key_ranges: when given, only keys inside these [lo, hi) ranges are returned and
            subtrees wholly outside them are never fetched.
    """
    walker = Walker(fetch, byte_ranges(key_ranges))
    walker.subtree(Subtree.whole(root))
    return walker.keys, walker.values


def walk(blocks: BlockSource | RawBlockSource, root: CID | str | bytes,
         key_ranges: Sequence[KeyRange] | None = None) -> Iterator[tuple[str, CID]]:
    """Yield ``(key, value CID)`` for every leaf of the tree at ``root``, in key order.

    Args:
        blocks: the blocks holding the tree: a :class:`~atrepo.car.CarFile`, a ``dict`` of
            CID to bytes, or any :class:`~atrepo.mst.BlockSource`.
        root: the root node's CID (CID, str or binary).
        key_ranges: optional ``[(lo, hi), ...]``: only keys ``lo <= key < hi`` are yielded,
            and subtrees outside every range are not fetched.

    Raises:
        MstError: when a node is missing, holds a link that is not a CID, or the tree
            breaks an invariant.

    Example:
        >>> import atrepo
        >>> root, blocks = atrepo.mst.build([("app.x/1", atrepo.cid_for(b"\\xa0"))])
        >>> [key for key, _ in walk(blocks, root)]
        ['app.x/1']
    """
    walker = _LinkCheckingWalker(fetcher(blocks), byte_ranges(key_ranges))
    walker.subtree(Subtree.whole(raw_cid(root)))
    for key, value in zip(walker.keys, walker.values):
        yield key.decode("ascii"), CID.from_raw(value)
