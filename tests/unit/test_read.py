"""atrepo.read_car (atrepo/_read.py): a repository CAR from local input to a RepoSnapshot."""

from __future__ import annotations

import io

import pytest

import atrepo
from atrepo._read import read_car
from atrepo.snapshot import walks_in_parallel


def _rows(snap: atrepo.RepoSnapshot) -> list[tuple[str, str, str]]:
    frame = snap.records
    return list(zip(frame["collection"], frame["rkey"], frame["cid"]))


def test_sources_agree(ref_small, tmp_path):
    data = ref_small.car.read_bytes()
    expected = _rows(read_car(data))
    assert expected == ref_small.records
    assert _rows(read_car(str(ref_small.car), mem_limit_mb=0)) == expected
    assert _rows(read_car(ref_small.car, mem_limit_mb=0)) == expected     # a Path
    assert _rows(read_car(io.BytesIO(data), mem_limit_mb=0.05)) == expected
    with ref_small.car.open("rb") as f:
        assert _rows(read_car(f)) == expected


def test_did_and_key_are_checked_when_given(ref_small):
    truth = ref_small.truth
    snap = read_car(ref_small.car, did=truth["did"], signing_key=truth["signing_key"])
    assert snap.verified and snap.source == "file" and snap.bytes_downloaded == 0
    with pytest.raises(atrepo.SignatureError):
        read_car(ref_small.car, did="did:plc:" + "a" * 24)


def test_a_missing_file_is_a_car_error_naming_it(tmp_path):
    missing = tmp_path / "nothing.car"
    with pytest.raises(atrepo.CarError, match="cannot open CAR file") as info:
        read_car(missing)
    assert info.value.fields["path"] == missing or str(missing) in str(info.value)


def test_only_big_unfiltered_files_are_walked_by_workers():
    big = 8 << 20
    assert walks_in_parallel(big, None, 2)
    assert not walks_in_parallel(big - 1, None, 2)
    assert not walks_in_parallel(big, ["app.bsky.feed.post"], 2)   # a filter reads few nodes
    assert not walks_in_parallel(big, None, 0)
