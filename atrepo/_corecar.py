"""A :class:`~atrepo.car.CarFile` whose index, block reads and CID checks are the core's.

:mod:`atrepo._accel` builds one instead of a plain ``CarFile`` when the compiled core is in
use; everything else about the CAR (roots, path, spilling, reopening, iteration) is the
``CarFile``'s own. The core's index answers the same lookups with the same blocks (the first
of duplicates), and a block read through it is checked against its CID exactly as
:func:`~atrepo.car.check_block` checks it.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence
from typing import Any

from . import _accel
from .car import CarFile
from .car._index import BlockIndex
from .errors import CarError

__all__ = ["CoreCarFile"]


class CoreCarFile(CarFile):
    """A CarFile served by a core ``Car`` (``blocks``) over the same bytes or file."""

    def __init__(self, roots: Sequence[bytes], blocks: Any, *, buffer: bytes | mmap.mmap,
                 path: str | None = None, temp: bool = False, verify_cids: bool = True,
                 size: int = 0) -> None:
        super().__init__(roots, BlockIndex(), buffer=buffer, path=path, temp=temp,
                         verify_cids=verify_cids, size=size)
        self.core: Any = blocks
        self._count = len(blocks)

    def core_car(self) -> Any:
        """The core's ``Car`` of this CAR (for walks and record columns)."""
        if self._buffer is None:
            raise CarError("CAR file is closed", path=self.path)
        return self.core

    def locate(self, raw: bytes) -> tuple[int, int] | None:
        """Return (offset, length) of the data of the block with binary CID ``raw``."""
        found: tuple[int, int] | None = self.core_car().locate(raw)
        return found

    def get_raw(self, raw: bytes) -> bytes | None:
        """Return the data of the block with binary CID ``raw``, verified; None if absent."""
        data: bytes | None = _accel.call(self.core_car().get, raw)
        return data

    def __len__(self) -> int:
        return self._count

    def iter_raw(self) -> Iterator[tuple[bytes, bytes, int]]:
        """Yield (binary CID, data, offset) for every block, in file order, NOT verified."""
        return self._with_cids(self.core_car().spans())

    def extend(self, size: int) -> None:
        """Index the blocks appended to this CAR's file since it was read, up to ``size``.

        The file is checked and its new bytes obtained as for any CarFile; the core then
        frames only the new tail into a copy of its index.
        """
        super().extend(size)
        source = self._buffer if type(self._buffer) is bytes else self.path
        self.core = _accel.call(self.core_car().extended, source, length=size)
        self._count = len(self.core)

    def close(self) -> None:
        """Release the file behind this CAR, and the core's hold on it."""
        super().close()
        self.core = None
