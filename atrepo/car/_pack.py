"""Growing a CAR file's index in place: what a store pack needs and nothing else does.

A pack is a CAR file that only ever grows: later downloads of a repository append their new
blocks to it. What was indexed stays valid, so only the appended tail is framed, and the
bytes held in memory or mapped grow with it. A file that was replaced (another inode) or is
shorter than the length asked for is refused rather than half indexed.
"""

from __future__ import annotations

import mmap
import os

from ..errors import CarError
from ._files import index_range, open_file, read_range
from ._index import BlockIndex

__all__ = ["extend_index"]


def extend_index(path: str, inode: int | None, index: BlockIndex, buffer: bytes | mmap.mmap,
                 indexed: int, size: int, mem_limit_mb: float) -> bytes | mmap.mmap:
    """Index bytes [indexed, size) of the pack at ``path`` into ``index``; return its bytes.

    Args:
        path: the pack file.
        inode: the file's inode when it was first read.
        index: the index of its first ``indexed`` bytes, extended in place.
        buffer: those bytes, held (``bytes``) or mapped; a mapping is replaced and closed.
        indexed: how much of the file is indexed already.
        size: how much of it is known complete now.
        mem_limit_mb: the pack is held in memory while it fits this, else mapped.

    Raises:
        CarError: the file is gone, was replaced, or is shorter than ``size``.
    """
    fd = open_file(path)
    try:
        stat = os.fstat(fd)
        if stat.st_ino != inode or stat.st_size < size:
            raise CarError("CAR file was replaced or is shorter than expected",
                           path=path, size=stat.st_size, expected=size)
        index_range(fd, indexed, size, index)
        if type(buffer) is bytes and size <= mem_limit_mb * (1 << 20):
            return buffer + read_range(fd, indexed, size)
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    if isinstance(buffer, mmap.mmap):
        buffer.close()
    return mapped
