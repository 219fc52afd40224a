"""atrepo._parallel and atrepo._worker: big CARs read from a path, walked and decoded with
worker processes, stay as strict as a read in one process, and a failed read leaves nothing
behind for the next."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import atrepo
from atrepo import car as carmod
from atrepo._varint import encode_varint
from atrepo.errors import AtrepoError, CarError, MstError
from _hostile import (Block, Layout, both, drop, expect_error, flip, frame_layout, read_all, swap,
                     time_limit)


@pytest.fixture(scope="module")
def medium(ref_medium: Any) -> Layout:
    data = ref_medium.car.read_bytes()
    assert len(data) >= 8 << 20, "ref_medium should be big enough for the parallel walk"
    return frame_layout(data, {cid for _, _, cid in ref_medium.records})


@pytest.fixture(scope="module")
def medium_records(ref_medium: Any) -> Any:
    return read_all(ref_medium.car.read_bytes()).records


def test_medium_from_path_equals_from_bytes(ref_medium: Any, medium_records: Any) -> None:
    with time_limit(120):
        snap = read_all(ref_medium.car, signing_key=ref_medium.truth["signing_key"])
    assert snap.verified
    assert snap.records.equals(medium_records)
    assert medium_records.height == ref_medium.truth["record_count"]


def _middle_node(layout: Layout) -> Block:
    nodes = [b for b in layout.blocks if b.kind == "node" and b.cid != layout.mst_root]
    return nodes[len(nodes) // 2]


def test_medium_path_corrupt_node(medium: Layout, tmp_path: Path) -> None:
    block = _middle_node(medium)
    path = tmp_path / "corrupt.car"
    path.write_bytes(flip(medium.data, block.data_start + 5))
    err = expect_error(CarError, lambda: read_all(path), seconds=120)
    assert err.cid == str(block.cid)
    assert err.offset == block.data_start


def test_medium_path_dropped_node(medium: Layout, tmp_path: Path) -> None:
    block = _middle_node(medium)
    path = tmp_path / "dropped.car"
    path.write_bytes(drop(medium, block))
    err = expect_error(MstError, lambda: read_all(path), seconds=120)
    assert err.cid == str(block.cid)


def test_medium_path_swapped_nodes(medium: Layout, tmp_path: Path) -> None:
    nodes = [b for b in medium.blocks if b.kind == "node" and b.cid != medium.mst_root]
    a, b = nodes[len(nodes) // 3], nodes[2 * len(nodes) // 3]
    path = tmp_path / "swapped.car"
    path.write_bytes(swap(medium, a, b))
    err = expect_error(CarError, lambda: read_all(path), seconds=120)
    assert err.cid in {str(a.cid), str(b.cid)}


def test_medium_path_corrupt_and_dropped_records(medium: Layout, tmp_path: Path) -> None:
    records = [b for b in medium.blocks if b.kind == "record"]
    block = records[len(records) // 2]
    path = tmp_path / "record.car"
    path.write_bytes(flip(medium.data, block.data_start + 5))
    err = expect_error(CarError, lambda: read_all(path), seconds=120)
    assert err.cid == str(block.cid)
    path.write_bytes(drop(medium, records[-1]))
    missing = expect_error(MstError, lambda: read_all(path), seconds=120)
    assert missing.cid == str(records[-1].cid)


def test_medium_path_truncated(medium: Layout, tmp_path: Path) -> None:
    path = tmp_path / "truncated.car"
    for n in (len(medium.data) // 2 + 3, len(medium.data) - 1):
        path.write_bytes(medium.data[:n])
        err = expect_error(CarError, lambda: read_all(path), seconds=120)
        assert err.offset is not None


# --- big malformed files, and the worker processes they involve --------------------------------

def test_block_larger_than_max_block_size(ref: Layout, tmp_path: Path) -> None:
    size = carmod.MAX_BLOCK_SIZE + 1
    head = ref.data[:ref.header_end]
    car = head + encode_varint(size) + bytes(ref.commit) + b"\x00" * (size - 36)
    for func in both(car):
        err = expect_error(CarError, func)
        assert err.offset == ref.header_end
    path = tmp_path / "big.car"
    path.write_bytes(car)
    err = expect_error(CarError, lambda: list(carmod.read_car(path, mem_limit_mb=1)))
    assert err.offset is not None
    err = expect_error(CarError, lambda: read_all(path, mem_limit_mb=1))
    # only the claim, without the bytes: must not allocate or wait for them (the memory
    # peak is the assertion; the time limit only ends a hang, slow under tracemalloc)
    tracemalloc.start()
    try:
        claim = head + encode_varint(1 << 40) + bytes(ref.commit)
        for func in both(claim):
            expect_error(CarError, func, seconds=120)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"a length claim made atrepo allocate {peak >> 20} MiB"


def _big_bad_car(kind: str, small: Layout, big: Layout) -> bytes:
    if kind == "oversized block":
        size = carmod.MAX_BLOCK_SIZE + 1
        return (small.data[:small.header_end] + encode_varint(size) + bytes(small.commit)
                + b"\x00" * (size - 36))
    if kind == "truncated by one byte":
        return big.data[:-1]
    if kind == "header version 2":
        header = big.data[:big.header_end]
        assert header.count(b"gversion\x01") == 1
        return header.replace(b"gversion\x01", b"gversion\x02") + big.data[big.header_end:]
    return big.data + b"\xff" * 20  # garbage after the last block


@pytest.mark.parametrize("kind", ["oversized block", "truncated by one byte",
                                  "header version 2", "garbage tail"])
def test_failed_big_read_does_not_poison_the_next(kind: str, ref: Layout, medium: Layout,
                                                  ref_medium: Any, medium_records: Any,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that fails must not leave its error behind for the next read to raise.

    A path of 8 MiB or more is indexed by worker processes too; when the caller's own
    indexing fails first, the workers' replies must not be delivered to a later read.
    """
    monkeypatch.setenv("ATREPO_WORKERS", "1")
    path = tmp_path / "bad.car"
    path.write_bytes(_big_bad_car(kind, ref, medium))
    assert path.stat().st_size >= 8 << 20
    expect_error(CarError, lambda: read_all(path), seconds=60)
    with time_limit(120):
        snap = read_all(ref_medium.car)  # a different, valid file
    assert snap.records.equals(medium_records)


@pytest.fixture(scope="module", autouse=True)
def _leave_workers_clean(ref_medium: Any) -> Iterator[None]:
    """Do not hand stale worker replies to other test modules (see the test above)."""
    yield
    for _ in range(8):
        try:
            atrepo.read_car(ref_medium.car).records  # noqa: B018
            break
        except AtrepoError:
            continue
