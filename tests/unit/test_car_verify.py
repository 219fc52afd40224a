"""atrepo.car._verify: a block is handed out only when it is what its CID names.

Flipped bytes in a block, in its stored CID, anywhere in the file, and blocks swapped
between CIDs all end in an error naming the CID; an identity-multihash CID must carry the
block itself (issue 13, item 15).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from atrepo import car as carmod
from atrepo.car import check_block
from atrepo.cid import cid_for
from atrepo.errors import CarError, MstError
from atrepo.testing import encode_car
from _hostile import (Layout, expect_error, expect_located, flip, read_all, selected_blocks, swap,
                     work_limit)


@pytest.mark.parametrize("which", ["commit", "mst-root", "mst-leaf", "record", "last-block"])
def test_flip_in_block_data_is_a_cid_mismatch(ref: Layout, which: str) -> None:
    block = selected_blocks(ref)[which]
    for offset in range(block.data_start, block.end):
        for mask in ((0x01, 0x80) if offset % 8 == 0 else (0x01,)):
            err = expect_error(CarError, lambda: read_all(flip(ref.data, offset, mask)))
            assert err.cid == str(block.cid), f"flip at {offset}: {err!r}"


@pytest.mark.parametrize("which", ["commit", "mst-root", "mst-leaf", "record", "last-block"])
def test_flip_in_stored_cid_is_detected(ref: Layout, which: str) -> None:
    """A block whose stored CID no longer matches its bytes is a corrupt CAR.

    Whatever happens, reading with verify_cids=True must not succeed as if nothing was wrong.
    """
    block = selected_blocks(ref)[which]
    silent = []
    for offset in range(block.cid_start, block.data_start):
        corrupt = flip(ref.data, offset)
        try:
            with work_limit(20):
                read_all(corrupt)
        except (CarError, MstError) as exc:
            expect_located(exc)
        else:
            silent.append(offset - block.cid_start)
    assert not silent, (f"{which} block {block.cid}: flipping byte(s) {silent} of its stored "
                        f"CID went unnoticed")


def test_flip_sweep_across_the_file(ref: Layout) -> None:
    """Flips spread over the whole file (outside stored CIDs, tested above) all fail."""
    cid_bytes: set[int] = set()
    for b in ref.blocks:
        cid_bytes.update(range(b.cid_start, b.data_start))
    step = len(ref.data) // 300
    offsets = [o for o in range(step // 2, len(ref.data), step) if o not in cid_bytes]
    assert len(offsets) > 250
    for offset in offsets:
        with work_limit(20):
            with pytest.raises((CarError, MstError)) as info:
                read_all(flip(ref.data, offset, 0x04))
        expect_located(info.value)


def test_reencoded_ref_reads_identically(ref: Layout, ref_records: Any) -> None:
    # the rebuild helpers are faithful: re-encoding all blocks gives the same bytes and records
    assert encode_car([ref.commit], ref.pairs()) == ref.data
    assert read_all(encode_car([ref.commit], ref.pairs())).records.equals(ref_records)


@pytest.mark.parametrize("kinds", [("record", "record"), ("node", "node"), ("commit", "node"),
                                   ("record", "node"), ("commit", "record")])
def test_swapped_block_data_names_a_cid(ref: Layout, kinds: tuple[str, str]) -> None:
    candidates = [b for b in ref.blocks if b.kind == kinds[0]]
    a = candidates[0]
    b = next(x for x in ref.blocks if x.kind == kinds[1] and x is not a)
    err = expect_error(CarError, lambda: read_all(swap(ref, a, b)))
    assert err.cid in {str(a.cid), str(b.cid)}


# --- the whole multihash --------------------------------------------------------------------

BLOCK = b"\xa1\x61\x61\x01"


def _identity_cid(digest: bytes) -> bytes:
    """A dag-cbor CIDv1 with an identity multihash (code 0x00) inlining ``digest``."""
    return b"\x01\x71\x00" + bytes([len(digest)]) + digest


def test_identity_cid_naming_other_bytes_is_refused() -> None:
    # regression (issue 13, item 15): the inline bytes end like a sha2-256 multihash of the
    # block, which a check of the last 32 bytes alone took for the block's own digest
    forged = _identity_cid(b"\x12\x20" + hashlib.sha256(BLOCK).digest())
    with pytest.raises(CarError, match="does not match its CID") as info:
        check_block(forged, BLOCK)
    assert info.value.cid is not None
    car = carmod.read_car(encode_car([], [(forged, BLOCK)]))
    with pytest.raises(CarError, match="does not match its CID"):
        car.get(forged)
    with pytest.raises(CarError, match="does not match its CID"):
        list(carmod.CarReader().feed(encode_car([], [(forged, BLOCK)])))
    assert carmod.read_car(encode_car([], [(forged, BLOCK)]), verify_cids=False).get(forged) \
        == BLOCK


def test_identity_cid_holding_the_block_is_the_block() -> None:
    honest = _identity_cid(BLOCK)
    check_block(honest, BLOCK)
    assert carmod.read_car(encode_car([], [(honest, BLOCK)])).get(honest) == BLOCK
    with pytest.raises(CarError, match="does not match its CID"):
        check_block(honest, BLOCK + b"\x00")


def test_sha256_cids_of_every_form_are_checked() -> None:
    cid = cid_for(BLOCK)
    check_block(bytes(cid), BLOCK)
    check_block(bytes(cid)[2:], BLOCK)  # CIDv0: the bare multihash
    for raw in (bytes(cid), bytes(cid)[2:]):
        with pytest.raises(CarError, match="does not match its CID"):
            check_block(raw, BLOCK + b"\x00")
    short = bytes(cid)[:4] + bytes(cid)[4:20]  # a 16-byte "sha2-256" digest
    with pytest.raises(CarError):
        check_block(short, BLOCK)


@pytest.mark.parametrize("raw", [b"\x01\x71\x13\x20" + b"\x00" * 32, b"\x01\x71\x12",
                                 b"\x02\x71\x00\x01\x00", b"\x01\x71\x00\x05\x00"],
                         ids=["sha512 code", "cut short", "version 2", "digest too short"])
def test_uncheckable_cids_are_car_errors(raw: bytes) -> None:
    with pytest.raises(CarError) as info:
        check_block(raw, BLOCK, 7)
    assert info.value.offset == 7 and info.value.cid
