"""Splitting a walk into subtrees that can be walked apart (in other processes) and joined.

:func:`expand` opens one node of a walk done a layer at a time (a sparse fetch asks a host for
each layer's nodes together): the subtrees below it that the key ranges need, and its leaves
inside them.

A plan opens the top nodes of a tree until it has enough subtrees, and keeps the leaves of
the opened nodes between them, so concatenating the pieces in order gives the whole walk.
Each subtree is walked with its key interval, so the pieces together are checked as strictly
as one walk: keys must lie strictly inside the interval of the subtree holding them.
"""

from __future__ import annotations

from ..errors import MstError
from ._node import name, show
from ._ranges import ByteRanges, Subtree, in_order, in_ranges
from ._source import Fetch
from ._walk import Walker, layer_of

__all__ = ["Piece", "collect_subtree", "expand", "plan"]

Piece = Subtree | tuple[bytes, bytes]  # a subtree to walk, or a leaf (key, value CID)


def plan(fetch: Fetch, root: bytes, pieces: int) -> list[Piece]:
    """Split a tree into at least ``pieces`` subtrees (where it has them), in key order.

    Returns subtrees to walk (with :func:`collect_subtree`) interleaved with the leaves of
    the nodes opened to find them. Those leaves are checked to ascend here; each subtree is
    checked inside its own interval when it is walked.

    Raises:
        MstError: an opened node is missing or malformed, or its leaves do not ascend.
    """
    walker = Walker(fetch)
    items: list[Piece] = [Subtree.whole(root)]
    while sum(isinstance(i, Subtree) for i in items) < pieces:
        opened: list[Piece] = []
        progressed = False
        for item in items:
            if not isinstance(item, Subtree):
                opened.append(item)
                continue
            node = walker.node(item.cid, item.parent_layer, item.depth)
            for piece in in_order(node.left, node.entries, item,
                                  layer_of(node, item.parent_layer), None):
                opened.append(piece if isinstance(piece, Subtree) else piece[:2])
            progressed = True
        items = opened
        if not progressed:
            break
    leaves = [item[0] for item in items if not isinstance(item, Subtree)]
    for before, after in zip(leaves, leaves[1:]):
        if before >= after:  # subtrees are bounded by these keys, so they must ascend
            raise MstError("MST keys out of order", cid=name(root), key=show(after),
                           previous=show(before))
    return items


def collect_subtree(fetch: Fetch, piece: Subtree) -> tuple[list[bytes], list[bytes]]:
    """Return (keys, values) of one :class:`Subtree` from :func:`plan`, checked as in a walk.

    Keys must lie strictly inside the piece's (lo, hi) interval, which is what keeps pieces
    walked separately (even in other processes) as strict as one whole walk.
    """
    walker = Walker(fetch, last=piece.lo or b"")
    walker.subtree(piece)
    return walker.keys, walker.values


def expand(walker: Walker, here: Subtree, ranges: ByteRanges
           ) -> tuple[list[Subtree], list[tuple[bytes, bytes]]]:
    """Open the node at ``here``: its subtrees that overlap ``ranges``, and its leaves in them.

    The node is fetched and checked by ``walker`` (its shape, its layer against its parent's,
    depth, no node reached twice), so a layer-by-layer walk shares the whole walk's checks;
    the order of keys across nodes is left to the walk over the finished tree.

    Returns:
        (subtrees to open next, in key order; (key, value CID) of the leaves in ``ranges``).

    Raises:
        MstError: the node is missing or malformed.
    """
    node = walker.node(here.cid, here.parent_layer, here.depth)
    subtrees: list[Subtree] = []
    leaves: list[tuple[bytes, bytes]] = []
    for piece in in_order(node.left, node.entries, here, layer_of(node, here.parent_layer),
                          ranges):
        if isinstance(piece, Subtree):
            subtrees.append(piece)
        elif in_ranges(piece[0], ranges):
            leaves.append((piece[0], piece[1]))
    return subtrees, leaves
