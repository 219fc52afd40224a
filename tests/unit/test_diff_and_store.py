"""atrepo.diff and the snapshot store, against repositories written by the reference.

``ref_small`` (gen_repo.mjs) holds a first commit, a second commit with creates, updates and
deletes made by ``@atproto/repo``, the reference's own ``DataDiff`` of the two, and the
``getRepo?since=`` CAR of the second commit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest

import atrepo
from atrepo import car, mst
from atrepo._io.store import PACK, SnapshotStore
from atrepo.cid import CID
from atrepo.snapshot import open_snapshot
from atrepo.testing import encode_car


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


def test_diff_of_two_repositories_is_refused(ref_small, ref_p256):
    with pytest.raises(atrepo.AtrepoError, match="different repositories"):
        atrepo.diff(atrepo.read_car(ref_small.car), atrepo.read_car(ref_p256.car))


# -- the store ------------------------------------------------------------------------------

def _store_file(store: SnapshotStore, did: str, download: Path, commit_cid: str,
                key: str | None, source: str) -> atrepo.RepoSnapshot:
    """What the client does with a download once its commit checked out."""
    return store.add(car.read_car(download, 64), did=did, commit_cid=commit_cid,
                     signing_key=key, handle=None, source=source, mem_limit_mb=64)


def _copy(path: Path, tmp_path: Path) -> Path:
    target = tmp_path / f"download-{path.name}"
    shutil.copyfile(path, target)
    return target


def test_store_assembles_a_since_car_into_the_new_tree(ref_small, tmp_path):
    store = SnapshotStore(tmp_path / "repos", max_bytes=1 << 40)
    did, key = ref_small.truth["did"], ref_small.truth["signing_key"]
    first = _store_file(store, did, _copy(ref_small.car, tmp_path),
                        ref_small.truth["commit_cid"], key, "full")
    second = _store_file(store, did, _copy(ref_small.since, tmp_path),
                         ref_small.truth2["commit_cid"], key, "incremental")
    assert second.verified and second.source == "incremental"
    assert [tuple(r) for r in second.records.select("collection", "rkey", "cid").rows()] == \
        ref_small.records2
    assert [e.rev for e in store.snapshots(did)] == [first.rev, second.rev]
    pack = tmp_path / "repos" / next(p.name for p in (tmp_path / "repos").iterdir()) / PACK
    # shared blocks are stored once: less than the two full CARs, at most first + since
    assert pack.stat().st_size <= ref_small.car.stat().st_size + ref_small.since.stat().st_size
    assert pack.stat().st_size < ref_small.car.stat().st_size + ref_small.car2.stat().st_size
    reopened = [open_snapshot(store.open_pack(did, 64), root=e.commit_cid)
                for e in store.snapshots(did)]
    assert atrepo.diff(*reopened).equals(
        atrepo.diff(atrepo.read_car(ref_small.car), atrepo.read_car(ref_small.car2)))


def _without_one_record_block(ref_small, tmp_path: Path) -> tuple[Path, str]:
    """The since CAR minus one block that is a record of the new commit (not a node)."""
    since = car.read_car(ref_small.since)
    new_leaves = {cid for _, cid in mst.walk(car.read_car(ref_small.car2),
                                              ref_small.truth2["data_cid"])}
    dropped = next(cid for cid, _ in since if cid in new_leaves)
    blocks = [(bytes(cid), data) for cid, data in since if cid != dropped]
    path = tmp_path / "partial-since.car"
    path.write_bytes(encode_car(since.roots, blocks))
    return path, str(dropped)


def test_an_incomplete_since_car_is_not_recorded(ref_small, tmp_path):
    store = SnapshotStore(tmp_path / "repos", max_bytes=1 << 40)
    did = ref_small.truth["did"]
    _store_file(store, did, _copy(ref_small.car, tmp_path), ref_small.truth["commit_cid"],
                None, "full")
    committed = store._index(did)["pack_bytes"]
    partial, dropped = _without_one_record_block(ref_small, tmp_path)
    with pytest.raises(atrepo.MstError, match="record block missing") as info:
        _store_file(store, did, partial, ref_small.truth2["commit_cid"], None, "incremental")
    assert info.value.cid == dropped and info.value.fields["did"] == did
    assert [e.rev for e in store.snapshots(did)] == [ref_small.truth["rev"]]
    assert store._index(did)["pack_bytes"] == committed
    # the next writer cuts off what the failed one appended, then completes the tree
    second = _store_file(store, did, _copy(ref_small.since, tmp_path),
                         ref_small.truth2["commit_cid"], None, "incremental")
    assert len(second) == len(ref_small.records2)


def test_a_pack_is_read_only_up_to_its_complete_length(ref_small, tmp_path):
    store = SnapshotStore(tmp_path / "repos", max_bytes=1 << 40)
    did = ref_small.truth["did"]
    first = _store_file(store, did, _copy(ref_small.car, tmp_path),
                        ref_small.truth["commit_cid"], None, "full")
    pack = next((tmp_path / "repos").glob(f"*/{PACK}"))
    with pack.open("ab") as out:
        out.write(b"\x99\x01half a block")  # a writer that died mid-append
    again = open_snapshot(store.open_pack(did, 64), root=first.commit_cid)
    assert again.records.equals(first.records)


def test_eviction_keeps_open_snapshots_working(ref_small, ref_p256, tmp_path):
    one = ref_small.car.stat().st_size
    store = SnapshotStore(tmp_path / "repos", max_bytes=one + 1)
    small = _store_file(store, ref_small.truth["did"], _copy(ref_small.car, tmp_path),
                        ref_small.truth["commit_cid"], None, "full")
    opened = open_snapshot(store.open_pack(ref_small.truth["did"], 0),
                           root=small.commit_cid)          # mem_limit 0: mapped from disk
    _store_file(store, ref_p256.truth["did"], _copy(ref_p256.car, tmp_path),
                ref_p256.truth["commit_cid"], None, "full")
    assert store.snapshots(ref_small.truth["did"]) == []    # evicted: least recently used
    assert len(store.snapshots(ref_p256.truth["did"])) == 1  # the one just written stays
    assert not opened.blocks.reopenable()
    assert opened.records.equals(small.records)
    assert opened.get(*small.records.row(0)[1:3]) is not None


def test_store_index_round_trips_and_names_the_did(ref_small, tmp_path):
    store = SnapshotStore(tmp_path / "repos", max_bytes=1 << 40)
    did = ref_small.truth["did"]
    snap = _store_file(store, did, _copy(ref_small.car, tmp_path),
                       ref_small.truth["commit_cid"], ref_small.truth["signing_key"], "full")
    (entry,) = store.snapshots(did)
    assert (entry.rev, entry.data_cid, entry.records, entry.verified) == \
        (snap.rev, snap.data_cid, len(snap), True)
    assert store.identity(did) == (None, ref_small.truth["signing_key"])
    index = next((tmp_path / "repos").glob("*/snapshots.json"))
    index.write_text("{not json")
    with pytest.raises(atrepo.AtrepoError, match="unreadable") as info:
        store.snapshots(did)
    assert info.value.fields["did"] == did
    assert json.loads(json.dumps(entry.to_json()))["rev"] == snap.rev
    assert CID.decode(entry.commit_cid) == CID.decode(ref_small.truth["commit_cid"])
