"""A push parser for CAR streams, in the manner of h11: bytes in, blocks out, no I/O.

The caller reads from wherever it likes and hands the bytes over::

    reader = CarReader()
    for chunk in chunks:
        for cid, data in reader.feed(chunk):
            ...
    reader.close()          # CarError if the stream stopped inside the header or a block

Invariants: :meth:`CarReader.feed` returns every block completed by its chunk, in stream
order, and nothing else, whatever the chunk sizes (one feed of the whole CAR and one feed
per byte give the same blocks); it holds at most one unfinished block (at most
:data:`~atrepo.car.MAX_BLOCK_SIZE`) plus the chunk; a length claim beyond the caps fails on
arrival, before its bytes are waited for. Errors are :class:`~atrepo.CarError` with the CAR
offset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CarError
from ._framing import Buffer, block_cid, frame_blocks, header_end, parse_header, read_varint
from ._index import BlockIndex
from ._verify import check_block

if TYPE_CHECKING:
    from ..cid import CID

__all__ = ["CarReader"]


class CarReader:
    """Frames a CAR fed in chunks: ``feed(chunk)`` returns the blocks it completes.

    Args:
        verify_cids: check every block against its CID before handing it out.

    Attributes:
        roots: the header's root CIDs, once the header has arrived (None before).

    Example:
        >>> from pathlib import Path
        >>> data = Path("examples/data/sample.car").read_bytes()
        >>> whole = CarReader().feed(data)
        >>> reader = CarReader()
        >>> parts = [b for i in range(0, len(data), 1000) for b in reader.feed(data[i:i + 1000])]
        >>> reader.close()
        >>> parts == whole, len(reader.roots)
        (True, 1)
    """

    def __init__(self, *, verify_cids: bool = True) -> None:
        self.roots: list[CID] | None = None
        self.verify_cids = verify_cids
        self._buffer = bytearray()
        self._offset = 0  # CAR offset of _buffer[0]
        self._closed = False

    def feed(self, chunk: Buffer) -> list[tuple[CID, bytes]]:
        """Return the ``(CID, bytes)`` of every block that ``chunk`` completes, in order.

        Raises:
            CarError: the stream is malformed so far, or the reader was closed.
        """
        if self._closed:
            raise CarError("CAR data fed after close()", offset=self._offset + len(self._buffer))
        self._buffer += chunk
        return self._frame(final=False)

    def close(self) -> None:
        """Declare the stream finished; check that it ended at a block boundary.

        Raises:
            CarError: the stream ended inside the header or a block (or had no header).
        """
        self._closed = True
        self._frame(final=True)

    def _frame(self, final: bool) -> list[tuple[CID, bytes]]:
        buf = self._buffer
        pos = 0
        if self.roots is None:
            if not final and header_end(buf, len(buf)) is None:
                return []
            self.roots, pos = parse_header(buf, len(buf))
        index = BlockIndex()
        done = frame_blocks(buf, pos, len(buf), self._offset, index, final=final)
        blocks = []
        for offset, length in index.in_file_order():
            # blocks lie end to end: each starts where the one before ended, with its
            # length varint (checked by the framing) before its CID
            data = offset - self._offset
            cid_start = read_varint(buf, pos, data)[1]
            blocks.append(self._block(bytes(buf[cid_start:data]), bytes(buf[data:data + length]),
                                      offset))
            pos = data + length
        del buf[:done]
        self._offset += done
        return blocks

    def _block(self, raw: bytes, data: bytes, offset: int) -> tuple[CID, bytes]:
        if self.verify_cids:
            check_block(raw, data, offset)
        return block_cid(raw, offset - len(raw)), data
