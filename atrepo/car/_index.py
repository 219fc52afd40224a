"""The index of a CAR: binary CID -> (data offset, length), compact for millions of blocks.

Keys are the last :data:`KEY_BYTES` bytes of the CID as an int (a 32-byte object, against 72
for the 36-byte CID itself): about 95 bytes per block in all. Values pack the block data's
offset and length into one int, ``offset << LEN_BITS | length`` (a block is at most
:data:`~atrepo.car.MAX_BLOCK_SIZE` < 2**LEN_BITS bytes). Two CIDs may share a key (a raw and
a dag-cbor CID of the same bytes, or a hostile CAR); the entry then holds a list, and lookups
compare the full CID, which the CAR stores just before each block's data.

Blocks are filed by :func:`~atrepo.car._framing.frame_blocks`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KEY_BYTES", "LEN_BITS", "LEN_MASK", "BlockIndex", "unpack"]

LEN_BITS = 24
LEN_MASK = (1 << LEN_BITS) - 1
KEY_BYTES = 7


class BlockIndex:
    """Where each block of one CAR is: ``entries`` maps a key to a packed entry or a list."""

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

    def candidates(self, raw: bytes) -> list[tuple[int, int]]:
        """(data offset, length) of every block filed under ``raw``'s key, for a CID check."""
        found = self.entries.get(int.from_bytes(raw[-KEY_BYTES:], "big"))
        if found is None:
            return []
        return [unpack(packed) for packed in (found if type(found) is list else (found,))]

    def in_file_order(self) -> list[tuple[int, int]]:
        """(data offset, length) of every block, in file order."""
        located: list[int] = []
        for found in self.entries.values():
            located.extend(found if type(found) is list else [found])
        located.sort()
        return [unpack(packed) for packed in located]


def unpack(packed: int) -> tuple[int, int]:
    """(data offset, length) of a packed index entry."""
    return packed >> LEN_BITS, packed & LEN_MASK
