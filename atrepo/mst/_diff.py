"""Diffing two trees: the record operations and node changes, at the cost of the change.

Identical subtrees always sit at the same layer (a node's layer follows from its keys), so
both trees are expanded one layer at a time from the top, and at each layer the nodes present
on both sides are dropped before anything below them is fetched. Leaves of the expanded
nodes are then compared as dictionaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..cid import CID, raw_cid
from ..errors import MstError
from ._node import Entry, Node, decode_checked, name
from ._ranges import ByteRanges, KeyRange, Subtree, byte_ranges, in_order, in_ranges
from ._source import BlockSource, Fetch, RawBlockSource, fetcher
from ._walk import Walker

__all__ = ["MstDiff", "RawDiff", "diff", "diff_raw"]

RawOp = tuple[bytes, "bytes | None", "bytes | None"]  # (key, old value CID, new value CID)
RawDiff = tuple[list[RawOp], set[bytes], set[bytes]]   # (ops, created nodes, deleted nodes)


@dataclass(frozen=True)
class MstDiff:
    """What changed between two trees.

    Attributes:
        record_ops: ``[(key, old CID | None, new CID | None)]`` sorted by key: a create has
            no old CID, a delete no new one, an update both.
        created_nodes: MST node CIDs in the new tree but not the old.
        deleted_nodes: MST node CIDs in the old tree but not the new.
    """

    record_ops: list[tuple[str, CID | None, CID | None]] = field(default_factory=list)
    created_nodes: set[CID] = field(default_factory=set)
    deleted_nodes: set[CID] = field(default_factory=set)

    def __repr__(self) -> str:
        return (f"MstDiff({len(self.record_ops)} record ops, {len(self.created_nodes)} nodes "
                f"created, {len(self.deleted_nodes)} deleted)")


def diff(blocks: BlockSource | RawBlockSource, old_root: CID | str | bytes,
         new_root: CID | str | bytes) -> MstDiff:
    """Return the :class:`MstDiff` from the tree at ``old_root`` to the one at ``new_root``.

    Subtrees with the same CID on both sides are skipped without being fetched, so the cost
    grows with the number of changes, not with the size of the trees.

    Args:
        blocks: the blocks holding the nodes of both trees (a
            :class:`~atrepo.car.CarFile`, a ``dict`` of CID to bytes, ...).
        old_root: the old root CID (CID, str or binary).
        new_root: the new root CID (CID, str or binary).

    Raises:
        MstError: when a node that must be compared is missing or malformed.

    Example:
        >>> from atrepo.mst import build
        >>> from atrepo.cid import cid_for
        >>> old, blocks = build([("app.x/1", cid_for(b"1"))])
        >>> new, more = build([("app.x/1", cid_for(b"2")), ("app.x/2", cid_for(b"3"))])
        >>> blocks.update(more)
        >>> diff(blocks, old, new)
        MstDiff(2 record ops, 1 nodes created, 1 deleted)
    """
    ops, created, deleted = diff_raw(fetcher(blocks), raw_cid(old_root), raw_cid(new_root))
    return MstDiff(
        record_ops=[(k.decode("ascii"), _cid_or_none(o), _cid_or_none(n)) for k, o, n in ops],
        created_nodes={CID.from_raw(r) for r in created},
        deleted_nodes={CID.from_raw(r) for r in deleted},
    )


def _cid_or_none(raw: bytes | None) -> CID | None:
    return None if raw is None else CID.from_raw(raw)


def diff_raw(fetch: Fetch, old_root: bytes, new_root: bytes,
             key_ranges: Sequence[KeyRange] | None = None, *, checked: bool = False) -> RawDiff:
    """The engine behind :func:`diff`, on binary CIDs: (ops, created nodes, deleted nodes).

    ``checked=True`` says both trees were already walked and checked (two opened
    snapshots): their nodes are then decoded without repeating the invariant checks. Blocks
    are still verified against their CIDs by ``fetch``, so a node is the very node that was
    checked.
    """
    ranges = byte_ranges(key_ranges)
    sides = [_DiffSide(fetch, old_root, checked), _DiffSide(fetch, new_root, checked)]
    layer = max(side.top_layer() for side in sides)
    while any(any(side.frontier.values()) for side in sides) and layer >= -1:
        old_here, new_here = (side.at_layer(layer) for side in sides)
        common = old_here.keys() & new_here.keys()
        for side, here in zip(sides, (old_here, new_here)):
            side.expand([piece for raw, piece in here.items() if raw not in common],
                        layer, ranges)
        layer -= 1
    old_side, new_side = sides
    old_leaves, new_leaves = old_side.leaves, new_side.leaves
    changed = {key for key, _ in old_leaves.items() ^ new_leaves.items()}
    ops = [(key, old_leaves.get(key), new_leaves.get(key)) for key in sorted(changed)]
    return ops, new_side.expanded - old_side.expanded, old_side.expanded - new_side.expanded


class _DiffSide:
    """One tree in a diff: its unexpanded subtrees by layer, expanded nodes and leaves."""

    def __init__(self, fetch: Fetch, root: bytes, checked: bool) -> None:
        self.walker = Walker(fetch)
        self.fetch = fetch
        self.checked = checked
        self.frontier: dict[int, dict[bytes, Subtree]] = {}  # layer -> {node: its subtree}
        self.leaves: dict[bytes, bytes] = {}
        self.expanded: set[bytes] = set()
        root_node = self.walker.node(root, None, 0)
        self.walker.visited.discard(root)
        self.frontier[self._root_layer(root_node)] = {root: Subtree.whole(root)}

    def _root_layer(self, node: Node) -> int:
        if node.layer is not None:
            return node.layer
        depth, current = 0, node
        while current.layer is None and current.left is not None:
            depth += 1
            left = current.left
            current = self.walker.node(left, None, depth)
            self.walker.visited.discard(left)  # expanded (and checked in place) later
        return (current.layer or 0) + depth

    def top_layer(self) -> int:
        return max(self.frontier, default=0)

    def at_layer(self, layer: int) -> dict[bytes, Subtree]:
        return self.frontier.pop(layer, {})

    def _entries(self, here: Subtree, layer: int) -> tuple[bytes | None, list[Entry]]:
        if not self.checked:
            node = self.walker.node(here.cid, None if here.depth == 0 else layer + 1,
                                    here.depth)
            return node.left, node.entries
        data = self.fetch(here.cid)
        if data is None:
            raise MstError("missing MST node block", cid=name(here.cid),
                           hint="the snapshot's blocks are incomplete")
        return decode_checked(data)

    def expand(self, subtrees: list[Subtree], layer: int, ranges: ByteRanges | None) -> None:
        """Decode ``subtrees`` (all at ``layer``): queue their children, keep their leaves."""
        below = self.frontier.setdefault(layer - 1, {})
        leaves = self.leaves
        for here in subtrees:
            left, entries = self._entries(here, layer)
            self.expanded.add(here.cid)
            for piece in in_order(left, entries, here, layer, ranges):
                if isinstance(piece, Subtree):
                    below[piece.cid] = piece
                elif ranges is None or in_ranges(piece[0], ranges):
                    leaves[piece[0]] = piece[1]
