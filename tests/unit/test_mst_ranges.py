"""atrepo.mst._ranges: each subtree's key interval, and pruning by key ranges."""

from __future__ import annotations

from typing import Any

from atrepo import car, cbor, mst
from atrepo.cid import cid_for
from atrepo.mst._ranges import Subtree, byte_ranges, in_order, in_ranges, overlaps

A, B, C = b"app.x/a", b"app.x/b", b"app.x/c"
VALUE = bytes(cid_for(b"v"))
LEFT, MIDDLE, RIGHT = (bytes(cid_for(name)) for name in (b"left", b"middle", b"right"))
ENTRIES = [(A, VALUE, MIDDLE), (C, VALUE, RIGHT)]
HERE = Subtree(b"node", b"app.w/z", b"app.y/a", 4, 2)


def test_a_node_is_laid_out_with_each_subtree_between_its_keys() -> None:
    assert list(in_order(LEFT, ENTRIES, HERE, 3, None)) == [
        Subtree(LEFT, b"app.w/z", A, 3, 3), ENTRIES[0],
        Subtree(MIDDLE, A, C, 3, 3), ENTRIES[1],
        Subtree(RIGHT, C, b"app.y/a", 3, 3)]
    assert list(in_order(None, [(A, VALUE, None)], HERE, 3, None)) == [(A, VALUE, None)]


def test_subtrees_outside_every_range_are_left_out_but_every_key_stays() -> None:
    ranges = byte_ranges([("app.x/b", "app.x/bz")])
    assert ranges == [(B, b"app.x/bz")]
    assert list(in_order(LEFT, ENTRIES, HERE, 3, ranges)) == [
        ENTRIES[0], Subtree(MIDDLE, A, C, 3, 3), ENTRIES[1]]


def test_interval_and_key_tests() -> None:
    ranges = [(B, C)]
    assert overlaps(A, C, ranges) and overlaps(None, None, ranges)
    assert not overlaps(C, None, ranges) and not overlaps(None, B, ranges)
    assert in_ranges(B, ranges) and not in_ranges(C, ranges) and not in_ranges(A, ranges)
    assert byte_ranges(None) is None


def test_a_filtered_walk_reads_only_what_it_needs(ref_small: Any) -> None:
    blocks = car.read_car(ref_small.car)
    data_cid = cbor.decode(blocks.get(blocks.roots[0]))["data"]  # type: ignore[arg-type]
    fetched: list[bytes] = []

    def fetch(raw: bytes) -> bytes | None:
        fetched.append(raw)
        return blocks.get_raw(raw)

    everything = mst.collect(blocks.get_raw, bytes(data_cid))
    likes = [("app.bsky.feed.like/", "app.bsky.feed.like0")]
    keys, values = mst.collect(fetch, bytes(data_cid), likes)
    expected = [(k, v) for k, v in zip(*everything) if k.startswith(b"app.bsky.feed.like/")]
    assert list(zip(keys, values)) == expected and expected
    nodes = len(blocks) - 1 - len(everything[0])  # every block but the commit and records
    assert len(fetched) < nodes
