"""Merkle Search Trees as atproto repositories use them: walk, build, diff.

A repository's records hang off one tree keyed by record path ``collection/rkey``; each
node is DAG-CBOR, each key sits at the layer of its :func:`key_height`, and the tree is
canonical: the same keys and values always give the same root CID
(https://atproto.com/specs/repository).

Invariants checked while walking (an :class:`~atrepo.MstError` names the node's CID): keys
are record paths of at most :data:`MAX_KEY_LENGTH` bytes, strictly ascending in in-order
traversal; every key in a node has the node's layer as its height, and a subtree sits
exactly one layer below its parent; prefix compression is canonical; depth is at most
:data:`MAX_DEPTH`, a node has at most :data:`MAX_ENTRIES` entries, no node is reached twice
(no cycles), and every referenced node is present.

Tricky bits: a node may have no entries but a left subtree (it keeps layers contiguous when
a layer has no keys in that range); only the root of an empty tree is fully empty.

Everything reads blocks from a :class:`BlockSource` (``get(cid) -> bytes | None``): a
:class:`~atrepo.car.CarFile`, a ``dict`` of CID to bytes, ... Key ranges prune a walk: a
subtree whose key interval misses every range is never fetched. :func:`diff` skips every
subtree whose CID is the same on both sides, so its cost follows the change size.

Modules: ``_node`` (heights and the node codec), ``_source`` (block sources), ``_ranges``
(key intervals and the in-order layout of a node), ``_walk``, ``_plan`` (a walk split for
worker processes), ``_build`` and ``_diff``; all pure.

Example:
    >>> from atrepo.cid import cid_for
    >>> from atrepo.mst import build, walk
    >>> root, blocks = build([("app.x/b", cid_for(b"b")), ("app.x/a", cid_for(b"a"))])
    >>> [key for key, _ in walk(blocks, root)]
    ['app.x/a', 'app.x/b']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._build import build
    from ._diff import MstDiff, diff
    from ._node import MAX_ENTRIES, MAX_KEY_LENGTH, key_height
    from ._source import BlockSource, RawBlockSource
    from ._walk import MAX_DEPTH, walk

    # the engine, for the rest of atrepo: binary CIDs in and out, no CID objects
    from ._diff import diff_raw as diff_raw
    from ._node import Node as Node, decode_node as decode_node
    from ._plan import collect_subtree as collect_subtree, expand as expand, plan as plan
    from ._ranges import KeyRange as KeyRange, Subtree as Subtree, byte_ranges as byte_ranges
    from ._source import Fetch as Fetch
    from ._walk import Walker as Walker, collect as collect

__all__ = ["MAX_DEPTH", "MAX_ENTRIES", "MAX_KEY_LENGTH", "BlockSource", "MstDiff",
           "RawBlockSource", "build", "diff", "key_height", "walk"]

# name -> its module, imported on first use: the compiled core walks trees itself, so a read
# through it loads only ``_ranges`` (the key ranges it takes), not the codec, walk or diff
_LAZY: dict[str, str] = {
    "build": "._build",
    "MstDiff": "._diff", "diff": "._diff", "diff_raw": "._diff",
    "MAX_ENTRIES": "._node", "MAX_KEY_LENGTH": "._node", "key_height": "._node", "Node": "._node",
    "decode_node": "._node",
    "BlockSource": "._source", "RawBlockSource": "._source", "Fetch": "._source",
    "MAX_DEPTH": "._walk", "walk": "._walk", "Walker": "._walk", "collect": "._walk",
    "collect_subtree": "._plan", "expand": "._plan", "plan": "._plan",
    "KeyRange": "._ranges", "Subtree": "._ranges", "byte_ranges": "._ranges",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
