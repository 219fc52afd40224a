"""atrepo.car: the CarFile surface, sources and memory modes."""

from __future__ import annotations

import glob
import hashlib
import io
import os
import tempfile

import pytest

import atrepo
from atrepo import car
from atrepo.cid import CID, cid_for
from atrepo.testing import encode_car


def test_roots_get_contains_len(ref_small):
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


def test_iteration_yields_every_block_verified(ref_small):
    carfile = car.read_car(ref_small.car)
    seen = 0
    for cid, data in carfile:
        assert isinstance(cid, CID)
        assert hashlib.sha256(data).digest() == bytes(cid)[-32:]
        seen += 1
    assert seen == len(carfile)


@pytest.mark.parametrize("mem_limit_mb", [0, 0.01, 64])
def test_sources_and_limits_agree(ref_small, mem_limit_mb):
    data = ref_small.car.read_bytes()
    expected = dict(car.read_car(data))
    assert dict(car.read_car(ref_small.car, mem_limit_mb)) == expected
    assert dict(car.read_car(io.BytesIO(data), mem_limit_mb)) == expected
    carfile = car.read_car(str(ref_small.car), mem_limit_mb)
    assert carfile.in_memory == (mem_limit_mb * (1 << 20) >= len(data))


def test_spilled_stream_uses_and_removes_a_temp_file(ref_small):
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


def test_verify_cids_off_returns_tampered_bytes():
    good = b"\xa1\x61\x61\x01"
    cid = cid_for(good)
    tampered = encode_car([cid], [(bytes(cid), b"\xa1\x61\x61\x02")])
    with pytest.raises(atrepo.CarError, match="does not match its CID"):
        car.read_car(tampered).get(cid)
    assert car.read_car(tampered, verify_cids=False).get(cid) == b"\xa1\x61\x61\x02"


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(atrepo.CarError) as info:
        car.read_car(tmp_path / "nope.car")
    assert "nope.car" in str(info.value)


def test_read_car_rejects_other_types():
    with pytest.raises(TypeError):
        car.read_car(12345)  # type: ignore[arg-type]


def test_colliding_index_keys_are_told_apart():
    """Two CIDs with the same last 7 bytes (forced) still resolve to their own blocks."""
    a, b = b"\xa1\x61\x61\x01", b"\xa1\x61\x61\x02"
    cid_a = cid_for(a)
    raw_b = bytes(cid_for(b))
    fake_b = raw_b[:-7] + bytes(cid_a)[-7:]   # same index key as a, different CID
    carfile = car.read_car(encode_car([cid_a], [(bytes(cid_a), a), (fake_b, b)]),
                           verify_cids=False)
    assert carfile.get(cid_a) == a
    assert carfile.get(fake_b) == b
    assert len(carfile) == 2


@pytest.mark.parametrize("mem_limit_mb", [64, 0])  # held in memory / mapped from the file
def test_extend_indexes_what_was_appended(tmp_path, mem_limit_mb):
    first, second = b"\xa1ab\x01", b"\xa1ab\x02"
    path = tmp_path / "grows.car"
    path.write_bytes(encode_car([cid_for(first)], [(bytes(cid_for(first)), first)]))
    carfile = car.read_car(path, mem_limit_mb)
    assert cid_for(second) not in carfile and carfile.in_memory == bool(mem_limit_mb)
    tail = encode_car([cid_for(first)], [(bytes(cid_for(second)), second)])
    header_end = len(encode_car([cid_for(first)], []))
    with path.open("ab") as out:
        out.write(tail[header_end:] + b"\x99\x01 an unfinished block")
    carfile.extend(len(path.read_bytes()) - len(b"\x99\x01 an unfinished block"))
    assert carfile.get(cid_for(second)) == second and carfile.get(cid_for(first)) == first
    assert len(carfile) == 2 and carfile.reopenable()
    with pytest.raises(atrepo.CarError, match="replaced or is shorter than expected"):
        carfile.extend(path.stat().st_size + 1)
    path.unlink()
    path.write_bytes(b"replaced by something shorter")
    with pytest.raises(atrepo.CarError, match="replaced or is shorter than expected"):
        carfile.extend(carfile.size + 1)
