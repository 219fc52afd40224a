"""atrepo.mst against the reference implementation's own trees and diffs."""

from __future__ import annotations

import pytest

import atrepo
from atrepo import car, mst
from atrepo.cid import CID


def _blocks(*paths):
    merged = {}
    for path in paths:
        for cid, data in car.read_car(path):
            merged[cid] = data
    return merged


def test_build_gives_reference_root(ref_small, ref_p256):
    for ref, records, truth in ((ref_small, ref_small.records, ref_small.truth),
                                (ref_small, ref_small.records2, ref_small.truth2),
                                (ref_p256, ref_p256.records, ref_p256.truth)):
        root, blocks = mst.build((f"{c}/{r}", CID.decode(cid)) for c, r, cid in records)
        assert str(root) == truth["data_cid"]
        reference_blocks = _blocks(ref.car, ref.car2) if ref is ref_small else _blocks(ref.car)
        for cid, data in blocks.items():   # every node we build is byte-identical to theirs
            assert reference_blocks[cid] == data


def test_walk_equals_reference_listing(ref_small):
    blocks = car.read_car(ref_small.car)
    got = [(key, str(cid)) for key, cid in mst.walk(blocks, ref_small.truth["data_cid"])]
    assert got == [(f"{c}/{r}", cid) for c, r, cid in ref_small.records]


def test_diff_equals_reference_diff(ref_small):
    blocks = _blocks(ref_small.car, ref_small.car2)
    result = mst.diff(blocks, ref_small.truth["data_cid"], ref_small.truth2["data_cid"])
    expected = ref_small.diff
    assert [(k, o and str(o), n and str(n)) for k, o, n in result.record_ops] == \
        [tuple(op) for op in expected["ops"]]
    assert {str(c) for c in result.created_nodes} == set(expected["created_nodes"])
    assert {str(c) for c in result.deleted_nodes} == set(expected["deleted_nodes"])


def test_diff_skips_unchanged_subtrees(ref_small):
    """Only nodes on changed paths are fetched: far fewer than the whole tree."""
    blocks = _blocks(ref_small.car, ref_small.car2)
    fetched = []

    class Counting(dict):
        def get(self, cid, default=None):
            fetched.append(cid)
            return super().get(cid, default)

    counting = Counting(blocks)
    mst.diff(counting, ref_small.truth["data_cid"], ref_small.truth2["data_cid"])
    total_nodes = len(mst.build((f"{c}/{r}", CID.decode(cid))
                                for c, r, cid in ref_small.records)[1])
    changed = len(ref_small.diff["created_nodes"]) + len(ref_small.diff["deleted_nodes"])
    assert len(fetched) <= changed + 2
    assert len(fetched) < total_nodes


def test_diff_of_identical_roots_is_empty(ref_small):
    blocks = car.read_car(ref_small.car)
    result = mst.diff(blocks, ref_small.truth["data_cid"], ref_small.truth["data_cid"])
    assert result.record_ops == [] and not result.created_nodes and not result.deleted_nodes


def test_since_car_plus_old_blocks_is_complete(ref_small):
    """getRepo?since= blocks over the previous snapshot's blocks give the new tree."""
    old = _blocks(ref_small.car)
    new = dict(old)
    new.update(_blocks(ref_small.since))
    keys = [k for k, _ in mst.walk(new, ref_small.truth2["data_cid"])]
    assert keys == [f"{c}/{r}" for c, r, _ in ref_small.records2]
    with pytest.raises(atrepo.MstError):
        list(mst.walk(_blocks(ref_small.since), ref_small.truth2["data_cid"]))


def test_diff_of_trees_whose_roots_are_empty_above_a_left_subtree():
    """A root with no entries, only a left link, sits one layer above its child."""
    from atrepo import cbor
    from atrepo.cid import cid_for

    def wrapped(items):
        root, blocks = mst.build(items)
        top = cbor.encode({"e": [], "l": root})
        return cid_for(top), {**blocks, cid_for(top): top}

    old_items = {f"app.bsky.feed.post/3k{i:011d}": cid_for(b"%d" % i) for i in range(40)}
    new_items = {**old_items, "app.bsky.feed.post/3k00000000005": cid_for(b"changed")}
    old_root, old_blocks = wrapped(old_items.items())
    new_root, new_blocks = wrapped(new_items.items())
    blocks = {**old_blocks, **new_blocks}
    assert [k for k, _ in mst.walk(blocks, new_root)] == sorted(new_items)
    result = mst.diff(blocks, old_root, new_root)
    assert result.record_ops == [("app.bsky.feed.post/3k00000000005",
                                  old_items["app.bsky.feed.post/3k00000000005"],
                                  new_items["app.bsky.feed.post/3k00000000005"])]
    assert old_root in result.deleted_nodes and new_root in result.created_nodes
