"""What the MST code reads blocks from: a :class:`BlockSource`, seen as a :data:`Fetch`.

Everything in :mod:`atrepo.mst` reads nodes through one function, ``fetch(raw CID) -> bytes |
None``. :func:`fetcher` makes it from any block source: anything with ``get_raw(raw CID)``
(a :class:`RawBlockSource` such as :class:`~atrepo.car.CarFile`: the fast path, with no CID
objects), a ``dict`` keyed by binary CIDs, or anything with ``get(CID)`` (a
:class:`BlockSource`, such as a ``dict[CID, bytes]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..cid import CID

__all__ = ["BlockSource", "Fetch", "RawBlockSource", "fetcher"]

Fetch = Callable[[bytes], "bytes | None"]


class BlockSource(Protocol):
    """Blocks by CID: ``get(cid)`` returns a block's bytes, or None when it is absent.

    A ``dict[CID, bytes]`` is one, and so is a :class:`~atrepo.car.CarFile`.
    """

    def get(self, cid: CID, /) -> bytes | None:
        """Return the bytes of block ``cid``, or None."""


@runtime_checkable
class RawBlockSource(Protocol):
    """Blocks by binary CID, looked up without building CID objects (the fast path)."""

    def get_raw(self, raw: bytes, /) -> bytes | None:
        """Return the bytes of the block with binary CID ``raw``, or None."""


def fetcher(blocks: BlockSource | RawBlockSource) -> Fetch:
    """Return the raw-CID fetch function that reads ``blocks`` (``get_raw`` when it has one)."""
    if isinstance(blocks, RawBlockSource):
        return blocks.get_raw
    if isinstance(blocks, dict) and isinstance(next(iter(blocks), None), bytes):
        return blocks.get  # already keyed by binary CID
    return lambda raw: blocks.get(CID.from_raw(raw))
