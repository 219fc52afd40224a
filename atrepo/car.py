"""CAR v1 files: a header (DAG-CBOR ``{"roots": [...], "version": 1}``) then blocks.

Each block is ``varint(len) || CID || data`` (https://ipld.io/specs/transport/car/carv1/).
:func:`read_car` frames the whole input once and keeps only an index, CID -> (offset,
length); block bytes stay where they are: in the caller's ``bytes``, in the file named by a
path, or, for a stream, in memory up to ``mem_limit_mb`` and then in a temporary file. So a
344 MB CAR read with ``mem_limit_mb=64`` never sits in memory.

Checks: varints are minimal and at most 9 bytes; header and blocks are bounded
(:data:`MAX_HEADER_SIZE`, :data:`MAX_BLOCK_SIZE`); a block must hold a whole CID; the input
must end exactly at a block boundary. With ``verify_cids=True`` (the default) every block
handed out by :meth:`CarFile.get` or by iteration is hashed and compared with its CID first,
so no unchecked byte ever reaches a caller; blocks nobody asks for are never hashed.

This is the one building block that reads files: ``read_car(path)`` is its purpose. It never
touches the network.

Not to be confused with :func:`atrepo.read_car`, which returns a verified
:class:`~atrepo.RepoSnapshot` of a repository CAR.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from . import cbor
from .cid import CID, raw_cid
from .errors import CarError, DecodeError

__all__ = ["MAX_BLOCK_SIZE", "MAX_HEADER_SIZE", "CarFile", "read_car"]

MAX_HEADER_SIZE = 1 << 20   # 1 MiB: a header holds a few roots; more is hostile
MAX_BLOCK_SIZE = 1 << 23    # 8 MiB: atproto records are capped far below this
_LEN_BITS = 24              # index values pack (data offset << 24) | data length
_LEN_MASK = (1 << _LEN_BITS) - 1
_KEY_BYTES = 7              # index keys: the last 7 CID bytes, a 2-digit int (see _Index)
_CHUNK = 4 << 20            # read files 4 MiB at a time
_BLESSED_HEAD = (b"\x01\x71\x12\x20", b"\x01\x55\x12\x20")
_sha256 = hashlib.sha256
_SourceT = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


def _varint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """Return (value, next position) of the unsigned varint at ``pos``; strict and bounded."""
    value = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise CarError("truncated varint", offset=start)
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and pos - start > 1:
                raise CarError("non-minimal varint", offset=start)
            return value, pos
        shift += 7
        if shift >= 63:
            raise CarError("varint longer than 9 bytes", offset=start)


def _cid_length(buf: bytes | memoryview, pos: int, end: int) -> int:
    """Return the byte length of the binary CID at ``pos`` (CIDv1 or CIDv0)."""
    if end - pos >= 36 and bytes(buf[pos:pos + 4]) in _BLESSED_HEAD:
        return 36
    if end - pos >= 34 and buf[pos] == 0x12 and buf[pos + 1] == 0x20:
        return 34  # CIDv0: a bare sha2-256 multihash
    version, p = _varint(buf, pos, end)
    if version != 1:
        raise CarError("unsupported CID version in block", offset=pos, version=version)
    _codec, p = _varint(buf, p, end)
    _hash_code, p = _varint(buf, p, end)
    digest_len, p = _varint(buf, p, end)
    if p + digest_len > end:
        raise CarError("truncated CID in block", offset=pos)
    return p + digest_len - pos


class _Index:
    """CID -> packed (data offset, length), compact enough for millions of blocks.

    Keys are the last 7 bytes of the CID as an int (a 32-byte object, against 72 for the
    36-byte CID itself): about 95 bytes per block in all. Two CIDs may share a key (a raw
    and a dag-cbor CID of the same bytes, or a hostile CAR); the entry then holds a list,
    and lookups compare the full CID, which the CAR stores just before each block's data.
    """

    __slots__ = ("entries", "count")

    def __init__(self) -> None:
        self.entries: dict[int, Any] = {}
        self.count = 0

    def add_collision(self, key: int, packed: int) -> None:
        """Add a second block under an existing key (the rare case)."""
        old = self.entries[key]
        if type(old) is list:
            old.append(packed)
        else:
            self.entries[key] = [old, packed]


def _index_blocks(buf: bytes, pos: int, end: int, base: int, index: _Index,
                  final: bool) -> int:
    """Frame blocks in ``buf[pos:end]`` into ``index``; return where the unframed tail starts.

    ``base`` is the file offset of ``buf[0]``. When ``final`` is False a block cut off by
    ``end`` is left for the next call; when True it is an error (truncated CAR).

    This loop runs once per block of every CAR, so the common case is written out: a one-
    or two-byte length and a 36-byte sha-256 CIDv1 (checked by its 4-byte head).
    """
    entries = index.entries
    from_bytes = int.from_bytes
    blessed = _BLESSED_HEAD
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
                size, pos = _varint(buf, pos, end)
            except CarError:
                if not final and end - start < 10:
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
            data = pos + _cid_length(buf, pos, pos + size)
            if data > pos + size:
                raise CarError("block shorter than its CID", offset=base + start)
        key = from_bytes(buf[data - _KEY_BYTES:data], "big")
        packed = ((base + data) << _LEN_BITS) | (pos + size - data)
        if key in entries:
            index.add_collision(key, packed)
        else:
            entries[key] = packed
        added += 1
        pos += size
    index.count += added
    return pos


def _parse_header(buf: bytes | memoryview, end: int) -> tuple[list[CID], int]:
    """Return (roots, offset of the first block) from the start of a CAR."""
    size, pos = _varint(buf, 0, end)
    if size == 0 or size > MAX_HEADER_SIZE:
        raise CarError("CAR header length out of range", offset=0, length=size)
    if pos + size > end:
        raise CarError("truncated CAR header", offset=pos)
    try:
        header = cbor.decode(bytes(buf[pos:pos + size]))
    except DecodeError as exc:
        raise CarError("CAR header is not valid DAG-CBOR", offset=pos,
                       detail=exc.message) from exc
    if not isinstance(header, dict) or type(header.get("version")) is not int \
            or header.get("version") != 1:
        version = header.get("version") if isinstance(header, dict) else None
        raise CarError("unsupported CAR header (only CARv1 is supported)", offset=pos,
                       version=version)
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
        raise CarError("CAR header roots must be a list of CIDs", offset=pos)
    return roots, pos + size


class CarFile:
    """The blocks of one CAR, indexed; block bytes are read on demand.

    ``car.roots`` lists the header's root CIDs; ``car.get(cid)`` returns a block's bytes
    (checked against the CID unless ``verify_cids=False``) or ``None``; ``cid in car`` tests
    presence; iterating yields ``(CID, bytes)`` in file order; ``len(car)`` counts blocks.
    Use as a context manager, or call :meth:`close`, to release a file.

    Build one with :func:`read_car`.
    """

    def __init__(self, roots: list[CID], index: _Index, *, buffer: bytes | mmap.mmap,
                 path: str | None = None, temp: bool = False,
                 verify_cids: bool = True, size: int = 0, mem_limit_mb: float = 64) -> None:
        self.roots = roots
        self.mem_limit_mb = mem_limit_mb
        self.verify_cids = verify_cids
        self.size = size
        self.path = path
        self.inode: int | None = None  # of ``path`` when it was read
        self._index = index
        self._buffer: bytes | mmap.mmap | None = buffer
        self._temp = temp

    # -- access by raw binary CID: what the rest of atrepo uses -------------------------------

    def locate(self, raw: bytes) -> tuple[int, int] | None:
        """Return (offset, length) of the data of the block with binary CID ``raw``."""
        found = self._index.entries.get(int.from_bytes(raw[-_KEY_BYTES:], "big"))
        if found is None:
            return None
        for packed in found if type(found) is list else (found,):
            offset, length = packed >> _LEN_BITS, packed & _LEN_MASK
            if self._read(offset - len(raw), len(raw)) == raw:
                return offset, length
        return None

    def get_raw(self, raw: bytes) -> bytes | None:
        """Return the data of the block with binary CID ``raw``, verified; None if absent.

        This is the hot path of every MST walk, so the common case (one index entry whose
        stored CID matches, verification on) is written out.
        """
        found = self._index.entries.get(int.from_bytes(raw[-_KEY_BYTES:], "big"))
        if found is None:
            return None
        buffer = self._buffer
        if type(found) is int and self.verify_cids and buffer is not None:
            offset = found >> _LEN_BITS
            if buffer[offset - len(raw):offset] == raw:
                data = buffer[offset:offset + (found & _LEN_MASK)]
                if _sha256(data).digest() != raw[-32:]:
                    check_block(raw, data, offset)  # raises, saying why
                return data
        where = self.locate(raw)
        if where is None:
            return None
        data = self._read(*where)
        if self.verify_cids:
            check_block(raw, data, where[0])
        return data

    def extend(self, size: int) -> None:
        """Index the blocks appended to this CAR's file since it was read, up to ``size``.

        For a file that only grows (a store pack): what was indexed stays valid, so only the
        new tail is framed, and the bytes held in memory or mapped grow with it.

        Raises:
            CarError: the CAR is not an open file, or its file was replaced or is shorter.
        """
        if self._buffer is None or self.path is None or self._temp:
            raise CarError("only an open CAR file can be extended", path=self.path)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            stat = os.fstat(fd)
            if stat.st_ino != self.inode or stat.st_size < size:
                raise CarError("CAR file was replaced or is shorter than expected",
                               path=self.path, size=stat.st_size, expected=size)
            _index_range(fd, self.size, size, self._index)
            if type(self._buffer) is bytes and size <= self.mem_limit_mb * (1 << 20):
                self._buffer += _read_range(fd, self.size, size)
            else:
                old, self._buffer = self._buffer, mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                if isinstance(old, mmap.mmap):
                    old.close()
        finally:
            os.close(fd)
        self.size = size

    def reopenable(self) -> bool:
        """Whether ``path`` still holds this CAR's bytes, so another process may reopen it.

        False when the file was deleted or replaced (an evicted store entry): this object
        still reads its own open file or memory, but worker processes must not be sent to
        the path.
        """
        if self.path is None or self.inode is None:
            return False
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return stat.st_ino == self.inode and stat.st_size >= self.size

    @property
    def in_memory(self) -> bool:
        """Whether block bytes are held in memory (else they are mapped from ``path``)."""
        return type(self._buffer) is bytes

    def _read(self, offset: int, length: int) -> bytes:
        if self._buffer is None:
            raise CarError("CAR file is closed", path=self.path)
        return self._buffer[offset:offset + length]

    # -- the public mapping-like surface ------------------------------------------------------

    def get(self, cid: CID | bytes | str) -> bytes | None:
        """Return the bytes of block ``cid`` (a CID, its string, or binary form), or None.

        Raises:
            CarError: when verify_cids is on and the bytes do not match the CID.
        """
        return self.get_raw(raw_cid(cid))

    def __contains__(self, cid: object) -> bool:
        if not isinstance(cid, (CID, bytes, str)):
            return False
        return self.locate(raw_cid(cid)) is not None

    def __len__(self) -> int:
        return self._index.count

    def __iter__(self) -> Iterator[tuple[CID, bytes]]:
        """Yield (CID, bytes) for every block, in file order, each verified."""
        for raw, data, offset in self.iter_raw():
            if self.verify_cids:
                check_block(raw, data, offset)
            yield CID.from_raw(raw), data

    def iter_raw(self) -> Iterator[tuple[bytes, bytes, int]]:
        """Yield (binary CID, data, offset) for every block, in file order, NOT verified.

        For callers that verify only the blocks they keep (with :func:`check_block`).
        """
        located = []
        for found in self._index.entries.values():
            located.extend(found if type(found) is list else [found])
        located.sort()
        for packed in located:
            offset, length = packed >> _LEN_BITS, packed & _LEN_MASK
            cid_len = self._cid_len_before(offset)
            yield self._read(offset - cid_len, cid_len), self._read(offset, length), offset

    def _cid_len_before(self, offset: int) -> int:
        for length in (36, 34):
            head = self._read(offset - length, 4)
            if length == 36 and head in _BLESSED_HEAD:
                return 36
            if length == 34 and head[:2] == b"\x12\x20":
                return 34
        raise CarError("cannot iterate a CAR with non-sha256 CIDs", offset=offset)

    def close(self) -> None:
        """Release the file behind this CAR, if any (a temporary spill file is deleted)."""
        buffer, self._buffer = self._buffer, None
        if isinstance(buffer, mmap.mmap):
            buffer.close()
            if self._temp and self.path:
                os.unlink(self.path)

    def __enter__(self) -> CarFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self._buffer is not None else self.path
        roots = ", ".join(str(r) for r in self.roots)
        return f"<CarFile {len(self)} blocks, {self.size} bytes, roots=[{roots}], in {where}>"


def check_block(raw: bytes, data: bytes, offset: int | None = None) -> None:
    """Raise CarError unless ``data`` hashes to the sha2-256 CID ``raw``."""
    if raw[-34:-32] != b"\x12\x20":
        raise CarError("cannot verify block: CID is not sha2-256", cid=CID.from_raw(raw),
                       offset=offset, hint="pass verify_cids=False to read it unchecked")
    if hashlib.sha256(data).digest() != raw[-32:]:
        raise CarError("block does not match its CID", cid=CID.from_raw(raw), offset=offset,
                       hint="the CAR is corrupt or was tampered with")


def read_car(source: _SourceT, mem_limit_mb: float = 64, *, verify_cids: bool = True,
             length: int | None = None) -> CarFile:
    """Return a :class:`CarFile` for a CAR given as bytes, a path, or a binary file object.

    Args:
        source: the CAR's bytes; a path to it; or an open binary file/stream.
        mem_limit_mb: CAR bytes held in memory at most. A path larger than this is read
            from disk on demand; a stream larger than this is spilled to a temporary file.
        verify_cids: hash every block handed out and compare it with its CID.
        length: for a path only: read just the first ``length`` bytes, the part of a
            file that is being appended to which is known to be complete.

    Raises:
        CarError: on a malformed, truncated or oversized CAR.

    Example:
        >>> car = read_car("examples/data/sample.car")
        >>> len(car.roots)
        1
    """
    limit = int(mem_limit_mb * (1 << 20))
    if isinstance(source, (bytes, bytearray, memoryview)):
        carfile = _from_buffer(bytes(source), verify_cids)
    elif isinstance(source, (str, os.PathLike)):
        carfile = _from_path(os.fspath(source), limit, verify_cids, length=length)
    elif hasattr(source, "read"):
        carfile = _from_stream(source, limit, verify_cids)
    else:
        raise TypeError(f"read_car needs bytes, a path or a binary file, "
                        f"not {type(source).__name__}")
    carfile.mem_limit_mb = mem_limit_mb
    return carfile


def _from_buffer(buf: bytes, verify_cids: bool) -> CarFile:
    roots, pos = _parse_header(buf, len(buf))
    index = _Index()
    _index_blocks(buf, pos, len(buf), 0, index, final=True)
    return CarFile(roots, index, buffer=buf, verify_cids=verify_cids, size=len(buf))


def _from_path(path: str, limit: int, verify_cids: bool, *, temp: bool = False,
               length: int | None = None) -> CarFile:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise CarError("cannot open CAR file", path=path, detail=exc.strerror) from exc
    try:
        size = os.fstat(fd).st_size
        if length is not None:
            if length > size:
                raise CarError("CAR file is shorter than expected", path=path, size=size,
                               expected=length)
            size = length
        if size <= limit:
            car = _from_buffer(_read_range(fd, 0, size), verify_cids)
            if temp:
                os.unlink(path)
            else:
                car.path, car.inode = path, os.fstat(fd).st_ino
            return car
        roots, index = _index_fd(fd, size)
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        inode = os.fstat(fd).st_ino
    except BaseException:
        if temp:
            os.unlink(path)
        raise
    finally:
        os.close(fd)
    car = CarFile(roots, index, buffer=mapped, path=path, temp=temp, verify_cids=verify_cids,
                  size=size)
    car.inode = inode
    return car


def _read_range(fd: int, start: int, end: int) -> bytes:
    parts = []
    offset = start
    while offset < end:
        part = os.pread(fd, min(_CHUNK, end - offset), offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
    return b"".join(parts)


def _index_fd(fd: int, size: int) -> tuple[list[CID], _Index]:
    """Frame a CAR file chunk by chunk, holding at most one chunk (plus one block) in memory."""
    head = os.pread(fd, min(size, MAX_HEADER_SIZE + 10), 0)
    roots, pos = _parse_header(head, len(head))
    index = _Index()
    _index_range(fd, pos, size, index)
    return roots, index


def _index_range(fd: int, pos: int, end: int, index: _Index) -> None:
    """Frame the blocks in bytes [pos, end) of a CAR file into ``index``, chunk by chunk."""
    while pos < end:
        want = max(_CHUNK, MAX_BLOCK_SIZE + 16) if end - pos > _CHUNK else end - pos
        chunk = os.pread(fd, min(want, end - pos), pos)
        final = pos + len(chunk) >= end
        done = _index_blocks(chunk, 0, len(chunk), pos, index, final=final)
        if done == 0 and not final:
            raise CarError("block too large to frame", offset=pos)
        pos += done


def _from_stream(stream: IO[bytes], limit: int, verify_cids: bool) -> CarFile:
    """Read a stream into memory, or, once past ``limit`` bytes, into a temporary file."""
    held: list[bytes] = []
    total = 0
    while total <= limit:
        part = stream.read(_CHUNK)
        if not part:
            return _from_buffer(b"".join(held), verify_cids)
        held.append(part)
        total += len(part)
    spill = tempfile.NamedTemporaryFile(prefix="atrepo-", suffix=".car", delete=False)
    with spill:
        for part in held:
            spill.write(part)
        held.clear()
        while part := stream.read(_CHUNK):
            spill.write(part)
    return _from_path(spill.name, 0, verify_cids, temp=True)
