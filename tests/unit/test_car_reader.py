"""atrepo.car.CarReader: the push parser gives the same blocks whatever the chunks are.

Chunks of every size from 1 byte up give the blocks of one whole feed, in order; a stream
cut anywhere is a CarError at ``close()`` (or, for a bad length claim, as soon as it
arrives), naming the offset.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from atrepo import car
from atrepo._varint import encode_varint
from atrepo.car import MAX_BLOCK_SIZE, CarReader
from atrepo.cid import CID, cid_for
from atrepo.errors import CarError
from atrepo.testing import encode_car

BLOCKS = [b"\xa1\x61\x61\x01", b"\xa1\x61\x62" + b"\x42" * 300, b"\xa0"]
SMALL = encode_car([cid_for(BLOCKS[0])], [(bytes(cid_for(b)), b) for b in BLOCKS])
EXPECTED = [(cid_for(b), b) for b in BLOCKS]


def _feed(data: bytes, size: int, reader: CarReader | None = None) -> list[tuple[CID, bytes]]:
    reader = reader or CarReader()
    blocks = []
    for start in range(0, len(data), size):
        blocks.extend(reader.feed(data[start:start + size]))
    reader.close()
    return blocks


def test_one_feed_gives_every_block_and_the_roots() -> None:
    reader = CarReader()
    assert reader.roots is None
    assert reader.feed(SMALL) == EXPECTED
    assert reader.roots == [cid_for(BLOCKS[0])]
    reader.close()


@pytest.mark.parametrize("size", range(1, len(SMALL) + 1))
def test_chunks_of_every_size_give_the_same_blocks(size: int) -> None:
    assert _feed(SMALL, size) == EXPECTED


def test_a_reference_repository_in_odd_chunks(ref_small: Any) -> None:
    data = ref_small.car.read_bytes()
    expected = list(car.read_car(data))
    assert len(expected) == ref_small.truth["block_count"]
    for size in (1 << 16, 4093, 997):
        assert _feed(data, size) == expected


def test_blocks_come_out_as_soon_as_they_are_whole() -> None:
    reader = CarReader()
    boundary = len(SMALL) - len(BLOCKS[2]) - 37  # where the last block's frame starts
    assert reader.feed(SMALL[:boundary]) == EXPECTED[:2]
    assert reader.feed(SMALL[boundary:-1]) == []
    assert reader.feed(SMALL[-1:]) == EXPECTED[2:]
    reader.close()


@pytest.mark.parametrize("cut", range(0, len(SMALL)))
def test_truncation_anywhere_is_found_at_close(cut: int) -> None:
    header_end = len(encode_car([cid_for(BLOCKS[0])], []))
    block_starts = {header_end, header_end + 1 + 36 + len(BLOCKS[0]),
                    len(SMALL) - len(BLOCKS[2]) - 37}
    reader = CarReader()
    reader.feed(SMALL[:cut])
    if cut in block_starts:  # cut between two blocks: a shorter CAR, but a whole one
        reader.close()
        return
    with pytest.raises(CarError) as info:
        reader.close()
    assert info.value.offset is not None and 0 <= info.value.offset <= cut


def test_an_empty_stream_has_no_header() -> None:
    reader = CarReader()
    with pytest.raises(CarError, match="truncated varint") as info:
        reader.close()
    assert info.value.offset == 0


def test_an_oversized_claim_fails_on_arrival() -> None:
    head = encode_car([], [])
    reader = CarReader()
    with pytest.raises(CarError, match="block length out of range") as info:
        reader.feed(head + encode_varint(MAX_BLOCK_SIZE + 1))
    assert info.value.offset == len(head)
    with pytest.raises(CarError, match="CAR header length out of range"):
        CarReader().feed(encode_varint(car.MAX_HEADER_SIZE + 1))


def test_an_overlong_varint_fails_once_it_cannot_end() -> None:
    reader = CarReader()
    assert reader.feed(b"\x80" * 9) == []  # a 9-byte length may still end
    with pytest.raises(CarError, match="longer than 9 bytes"):
        reader.feed(b"\x80")


def test_bad_blocks_are_refused_unless_unchecked() -> None:
    tampered = encode_car([], [(bytes(cid_for(b"\xa0")), b"\xa1")])
    with pytest.raises(CarError, match="does not match its CID"):
        CarReader().feed(tampered)
    assert CarReader(verify_cids=False).feed(tampered) == [(cid_for(b"\xa0"), b"\xa1")]


@pytest.mark.parametrize("verify_cids", [True, False])
@pytest.mark.parametrize("head", [b"\x01\x7f\x12\x20", b"\x01\xff\x7f\x12\x20"],
                         ids=["one-byte codec", "two-byte codec"])
def test_a_cid_of_unknown_codec_is_a_car_error_at_its_offset(head: bytes,
                                                              verify_cids: bool) -> None:
    # its sha2-256 digest checks out, but no CID object can name it (it was a DecodeError
    # naming no offset)
    raw = head + hashlib.sha256(BLOCKS[0]).digest()
    data = encode_car([cid_for(BLOCKS[0])], [(bytes(cid_for(BLOCKS[0])), BLOCKS[0]),
                                              (raw, BLOCKS[0])])
    start = data.index(raw)
    with pytest.raises(CarError) as info:
        _feed(data, 7, CarReader(verify_cids=verify_cids))
    assert info.value.offset == start and info.value.cid == raw.hex()
    assert "unknown codec" in info.value.message


def test_nothing_may_be_fed_after_close() -> None:
    reader = CarReader()
    reader.feed(SMALL)
    reader.close()
    with pytest.raises(CarError, match="after close"):
        reader.feed(b"\x00")
