"""atrepo.frames: every frame kind has one declared schema, kept when the frame is empty."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest

from atrepo import frames

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)

EMPTY = {
    "records": (frames.records_frame("did:plc:x", [], [], []), frames.RECORDS_SCHEMA),
    "no records": (frames.concat_records([]), frames.RECORDS_SCHEMA),
    "collections": (frames.collections_frame({}), frames.COLLECTIONS_SCHEMA),
    "problems": (frames.problems_frame([]), frames.PROBLEMS_SCHEMA),
    "diff": (frames.diff_frame([]), frames.DIFF_SCHEMA),
    "snapshots": (frames.snapshots_frame([]), frames.SNAPSHOTS_SCHEMA),
    "repos": (frames.repos_frame([]), frames.REPOS_SCHEMA),
    "dids": (frames.dids_frame([]), frames.DIDS_SCHEMA),
    "errors": (frames.errors_frame([]), frames.ERRORS_SCHEMA),
    "export": (frames.export_frame(frames.concat_records([]), rev="r", commit_cid="c",
                                   verified=False, pds=None, fetched_at=NOW),
               frames.EXPORT_SCHEMA),
    "hosts": (frames.hosts_frame([]), frames.HOSTS_SCHEMA),
    "plc": (frames.plc_frame([]), frames.PLC_SCHEMA),
    "no plc": (frames.current_plc([]), frames.PLC_SCHEMA),
    "fetched": (frames.fetched_frame([]), frames.FETCHED_SCHEMA),
}


@pytest.mark.parametrize("kind", list(EMPTY))
def test_an_empty_frame_keeps_its_schema(kind):
    frame, schema = EMPTY[kind]
    assert frame.height == 0 and frame.schema == schema


def test_every_schema_is_exported_with_its_builder():
    schemas = [name for name in frames.__all__ if name.endswith("_SCHEMA")]
    assert len(schemas) == 12
    for name in schemas:
        assert isinstance(getattr(frames, name), pl.Schema)


def test_current_plc_keeps_each_dids_latest_row_in_log_order():
    def at(second: int) -> datetime:
        return NOW.replace(second=second)

    first = frames.plc_frame([("did:plc:a", "a.test", "https://one", "did:key:za", "active",
                               at(1), "bafya1"),
                              ("did:plc:b", "b.test", "https://one", "did:key:zb", "active",
                               at(2), "bafyb1")])
    second = frames.plc_frame([("did:plc:a", "a.test", "https://two", "did:key:za", "active",
                                at(3), "bafya2"),
                               ("did:plc:c", None, None, None, "tombstoned", at(4), "bafyc1")])
    current = frames.current_plc([first, second])
    assert current.schema == frames.PLC_SCHEMA
    assert current.select("did", "pds", "status", "cid").rows() == [
        ("did:plc:b", "https://one", "active", "bafyb1"),
        ("did:plc:a", "https://two", "active", "bafya2"),
        ("did:plc:c", None, "tombstoned", "bafyc1")]
    assert frames.current_plc([current, first]).equals(
        frames.current_plc([first, second, first]))   # combining combined frames


def test_records_frame_builds_uri_and_keeps_key_order():
    frame = frames.records_frame("did:plc:x", ["a.b/1", "a.c/2"], ["bafy1", "bafy2"],
                                 ['{"n":1}', None])
    assert frame.schema == frames.RECORDS_SCHEMA
    assert frame.rows() == [("did:plc:x", "a.b", "1", "at://did:plc:x/a.b/1", "bafy1",
                             '{"n":1}'),
                            ("did:plc:x", "a.c", "2", "at://did:plc:x/a.c/2", "bafy2", None)]


def test_collections_frame_is_sorted_by_collection():
    frame = frames.collections_frame({"b.x": 2, "a.x": 5})
    assert frame.rows() == [("a.x", 5), ("b.x", 2)]
    assert frame.schema == frames.COLLECTIONS_SCHEMA


def test_diff_frame_is_sorted_by_collection_then_rkey():
    rows = [("b.x", "1", "at://d/b.x/1", "delete", "c1", None, None, "{}"),
            ("a.x", "2", "at://d/a.x/2", "create", None, "c2", "{}", None),
            ("a.x", "1", "at://d/a.x/1", "update", "c3", "c4", "{}", "{}")]
    frame = frames.diff_frame(rows)
    assert frame.select("collection", "rkey").rows() == [("a.x", "1"), ("a.x", "2"),
                                                         ("b.x", "1")]


def test_repos_errors_and_snapshots_keep_row_order_and_types():
    repos = frames.repos_frame([("did:plc:b", "h", "r", True, None),
                                ("did:plc:a", None, None, False, "takendown")])
    assert repos["did"].to_list() == ["did:plc:b", "did:plc:a"]
    assert repos.schema == frames.REPOS_SCHEMA
    errors = frames.errors_frame([("did:plc:a", "RepoUnavailable: gone", "takendown")])
    assert errors.schema == frames.ERRORS_SCHEMA and errors.height == 1
    snaps = frames.snapshots_frame([("3kaa", "bafy", NOW, 7, None),
                                    ("3kab", "bafz", NOW, 1, ["app.bsky.actor.profile"])])
    assert snaps.schema == frames.SNAPSHOTS_SCHEMA and snaps["records"].to_list() == [7, 1]
    assert snaps["collections"].to_list() == [None, ["app.bsky.actor.profile"]]


def test_export_frame_adds_provenance_to_records():
    records = frames.records_frame("did:plc:x", ["a.b/1"], ["bafy1"], ["{}"])
    frame = frames.export_frame(records, rev="3kaa", commit_cid="bafyc", verified=True,
                                pds="http://127.0.0.1:1", fetched_at=NOW)
    assert frame.schema == frames.EXPORT_SCHEMA
    assert frame.row(0, named=True) | {} == {
        "did": "did:plc:x", "collection": "a.b", "rkey": "1", "uri": "at://did:plc:x/a.b/1",
        "cid": "bafy1", "record": "{}", "rev": "3kaa", "commit_cid": "bafyc",
        "verified": True, "pds": "http://127.0.0.1:1", "fetched_at": NOW}
