"""Merkle Search Trees as atproto repositories use them: walk, build, diff.

A node is DAG-CBOR ``{"l": CID | null, "e": [{"p": int, "k": bytes, "v": CID, "t": CID |
null}, ...]}``. Entry keys are prefix-compressed against the previous key in the same node
(``key = prev[:p] + k``, the first entry has ``p = 0``); ``l`` is the subtree left of the first
entry and each ``t`` the subtree right of its entry (https://atproto.com/specs/repository).

Invariants checked while walking (an :class:`~atrepo.MstError` names the node's CID):

* keys are record paths ``collection/rkey`` (characters ``A-Za-z0-9_~:.-``), at most
  :data:`MAX_KEY_LENGTH` bytes, strictly ascending in in-order traversal (which also keeps
  every subtree inside its key range);
* every key in a node has the node's layer as its height (:func:`key_height`), and a
  subtree sits exactly one layer below its parent;
* prefix compression is canonical (``p`` is the full shared prefix with the previous key);
* depth is at most :data:`MAX_DEPTH`, a node has at most :data:`MAX_ENTRIES` entries, no
  node is reached twice (no cycles), and every referenced node is present.

Tricky bits: a node may have no entries but a left subtree (it keeps layers contiguous when
a layer has no keys in that range); only the root of an empty tree is fully empty.

Key ranges (``key_ranges``) prune the walk: a subtree whose whole key interval misses every
range is never fetched or decoded. :func:`diff` compares two trees layer by layer, and skips
every subtree whose CID is the same on both sides, so its cost follows the change size.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cbor2 import CBORTag
from libipld import decode_dag_cbor

from . import cbor
from .cbor import CBOR_ERRORS, Link
from .cid import CID, cid_for, raw_cid
from .errors import MstError

__all__ = ["MAX_DEPTH", "MAX_ENTRIES", "MAX_KEY_LENGTH", "MstDiff", "build", "diff",
           "key_height", "walk"]

MAX_DEPTH = 64          # heights above ~20 need 2^40 keys; deeper trees are hostile
MAX_ENTRIES = 4096      # real nodes hold a handful of entries (fanout 4)
MAX_KEY_LENGTH = 1024   # the repository spec caps record paths at 1024 bytes

# a record path "collection/rkey": one "/", both sides non-empty, the reference's
# isValidMstKey character set on each side
_KEY_FORM = re.compile(rb"[A-Za-z0-9_~:.-]+/[A-Za-z0-9_~:.-]+").fullmatch
Fetch = Callable[[bytes], "bytes | None"]
KeyRange = tuple[str, str]  # [lo, hi): keys k with lo <= k < hi


def key_height(key: str | bytes) -> int:
    """Return the MST layer of ``key``: leading zero bits of sha256(key), divided by 2.

    Example:
        >>> key_height("blue"), key_height("app.bsky.feed.post/9adeb165882c")
        (1, 8)
    """
    return _height(key.encode() if isinstance(key, str) else key)


def _height(key: bytes) -> int:
    first = hashlib.sha256(key).digest()
    if first[0] >= 64:  # three quarters of all keys: no leading zero pair at all
        return 0
    return (256 - int.from_bytes(first, "big").bit_length()) // 2


@dataclass(frozen=True, slots=True)
class Node:
    """A decoded MST node: its layer (None when it has no entries), left link and entries."""

    layer: int | None
    left: bytes | None
    entries: list[tuple[bytes, bytes, bytes | None]]  # (full key, value CID, right subtree)


def decode_node(raw_cid: bytes, data: bytes) -> Node:
    """Return the checked :class:`Node` in ``data``; ``raw_cid`` only names it in errors.

    This runs once per node of every repository read, so the entry loop is written out
    flat: cbor2 returns links as ``CBORTag(42, b"\\x00" + cid)`` and they are checked here.
    """
    try:
        obj = cbor.loads(data)
        items, left = obj["e"], obj["l"]
    except (*CBOR_ERRORS, KeyError) as exc:
        raise MstError("MST node is not a valid DAG-CBOR node", cid=_name(raw_cid),
                       detail=str(exc)[:100]) from exc
    if type(obj) is not dict or len(obj) != 2 or type(items) is not list:
        raise MstError("malformed MST node (expected keys 'e' and 'l')", cid=_name(raw_cid))
    if len(items) > MAX_ENTRIES:
        raise MstError("MST node has too many entries", cid=_name(raw_cid), entries=len(items))
    entries = []
    prev = b""
    layer = None
    sha256 = hashlib.sha256
    for item in items:
        try:
            prefix, suffix, value, right = item["p"], item["k"], item["v"], item["t"]
        except (KeyError, TypeError) as exc:
            raise MstError("malformed MST entry (expected keys p, k, v, t)",
                           cid=_name(raw_cid)) from exc
        if len(item) != 4 or type(prefix) is not int or type(suffix) is not bytes:
            raise MstError("malformed MST entry", cid=_name(raw_cid))
        if prefix < 0:
            raise MstError("malformed MST entry (negative prefix)", cid=_name(raw_cid), p=prefix)
        if prefix:
            # the shared prefix must be the whole common prefix (canonical form)
            if prefix > len(prev) or (prefix < len(prev) and suffix[:1] == prev[prefix:prefix + 1]):
                raise MstError("non-canonical MST prefix compression", cid=_name(raw_cid),
                               p=prefix)
            key = prev[:prefix] + suffix
        elif prev and suffix[:1] == prev[:1]:
            raise MstError("non-canonical MST prefix compression", cid=_name(raw_cid), p=prefix)
        else:
            key = suffix
        if len(key) > MAX_KEY_LENGTH or not _KEY_FORM(key):
            raise MstError("invalid MST key", cid=_name(raw_cid), key=_show(key))
        digest = sha256(key).digest()
        height = 0 if digest[0] >= 64 else (256 - int.from_bytes(digest, "big").bit_length()) // 2
        if height != layer:
            if layer is not None:
                raise MstError("MST key height does not match its node's layer",
                               cid=_name(raw_cid), key=_show(key), height=height, layer=layer)
            layer = height
        if type(value) is CBORTag and value.tag == 42 and type(link := value.value) is bytes \
                and link[:1] == b"\x00" and len(link) > 1:
            value = link[1:]
        else:
            value = _link(raw_cid, value)
        entries.append((key, value, None if right is None else _link(raw_cid, right)))
        prev = key
    return Node(layer, None if left is None else _link(raw_cid, left), entries)


def _link(node: bytes, tag: Any) -> bytes:
    """Binary CID of a tag-42 link, checked; MstError naming ``node`` otherwise."""
    if type(tag) is CBORTag and tag.tag == 42:
        value = tag.value
        if type(value) is bytes and len(value) > 1 and value[0] == 0:
            return value[1:]
    raise MstError("malformed link in MST node", cid=_name(node))


def _name(raw: bytes) -> str:
    return str(CID.from_raw(raw)) if raw else "?"


def _show(key: bytes) -> str:
    return repr(key[:80])[2:-1]


# --- walking ------------------------------------------------------------------------------

class _Walker:
    """Walks one tree: fetches and checks nodes, remembers them, and collects leaves.

    The walk is a recursive in-order visit (depth is bounded by MAX_DEPTH) that appends to
    two lists; this is markedly cheaper per leaf than a stack of tuples or nested
    generators, and the walk is the hot path of reading a repository.
    """

    def __init__(self, fetch: Fetch, ranges: Sequence[tuple[bytes, bytes]] | None = None,
                 last: bytes = b"") -> None:
        self.fetch = fetch
        self.ranges = ranges
        self.visited: set[bytes] = set()
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.last = last

    def node(self, raw: bytes, parent_layer: int | None, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise MstError("MST deeper than allowed", cid=_name(raw), max_depth=MAX_DEPTH)
        if raw in self.visited:
            raise MstError("MST node reached twice (cycle or shared subtree)", cid=_name(raw))
        self.visited.add(raw)
        data = self.fetch(raw)
        if data is None:
            raise MstError("missing MST node block", cid=_name(raw),
                           hint="the CAR is incomplete; fetch the full repository")
        node = decode_node(raw, data)
        if parent_layer is not None:
            if node.layer is not None and node.layer != parent_layer - 1:
                raise MstError("MST subtree is not one layer below its parent",
                               cid=_name(raw), layer=node.layer, parent_layer=parent_layer)
            if node.layer is None and not node.left:
                raise MstError("empty MST node below the root", cid=_name(raw))
        return node

    def subtree(self, raw: bytes, lo: bytes | None, hi: bytes | None,
                parent_layer: int | None, depth: int) -> None:
        """Collect the leaves of the subtree at ``raw``, whose keys lie in (lo, hi)."""
        node = self.node(raw, parent_layer, depth)
        layer = _layer(node, parent_layer)
        ranges = self.ranges
        bound, child = lo, node.left
        for key, value, right in node.entries:
            if child is not None and (ranges is None or _overlaps(bound, key, ranges)):
                self.subtree(child, bound, key, layer, depth + 1)
            if key <= self.last:
                raise MstError("MST keys out of order", cid=_name(raw), key=_show(key),
                               previous=_show(self.last))
            self.last = key
            if ranges is None or _in_ranges(key, ranges):
                self.keys.append(key)
                self.values.append(value)
            bound, child = key, right
        if child is not None and (ranges is None or _overlaps(bound, hi, ranges)):
            self.subtree(child, bound, hi, layer, depth + 1)
        if hi is not None and self.last >= hi:
            raise MstError("MST subtree holds keys outside its range", cid=_name(raw),
                           key=_show(self.last))


def _layer(node: Node, parent_layer: int | None) -> int | None:
    """A node's layer: its keys' height, else one below its parent's (None when unknown)."""
    if node.layer is not None:
        return node.layer
    return None if parent_layer is None else parent_layer - 1


def _byte_ranges(key_ranges: Sequence[KeyRange] | None) -> list[tuple[bytes, bytes]] | None:
    return None if key_ranges is None else [(lo.encode(), hi.encode()) for lo, hi in key_ranges]


def _overlaps(lo: bytes | None, hi: bytes | None, ranges: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the open key interval (lo, hi) can hold a key inside some range."""
    for r_lo, r_hi in ranges:
        if (hi is None or r_lo < hi) and (lo is None or lo < r_hi):
            return True
    return False


def _in_ranges(key: bytes, ranges: Sequence[tuple[bytes, bytes]]) -> bool:
    for r_lo, r_hi in ranges:
        if r_lo <= key < r_hi:
            return True
    return False


def collect(fetch: Fetch, root: bytes,
            key_ranges: Sequence[KeyRange] | None = None) -> tuple[list[bytes], list[bytes]]:
    """Return (keys, value binary CIDs) of a tree, in key order; the engine of :func:`walk`.

    Args:
        fetch: returns a block's (verified) bytes for a binary CID, or None.
        root: binary CID of the root node.
        key_ranges: when given, only keys inside these [lo, hi) ranges are returned and
            subtrees wholly outside them are never fetched.
    """
    walker = _Walker(fetch, _byte_ranges(key_ranges))
    walker.subtree(root, None, None, None, 0)
    return walker.keys, walker.values


@dataclass(frozen=True, slots=True)
class Subtree:
    """A piece of a tree to walk on its own: a node and the key interval it must cover."""

    cid: bytes
    lo: bytes | None
    hi: bytes | None
    parent_layer: int | None
    depth: int


def plan(fetch: Fetch, root: bytes, pieces: int) -> list[Subtree | tuple[bytes, bytes]]:
    """Split a tree into at least ``pieces`` subtrees (where it has them), in key order.

    Returns subtrees to walk (with :func:`collect_subtree`) interleaved with the leaves of
    the nodes opened to find them, so concatenating the results in order gives the walk.
    Those leaves are checked to ascend; each subtree is checked inside its own interval
    when it is walked, so the pieces together are as strictly checked as one walk.
    """
    walker = _Walker(fetch)
    items: list[Subtree | tuple[bytes, bytes]] = [Subtree(root, None, None, None, 0)]
    while sum(isinstance(i, Subtree) for i in items) < pieces:
        opened: list[Subtree | tuple[bytes, bytes]] = []
        progressed = False
        for item in items:
            if not isinstance(item, Subtree):
                opened.append(item)
                continue
            node = walker.node(item.cid, item.parent_layer, item.depth)
            layer = _layer(node, item.parent_layer)
            opened.extend(_open(node, item, layer, None))
            progressed = True
        items = opened
        if not progressed:
            break
    leaves = [item[0] for item in items if not isinstance(item, Subtree)]
    for before, after in zip(leaves, leaves[1:]):
        if before >= after:  # subtrees are bounded by these keys, so they must ascend
            raise MstError("MST keys out of order", cid=_name(root), key=_show(after),
                           previous=_show(before))
    return items


def _open(node: Node, item: Subtree, layer: int | None,
          ranges: Sequence[tuple[bytes, bytes]] | None) -> list[Subtree | tuple[bytes, bytes]]:
    """A node's in-order pieces: child subtrees (those inside ``ranges``) and its leaves."""
    out: list[Subtree | tuple[bytes, bytes]] = []
    bound, child = item.lo, node.left
    for key, value, right in node.entries:
        if child is not None and (ranges is None or _overlaps(bound, key, ranges)):
            out.append(Subtree(child, bound, key, layer, item.depth + 1))
        if ranges is None or _in_ranges(key, ranges):
            out.append((key, value))
        bound, child = key, right
    if child is not None and (ranges is None or _overlaps(bound, item.hi, ranges)):
        out.append(Subtree(child, bound, item.hi, layer, item.depth + 1))
    return out


def collect_subtree(fetch: Fetch, piece: Subtree) -> tuple[list[bytes], list[bytes]]:
    """Return (keys, values) of one :class:`Subtree` from :func:`plan`, checked as in a walk.

    Keys must lie strictly inside the piece's (lo, hi) interval, which is what keeps pieces
    walked separately (even in other processes) as strict as one whole walk.
    """
    walker = _Walker(fetch, last=piece.lo or b"")
    walker.subtree(piece.cid, piece.lo, piece.hi, piece.parent_layer, piece.depth)
    return walker.keys, walker.values


def _fetcher(blocks: Any) -> Fetch:
    """A raw-CID fetch function over anything with ``.get(cid)``."""
    get_raw = getattr(blocks, "get_raw", None)
    if get_raw is not None:
        return get_raw  # type: ignore[no-any-return]
    if isinstance(blocks, dict) and isinstance(next(iter(blocks), None), bytes):
        return blocks.get  # already keyed by binary CID
    return lambda raw: blocks.get(CID.from_raw(raw))


def walk(blocks: Any, root: Any,
         key_ranges: Sequence[KeyRange] | None = None) -> Iterator[tuple[str, CID]]:
    """Yield ``(key, value CID)`` for every leaf of the tree at ``root``, in key order.

    Args:
        blocks: anything with ``.get(cid) -> bytes | None`` (a CarFile, a dict of CID to
            bytes, ...).
        root: the root node's CID (CID, str or binary).
        key_ranges: optional ``[(lo, hi), ...]``: only keys ``lo <= key < hi`` are yielded,
            and subtrees outside every range are not fetched.

    Raises:
        MstError: when a node is missing or the tree breaks an invariant.

    Example:
        >>> from atrepo.cid import cid_for
        >>> root, blocks = build([("app.x/1", cid_for(b"\\xa0"))])
        >>> [key for key, _ in walk(blocks, root)]
        ['app.x/1']
    """
    keys, values = collect(_fetcher(blocks), raw_cid(root), key_ranges)
    for key, value in zip(keys, values):
        yield key.decode("ascii"), CID.from_raw(value)


# --- building -----------------------------------------------------------------------------

def build(items: Iterable[tuple[str, Any]]) -> tuple[CID, dict[CID, bytes]]:
    """Return (root CID, blocks) of the canonical MST holding ``items`` (key, value CID).

    The same keys and values always give the same root CID as the reference implementation.

    Raises:
        MstError: on duplicate or invalid keys.
    """
    pairs = sorted((key.encode(), raw_cid(value)) for key, value in items)
    for (a, _), (b, _) in zip(pairs, pairs[1:]):
        if a == b:
            raise MstError("duplicate key in MST build", key=_show(a))
    keyed = [(key, value, _height(key)) for key, value in pairs]
    blocks: dict[CID, bytes] = {}
    top = max((h for _, _, h in keyed), default=0)
    root = _build_node(keyed, top, blocks)
    return CID.from_raw(root), blocks


def _build_node(items: list[tuple[bytes, bytes, int]], layer: int,
                blocks: dict[CID, bytes]) -> bytes:
    """Write the node for ``items`` at ``layer`` (and its subtrees); return its binary CID."""
    groups: list[list[tuple[bytes, bytes, int]]] = [[]]
    here: list[tuple[bytes, bytes]] = []
    for key, value, height in items:
        if height == layer:
            here.append((key, value))
            groups.append([])
        else:
            groups[-1].append((key, value, height))
    subtrees = [_build_node(g, layer - 1, blocks) if g else None for g in groups]
    entries = []
    prev = b""
    for (key, value), right in zip(here, subtrees[1:]):
        prefix = _common_prefix(prev, key)
        entries.append({"k": key[prefix:], "p": prefix, "t": _as_link(right), "v": Link(value)})
        prev = key
    data = cbor.encode({"e": entries, "l": _as_link(subtrees[0])})
    cid = cid_for(data)
    blocks[cid] = data
    return bytes(cid)


def _as_link(raw: bytes | None) -> Link | None:
    return None if raw is None else Link(raw)


def _common_prefix(a: bytes, b: bytes) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# --- diffing ------------------------------------------------------------------------------

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


def diff(blocks: Any, old_root: Any, new_root: Any) -> MstDiff:
    """Return the :class:`MstDiff` from the tree at ``old_root`` to the one at ``new_root``.

    Subtrees with the same CID on both sides are skipped without being fetched, so the cost
    grows with the number of changes, not with the size of the trees.

    Args:
        blocks: anything with ``.get(cid)`` holding the nodes of both trees.
        old_root: the old root CID (CID, str or binary).
        new_root: the new root CID (CID, str or binary).

    Raises:
        MstError: when a node that must be compared is missing or malformed.
    """
    ops, created, deleted = diff_raw(_fetcher(blocks), raw_cid(old_root), raw_cid(new_root))
    return MstDiff(
        record_ops=[(k.decode("ascii"), _cid_or_none(o), _cid_or_none(n)) for k, o, n in ops],
        created_nodes={CID.from_raw(r) for r in created},
        deleted_nodes={CID.from_raw(r) for r in deleted},
    )


def _cid_or_none(raw: bytes | None) -> CID | None:
    return None if raw is None else CID.from_raw(raw)


def diff_raw(fetch: Fetch, old_root: bytes, new_root: bytes,
             key_ranges: Sequence[KeyRange] | None = None, *, checked: bool = False
             ) -> tuple[list[tuple[bytes, bytes | None, bytes | None]], set[bytes], set[bytes]]:
    """The engine behind :func:`diff`, on binary CIDs: (ops, created nodes, deleted nodes).

    Identical subtrees always sit at the same layer (a node's layer follows from its keys),
    so both trees are expanded one layer at a time from the top, and at each layer the
    nodes present on both sides are dropped before anything below them is fetched. Leaves
    of the expanded nodes are then compared as dictionaries.

    ``checked=True`` says both trees were already walked and checked (two opened
    snapshots): their nodes are then decoded without repeating the invariant checks. Blocks
    are still verified against their CIDs by ``fetch``, so a node is the very node that was
    checked.
    """
    ranges = _byte_ranges(key_ranges)
    sides = [_DiffSide(fetch, old_root, checked), _DiffSide(fetch, new_root, checked)]
    layer = max(side.top_layer() for side in sides)
    while any(any(side.frontier.values()) for side in sides) and layer >= -1:
        old_here, new_here = (side.at_layer(layer) for side in sides)
        common = old_here.keys() & new_here.keys()
        for side, here in zip(sides, (old_here, new_here)):
            side.expand({raw: bounds for raw, bounds in here.items() if raw not in common},
                        layer, ranges)
        layer -= 1
    old_side, new_side = sides
    old_leaves, new_leaves = old_side.leaves, new_side.leaves
    changed = {key for key, _ in old_leaves.items() ^ new_leaves.items()}
    ops = [(key, old_leaves.get(key), new_leaves.get(key)) for key in sorted(changed)]
    return ops, new_side.expanded - old_side.expanded, old_side.expanded - new_side.expanded


def _decode_checked(data: bytes) -> tuple[bytes | None, list[tuple[bytes, bytes, bytes | None]]]:
    """Decode a node known to be valid (see :func:`diff_raw`): (left link, entries).

    libipld's decoder (Rust) hands links over as binary CIDs, which is what we use, and is
    what takes ``atrepo.diff`` past 10x atmst (``benchmarks/bench_diff.py``); strictness is
    not needed for a node that was checked before.
    """
    obj = decode_dag_cbor(data)
    entries = []
    prev = b""
    for item in obj["e"]:
        key = prev[:item["p"]] + item["k"]
        entries.append((key, item["v"], item["t"]))
        prev = key
    return obj["l"], entries


class _DiffSide:
    """One tree in a diff: its unexpanded nodes by layer, expanded nodes and leaves."""

    def __init__(self, fetch: Fetch, root: bytes, checked: bool) -> None:
        self.walker = _Walker(fetch)
        self.fetch = fetch
        self.checked = checked
        # layer -> {unexpanded node: (lo, hi, depth)}
        self.frontier: dict[int, dict[bytes, tuple[bytes | None, bytes | None, int]]] = {}
        self.leaves: dict[bytes, bytes] = {}
        self.expanded: set[bytes] = set()
        root_node = self.walker.node(root, None, 0)
        self.walker.visited.discard(root)
        self.frontier[self._root_layer(root_node)] = {root: (None, None, 0)}

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

    def at_layer(self, layer: int) -> dict[bytes, tuple[bytes | None, bytes | None, int]]:
        return self.frontier.pop(layer, {})

    def _entries(self, raw: bytes, layer: int, depth: int
                 ) -> tuple[bytes | None, list[tuple[bytes, bytes, bytes | None]]]:
        if not self.checked:
            node = self.walker.node(raw, None if depth == 0 else layer + 1, depth)
            return node.left, node.entries
        data = self.fetch(raw)
        if data is None:
            raise MstError("missing MST node block", cid=_name(raw),
                           hint="the snapshot's blocks are incomplete")
        return _decode_checked(data)

    def expand(self, nodes: dict[bytes, tuple[bytes | None, bytes | None, int]], layer: int,
               ranges: Sequence[tuple[bytes, bytes]] | None) -> None:
        """Decode ``nodes`` (all at ``layer``): queue their children, keep their leaves."""
        below = self.frontier.setdefault(layer - 1, {})
        leaves = self.leaves
        for raw, (lo, hi, depth) in nodes.items():
            child, entries = self._entries(raw, layer, depth)
            self.expanded.add(raw)
            bound = lo
            for key, value, right in entries:
                if child is not None and (ranges is None or _overlaps(bound, key, ranges)):
                    below[child] = (bound, key, depth + 1)
                if ranges is None or _in_ranges(key, ranges):
                    leaves[key] = value
                bound, child = key, right
            if child is not None and (ranges is None or _overlaps(bound, hi, ranges)):
                below[child] = (bound, hi, depth + 1)
