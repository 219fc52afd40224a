"""The :class:`~atrepo.CID` class: multiformats' ``CID``, built straight from the 36 bytes.

Kept apart from :mod:`atrepo.cid` because it subclasses ``multiformats.CID``, and importing
multiformats costs 45-75 ms (its codec and base tables): :mod:`atrepo.cid` loads this module
on the first use of ``CID`` or :func:`~atrepo.cid_for`, so a read that keeps its CIDs binary
until a user asks for one never imports multiformats. ``atrepo.cid.CID`` is this class.
"""

from __future__ import annotations

from typing import Any

import multiformats
from multiformats import multibase, multicodec, multihash

from ._text import preview
from .cid import CODEC_DAG_CBOR, CODEC_RAW, MAX_CID_CHARS, cid_str, is_blessed, parse_blessed
from .errors import DecodeError

__all__ = ["CID"]

# what multiformats raises on malformed input (IndexError: empty after the multibase prefix)
_MULTIFORMATS_ERRORS = (ValueError, KeyError, IndexError, TypeError)

_BASE32 = multibase.get("base32")
_SHA256 = multihash.get("sha2-256")
_CODECS = {CODEC_DAG_CBOR: multicodec.get("dag-cbor"), CODEC_RAW: multicodec.get("raw")}


class CID(multiformats.CID):
    """A content identifier: multiformats' ``CID`` that prints as base32 and builds fast.

    ``CID.decode(str | bytes)``, ``str(cid)`` (``"bafy..."``), ``bytes(cid)`` (binary form),
    ``hash``/``==`` (by binary form) all work as in multiformats.

    Example:
        >>> from atrepo.cid import cid_for
        >>> c = cid_for(b"\\xa0")
        >>> str(c)
        'bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua'
        >>> CID.decode(str(c)) == c
        True
    """

    # the public home of the class, as numpy names its own (``repr(atrepo.CID)``, help, docs)
    __module__ = "atrepo.cid"
    __slots__ = ("_raw",)
    _raw: bytes

    @staticmethod
    def decode(cid: str | bytes | bytearray | memoryview) -> CID:
        """Return the CID for a binary CID or a multibase string.

        Raises:
            DecodeError: when the input is not a valid CID, is longer than
                :data:`~atrepo.cid.MAX_CID_CHARS` characters, or is neither text nor bytes.
        """
        if isinstance(cid, str):
            return CID._from_str(cid)
        if not isinstance(cid, (bytes, bytearray, memoryview)):
            raise DecodeError("CID is neither a string nor bytes", type=type(cid).__name__)
        raw = bytes(cid)
        if is_blessed(raw):
            return CID._from_blessed(raw)
        return CID._from_multiformats(raw)

    @staticmethod
    def from_raw(raw: bytes) -> CID:
        """Return the CID for its binary form, trusting a well-formed blessed CID."""
        if is_blessed(raw):
            return CID._from_blessed(raw)
        return CID._from_multiformats(raw)

    @staticmethod
    def _from_blessed(raw: bytes) -> CID:
        obj = object.__new__(CID)
        obj._base = _BASE32
        obj._version = 1
        obj._codec = _CODECS[raw[1]]
        obj._hashfun = _SHA256
        obj._digest = raw[2:]
        obj._raw = raw
        return obj

    @staticmethod
    def _from_str(text: str) -> CID:
        raw = parse_blessed(text)
        if raw is not None:
            return CID._from_blessed(raw)
        if len(text) > MAX_CID_CHARS:
            raise DecodeError("CID string too long", length=len(text), max_chars=MAX_CID_CHARS,
                              value=preview(text))
        try:
            parsed = multiformats.CID.decode(text)
        except _MULTIFORMATS_ERRORS as exc:
            raise DecodeError("invalid CID string", value=preview(text)) from exc
        return CID._from_multiformats(bytes(parsed))

    @staticmethod
    def _from_multiformats(raw: bytes) -> CID:
        try:
            parsed = multiformats.CID.decode(raw)
        except _MULTIFORMATS_ERRORS as exc:
            raise DecodeError("invalid binary CID", value=raw[:64].hex()) from exc
        obj = object.__new__(CID)
        obj._base = _BASE32 if parsed.version == 1 else parsed.base
        obj._version = parsed.version
        obj._codec = parsed.codec
        obj._hashfun = parsed.hashfun
        obj._digest = parsed.digest
        obj._raw = bytes(parsed)
        return obj

    def __bytes__(self) -> bytes:
        return self._raw

    def __str__(self) -> str:
        if self._version == 0:
            return multiformats.CID.__str__(self)
        return cid_str(self._raw)

    def __repr__(self) -> str:
        return f"CID({str(self)!r})"

    # equal to multiformats' CID of the same bytes, so the hash must match theirs too
    __hash__ = multiformats.CID.__hash__

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, CID):
            return self._raw == other._raw
        if isinstance(other, multiformats.CID):
            return self._raw == bytes(other)
        return NotImplemented

    def __reduce__(self) -> tuple[Any, ...]:
        return (CID.from_raw, (self._raw,))
