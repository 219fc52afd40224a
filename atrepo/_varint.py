"""Unsigned LEB128 varints, as multiformats and CAR files use them: one reader, one writer.

:func:`read_varint` is strict and bounded: a varint must be minimal and at most
:data:`MAX_VARINT_BYTES` long (63 bits: every length, codec and hash code of a real CID or
CAR fits). It raises :class:`VarintError`, which callers turn into their own error (a
:class:`~atrepo.CarError` with the CAR offset, a :class:`~atrepo.SignatureError` naming the
key); it never leaves atrepo.
"""

from __future__ import annotations

__all__ = ["MAX_VARINT_BYTES", "Buffer", "VarintError", "encode_varint", "read_varint"]

MAX_VARINT_BYTES = 9

Buffer = bytes | bytearray | memoryview


class VarintError(ValueError):
    """A varint that is cut off, not minimal or too long; ``offset`` is where it starts."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Return (value, next position) of the unsigned varint at ``buf[pos:end]``.

    Raises:
        VarintError: the varint is cut off by ``end``, not minimal, or longer than
            :data:`MAX_VARINT_BYTES` bytes.

    Example:
        >>> read_varint(b"\\xac\\x02!", 0, 3)
        (300, 2)
    """
    value = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise VarintError("truncated varint", start)
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and pos - start > 1:
                raise VarintError("non-minimal varint", start)
            return value, pos
        shift += 7
        if shift >= 7 * MAX_VARINT_BYTES:
            raise VarintError(f"varint longer than {MAX_VARINT_BYTES} bytes", start)


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
