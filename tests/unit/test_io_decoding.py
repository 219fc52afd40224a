"""Content-Encoding decoding (:mod:`atrepo._io.decoding`): bounded per layer, strict, exact."""

from __future__ import annotations

import gzip
import random
import tracemalloc
import zlib

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atrepo._io.decoding import MAX_RATIO, PIECE, RATIO_FLOOR, Decoder
from atrepo.errors import ResponseTooLarge

URL = "https://pds.test/xrpc/x"
DATA = bytes(range(256)) * 1000


def _decode(encoding: str, body: bytes, *, max_bytes: int = 1 << 30, strict: bool = True,
            chunk: int = 1000) -> bytes:
    decoder = Decoder(encoding, url=URL, max_bytes=max_bytes, strict=strict)
    out = [piece for start in range(0, len(body), chunk)
           for piece in decoder.feed(body[start:start + chunk])]
    return b"".join([*out, *decoder.flush()])


def _deflate(data: bytes, raw: bool = False) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize("encoding,body", [
    ("", DATA), ("identity", DATA), ("gzip", gzip.compress(DATA)), ("x-gzip", gzip.compress(DATA)),
    ("deflate", _deflate(DATA)), ("deflate", _deflate(DATA, raw=True)),
    ("gzip, gzip", gzip.compress(gzip.compress(DATA))),
    ("deflate, GZIP", gzip.compress(_deflate(DATA))),
    ("gzip, identity", gzip.compress(DATA)),
])
def test_encodings_decode_exactly(encoding, body):
    assert _decode(encoding, body) == DATA


def test_multi_member_gzip_is_every_member():
    assert _decode("gzip", gzip.compress(b"one ") + gzip.compress(b"two")) == b"one two"


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=5000), chunk=st.integers(1, 700))
def test_any_chunking_gives_the_same_bytes(data, chunk):
    body = gzip.compress(gzip.compress(data))
    assert _decode("gzip, gzip", body, chunk=chunk) == data


@pytest.mark.parametrize("encoding,body", [
    ("gzip", b"not gzip at all"), ("deflate", b"\xff" * 20), ("br", b"x"), ("zstd", b"x"),
    ("gzip", gzip.compress(DATA) + b"trailing junk"), ("deflate", _deflate(DATA) + b"junk"),
])
def test_bad_bodies_and_unknown_encodings_are_decoding_errors(encoding, body):
    with pytest.raises(httpx.DecodingError):
        _decode(encoding, body)


def _bomb(size: int, layers: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    body = b"".join([*(packer.compress(bytes(1 << 20)) for _ in range(size >> 20)),
                     packer.flush()])
    for _ in range(layers - 1):
        body = gzip.compress(body, 9)
    return body


@pytest.mark.parametrize("layers", [2, 3])
def test_stacked_bomb_stops_at_the_cap_with_pieces_in_memory(layers):
    body = _bomb(256 << 20, layers)
    decoder = Decoder(", ".join(["gzip"] * layers), url=URL, max_bytes=4 << 20, strict=False)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge) as info:
            for piece in decoder.feed(body):  # one raw chunk, as httpx would hand it over
                assert len(piece) <= PIECE
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.url == URL and info.value.fields["max_bytes"] == 4 << 20
    assert peak < 2 << 20  # a few pieces, not 256 MiB


def test_ratio_bound_cuts_a_strict_body_past_the_floor():
    body = _bomb(64 << 20, 1)
    decoder = Decoder("gzip", url=URL, max_bytes=1 << 40, strict=True)
    decoded = 0
    with pytest.raises(ResponseTooLarge) as info:
        for piece in decoder.feed(body):
            decoded += len(piece)
    assert RATIO_FLOOR <= decoded <= RATIO_FLOOR + PIECE
    assert info.value.fields["max_bytes"] == RATIO_FLOOR


def test_ratio_bound_spares_ordinary_compression_and_error_bodies():
    data = bytes(range(256)) * (RATIO_FLOOR // 128)  # 16 MiB of one pattern
    body = gzip.compress(data)
    assert len(data) > len(body) * MAX_RATIO  # a bomb by ratio ...
    with pytest.raises(ResponseTooLarge):
        _decode("gzip", body, chunk=1 << 20)
    assert _decode("gzip", body, strict=False, chunk=1 << 20) == data  # ... but not an error body
    ordinary = random.Random(0).randbytes(5 << 20).hex().encode()  # 10 MiB, compresses ~2x
    assert _decode("deflate", _deflate(ordinary), chunk=1 << 16) == ordinary


def test_strict_wire_bytes_count_against_the_cap():
    with pytest.raises(ResponseTooLarge):
        _decode("", DATA, max_bytes=1000)
    assert _decode("", DATA, max_bytes=1000, strict=False) == DATA  # the sink truncates
