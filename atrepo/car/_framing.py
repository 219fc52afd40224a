"""CARv1 framing: the header and the ``varint(length) || CID || data`` frame of every block.

Pure functions over a buffer (``bytes``, ``bytearray`` or ``memoryview``), shared by the push
reader (:class:`~atrepo.car.CarReader`) and the block store (:class:`~atrepo.car.CarFile`):
blocks are framed straight into a :class:`~atrepo.car._index.BlockIndex`; see
https://ipld.io/specs/transport/car/carv1/.

Invariants enforced here: varints are minimal and at most :data:`MAX_VARINT_BYTES` long; the
header is at most :data:`MAX_HEADER_SIZE` bytes and a block at most :data:`MAX_BLOCK_SIZE`
(both checked on the length claim, before any byte of the body is waited for); a block holds
a whole CID; every error is a :class:`~atrepo.CarError` naming the CAR offset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _varint
from .._varint import MAX_VARINT_BYTES, Buffer, VarintError
from ..cbor import Link, decode_raw
from ..errors import CarError, DecodeError
from ._index import KEY_BYTES, LEN_BITS, BlockIndex

if TYPE_CHECKING:
    from ..cid import CID

__all__ = ["BLESSED_HEAD", "MAX_BLOCK_SIZE", "MAX_HEADER_SIZE", "MAX_VARINT_BYTES", "Buffer",
           "block_cid", "cid_length", "frame_blocks", "header_end", "parse_header",
           "parse_raw_header", "read_varint"]

MAX_HEADER_SIZE = 1 << 20   # 1 MiB: a header holds a few roots; more is hostile
MAX_BLOCK_SIZE = 1 << 23    # 8 MiB: atproto records are capped far below this
# the 4-byte head of a 36-byte sha2-256 CIDv1 (dag-cbor or raw): almost every block has one
BLESSED_HEAD = (b"\x01\x71\x12\x20", b"\x01\x55\x12\x20")


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Return (value, next position) of the unsigned varint at ``pos``; strict and bounded.

    Raises:
        CarError: the varint is cut off by ``end``, not minimal, or longer than 9 bytes.
    """
    try:
        return _varint.read_varint(buf, pos, end)
    except VarintError as exc:
        raise CarError(exc.message, offset=exc.offset) from exc


def cid_length(buf: Buffer, pos: int, end: int) -> int:
    """Return the byte length of the binary CID at ``pos`` (CIDv1 or CIDv0).

    Raises:
        CarError: the CID is not version 1 (or a bare sha2-256 CIDv0), or runs past ``end``.
    """
    if end - pos >= 36 and buf[pos:pos + 4] in BLESSED_HEAD:
        return 36
    if end - pos >= 34 and buf[pos] == 0x12 and buf[pos + 1] == 0x20:
        return 34  # CIDv0: a bare sha2-256 multihash
    version, p = read_varint(buf, pos, end)
    if version != 1:
        raise CarError("unsupported CID version in block", offset=pos, version=version)
    _codec, p = read_varint(buf, p, end)
    _hash_code, p = read_varint(buf, p, end)
    digest_len, p = read_varint(buf, p, end)
    if p + digest_len > end:
        raise CarError("truncated CID in block", offset=pos)
    return p + digest_len - pos


def block_cid(raw: bytes, offset: int) -> CID:
    """Return the CID object of a block's binary CID ``raw``, which starts at ``offset``.

    The framing only checks a CID's shape; a codec or hash function unknown to
    ``multiformats`` still has no CID object.

    Raises:
        CarError: ``raw`` names an unknown codec or hash function, or is malformed.
    """
    from ..cid import CID

    try:
        return CID.from_raw(raw)
    except DecodeError as exc:
        raise CarError("unsupported CID in block (unknown codec or hash function)",
                       offset=offset, cid=raw.hex()[:100]) from exc


def header_end(buf: Buffer, end: int) -> int | None:
    """Return the offset just past the header, or None while ``buf[:end]`` holds only part.

    Raises:
        CarError: the header's length varint is malformed or claims too many bytes.
    """
    try:
        size, pos = read_varint(buf, 0, end)
    except CarError:
        if end <= MAX_VARINT_BYTES:
            return None  # the length varint itself may still be arriving
        raise
    _check_header_size(size)
    return pos + size if pos + size <= end else None


def parse_header(buf: Buffer, end: int) -> tuple[list[CID], int]:
    """Return (roots, offset of the first block) from the start of a CAR.

    Raises:
        CarError: as :func:`parse_raw_header`.
    """
    from ..cid import CID

    roots, start = parse_raw_header(buf, end)
    return [CID.from_raw(root) for root in roots], start


def parse_raw_header(buf: Buffer, end: int) -> tuple[list[bytes], int]:
    """Return (binary root CIDs, offset of the first block) from the start of a CAR.

    Raises:
        CarError: the header is truncated, oversized, not DAG-CBOR, not version 1, or its
            roots are not a list of CIDs.
    """
    size, pos = read_varint(buf, 0, end)
    _check_header_size(size)
    if pos + size > end:
        raise CarError("truncated CAR header", offset=pos)
    try:
        header = decode_raw(bytes(buf[pos:pos + size]))
    except DecodeError as exc:
        raise CarError("CAR header is not valid DAG-CBOR", offset=pos,
                       detail=exc.message) from exc
    if not isinstance(header, dict) or type(header.get("version")) is not int \
            or header.get("version") != 1:
        version = header.get("version") if isinstance(header, dict) else None
        raise CarError("unsupported CAR header (only CARv1 is supported)", offset=pos,
                       version=version)
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, Link) for r in roots):
        raise CarError("CAR header roots must be a list of CIDs", offset=pos)
    return [bytes(root) for root in roots], pos + size


def _check_header_size(size: int) -> None:
    if size == 0 or size > MAX_HEADER_SIZE:
        raise CarError("CAR header length out of range", offset=0, length=size)


def frame_blocks(buf: Buffer, pos: int, end: int, base: int, index: BlockIndex, *,
                 final: bool) -> int:
    """Frame the whole blocks in ``buf[pos:end]`` into ``index``; return where the rest starts.

    ``base`` is the CAR offset of ``buf[0]``: index entries and errors carry CAR offsets.
    When ``final`` is False a block cut off by ``end`` is left for the next call; when True
    it is an error (a truncated CAR).

    This loop runs once per block of every CAR, so the common case is written out: a one-
    or two-byte length and a 36-byte sha2-256 CIDv1 (told by its 4-byte head), filed
    straight into the index.

    Raises:
        CarError: a malformed or out-of-range length, a bad CID, or (``final``) truncation.
    """
    entries = index.entries
    from_bytes = int.from_bytes
    blessed = BLESSED_HEAD
    added = 0
    while pos < end:
        start = pos
        first = buf[pos]
        if first < 0x80:
            size = first
            pos += 1
        elif pos + 1 < end and buf[pos + 1] < 0x80 and buf[pos + 1]:
            size = (first & 0x7F) | (buf[pos + 1] << 7)
            pos += 2
        else:
            try:
                size, pos = read_varint(buf, pos, end)
            except CarError:
                if not final and end - start <= MAX_VARINT_BYTES:
                    break
                raise CarError("truncated or malformed block length", offset=base + start)
        if size > MAX_BLOCK_SIZE or size == 0:
            raise CarError("block length out of range", offset=base + start, length=size)
        if pos + size > end:
            if not final:
                pos = start
                break
            raise CarError("truncated CAR: block runs past the end", offset=base + start,
                           hint="the download or file was cut short")
        if size > 36 and buf[pos:pos + 4] in blessed:
            data = pos + 36
        else:
            data = pos + cid_length(buf, pos, pos + size)
            if data > pos + size:
                raise CarError("block shorter than its CID", offset=base + start)
        key = from_bytes(buf[data - KEY_BYTES:data], "big")
        packed = ((base + data) << LEN_BITS) | (pos + size - data)
        if key in entries:
            index.add_collision(key, packed)
        else:
            entries[key] = packed
        added += 1
        pos += size
    index.count += added
    return pos
