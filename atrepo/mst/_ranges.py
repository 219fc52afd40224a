"""Key intervals: which part of the key space each subtree covers, and pruning by ranges.

A node with keys ``k0 < k1 < ... < kn`` that covers the open interval ``(lo, hi)`` has its
left subtree over ``(lo, k0)``, the subtree right of ``ki`` over ``(ki, ki+1)`` and the last
one over ``(kn, hi)``. :func:`in_order` lays a node out that way, once for every consumer
(the walk, the parallel plan and the diff). Key ranges (``key_ranges``) prune it: a subtree
whose interval misses every ``[lo, hi)`` range is left out, so it is never fetched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ._node import Entry

__all__ = ["ByteRanges", "KeyRange", "Subtree", "byte_ranges", "in_order", "in_ranges",
           "overlaps"]

KeyRange = tuple[str, str]  # [lo, hi): keys k with lo <= k < hi
ByteRanges = Sequence[tuple[bytes, bytes]]


class Subtree(NamedTuple):
    """A subtree to visit: its node, the open key interval it must cover, and its place."""

    cid: bytes
    lo: bytes | None
    hi: bytes | None
    parent_layer: int | None
    depth: int

    @classmethod
    def whole(cls, root: bytes) -> Subtree:
        """The whole tree at root node ``root``."""
        return cls(root, None, None, None, 0)


def byte_ranges(key_ranges: Sequence[KeyRange] | None) -> list[tuple[bytes, bytes]] | None:
    """The ranges with their bounds encoded (None: no pruning)."""
    return None if key_ranges is None else [(lo.encode(), hi.encode()) for lo, hi in key_ranges]


def overlaps(lo: bytes | None, hi: bytes | None, ranges: ByteRanges) -> bool:
    """Whether the open key interval (lo, hi) can hold a key inside some range."""
    for r_lo, r_hi in ranges:
        if (hi is None or r_lo < hi) and (lo is None or lo < r_hi):
            return True
    return False


def in_ranges(key: bytes, ranges: ByteRanges) -> bool:
    """Whether ``key`` lies inside some ``[lo, hi)`` range."""
    for r_lo, r_hi in ranges:
        if r_lo <= key < r_hi:
            return True
    return False


def in_order(left: bytes | None, entries: Sequence[Entry], here: Subtree, layer: int | None,
             ranges: ByteRanges | None) -> Iterator[Subtree | Entry]:
    """Yield the node at ``here``'s pieces in key order: its subtrees and its entries.

    Every entry is yielded (callers check the order of all keys, and pick the leaves inside
    ``ranges`` with :func:`in_ranges`); a subtree only when its interval overlaps ``ranges``
    (always, for None). Subtrees sit at ``layer`` - 1, one deeper than ``here``.
    """
    new = tuple.__new__  # NamedTuple's own __new__ is Python code; this runs once per child
    bound, child = here.lo, left
    depth = here.depth + 1
    for entry in entries:
        key = entry[0]
        if child is not None and (ranges is None or overlaps(bound, key, ranges)):
            yield new(Subtree, (child, bound, key, layer, depth))
        yield entry
        bound, child = key, entry[2]
    if child is not None and (ranges is None or overlaps(bound, here.hi, ranges)):
        yield new(Subtree, (child, bound, here.hi, layer, depth))
