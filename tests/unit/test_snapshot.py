"""RepoSnapshot against repositories written by the reference implementation."""

from __future__ import annotations

import json

import polars as pl
import pytest

import atrepo
from atrepo import car, mst
from atrepo.frames import COLLECTIONS_SCHEMA, PROBLEMS_SCHEMA, RECORDS_SCHEMA
from atrepo.snapshot import covers
from atrepo.testing import make_repo_car


def _rows(snap: atrepo.RepoSnapshot) -> list[tuple[str, str, str]]:
    frame = snap.records
    return list(zip(frame["collection"], frame["rkey"], frame["cid"]))


def test_records_equal_reference_listing(ref_small):
    snap = atrepo.read_car(ref_small.car, signing_key=ref_small.truth["signing_key"],
                           did=ref_small.truth["did"])
    assert _rows(snap) == ref_small.records
    assert snap.verified is True
    assert snap.did == ref_small.truth["did"]
    assert snap.rev == ref_small.truth["rev"]
    assert snap.data_cid == ref_small.truth["data_cid"]
    assert snap.commit_cid == ref_small.truth["commit_cid"]
    assert snap.commit.version == 3
    assert snap.problems.is_empty() and snap.problems.schema == PROBLEMS_SCHEMA
    assert snap.records.schema == RECORDS_SCHEMA
    assert len(snap) == len(ref_small.records)


def test_second_commit_and_p256(ref_small, ref_p256):
    snap2 = atrepo.read_car(ref_small.car2, signing_key=ref_small.truth2["signing_key"])
    assert _rows(snap2) == ref_small.records2
    assert snap2.rev == ref_small.truth2["rev"]
    snap = atrepo.read_car(ref_p256.car, signing_key=ref_p256.truth["signing_key"])
    assert snap.verified and _rows(snap) == ref_p256.records


def test_uri_and_did_columns(ref_small):
    frame = atrepo.read_car(ref_small.car).records
    did = ref_small.truth["did"]
    assert frame["did"].unique().to_list() == [did]
    expected = [f"at://{did}/{c}/{r}" for c, r, _ in ref_small.records]
    assert frame["uri"].to_list() == expected


def test_record_json_is_the_data_model(ref_small):
    snap = atrepo.read_car(ref_small.car)
    likes = snap.records.filter(pl.col("collection") == "app.bsky.feed.like")
    like = json.loads(likes["record"][0])
    assert like["$type"] == "app.bsky.feed.like"
    assert like["subject"]["cid"].startswith("bafyrei")
    assert like["subject"]["uri"].startswith("at://")
    profile = snap.get("app.bsky.actor.profile", "self")
    assert profile is not None and profile["avatar"]["$type"] == "blob"
    assert profile["avatar"]["ref"]["$link"].startswith("bafkrei")
    # every record's JSON goes back to the same DAG-CBOR bytes, i.e. to its CID
    for text, cid in zip(snap.records["record"][:300], snap.records["cid"][:300]):
        value = atrepo.datamodel.from_json(json.loads(text))
        assert str(atrepo.cid_for(atrepo.cbor.encode(value))) == cid


def test_not_verified_without_key(ref_small):
    assert atrepo.read_car(ref_small.car).verified is False


def test_collections_filter_prunes(ref_small):
    full = atrepo.read_car(ref_small.car)
    posts = atrepo.read_car(ref_small.car, collections=["app.bsky.feed.post"])
    expected = [r for r in ref_small.records if r[0] == "app.bsky.feed.post"]
    assert _rows(posts) == expected
    feed = atrepo.read_car(ref_small.car, collections=["app.bsky.feed.*"])
    assert _rows(feed) == [r for r in ref_small.records if r[0].startswith("app.bsky.feed.")]
    assert posts.collections["collection"].to_list() == ["app.bsky.feed.post"]
    assert full.collections.schema == COLLECTIONS_SCHEMA
    counts = dict(full.collections.iter_rows())
    assert counts == ref_small.truth["collections"]


def test_collections_filter_reads_few_nodes(ref_small):
    blocks = car.read_car(ref_small.car)
    fetched = []

    def fetch(raw: bytes) -> bytes | None:
        fetched.append(raw)
        return blocks.get_raw(raw)

    root = bytes(atrepo.CID.decode(ref_small.truth["data_cid"]))
    keys, _ = mst.collect(fetch, root, [("app.bsky.actor.profile/", "app.bsky.actor.profile0")])
    assert keys == [b"app.bsky.actor.profile/self"]
    all_nodes = len(mst.collect(blocks.get_raw, root)[0])
    assert len(fetched) < 20 < all_nodes


def test_invalid_collection_filter(ref_small):
    with pytest.raises(atrepo.AtrepoError, match="invalid collection filter"):
        atrepo.read_car(ref_small.car, collections=["not a nsid"])


def test_table_has_typed_columns(ref_small):
    snap = atrepo.read_car(ref_small.car)
    posts = snap.table("app.bsky.feed.post")
    assert posts.columns[:4] == ["did", "rkey", "uri", "cid"]
    assert posts["text"].dtype == pl.String
    assert isinstance(posts.schema["langs"], pl.List)
    assert posts.height == sum(1 for r in ref_small.records if r[0] == "app.bsky.feed.post")
    with pytest.raises(atrepo.AtrepoError, match="no such collection"):
        snap.table("app.bsky.nothing.here")


def test_table_survives_heterogeneous_records():
    car_bytes, _ = make_repo_car({
        "app.x.thing/1": {"$type": "app.x.thing", "v": 1, "o": {"a": 1}},
        "app.x.thing/2": {"$type": "app.x.thing", "v": "one", "o": [1, 2]},
        "app.x.thing/3": {"$type": "app.x.thing", "w": True},
    })
    table = atrepo.read_car(car_bytes).table("app.x.thing")
    assert table.height == 3
    assert table["v"].to_list() == ["1", '"one"', None]   # conflicting types: JSON text
    assert table["w"].to_list() == [None, None, True]


def test_get_missing_and_present(ref_small):
    snap = atrepo.read_car(ref_small.car)
    collection, rkey, cid = ref_small.records[5]
    record = snap.get(collection, rkey)
    assert record is not None and record["$type"] == collection
    assert snap.get(collection, "zzzzzzzzzzzzz") is None
    assert snap.get("app.none", "x") is None


def test_empty_repo_frames_keep_schema():
    car_bytes, key = make_repo_car({})
    snap = atrepo.read_car(car_bytes, signing_key=key)
    assert snap.verified and len(snap) == 0
    assert snap.records.schema == RECORDS_SCHEMA and snap.records.height == 0
    assert snap.collections.schema == COLLECTIONS_SCHEMA
    assert snap.problems.schema == PROBLEMS_SCHEMA


def test_undecodable_records_become_problems():
    car_bytes, _ = make_repo_car({
        "app.x.good/1": {"$type": "app.x.good", "text": "fine"},
        "app.x.bad/1": b"\xa1\x64text\x62\xff\xfe",       # invalid UTF-8 in a text string
        "app.x.bad/2": b"\xff\x00garbage",                 # not CBOR at all
    })
    snap = atrepo.read_car(car_bytes)
    assert snap.records.height == 3
    problems = snap.problems
    assert problems["rkey"].to_list() == ["1", "2"]
    assert problems["collection"].to_list() == ["app.x.bad", "app.x.bad"]
    bad = snap.records.filter(pl.col("collection") == "app.x.bad")
    assert bad["record"].to_list() == [None, None]
    assert snap.records.filter(pl.col("collection") == "app.x.good")["record"][0] is not None


def test_write_parquet_round_trip(ref_small, tmp_path):
    snap = atrepo.read_car(ref_small.car)
    path = tmp_path / "repo.parquet"
    snap.write_parquet(path)
    assert pl.read_parquet(path).equals(snap.records)


def test_repr_is_cheap_and_informative(ref_small):
    snap = atrepo.read_car(ref_small.car, signing_key=ref_small.truth["signing_key"])
    text = repr(snap)
    assert ref_small.truth["did"] in text and "verified=True" in text
    assert f"records={len(ref_small.records):,}" in text
    assert "_decoded" not in snap.__dict__   # repr did not decode records
    page = snap._repr_html_()
    assert "app.bsky.feed.like" in page and "<table>" in page


def test_parallel_decoding_matches_serial(ref_medium, monkeypatch):
    import atrepo.snapshot as snapshot_module
    from atrepo._parallel import Worker

    ops: list[str] = []
    call = Worker.call

    def counted(self, op, *args):  # type: ignore[no-untyped-def]
        result = call(self, op, *args)
        ops.append(op)  # a reply came back from the worker
        return result

    monkeypatch.setattr(Worker, "call", counted)
    # worker processes are the pure Python path's way to use more cores (the core uses threads)
    monkeypatch.setattr(atrepo._accel, "core", None)
    monkeypatch.setattr(atrepo._accel, "accelerated", False)
    monkeypatch.setattr(snapshot_module, "BATCH_SIZE", 3000)
    monkeypatch.setattr(snapshot_module, "PARALLEL_MIN", 0)
    serial = atrepo.read_car(ref_medium.car, mem_limit_mb=0)
    serial._workers = 0
    parallel = atrepo.read_car(ref_medium.car, mem_limit_mb=0)
    parallel._workers = 1
    in_memory = atrepo.read_car(ref_medium.car.read_bytes())
    in_memory._workers = 1
    assert serial.records.equals(parallel.records)
    assert "decode" in ops  # the parallel one really used a worker
    assert serial.records.equals(in_memory.records)
    assert _rows(parallel) == ref_medium.records


def test_version_2_commits_verify():
    car_bytes, key = make_repo_car({"app.x.a/1": {"$type": "app.x.a"}}, version=2)
    snap = atrepo.read_car(car_bytes, signing_key=key)
    assert snap.commit.version == 2 and snap.verified


def test_unknown_commit_version_is_a_car_error():
    car_bytes, key = make_repo_car({"app.x.a/1": {"$type": "app.x.a"}}, version=4)
    with pytest.raises(atrepo.CarError, match="unsupported commit version"):
        atrepo.read_car(car_bytes, signing_key=key)


@pytest.mark.parametrize("collections", [["app.bsky.feed.like"],
                                         ["app.bsky.feed.*", "app.bsky.feed.post"],
                                         ["app.bsky.graph.*", "app.bsky.actor.profile"],
                                         ["com.example.nothing"]])
def test_narrowing_a_walked_snapshot_equals_a_filtered_walk(ref_small, collections):
    from atrepo.snapshot import narrowed

    whole = atrepo.read_car(ref_small.car)
    walked = atrepo.read_car(ref_small.car, collections=collections)
    narrow = narrowed(whole, collections)
    assert narrow.records.equals(walked.records)
    assert narrow.collections_filter == collections and len(narrow) == len(walked)
    assert len(whole) == len(ref_small.records)  # the whole one is untouched


def test_collection_counts_are_found_by_jumping_over_sorted_keys(ref_small):
    from atrepo.snapshot import count_collections

    keys = [f"{c}/{r}" for c, r, _ in ref_small.records]
    assert count_collections(keys) == ref_small.truth["collections"]
    assert count_collections([]) == {}
    # neighbours that share a prefix ("a.b" < "a.b-c" < "a.b.c" < "a.b/..." by bytes)
    assert count_collections(["a.b-c/1", "a.b.c/1", "a.b.c/2", "a.b/1", "a.bc/1"]) == \
        {"a.b-c": 1, "a.b.c": 2, "a.b": 1, "a.bc": 1}


def test_a_deferred_walk_happens_once_on_first_use(ref_small):
    from atrepo.snapshot import open_snapshot

    calls = []
    snap = open_snapshot(car.read_car(ref_small.car), walk_now=False)
    walker = snap._walker

    def counted() -> tuple[list[str], list[bytes]]:
        calls.append(1)
        return walker()

    snap._walker = counted
    text = repr(snap)
    assert calls == [] and "records=?" in text and "collections=?" in text
    assert snap.get("app.bsky.actor.profile", "self") is not None and calls == [1]
    assert len(snap) == len(ref_small.records) and snap.records.height == len(snap)
    assert calls == [1]
    assert f"records={len(ref_small.records):,}" in repr(snap)


@pytest.mark.parametrize(("held", "wanted", "expected"), [
    (None, None, True),                                   # a whole tree holds everything
    (None, ["app.bsky.feed.post"], True),
    (["app.bsky.feed.post"], None, False),                # a sparse one never holds "all"
    (["app.bsky.feed.post"], ["app.bsky.feed.post"], True),
    (["app.bsky.feed.post"], ["app.bsky.feed.like"], False),
    (["app.bsky.feed.*"], ["app.bsky.feed.post", "app.bsky.feed.like"], True),
    (["app.bsky.feed.post"], ["app.bsky.feed.*"], False),
    (["app.bsky.feed.post", "app.bsky.graph.follow"], ["app.bsky.graph.follow"], True),
    (["app.bsky.feed.post", "app.bsky.graph.follow"], ["app.bsky.*"], False),
    (["app.bsky.feed.*", "app.bsky.*"], ["app.bsky.graph.follow"], True),
])
def test_covers_says_whether_held_collections_hold_the_wanted_ones(held, wanted, expected):
    assert covers(held, wanted) is expected
