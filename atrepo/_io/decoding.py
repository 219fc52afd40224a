"""Content-Encoding decoded layer by layer, every layer's output counted as it is produced.

httpx decodes each chunk through every layer in one go, so 2 KB of ``gzip, gzip`` on the
wire becomes gigabytes in memory before anyone can count it. The drivers read raw bytes
instead and decode them here:

* each layer (``gzip``, ``deflate``; ``identity`` is no layer) inflates at most
  :data:`PIECE` bytes at a time (zlib's ``max_length``), and the next layer takes that
  piece before the first inflates more, so memory stays at a few pieces per layer;
* every layer's output is counted against the cap as it is produced: any layer passing
  ``max_bytes`` ends the response in ``ResponseTooLarge``;
* with ``strict`` (the body of a 2xx response, which must be whole), the wire bytes count
  against the cap too, and so does the ratio: past :data:`RATIO_FLOOR` of output, more
  than :data:`MAX_RATIO` output bytes per wire byte is a bomb (real repositories and
  listings compress a few times; a bomb a thousand times per layer), cut when it is seen,
  not after ``max_bytes`` of it were written;
* a body that is not what its encoding says, data after a deflate stream's end, or an
  encoding atrepo does not decode (it only asks for :data:`ACCEPT_ENCODING`) is
  ``httpx.DecodingError``, which the drivers report as a ``TransportError``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final

import httpx

from ..errors import ResponseTooLarge

__all__ = ["ACCEPT_ENCODING", "MAX_RATIO", "PIECE", "RATIO_FLOOR", "Decoder"]

ACCEPT_ENCODING: Final = "gzip, deflate"  # what Decoder decodes, and so all we ask for
PIECE: Final = 64 * 1024                   # bytes one layer inflates at a time
MAX_RATIO: Final = 100                     # decoded bytes per wire byte of a 2xx body
RATIO_FLOOR: Final = 8 << 20               # decoded bytes before the ratio is looked at


class _Layer:
    """One ``gzip`` or ``deflate`` layer: a zlib stream inflated a piece at a time."""

    def __init__(self, name: str) -> None:
        if name not in ("gzip", "x-gzip", "deflate"):
            raise httpx.DecodingError(f"unsupported content encoding {name[:40]!r}")
        self._gzip = name != "deflate"
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)
        self._first = True  # deflate: a first failure means raw deflate, as httpx allows
        self.produced = 0

    def decode(self, data: bytes) -> Iterator[bytes]:
        """Yield what ``data`` inflates to, at most :data:`PIECE` bytes per piece."""
        while data:
            if self._zlib.eof:
                data = self._next_member(data)
            piece = self._inflate(data)
            rest = self._zlib.unconsumed_tail or (self._zlib.unused_data if self._zlib.eof
                                                  else b"")
            if not piece and rest == data:
                raise httpx.DecodingError(f"{self._name()} stream does not advance")
            data = rest
            if piece:
                self.produced += len(piece)
                yield piece

    def flush(self) -> Iterator[bytes]:
        """Yield what is left in the stream at the end of the body."""
        piece = self._zlib.flush()
        if piece:
            self.produced += len(piece)
            yield piece

    def _inflate(self, data: bytes) -> bytes:
        first, self._first = self._first, False
        try:
            return self._zlib.decompress(data, PIECE)
        except zlib.error as exc:
            if first and not self._gzip:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._inflate(data)
            raise httpx.DecodingError(f"body is not valid {self._name()}: {exc}") from exc

    def _next_member(self, data: bytes) -> bytes:
        """Start the next member of a multi-member gzip body (RFC 1952); deflate has none."""
        if not self._gzip:
            raise httpx.DecodingError("data after the end of the deflate stream")
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        return data

    def _name(self) -> str:
        return "gzip" if self._gzip else "deflate"


class Decoder:
    """Decodes a body's ``Content-Encoding`` chain under a byte cap (see the module docstring).

    Args:
        content_encoding: the header's value (``""`` or ``identity`` for none); layers are
            listed in the order they were applied, so they are undone in reverse.
        url: the URL, named by ``ResponseTooLarge``.
        max_bytes: the cap on every layer's output (and, with ``strict``, the wire bytes).
        strict: the body must be whole (a 2xx body): check the wire bytes and the ratio too.
    """

    def __init__(self, content_encoding: str, *, url: str, max_bytes: int,
                 strict: bool) -> None:
        names = [name.strip().lower() for name in content_encoding.split(",")]
        self._layers = [_Layer(name) for name in reversed(names) if name not in ("", "identity")]
        self._url = url
        self._max_bytes = max_bytes
        self._strict = strict
        self._wire = 0
        self._decoded = 0

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """Yield the decoded pieces of ``raw``, the next bytes off the wire.

        Raises:
            ResponseTooLarge: a layer, the wire bytes or the ratio passed its bound.
            httpx.DecodingError: the body is not what its encoding says.
        """
        self._wire += len(raw)
        if self._strict and self._wire > self._max_bytes:
            raise self._too_large(self._max_bytes)
        yield from self._through(0, raw)

    def flush(self) -> Iterator[bytes]:
        """Yield what the layers still hold at the end of the body."""
        for index, layer in enumerate(self._layers):
            for piece in layer.flush():
                self._count(layer)
                yield from self._through(index + 1, piece)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        """Yield ``data`` decoded by the layers from ``index`` on, a piece at a time."""
        if index == len(self._layers):
            self._decoded += len(data)
            self._check_ratio()
            yield data
            return
        layer = self._layers[index]
        for piece in layer.decode(data):
            self._count(layer)
            yield from self._through(index + 1, piece)

    def _count(self, layer: _Layer) -> None:
        if layer.produced > self._max_bytes:
            raise self._too_large(self._max_bytes)

    def _check_ratio(self) -> None:
        if not (self._strict and self._layers) or self._decoded <= RATIO_FLOOR:
            return
        if self._decoded > self._wire * MAX_RATIO:
            raise self._too_large(max(RATIO_FLOOR, self._wire * MAX_RATIO))

    def _too_large(self, bound: int) -> ResponseTooLarge:
        return ResponseTooLarge(self._url, max_bytes=bound)
