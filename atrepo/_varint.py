"""Unsigned LEB128 varints, as multiformats and CAR files use them."""

from __future__ import annotations

__all__ = ["encode_varint"]


def encode_varint(value: int) -> bytes:
    """Return ``value`` (>= 0) as a minimal unsigned varint.

    Example:
        >>> encode_varint(300).hex()
        'ac02'
    """
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)
