"""Building the canonical tree for a set of keys, as the reference implementation does.

Each key lives at the layer of its height (:func:`~atrepo.mst.key_height`); the root is at
the greatest height, and the keys between two keys of a layer form the subtree between them
one layer down. So the same keys and values always give the same nodes and root CID.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..cid import CID, cid_for, raw_cid
from ..errors import MstError
from ._node import Entry, encode_node, height, show

__all__ = ["build"]

_Keyed = tuple[bytes, bytes, int]  # (key, value CID, height)


def build(items: Iterable[tuple[str, CID | str | bytes]]) -> tuple[CID, dict[CID, bytes]]:
    """Return (root CID, blocks) of the canonical MST holding ``items`` (key, value CID).

    The same keys and values always give the same root CID as the reference implementation.

    Raises:
        MstError: on duplicate keys.

    Example:
        >>> root, blocks = build([])
        >>> len(blocks), str(root)[:12]
        (1, 'bafyreie5737')
    """
    pairs = sorted((key.encode(), raw_cid(value)) for key, value in items)
    for (a, _), (b, _) in zip(pairs, pairs[1:]):
        if a == b:
            raise MstError("duplicate key in MST build", key=show(a))
    keyed = [(key, value, height(key)) for key, value in pairs]
    blocks: dict[CID, bytes] = {}
    top = max((h for _, _, h in keyed), default=0)
    root = _build_node(keyed, top, blocks)
    return CID.from_raw(root), blocks


def _build_node(items: list[_Keyed], layer: int, blocks: dict[CID, bytes]) -> bytes:
    """Write the node for ``items`` at ``layer`` (and its subtrees); return its binary CID."""
    groups: list[list[_Keyed]] = [[]]
    here: list[tuple[bytes, bytes]] = []
    for key, value, key_height in items:
        if key_height == layer:
            here.append((key, value))
            groups.append([])
        else:
            groups[-1].append((key, value, key_height))
    subtrees = [_build_node(g, layer - 1, blocks) if g else None for g in groups]
    entries: list[Entry] = [(key, value, right)
                            for (key, value), right in zip(here, subtrees[1:])]
    data = encode_node(subtrees[0], entries)
    cid = cid_for(data)
    blocks[cid] = data
    return bytes(cid)
