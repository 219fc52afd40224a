"""The MST node codec: key heights, and nodes to and from DAG-CBOR.

A node is ``{"l": CID | null, "e": [{"p": int, "k": bytes, "v": CID, "t": CID | null}, ...]}``.
Entry keys are prefix-compressed against the previous key in the same node (``key =
prev[:p] + k``, the first entry has ``p = 0``); ``l`` is the subtree left of the first entry
and each ``t`` the subtree right of its entry (https://atproto.com/specs/repository).

:func:`decode_node` checks everything one node can show on its own: the shape, canonical
prefix compression, keys that are record paths ``collection/rkey`` (characters
``A-Za-z0-9_~:.-``, at most :data:`MAX_KEY_LENGTH` bytes), at most :data:`MAX_ENTRIES`
entries, and one height for all its keys (the node's layer). :func:`decode_checked` skips
those checks, for nodes known to have passed them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cbor2 import CBORTag
from libipld import decode_dag_cbor

from .. import cbor
from ..cbor import CBOR_ERRORS, Link
from ..cid import CID
from ..errors import DecodeError, MstError

__all__ = ["MAX_ENTRIES", "MAX_KEY_LENGTH", "Entry", "Node", "common_prefix", "decode_checked",
           "decode_node", "encode_node", "height", "key_height", "name", "show"]

MAX_ENTRIES = 4096      # real nodes hold a handful of entries (fanout 4)
MAX_KEY_LENGTH = 1024   # the repository spec caps record paths at 1024 bytes

# a record path "collection/rkey": one "/", both sides non-empty, the reference's
# isValidMstKey character set on each side
_KEY_FORM = re.compile(rb"[A-Za-z0-9_~:.-]+/[A-Za-z0-9_~:.-]+").fullmatch
Entry = tuple[bytes, bytes, "bytes | None"]  # (full key, value CID, right subtree CID)


def key_height(key: str | bytes) -> int:
    """Return the MST layer of ``key``: leading zero bits of sha256(key), divided by 2.

    Example:
        >>> key_height("blue"), key_height("app.bsky.feed.post/9adeb165882c")
        (1, 8)
    """
    return height(key.encode() if isinstance(key, str) else key)


def height(key: bytes) -> int:
    """:func:`key_height` of a key already in bytes."""
    first = hashlib.sha256(key).digest()
    if first[0] >= 64:  # three quarters of all keys: no leading zero pair at all
        return 0
    return (256 - int.from_bytes(first, "big").bit_length()) // 2


@dataclass(frozen=True, slots=True)
class Node:
    """A decoded MST node: its layer (None when it has no entries), left link and entries."""

    layer: int | None
    left: bytes | None
    entries: list[Entry]


def decode_node(raw_cid: bytes, data: bytes) -> Node:
    """Return the checked :class:`Node` in ``data``; ``raw_cid`` only names it in errors.

    This runs once per node of every repository read, so the entry loop is written out
    flat: cbor2 returns links as ``CBORTag(42, b"\\x00" + cid)`` and they are checked here.

    Raises:
        MstError: the node is not DAG-CBOR, has the wrong shape, or breaks an invariant of
            the module docstring.
    """
    try:
        obj = cbor.loads(data)
        items, left = obj["e"], obj["l"]
    except (*CBOR_ERRORS, KeyError) as exc:
        raise MstError("MST node is not a valid DAG-CBOR node", cid=name(raw_cid),
                       detail=str(exc)[:100]) from exc
    if type(obj) is not dict or len(obj) != 2 or type(items) is not list:
        raise MstError("malformed MST node (expected keys 'e' and 'l')", cid=name(raw_cid))
    if len(items) > MAX_ENTRIES:
        raise MstError("MST node has too many entries", cid=name(raw_cid), entries=len(items))
    entries = []
    prev = b""
    layer = None
    sha256 = hashlib.sha256
    for item in items:
        try:
            prefix, suffix, value, right = item["p"], item["k"], item["v"], item["t"]
        except (KeyError, TypeError) as exc:
            raise MstError("malformed MST entry (expected keys p, k, v, t)",
                           cid=name(raw_cid)) from exc
        if len(item) != 4 or type(prefix) is not int or type(suffix) is not bytes:
            raise MstError("malformed MST entry", cid=name(raw_cid))
        if prefix < 0:
            raise MstError("malformed MST entry (negative prefix)", cid=name(raw_cid), p=prefix)
        if prefix:
            # the shared prefix must be the whole common prefix (canonical form)
            if prefix > len(prev) or (prefix < len(prev) and suffix[:1] == prev[prefix:prefix + 1]):
                raise MstError("non-canonical MST prefix compression", cid=name(raw_cid),
                               p=prefix)
            key = prev[:prefix] + suffix
        elif prev and suffix[:1] == prev[:1]:
            raise MstError("non-canonical MST prefix compression", cid=name(raw_cid), p=prefix)
        else:
            key = suffix
        if len(key) > MAX_KEY_LENGTH or not _KEY_FORM(key):
            raise MstError("invalid MST key", cid=name(raw_cid), key=show(key))
        digest = sha256(key).digest()
        level = 0 if digest[0] >= 64 else (256 - int.from_bytes(digest, "big").bit_length()) // 2
        if level != layer:
            if layer is not None:
                raise MstError("MST key height does not match its node's layer",
                               cid=name(raw_cid), key=show(key), height=level, layer=layer)
            layer = level
        if type(value) is CBORTag and value.tag == 42 and type(link := value.value) is bytes \
                and link[:1] == b"\x00" and len(link) > 1:
            value = link[1:]
        else:
            value = _link(raw_cid, value)
        entries.append((key, value, None if right is None else _link(raw_cid, right)))
        prev = key
    return Node(layer, None if left is None else _link(raw_cid, left), entries)


def decode_checked(data: bytes) -> tuple[bytes | None, list[Entry]]:
    """Decode a node known to be valid: (left link, entries), without the checks.

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


def encode_node(left: bytes | None, entries: list[Entry]) -> bytes:
    """Return the canonical DAG-CBOR of a node with full keys (prefix compression applied)."""
    encoded = []
    prev = b""
    for key, value, right in entries:
        prefix = common_prefix(prev, key)
        encoded.append({"k": key[prefix:], "p": prefix, "t": _as_link(right), "v": Link(value)})
        prev = key
    return cbor.encode({"e": encoded, "l": _as_link(left)})


def common_prefix(a: bytes, b: bytes) -> int:
    """Return how many leading bytes ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _as_link(raw: bytes | None) -> Link | None:
    return None if raw is None else Link(raw)


def _link(node: bytes, tag: Any) -> bytes:
    """Binary CID of a tag-42 link, checked; MstError naming ``node`` otherwise."""
    if type(tag) is CBORTag and tag.tag == 42:
        value = tag.value
        if type(value) is bytes and len(value) > 1 and value[0] == 0:
            return value[1:]
    raise MstError("malformed link in MST node", cid=name(node))


def name(raw: bytes) -> str:
    """A node's CID as a string, for errors: "?" when unknown, its hex when not a CID.

    A link read from a hostile node may be any bytes; naming it must not fail.
    """
    if not raw:
        return "?"
    try:
        return str(CID.from_raw(raw))
    except DecodeError:
        return raw.hex()[:100]


def show(key: bytes) -> str:
    """A key for an error message: at most 80 bytes, non-printable bytes escaped."""
    return repr(key[:80])[2:-1]
