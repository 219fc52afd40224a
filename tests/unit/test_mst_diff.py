"""atrepo.mst._diff against the reference implementation's own diffs, at the cost of the change."""

from __future__ import annotations

from typing import Any

from atrepo import car, cbor, mst
from atrepo.cid import CID, cid_for
from _hostile import reference_blocks


def test_diff_equals_reference_diff(ref_small: Any) -> None:
    blocks = reference_blocks(ref_small.car, ref_small.car2)
    result = mst.diff(blocks, ref_small.truth["data_cid"], ref_small.truth2["data_cid"])
    expected = ref_small.diff
    assert [(k, o and str(o), n and str(n)) for k, o, n in result.record_ops] == \
        [tuple(op) for op in expected["ops"]]
    assert {str(c) for c in result.created_nodes} == set(expected["created_nodes"])
    assert {str(c) for c in result.deleted_nodes} == set(expected["deleted_nodes"])


def test_diff_skips_unchanged_subtrees(ref_small: Any) -> None:
    """Only nodes on changed paths are fetched: far fewer than the whole tree."""
    blocks = reference_blocks(ref_small.car, ref_small.car2)
    fetched: list[CID] = []

    class Counting(dict[CID, bytes]):
        def get(self, cid: CID, default: Any = None) -> Any:
            fetched.append(cid)
            return super().get(cid, default)

    counting = Counting(blocks)
    mst.diff(counting, ref_small.truth["data_cid"], ref_small.truth2["data_cid"])
    total_nodes = len(mst.build((f"{c}/{r}", CID.decode(cid))
                                for c, r, cid in ref_small.records)[1])
    changed = len(ref_small.diff["created_nodes"]) + len(ref_small.diff["deleted_nodes"])
    assert len(fetched) <= changed + 2
    assert len(fetched) < total_nodes


def test_diff_of_identical_roots_is_empty(ref_small: Any) -> None:
    blocks = car.read_car(ref_small.car)
    result = mst.diff(blocks, ref_small.truth["data_cid"], ref_small.truth["data_cid"])
    assert result.record_ops == [] and not result.created_nodes and not result.deleted_nodes


def test_diff_of_trees_whose_roots_are_empty_above_a_left_subtree() -> None:
    """A root with no entries, only a left link, sits one layer above its child."""

    def wrapped(items: Any) -> tuple[CID, dict[CID, bytes]]:
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
