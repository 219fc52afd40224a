"""atrepo.diff (atrepo/_diff.py) against repositories written by the reference.

``ref_small`` (gen_repo.mjs) holds a first commit and a second commit with creates, updates
and deletes made by ``@atproto/repo``, and the reference's own ``DataDiff`` of the two.
"""

from __future__ import annotations

import orjson
import pytest

import atrepo
from atrepo import cbor
from atrepo._varint import encode_varint
from atrepo.cid import CID
from atrepo.frames import DIFF_SCHEMA


def _action(old: str | None, new: str | None) -> str:
    return "create" if old is None else "delete" if new is None else "update"


def test_diff_frame_equals_reference_diff(ref_small):
    old, new = atrepo.read_car(ref_small.car), atrepo.read_car(ref_small.car2)
    frame = atrepo.diff(old, new)
    expected = sorted(ref_small.diff["ops"], key=lambda op: tuple(op[0].split("/", 1)))
    assert [(f"{c}/{r}", o, n) for c, r, o, n in
            frame.select("collection", "rkey", "old_cid", "new_cid").iter_rows()] == \
        [tuple(op) for op in expected]
    assert frame["action"].to_list() == [_action(o, n) for _, o, n in expected]
    assert {"create", "update", "delete"} <= set(frame["action"])
    for row in frame.iter_rows(named=True):
        assert row["uri"] == f"at://{new.did}/{row['collection']}/{row['rkey']}"
        now = new.get(row["collection"], row["rkey"])
        before = old.get(row["collection"], row["rkey"])
        assert (None if row["record"] is None else orjson.loads(row["record"])) == now
        assert (None if row["old_record"] is None else orjson.loads(row["old_record"])) == before


def test_diff_is_sorted_by_collection_then_rkey(ref_small):
    frame = atrepo.diff(atrepo.read_car(ref_small.car), atrepo.read_car(ref_small.car2))
    assert frame.height > 10
    assert frame.select("collection", "rkey").rows() == \
        sorted(frame.select("collection", "rkey").rows())


def test_diff_respects_collections(ref_small):
    wanted = ["app.bsky.feed.like"]
    old = atrepo.read_car(ref_small.car, collections=wanted)
    new = atrepo.read_car(ref_small.car2, collections=wanted)
    frame = atrepo.diff(old, new)
    expected = [op for op in ref_small.diff["ops"] if op[0].startswith("app.bsky.feed.like/")]
    assert expected and frame.height == len(expected)
    assert set(frame["collection"]) == {"app.bsky.feed.like"}
    # a filter on one side is enough, and disjoint filters compare nothing
    assert atrepo.diff(atrepo.read_car(ref_small.car), new).equals(frame)
    posts = atrepo.read_car(ref_small.car2, collections=["app.bsky.feed.post"])
    assert atrepo.diff(old, posts).height == 0


def test_diff_from_nothing_and_of_equal_snapshots(ref_small):
    snap = atrepo.read_car(ref_small.car)
    assert atrepo.diff(snap, snap).height == 0
    created = atrepo.diff(None, snap)
    assert created.height == len(snap) and set(created["action"]) == {"create"}
    assert created["old_record"].null_count() == created.height
    assert atrepo.diff(snap, snap).schema == created.schema == DIFF_SCHEMA  # empty or not


def test_diff_of_two_repositories_is_refused(ref_small, ref_p256):
    with pytest.raises(atrepo.AtrepoError, match="different repositories"):
        atrepo.diff(atrepo.read_car(ref_small.car), atrepo.read_car(ref_p256.car))


# -- snapshots read without checking their blocks (issue 13, item 8) ---------------------------

def _with_block(car_bytes: bytes, cid: str, data: bytes) -> bytes:
    """A CAR with one more block appended: ``data`` under ``cid``, whatever they hold."""
    raw = bytes(CID.decode(cid))
    return car_bytes + encode_varint(len(raw) + len(data)) + raw + data


@pytest.mark.parametrize("forged", [
    cbor.encode({"e": [], "l": None}),   # a well-formed empty node: the old tree "vanishes"
    cbor.encode({"e": 5, "l": None}),    # not a node's shape at all
    b"\xff\x00",                         # not even DAG-CBOR
], ids=["empty-node", "bad-shape", "not-cbor"])
def test_a_forged_node_in_unchecked_blocks_is_a_car_error_naming_it(ref_small, forged):
    """A node of the old tree only (deleted by the new commit, below the root) forged in the
    new CAR read with verify_cids=False: the diff reads it from there first, so it must hash
    it rather than trust it."""
    gone = sorted(set(ref_small.diff["deleted_nodes"]) - {ref_small.truth["data_cid"]})[0]
    new_car = _with_block(ref_small.car2.read_bytes(), gone, forged)
    old = atrepo.read_car(ref_small.car)
    new = atrepo.read_car(new_car, verify_cids=False)
    with pytest.raises(atrepo.CarError, match="does not match its CID") as info:
        atrepo.diff(old, new)
    assert info.value.fields["cid"] == gone


def test_unchecked_snapshots_with_honest_blocks_diff_as_checked_ones(ref_small):
    checked = atrepo.diff(atrepo.read_car(ref_small.car), atrepo.read_car(ref_small.car2))
    unchecked = atrepo.diff(atrepo.read_car(ref_small.car, verify_cids=False),
                            atrepo.read_car(ref_small.car2, verify_cids=False))
    assert checked.height > 10 and unchecked.equals(checked)
