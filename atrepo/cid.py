"""Content identifiers: the :class:`CID` value type, fast string forms, and :func:`cid_for`.

atproto uses one "blessed" CID form almost everywhere: CIDv1, codec ``dag-cbor`` (0x71) for
records, MST nodes and commits, or ``raw`` (0x55) for blobs, and a sha2-256 multihash. In
binary such a CID is always 36 bytes: ``01 71|55 12 20`` followed by the 32-byte digest, and
its string form is ``"b"`` + lowercase unpadded base32 (``bafyrei...`` / ``bafkrei...``).
See https://atproto.com/specs/data-model#link-and-cid-formats.

:class:`CID` subclasses ``multiformats.CID`` (so ``isinstance(x, multiformats.CID)`` holds
and its API works) but builds instances directly from the 36 bytes and prints base32 by
default; multiformats' own constructor takes ~185 µs per CID, which would dominate reading a
million-record repository. Other CID forms fall back to multiformats.

Hot paths inside atrepo never build CID objects: they pass the raw 36 bytes around and
turn them into strings with :func:`cid_str`, which packs the 5-bit groups of a CID with a
few big-integer operations instead of a per-character loop (about 2 µs instead of 4.5 µs
for ``base64.b32encode``), and with :func:`cid_strs` for many at once (about 1 µs each).

This module does not import multiformats (45-75 ms): the :class:`CID` class lives in
:mod:`atrepo._cidclass`, loaded on the first use of ``atrepo.cid.CID`` or :func:`cid_for`.
Everything else here works on binary CIDs and strings alone, and names other CID forms
(a CIDv0, another hash) through the class only when it meets one.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

from ._text import preview
from .errors import DecodeError

if TYPE_CHECKING:
    import multiformats

    from ._cidclass import CID

__all__ = ["CID", "CODEC_DAG_CBOR", "CODEC_RAW", "MAX_CID_CHARS", "cid_for", "cid_str", "cid_strs",
           "cid_text", "is_blessed", "is_cid", "parse_blessed", "raw_cid"]

CODEC_DAG_CBOR = 0x71
CODEC_RAW = 0x55
_PREFIX_DAG_CBOR = b"\x01\x71\x12\x20"
_PREFIX_RAW = b"\x01\x55\x12\x20"
_BLESSED_LEN = 36
_B32_CHARS = 58  # ceil(36 * 8 / 5)
# Longest CID string decoded: multiformats decodes base58 and other non-power-of-two bases
# with big-integer arithmetic, quadratic in the length (300,000 characters took 18 s). A
# blessed CID is 59 characters; 1,024 leaves room for any other hash or an inline digest.
MAX_CID_CHARS = 1024

_ALPHABET = b"abcdefghijklmnopqrstuvwxyz234567"
_FIVE_BITS_TO_CHAR = bytes(_ALPHABET[i & 31] for i in range(256))


def _spread_masks(groups: int, repeat: int) -> list[tuple[int, int, int]]:
    """Masks that move 5-bit groups of a ``groups*5``-bit number into one byte each.

    Each stage splits every block of ``m`` groups in two and shifts the upper half left, so
    after log2(groups) stages every group sits in the low bits of its own byte. ``repeat``
    tiles the masks so that many CIDs, each in its own ``groups``-byte slot, move at once.
    """
    stages = []
    m = groups
    while m > 1:
        half = m // 2
        width = m * 8
        low = high = 0
        for block in range(groups // m):
            base = block * width
            low |= ((1 << (half * 5)) - 1) << base
            high |= ((1 << (half * 5)) - 1) << (base + half * 5)
        stages.append((low, high, half * 3))
        m = half
    if repeat == 1:
        return stages
    slot = groups * 8
    return [(_tile(low, slot, repeat), _tile(high, slot, repeat), shift)
            for low, high, shift in stages]


def _tile(mask: int, slot_bits: int, repeat: int) -> int:
    pattern = mask.to_bytes(slot_bits // 8, "big")
    return int.from_bytes(pattern * repeat, "big")


_MASKS_ONE = _spread_masks(64, 1)
_BATCH = 256
_MASKS_BATCH = _spread_masks(64, _BATCH)
_PAD_HEAD = b"\x00" * 24  # a 36-byte CID + 4 pad bytes = 40 bytes = 64 groups, in a 64-byte slot
_PAD_TAIL = b"\x00" * 4


def raw_cid(cid: multiformats.CID | bytes | bytearray | memoryview | str) -> bytes:
    """The binary form of a CID given as a CID, its string, or already binary.

    Raises:
        DecodeError: for a malformed CID string, or a value of another type (which
            ``bytes()`` would turn into something else: an int into that many zero bytes).
    """
    if type(cid) is bytes:
        return cid
    if isinstance(cid, str):
        raw = parse_blessed(cid)
        return raw if raw is not None else bytes(_cid_class().decode(cid))
    if isinstance(cid, (bytes, bytearray, memoryview)) or is_cid(cid):
        return bytes(cid)
    raise DecodeError("CID is neither a string nor bytes", type=type(cid).__name__)


def is_cid(value: object) -> TypeGuard[multiformats.CID]:
    """Whether ``value`` is a CID object (:class:`CID` or any ``multiformats.CID``).

    Answered without importing multiformats: no such object exists before it is imported.
    """
    multiformats = sys.modules.get("multiformats")
    return multiformats is not None and isinstance(value, multiformats.CID)


def parse_blessed(text: str) -> bytes | None:
    """The binary form of a blessed CID string (``"bafyrei..."``), or None for another form.

    Raises:
        DecodeError: a string of a blessed CID's length and alphabet that is not base32.
    """
    if not (text.startswith("b") and len(text) == _B32_CHARS + 1 and text.islower()):
        return None
    try:
        raw = base64.b32decode(text[1:].upper() + "======")
    except ValueError as exc:
        raise DecodeError("invalid CID string", value=text) from exc
    return raw if is_blessed(raw) else None


def cid_text(raw: bytes) -> str:
    """Return the string form of a binary CID as ``str(CID)`` gives it, for any bytes.

    A blessed CID is printed here; another form (a CIDv0, another hash) through the
    :class:`CID` class, and bytes that are no CID as their hex, so that naming hostile
    input in an error never fails.
    """
    if is_blessed(raw):
        return cid_str(raw)
    try:
        return str(_cid_class().from_raw(raw))
    except DecodeError:
        return raw.hex()[:100]


def cid_str(raw: bytes) -> str:
    """Return the base32 multibase string (``"bafy..."``) of a binary CID.

    Args:
        raw: the CID's binary form (without the 0x00 multibase prefix of DAG-CBOR tag 42).
    """
    if len(raw) != _BLESSED_LEN:
        return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")
    x = int.from_bytes(raw, "big") << 32
    for low, high, shift in _MASKS_ONE:
        x = (x & low) | ((x & high) << shift)
    return "b" + x.to_bytes(64, "big").translate(_FIVE_BITS_TO_CHAR)[:_B32_CHARS].decode("ascii")


def cid_strs(raws: Sequence[bytes]) -> list[str]:
    """Return :func:`cid_str` of each binary CID, computed in batches of big-integer work.

    About 1 µs per CID instead of 2 µs: a batch of CIDs is laid out as one integer and the
    same mask-and-shift stages run over all of them together.
    """
    out: list[str] = []
    for start in range(0, len(raws), _BATCH):
        chunk = raws[start:start + _BATCH]
        if any(len(r) != _BLESSED_LEN for r in chunk):
            out.extend(cid_str(r) for r in chunk)
            continue
        masks = _MASKS_BATCH if len(chunk) == _BATCH else _spread_masks(64, len(chunk))
        joined = _PAD_HEAD + (_PAD_TAIL + _PAD_HEAD).join(chunk) + _PAD_TAIL
        x = int.from_bytes(joined, "big")
        for low, high, shift in masks:
            x = (x & low) | ((x & high) << shift)
        text = x.to_bytes(64 * len(chunk), "big").translate(_FIVE_BITS_TO_CHAR).decode("ascii")
        out.extend(["b" + text[i:i + _B32_CHARS] for i in range(0, len(text), 64)])
    return out


def is_blessed(raw: bytes) -> bool:
    """Whether a binary CID is CIDv1 + dag-cbor or raw + sha2-256, as atproto requires."""
    return len(raw) == _BLESSED_LEN and (raw[:4] == _PREFIX_DAG_CBOR or raw[:4] == _PREFIX_RAW)


def cid_for(data: bytes | bytearray | memoryview, codec: str = "dag-cbor") -> CID:
    """Return the sha2-256 CIDv1 of ``data`` under ``codec`` ("dag-cbor" or "raw").

    Raises:
        DecodeError: when ``data`` is not bytes-like or ``codec`` is another codec.

    Example:
        >>> str(cid_for(b"hello", codec="raw"))
        'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("cid_for needs bytes", type=type(data).__name__)
    if codec == "dag-cbor":
        prefix = _PREFIX_DAG_CBOR
    elif codec == "raw":
        prefix = _PREFIX_RAW
    else:
        raise DecodeError("unsupported codec for cid_for", codec=preview(codec),
                          hint="atproto uses 'dag-cbor' or 'raw'")
    return _cid_class()._from_blessed(prefix + hashlib.sha256(data).digest())


def _cid_class() -> type[CID]:
    """The :class:`CID` class, importing it (and multiformats) on first use."""
    from ._cidclass import CID

    return CID


def __getattr__(name: str) -> Any:
    # ``CID`` is imported on first use (see the module docstring); it then stays a global
    if name == "CID":
        cls = _cid_class()
        globals()["CID"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
