"""Checking a block against its CID: the whole multihash, code and digest.

A CID names its block by a multihash, ``varint(code) || varint(length) || digest``. Only two
codes can be checked: sha2-256 (0x12, a 32-byte digest; every atproto CID) and identity
(0x00, the digest *is* the block). Reading just the last 32 bytes of a CID as a sha2-256
digest is not enough: an identity CID whose inline bytes end in ``12 20 <sha256(block)>``
would pass while naming other content (issue 13, item 15).
"""

from __future__ import annotations

import hashlib

from ..cid import cid_text
from ..errors import CarError
from ._framing import read_varint

__all__ = ["SHA256_HEADS", "check_block"]

_SHA2_256 = 0x12
_IDENTITY = 0x00
# the 4-byte heads of every 36-byte sha2-256 CIDv1 whose codec fits one varint byte: a CID
# of 36 bytes starting so is that digest and nothing else
SHA256_HEADS = frozenset(bytes([1, codec, _SHA2_256, 32]) for codec in range(0x80))


def check_block(raw: bytes, data: bytes, offset: int | None = None) -> None:
    """Raise CarError unless ``data`` is the block the binary CID ``raw`` names.

    Args:
        raw: the binary CID (CIDv1, or a CIDv0 bare sha2-256 multihash).
        data: the block's bytes.
        offset: where the block's data starts in the CAR, for the error.

    Raises:
        CarError: the bytes do not match, or the CID's hash cannot be checked.
    """
    code, digest = _multihash(raw, offset)
    if code == _SHA2_256 and len(digest) == 32:
        matches = hashlib.sha256(data).digest() == digest
    elif code == _IDENTITY:
        matches = digest == data
    else:
        raise CarError("cannot verify block: CID is not sha2-256", cid=cid_text(raw),
                       offset=offset, hint="pass verify_cids=False to read it unchecked")
    if not matches:
        raise CarError("block does not match its CID", cid=cid_text(raw), offset=offset,
                       hint="the CAR is corrupt or was tampered with")


def _multihash(raw: bytes, offset: int | None) -> tuple[int, bytes]:
    """(hash code, digest) of a binary CID; CarError when it is not a whole CID."""
    if len(raw) == 34 and raw[:2] == b"\x12\x20":
        return _SHA2_256, raw[2:]  # CIDv0
    try:
        version, pos = read_varint(raw, 0, len(raw))
        _codec, pos = read_varint(raw, pos, len(raw))
        code, pos = read_varint(raw, pos, len(raw))
        length, pos = read_varint(raw, pos, len(raw))
    except CarError as exc:
        raise CarError("cannot verify block: malformed CID", cid=raw.hex()[:100],
                       offset=offset) from exc
    if version != 1 or pos + length != len(raw):
        raise CarError("cannot verify block: malformed CID", cid=raw.hex()[:100],
                       offset=offset)
    return code, raw[pos:]
