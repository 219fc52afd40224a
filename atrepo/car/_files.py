"""Reading CAR files by descriptor: opening, ranges, and indexing chunk by chunk.

A file is indexed holding at most one chunk (plus one block) in memory, so a CAR of any size
is framed in bounded memory. Every operating-system failure becomes a
:class:`~atrepo.CarError` naming the path.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from ..errors import CarError
from ._framing import MAX_BLOCK_SIZE, MAX_HEADER_SIZE, frame_blocks, parse_header
from ._index import BlockIndex

if TYPE_CHECKING:
    from ..cid import CID

__all__ = ["CHUNK", "index_fd", "index_range", "open_file", "read_range"]

CHUNK = 4 << 20  # read files 4 MiB at a time


def open_file(path: str) -> int:
    """Return a read-only descriptor of the regular file at ``path``.

    Raises:
        CarError: the path cannot be opened, or is a directory or another non-file.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise CarError("cannot open CAR file", path=path, detail=exc.strerror) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise CarError(f"cannot read CAR file: the path is {kind}", path=path,
                       hint="pass the path of a .car file")
    return fd


def read_range(fd: int, start: int, end: int) -> bytes:
    """Return bytes [start, end) of the file (fewer if it ends sooner)."""
    parts = []
    offset = start
    while offset < end:
        part = os.pread(fd, min(CHUNK, end - offset), offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
    return b"".join(parts)


def index_fd(fd: int, size: int) -> tuple[list[CID], BlockIndex]:
    """Return (roots, index) of the first ``size`` bytes of a CAR file."""
    head = os.pread(fd, min(size, MAX_HEADER_SIZE + 10), 0)
    roots, pos = parse_header(head, len(head))
    index = BlockIndex()
    index_range(fd, pos, size, index)
    return roots, index


def index_range(fd: int, pos: int, end: int, index: BlockIndex) -> None:
    """Frame the blocks in bytes [pos, end) of a CAR file into ``index``, chunk by chunk."""
    while pos < end:
        want = max(CHUNK, MAX_BLOCK_SIZE + 16) if end - pos > CHUNK else end - pos
        chunk = os.pread(fd, min(want, end - pos), pos)
        final = pos + len(chunk) >= end
        done = frame_blocks(chunk, 0, len(chunk), pos, index, final=final)
        if done == 0 and not final:
            raise CarError("block too large to frame", offset=pos)
        pos += done
