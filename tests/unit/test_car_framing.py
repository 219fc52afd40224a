"""atrepo.car._framing: the header and block frames of a CAR, and cuts through them.

Every truncation and every malformed length, header or CID must end in a CarError naming
the offset, read through :func:`atrepo.car.read_car` and :func:`atrepo.read_car` alike.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from atrepo import car as carmod
from atrepo._varint import encode_varint
from atrepo.errors import CarError, MstError
from _hostile import (Layout, both, expect_error, expect_located, flip, read_all, read_varint,
                     selected_blocks, tag42, work_limit)


# --- truncation --------------------------------------------------------------------------------

def _check_truncated(layout: Layout, n: int) -> None:
    data = layout.data[:n]
    starts = {b.start for b in layout.blocks}
    if n not in starts and n != layout.header_end:
        err = expect_error(CarError, lambda: read_all(data))
        assert err.offset is not None, f"truncation at {n}: {err!r} names no offset"
        assert 0 <= err.offset <= n
        return
    # cut exactly at a block boundary: the framing is fine but blocks are missing
    dropped = [b for b in layout.blocks if b.start >= n]
    if any(b.kind == "commit" for b in dropped):
        no_commit = expect_error(CarError, lambda: read_all(data))
        assert no_commit.cid == str(layout.commit)
    else:
        missing = expect_error(MstError, lambda: read_all(data))
        assert missing.cid in {str(b.cid) for b in dropped}


def test_truncate_every_offset_in_header_and_first_bytes(ref: Layout) -> None:
    assert ref.header_end < 400
    for n in range(0, 401):
        _check_truncated(ref, n)


def test_truncate_evenly_spaced_offsets(ref: Layout) -> None:
    size = len(ref.data)
    offsets = sorted({size * i // 300 for i in range(300)} | {size - 1, size - 2, size - 36})
    for n in offsets:
        _check_truncated(ref, n)


def test_truncate_at_block_boundaries(ref: Layout) -> None:
    boundaries = [b.start for b in ref.blocks[::37]] + [ref.blocks[-1].start]
    kinds = set()
    for n in boundaries:
        _check_truncated(ref, n)
        kinds.add(any(b.kind == "commit" for b in ref.blocks if b.start >= n))
    assert kinds == {True, False}, "boundaries should cover both commit-missing and MST cases"


def test_truncate_inside_every_part_of_the_commit_block(ref: Layout) -> None:
    block = ref.first("commit")
    for n in range(block.start + 1, block.end, 3):
        _check_truncated(ref, n)


# --- flips in the framing ----------------------------------------------------------------------

@pytest.mark.parametrize("which", ["commit", "mst-root", "mst-leaf", "record", "last-block"])
def test_flip_in_length_varint_breaks_framing(ref: Layout, which: str) -> None:
    block = selected_blocks(ref)[which]
    for offset in range(block.start, block.cid_start):
        for bit in range(8):
            corrupt = flip(ref.data, offset, 1 << bit)
            with work_limit(20):
                with pytest.raises((CarError, MstError)) as info:
                    read_all(corrupt)
            expect_located(info.value)


def test_flip_in_header_root(ref: Layout) -> None:
    root_at = ref.data.index(bytes(ref.commit))
    assert root_at < ref.header_end
    for offset in range(root_at, root_at + 36):
        with work_limit(20):
            with pytest.raises(CarError) as info:
                read_all(flip(ref.data, offset))
        expect_located(info.value)


# --- header ------------------------------------------------------------------------------------

def _header(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else cbor2.dumps(value, canonical=True)
    return encode_varint(len(data)) + data


def test_header_varint_too_long(ref: Layout) -> None:
    for car in (b"\x80" * 9 + b"\x01" + ref.data[1:], b"\xff" * 12, b"\x80" * 10):
        for func in both(car):
            err = expect_error(CarError, func)
            assert err.offset == 0


def test_header_varint_not_minimal(ref: Layout) -> None:
    first = ref.data[0]
    assert first < 0x80
    car = bytes([first | 0x80, 0x00]) + ref.data[1:]
    for func in both(car):
        err = expect_error(CarError, func)
        assert err.offset == 0


def test_header_length_out_of_range(ref: Layout) -> None:
    body = ref.data[ref.header_end:]
    for length in (carmod.MAX_HEADER_SIZE + 1, 1 << 40):
        for func in both(encode_varint(length) + b"\xa0" * 64 + body):
            err = expect_error(CarError, func)
            assert err.offset == 0
    big = encode_varint(carmod.MAX_HEADER_SIZE + 1) + b"\x00" * (carmod.MAX_HEADER_SIZE + 1) + body
    for func in both(big):
        expect_error(CarError, func)
    for func in both(b"\x00" + body):  # a zero-length header
        expect_error(CarError, func)


def test_header_truncated(ref: Layout) -> None:
    for func in both(encode_varint(100) + b"\xa2"):
        err = expect_error(CarError, func)
        assert err.offset is not None


HEADERS: dict[str, Any] = {
    "list": [1],
    "int": 1,
    "text": "roots",
    "null": None,
    "empty map": {},
    "version 2": {"roots": "ROOTS", "version": 2},
    "version missing": {"roots": "ROOTS"},
    "version text": {"roots": "ROOTS", "version": "1"},
    "version true": {"roots": "ROOTS", "version": True},
    "version float": {"roots": "ROOTS", "version": 1.0},
    "roots missing": {"version": 1},
    "roots null": {"roots": None, "version": 1},
    "roots a CID not in a list": {"roots": "ROOT", "version": 1},
    "roots text": {"roots": ["bafyreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lzegsiqe"],
                   "version": 1},
    "roots ints": {"roots": [1], "version": 1},
    "roots bytes": {"roots": ["RAWROOT"], "version": 1},
    "not canonical": b"ROOTS-BACKWARDS",
    "trailing bytes": b"HEADER+1",
}


def _make_header(layout: Layout, spec: Any) -> bytes:
    root = tag42(layout.commit)
    if spec == b"ROOTS-BACKWARDS":  # keys in the wrong order
        return _header(b"\xa2" + cbor2.dumps("version") + b"\x01" + cbor2.dumps("roots")
                       + cbor2.dumps([root]))
    if spec == b"HEADER+1":
        return _header(cbor2.dumps({"roots": [root], "version": 1}, canonical=True) + b"\x01")

    def fill(value: Any) -> Any:
        if value == "ROOTS":
            return [root]
        if value == "ROOT":
            return root
        if value == "RAWROOT":
            return bytes(layout.commit)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return _header(fill(spec))


@pytest.mark.parametrize("spec", list(HEADERS.values()), ids=list(HEADERS))
def test_bad_header(ref: Layout, spec: Any) -> None:
    car = _make_header(ref, spec) + ref.data[ref.header_end:]
    for func in both(car):
        err = expect_error(CarError, func)
        assert err.offset is not None


def test_good_header_rebuilt_reads(ref: Layout) -> None:
    car = _make_header(ref, {"roots": "ROOTS", "version": 1}) + ref.data[ref.header_end:]
    assert car == ref.data


@pytest.mark.parametrize("roots", [0, 2, 3])
def test_repository_needs_exactly_one_root(ref: Layout, roots: int) -> None:
    car = _header({"roots": [tag42(ref.commit)] * roots, "version": 1})
    car += ref.data[ref.header_end:]
    assert len(carmod.read_car(car).roots) == roots  # a valid CARv1 ...
    expect_error(CarError, lambda: read_all(car))    # ... but not a repository


# --- block frames ------------------------------------------------------------------------------

def test_block_length_varint_too_long(ref: Layout) -> None:
    head = ref.data[:ref.header_end]
    for car in (head + b"\xff" * 10 + b"\x01", head + b"\x80" * 9 + b"\x01" + b"\x00" * 64):
        for func in both(car):
            err = expect_error(CarError, func)
            assert err.offset == ref.header_end


def test_block_length_varint_not_minimal(ref: Layout) -> None:
    head, first = ref.data[:ref.header_end], ref.blocks[0]
    length, _ = read_varint(ref.data, first.start)
    padded = bytes([b | 0x80 for b in encode_varint(length)]) + b"\x00"
    car = head + padded + ref.data[first.cid_start:]
    for func in both(car):
        err = expect_error(CarError, func)
        assert err.offset == ref.header_end


def test_block_length_zero(ref: Layout) -> None:
    car = ref.data[:ref.header_end] + b"\x00" + ref.data[ref.header_end:]
    for func in both(car):
        err = expect_error(CarError, func)
        assert err.offset == ref.header_end


def test_block_shorter_than_its_cid(ref: Layout) -> None:
    head = ref.data[:ref.header_end]
    for body in (b"\x05\x01\x71\x12\x20\x00", b"\x02\x01\x71", b"\x20" + bytes(ref.commit)[:32]):
        for func in both(head + body):
            err = expect_error(CarError, func)
            assert err.offset is not None


def test_unsupported_cid_version_in_block(ref: Layout) -> None:
    head = ref.data[:ref.header_end]
    for func in both(head + b"\x05\x02\x71\x12\x00\x00"):
        expect_error(CarError, func)


def test_empty_and_header_only_inputs(ref: Layout) -> None:
    for func in both(b""):
        err = expect_error(CarError, func)
        assert err.offset == 0
    head = ref.data[:ref.header_end]
    assert len(carmod.read_car(head)) == 0
    err = expect_error(CarError, lambda: read_all(head))
    assert err.cid == str(ref.commit)
