"""The blocks of one CAR, indexed where they lie: in memory, in a mapped file, or spilled.

:func:`read_car` frames the whole input once and keeps only an index, CID -> (offset,
length); block bytes stay where they are: in the caller's ``bytes``, in the file named by a
path, or, for a stream, in memory up to ``mem_limit_mb`` and then in a temporary file. So a
344 MB CAR read with ``mem_limit_mb=64`` never sits in memory.

With ``verify_cids=True`` (the default) every block handed out by :meth:`CarFile.get` or by
iteration is hashed and compared with its CID first, so no unchecked byte ever reaches a
caller; blocks nobody asks for are never hashed.

This is the one building block that reads files: ``read_car(path)`` is its purpose. It never
touches the network.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING

from .. import _accel
from ..cid import cid_text, is_cid, raw_cid
from ..errors import CarError
from ._files import CHUNK, index_fd, open_file, read_range
from ._framing import frame_blocks, parse_raw_header, read_varint
from ._index import KEY_BYTES, LEN_BITS, LEN_MASK, BlockIndex
from ._pack import extend_index
from ._verify import SHA256_HEADS, check_block

if TYPE_CHECKING:
    from ..cid import CID

__all__ = ["CarFile", "Source", "read_car"]

_sha256 = hashlib.sha256
Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


class CarFile:
    """The blocks of one CAR, indexed; block bytes are read on demand.

    ``car.roots`` lists the header's root CIDs (``raw_roots`` their binary forms, which is
    all a read uses: the CID objects are made when ``roots`` is first asked for, so reading a
    repository never imports multiformats); ``car.get(cid)`` returns a block's bytes
    (checked against the CID unless ``verify_cids=False``) or ``None``; ``cid in car`` tests
    presence; iterating yields ``(CID, bytes)`` in file order; ``len(car)`` counts blocks.
    Use as a context manager, or call :meth:`close`, to release a file.

    Build one with :func:`read_car`.
    """

    def __init__(self, roots: Sequence[bytes], index: BlockIndex, *, buffer: bytes | mmap.mmap,
                 path: str | None = None, temp: bool = False,
                 verify_cids: bool = True, size: int = 0, mem_limit_mb: float = 64) -> None:
        self.raw_roots = list(roots)
        self._roots: list[CID] | None = None
        self.mem_limit_mb = mem_limit_mb
        self.verify_cids = verify_cids
        self.size = size
        self.path = path
        self.inode: int | None = None  # of ``path`` when it was read
        self._index = index
        self._buffer: bytes | mmap.mmap | None = buffer
        self._temp = temp

    @property
    def roots(self) -> list[CID]:
        """The header's root CIDs, as :class:`~atrepo.CID` objects."""
        if self._roots is None:
            from ..cid import CID

            self._roots = [CID.from_raw(raw) for raw in self.raw_roots]
        return self._roots

    # -- access by raw binary CID: what the rest of atrepo uses -------------------------------

    def locate(self, raw: bytes) -> tuple[int, int] | None:
        """Return (offset, length) of the data of the block with binary CID ``raw``."""
        for offset, length in self._index.candidates(raw):
            if self._read(offset - len(raw), len(raw)) == raw:
                return offset, length
        return None

    def get_raw(self, raw: bytes) -> bytes | None:
        """Return the data of the block with binary CID ``raw``, verified; None if absent.

        This is the hot path of every MST walk, so the common case (one index entry whose
        stored CID matches, a sha2-256 CIDv1, verification on) is written out.
        """
        found = self._index.entries.get(int.from_bytes(raw[-KEY_BYTES:], "big"))
        if found is None:
            return None
        buffer = self._buffer
        if type(found) is int and self.verify_cids and buffer is not None:
            offset = found >> LEN_BITS
            if buffer[offset - len(raw):offset] == raw:
                data = buffer[offset:offset + (found & LEN_MASK)]
                if len(raw) != 36 or raw[:4] not in SHA256_HEADS \
                        or _sha256(data).digest() != raw[4:]:
                    check_block(raw, data, offset)  # another hash, or raises saying why
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

        For a file that only grows (a store pack); see :mod:`atrepo.car._pack`.

        Raises:
            CarError: the CAR is not an open file, or its file was replaced or is shorter.
        """
        if self._buffer is None or self.path is None or self._temp:
            raise CarError("only an open CAR file can be extended", path=self.path)
        self._buffer = extend_index(self.path, self.inode, self._index, self._buffer,
                                    self.size, size, self.mem_limit_mb)
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
        if not isinstance(cid, (bytes, str)) and not is_cid(cid):
            return False
        return self.locate(raw_cid(cid)) is not None

    def __len__(self) -> int:
        return self._index.count

    def __iter__(self) -> Iterator[tuple[CID, bytes]]:
        """Yield (CID, bytes) for every block, in file order, each verified."""
        from ..cid import CID

        for raw, data, offset in self.iter_raw():
            if self.verify_cids:
                check_block(raw, data, offset)
            yield CID.from_raw(raw), data

    def iter_raw(self) -> Iterator[tuple[bytes, bytes, int]]:
        """Yield (binary CID, data, offset) for every block, in file order, NOT verified.

        For callers that verify only the blocks they keep (with :func:`check_block`).
        """
        return self._with_cids(self._index.in_file_order())

    def _with_cids(self, spans: Iterable[tuple[int, int]]) -> Iterator[tuple[bytes, bytes, int]]:
        """(binary CID, data, offset) of the blocks at ``spans`` (data offset, length), which
        are in file order.

        Each block's CID is read forward from its section start, as the framing read it: a
        CID's length cannot be told backwards from its data (a 36-byte CIDv1 of another
        codec ends like a 34-byte CIDv0). Sections the index does not hold (a repeated
        block) are stepped over.
        """
        pos = self._blocks_start()
        for offset, length in spans:
            while True:
                head = self._read(pos, 10)
                section, cid_start = read_varint(head, 0, len(head))
                end = pos + cid_start + section
                if end == offset + length:
                    break
                if end > offset:
                    raise CarError("block is not where the index says", offset=offset)
                pos = end
            yield self._read(pos + cid_start, offset - pos - cid_start), \
                self._read(offset, length), offset
            pos = offset + length

    def _blocks_start(self) -> int:
        head = self._read(0, 10)
        header, start = read_varint(head, 0, len(head))
        return start + header

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
        roots = ", ".join(cid_text(raw) for raw in self.raw_roots)
        return f"<CarFile {len(self)} blocks, {self.size} bytes, roots=[{roots}], in {where}>"


def read_car(source: Source, mem_limit_mb: float = 64, *, verify_cids: bool = True,
             length: int | None = None) -> CarFile:
    """Return a :class:`CarFile` for a CAR given as bytes, a path, or a binary file object.

    Not to be confused with :func:`atrepo.read_car`, which returns a verified
    :class:`~atrepo.RepoSnapshot` of a repository CAR.

    Args:
        source: the CAR's bytes; a path to it; or an open binary file/stream.
        mem_limit_mb: CAR bytes held in memory at most. A path larger than this is read
            from disk on demand; a stream larger than this is spilled to a temporary file.
        verify_cids: hash every block handed out and compare it with its CID.
        length: for a path only: read just the first ``length`` bytes, the part of a
            file that is being appended to which is known to be complete.

    Raises:
        CarError: on a malformed, truncated or oversized CAR, a path that is not a
            readable file, or a stream opened in text mode.

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
    roots, pos = parse_raw_header(buf, len(buf))
    if _accel.accelerated:
        return _accel.memory_car(roots, buf, pos, verify_cids=verify_cids)
    index = BlockIndex()
    frame_blocks(buf, pos, len(buf), 0, index, final=True)
    return CarFile(roots, index, buffer=buf, verify_cids=verify_cids, size=len(buf))


def _from_path(path: str, limit: int, verify_cids: bool, *, temp: bool = False,
               length: int | None = None) -> CarFile:
    fd = open_file(path)
    try:
        size = os.fstat(fd).st_size
        if length is not None:
            if length > size:
                raise CarError("CAR file is shorter than expected", path=path, size=size,
                               expected=length)
            size = length
        if size <= limit:
            car = _from_buffer(read_range(fd, 0, size), verify_cids)
            if temp:
                os.unlink(path)
            else:
                car.path, car.inode = path, os.fstat(fd).st_ino
            return car
        if _accel.accelerated:
            car = _accel.mapped_car(fd, path, size, verify_cids=verify_cids, temp=temp)
            car.inode = os.fstat(fd).st_ino
            return car
        roots, index = index_fd(fd, size)
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        inode = os.fstat(fd).st_ino
    except BaseException:
        if temp:
            os.unlink(path)
        raise
    finally:
        os.close(fd)
    car = CarFile([bytes(root) for root in roots], index, buffer=mapped, path=path, temp=temp,
                  verify_cids=verify_cids, size=size)
    car.inode = inode
    return car


def _from_stream(stream: IO[bytes], limit: int, verify_cids: bool) -> CarFile:
    """Read a stream into memory, or, once past ``limit`` bytes, into a temporary file."""
    held: list[bytes] = []
    total = 0
    while total <= limit:
        part = _read_part(stream)
        if not part:
            return _from_buffer(b"".join(held), verify_cids)
        held.append(part)
        total += len(part)
    spill = tempfile.NamedTemporaryFile(prefix="atrepo-", suffix=".car", delete=False)
    with spill:
        for part in held:
            spill.write(part)
        held.clear()
        while part := _read_part(stream):
            spill.write(part)
    return _from_path(spill.name, 0, verify_cids, temp=True)


def _read_part(stream: IO[bytes]) -> bytes:
    """The next chunk of a binary stream; CarError naming the stream for a text one."""
    part: object = None
    if not isinstance(stream, io.TextIOBase):
        try:
            part = stream.read(CHUNK)
        except UnicodeDecodeError:
            part = None  # a text stream of another kind, decoding binary data
    if not isinstance(part, (bytes, bytearray)):
        raise CarError("cannot read a CAR from a text stream",
                       path=getattr(stream, "name", None), stream=type(stream).__name__,
                       hint="open the file in binary mode: open(path, 'rb')")
    return bytes(part)
