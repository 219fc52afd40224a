"""Typed values parsed at atrepo's boundary: repository commits.

A :class:`Commit` is a frozen, slotted dataclass rather than a pydantic model: it is
parsed from a strictly checked DAG-CBOR block (no coercion wanted), and reading a CAR
offline should not pay pydantic's import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import cbor
from .cbor import Link
from .cid import cid_text
from .errors import CarError, DecodeError

__all__ = ["Commit", "parse_commit"]


@dataclass(frozen=True, slots=True)
class Commit:
    """A signed repository commit (https://atproto.com/specs/repository#commit-objects).

    Attributes:
        did: the account the repository belongs to.
        version: 3 for current repositories (2 for older ones).
        data: CID of the MST root, as a string.
        rev: the revision, a TID that increases with every commit.
        prev: CID of the previous commit (usually None in version 3).
        sig: the 64-byte compact ECDSA signature over the unsigned commit.
    """

    did: str
    version: int
    data: str
    rev: str
    prev: str | None
    sig: bytes

    def __repr__(self) -> str:
        return f"Commit(did={self.did!r}, rev={self.rev!r}, data={self.data!r})"


def parse_commit(data: bytes, *, cid: object = None) -> tuple[Commit, bytes]:
    """Return the :class:`Commit` in a commit block, and the bytes its signature covers.

    The signed bytes are the block re-encoded without ``sig`` (exactly the fields the
    commit has, so version 2 commits verify too).

    Raises:
        CarError: when the block is not a well-formed commit (names ``cid``).
    """
    try:
        obj = cbor.decode_raw(data)  # links stay binary: no CID object for a read to build
    except DecodeError as exc:
        raise CarError("commit block is not valid DAG-CBOR", cid=cid,
                       detail=exc.message) from exc
    if not isinstance(obj, dict):
        raise CarError("commit block is not a map", cid=cid)
    expected = {"did", "version", "data", "rev", "prev", "sig"}
    if not {"did", "version", "data", "sig"} <= obj.keys() or not obj.keys() <= expected:
        raise CarError("commit block has unexpected fields", cid=cid,
                       fields=",".join(sorted(obj)))
    data_cid, prev = obj.get("data"), obj.get("prev")
    if not isinstance(data_cid, Link) or (prev is not None and not isinstance(prev, Link)):
        raise CarError("commit 'data'/'prev' must be CID links", cid=cid)
    did, version, rev, sig = obj["did"], obj["version"], obj.get("rev", ""), obj["sig"]
    if not (type(did) is str and type(rev) is str and type(sig) is bytes):
        raise CarError("commit 'did'/'rev' must be strings and 'sig' bytes", cid=cid)
    if version not in (2, 3):
        raise CarError("unsupported commit version", cid=cid, version=version)
    commit = Commit(did=did, version=version, data=cid_text(data_cid), rev=rev,
                    prev=None if prev is None else cid_text(prev), sig=sig)
    unsigned = cbor.encode({key: value for key, value in obj.items() if key != "sig"})
    return commit, unsigned
