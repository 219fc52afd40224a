"""atrepo.car._store: the CarFile surface, its sources (bytes, paths, streams), memory modes
and spilling, and the blocks it refuses to hand out."""

from __future__ import annotations

import glob
import hashlib
import io
import os
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import atrepo
from atrepo import car
from atrepo import car as carmod
from atrepo import cbor
from atrepo._varint import encode_varint
from atrepo.cid import CID, cid_for
from atrepo.errors import CarError, MstError
from atrepo.testing import encode_car
from _hostile import Layout, expect_error, flip, read_all, selected_blocks, work_limit


def test_roots_get_contains_len(ref_small: Any) -> None:
    carfile = car.read_car(ref_small.car)
    assert [str(r) for r in carfile.roots] == [ref_small.truth["commit_cid"]]
    assert len(carfile) == ref_small.truth["block_count"]
    root = carfile.roots[0]
    data = carfile.get(root)
    assert data is not None and str(cid_for(data)) == str(root)
    assert carfile.get(str(root)) == data == carfile.get(bytes(root))
    assert root in carfile and str(root) in carfile and 42 not in carfile
    assert carfile.get(cid_for(b"not there")) is None
    assert "blocks" in repr(carfile)


def test_iteration_yields_every_block_verified(ref_small: Any) -> None:
    carfile = car.read_car(ref_small.car)
    seen = 0
    for cid, data in carfile:
        assert isinstance(cid, CID)
        assert hashlib.sha256(data).digest() == bytes(cid)[-32:]
        seen += 1
    assert seen == len(carfile)


@pytest.mark.parametrize("mem_limit_mb", [0, 0.01, 64])
def test_sources_and_limits_agree(ref_small: Any, mem_limit_mb: float) -> None:
    data = ref_small.car.read_bytes()
    expected = dict(car.read_car(data))
    assert dict(car.read_car(ref_small.car, mem_limit_mb)) == expected
    assert dict(car.read_car(io.BytesIO(data), mem_limit_mb)) == expected
    carfile = car.read_car(str(ref_small.car), mem_limit_mb)
    assert carfile.in_memory == (mem_limit_mb * (1 << 20) >= len(data))


def test_spilled_stream_uses_and_removes_a_temp_file(ref_small: Any) -> None:
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "atrepo-*.car")))
    carfile = car.read_car(io.BytesIO(ref_small.car.read_bytes()), mem_limit_mb=0.01)
    assert not carfile.in_memory and carfile.path and os.path.exists(carfile.path)
    path = carfile.path
    carfile.close()
    assert not os.path.exists(path)
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "atrepo-*.car")))
    assert after <= before
    with pytest.raises(atrepo.CarError, match="closed"):
        carfile.get(carfile.roots[0])


def test_verify_cids_off_returns_tampered_bytes() -> None:
    good = b"\xa1\x61\x61\x01"
    cid = cid_for(good)
    tampered = encode_car([cid], [(bytes(cid), b"\xa1\x61\x61\x02")])
    with pytest.raises(atrepo.CarError, match="does not match its CID"):
        car.read_car(tampered).get(cid)
    assert car.read_car(tampered, verify_cids=False).get(cid) == b"\xa1\x61\x61\x02"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(atrepo.CarError) as info:
        car.read_car(tmp_path / "nope.car")
    assert "nope.car" in str(info.value)


def test_read_car_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        car.read_car(12345)  # type: ignore[arg-type]


def test_corrupt_block_in_car_iteration(ref: Layout) -> None:
    block = ref.first("record")
    carfile = carmod.read_car(flip(ref.data, block.data_start + 3))
    assert carfile.get(ref.commit) is not None  # other blocks still readable
    err = expect_error(CarError, lambda: carfile.get(block.cid))
    assert err.cid == str(block.cid) and err.offset == block.data_start
    err = expect_error(CarError, lambda: list(carfile))
    assert err.cid == str(block.cid)
    # unverified access hands out the (corrupt) bytes as documented
    loose = carmod.read_car(flip(ref.data, block.data_start + 3), verify_cids=False)
    assert loose.get(block.cid) == flip(ref.data, block.data_start + 3)[
        block.data_start:block.end]


def test_file_backed_iteration_with_short_cids(tmp_path: Path) -> None:
    """A block whose data starts in the first 36 bytes of a file must not crash iteration:
    checked, its CID does not match; unchecked, it comes back as written."""
    header = cbor.encode({"roots": [], "version": 1})
    block = b"\x01\x71\x12\x00" + b"x"  # CIDv1, sha2-256 code, 0-byte digest
    car = encode_varint(len(header)) + header + encode_varint(len(block)) + block
    path = tmp_path / "tiny.car"
    path.write_bytes(car)
    expect_error(CarError, lambda: list(carmod.read_car(car)))
    for verify in (True, False):
        carfile = carmod.read_car(path, mem_limit_mb=0, verify_cids=verify)
        assert not carfile.in_memory
        try:
            if verify:
                expect_error(CarError, lambda: list(carfile))
            else:
                assert [(bytes(cid), data) for cid, data in carfile] == [(block[:4], b"x")]
        finally:
            carfile.close()


def test_missing_file_is_a_car_error(tmp_path: Path) -> None:
    err = expect_error(CarError, lambda: carmod.read_car(tmp_path / "nope.car"))
    assert "nope.car" in str(err)
    expect_error(CarError, lambda: atrepo.read_car(tmp_path / "nope.car"))


# --- a text stream is not a CAR (issue 13, item 6) ----------------------------------------------

def test_text_mode_file_is_a_car_error_naming_it(ref_small: Any) -> None:
    for read in (car.read_car, atrepo.read_car):
        with open(ref_small.car, encoding="utf-8") as text:
            with pytest.raises(CarError, match="text stream") as info:
                read(text)  # type: ignore[arg-type]
        assert info.value.fields["path"] == str(ref_small.car)
        assert "binary mode" in str(info.value)
    with pytest.raises(CarError, match="text stream"):
        car.read_car(io.StringIO("not bytes"))  # type: ignore[arg-type]


# --- streams and spilling ----------------------------------------------------------------------

def test_stream_spills_to_a_temporary_file(ref_small: Any, ref_records: Any) -> None:
    data = ref_small.car.read_bytes()
    snap = read_all(io.BytesIO(data), mem_limit_mb=0.01)
    assert snap.records.equals(ref_records)
    assert snap.records.equals(read_all(data).records)
    assert snap.problems.height == 0
    carfile = carmod.read_car(io.BytesIO(data), mem_limit_mb=0.01)
    try:
        assert not carfile.in_memory
        assert carfile.path is not None and os.path.exists(carfile.path)
        spill = carfile.path
        assert len(carfile) == len(carmod.read_car(data))
        assert carfile.roots == carmod.read_car(data).roots
    finally:
        carfile.close()
    assert not os.path.exists(spill), "spill file left behind after close()"


def test_small_stream_stays_in_memory(ref_small: Any) -> None:
    carfile = carmod.read_car(io.BytesIO(ref_small.car.read_bytes()), mem_limit_mb=64)
    assert carfile.in_memory


def test_truncated_stream_is_a_car_error(ref_small: Any) -> None:
    data = ref_small.car.read_bytes()
    for n in (len(data) // 2 + 7, len(data) - 1):
        err = expect_error(CarError, lambda: read_all(io.BytesIO(data[:n]), mem_limit_mb=0.01))
        assert err.offset is not None


def test_corrupt_stream_spilled_is_still_verified(ref: Layout) -> None:
    block = ref.first("record")
    corrupt = flip(ref.data, block.data_start + 1)
    err = expect_error(CarError, lambda: read_all(io.BytesIO(corrupt), mem_limit_mb=0.01))
    assert err.cid == str(block.cid)


def test_path_with_zero_memory_limit(ref_small: Any, ref_records: Any) -> None:
    tracemalloc.start()
    try:
        carfile = carmod.read_car(ref_small.car, mem_limit_mb=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    try:
        assert not carfile.in_memory
        assert carfile.path == str(ref_small.car)
        assert len(carfile) == ref_small.truth["block_count"]
    finally:
        carfile.close()
    assert peak < 16 << 20, f"indexing a {ref_small.car.stat().st_size} byte CAR took {peak} B"
    snap = read_all(ref_small.car, mem_limit_mb=0)
    assert snap.records.equals(ref_records)
    assert snap.records.height == ref_small.truth["record_count"]


def test_path_with_zero_memory_limit_detects_corruption(ref: Layout, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.car"
    for which, block in selected_blocks(ref).items():
        path.write_bytes(flip(ref.data, block.data_start + 2))
        err = expect_error(CarError, lambda: read_all(path, mem_limit_mb=0))
        assert err.cid == str(block.cid), which
        # flipped stored CIDs are caught on this path (the CID bytes are compared)
        path.write_bytes(flip(ref.data, block.cid_start + 10))
        with work_limit(20), pytest.raises((CarError, MstError)):
            read_all(path, mem_limit_mb=0)


@pytest.mark.parametrize("head", [b"\x01\x70\x12\x20", b"\x01\xa9\x02\x12\x20"],
                         ids=["dag-pb, 36 bytes", "dag-json, 37 bytes"])
@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "file"])
def test_iteration_reads_each_cid_forward(head: bytes, on_disk: bool, tmp_path: Path) -> None:
    # a 36-byte CIDv1 of another codec ends like a 34-byte CIDv0 ("12 20" + digest) and a
    # 37-byte one has no fixed length at all: iteration must give back the CID as written
    data = cbor.encode({"x": 1})
    raw = head + hashlib.sha256(data).digest()
    other = cid_for(b"\x00")
    blob = encode_car([other], [(bytes(other), b"\x00"), (raw, data)])
    source: Any = blob
    if on_disk:
        source = tmp_path / "codecs.car"
        source.write_bytes(blob)
    carfile = carmod.read_car(source, mem_limit_mb=0 if on_disk else 64)
    try:
        assert [bytes(cid) for cid, _ in carfile] == [bytes(other), raw]
        assert [block for _, block in carfile] == [b"\x00", data]
    finally:
        carfile.close()
