"""Declared tables: the same schema for every input, wrong values null with a problem row."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrepo
from atrepo.frames import RECORDS_SCHEMA
from atrepo.tables import check_collection, records_table, table_schema

SAMPLE = "examples/data/sample.car"
DID = "did:plc:tablestest000000000000000"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
STRONG_REF = {"uri": f"at://{DID}/app.bsky.feed.post/3jzfcijpj2z2a", "cid": CID}


def records(rows: list[tuple[str, str, Any]], did: str = DID) -> pl.DataFrame:
    """A ``records`` frame of (collection, rkey, record) rows; a str record is raw JSON."""
    return pl.DataFrame(
        [(did, c, r, f"at://{did}/{c}/{r}", CID,
          v if isinstance(v, str) or v is None else json.dumps(v, ensure_ascii=False))
         for c, r, v in rows], schema=RECORDS_SCHEMA, orient="row")


def like(created_at: Any = "2024-05-01T12:00:00.000Z", **extra: Any) -> dict[str, Any]:
    return {"$type": "app.bsky.feed.like", "subject": STRONG_REF, "createdAt": created_at,
            **extra}


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    return atrepo.read_car(SAMPLE).records


def test_every_sample_collection_has_its_declared_schema(sample: pl.DataFrame) -> None:
    for collection in sample["collection"].unique().sort():
        table, problems = records_table(sample, collection)
        assert table.schema == atrepo.lexicon_schema(collection)
        assert table.height == sample.filter(collection=collection).height
        assert table["uri"].to_list() == sample.filter(collection=collection)["uri"].to_list()
        assert problems.is_empty()


def test_schema_is_identical_over_100_calls(sample: pl.DataFrame) -> None:
    schemas = {tuple(records_table(sample, "app.bsky.feed.post")[0].schema.items())
               for _ in range(100)}
    assert len(schemas) == 1


def test_tables_of_different_records_stack_without_how(sample: pl.DataFrame) -> None:
    other = records([("app.bsky.feed.post", "3k2a", {
        "$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2024-01-01T00:00:00Z",
        "embed": {"$type": "app.bsky.embed.external",
                  "external": {"uri": "https://example.com", "title": "t",
                               "description": "d"}}})])
    tables = [records_table(frame, "app.bsky.feed.post")[0]
              for frame in (sample, other, records([]))]
    stacked = pl.concat(tables)
    assert stacked.height == sample.filter(collection="app.bsky.feed.post").height + 1
    assert stacked.schema == atrepo.lexicon_schema("app.bsky.feed.post")


def test_an_empty_input_gives_the_declared_columns() -> None:
    table, problems = records_table(records([]), "app.bsky.graph.follow")
    assert table.height == 0 and problems.height == 0
    assert table.schema == atrepo.lexicon_schema("app.bsky.graph.follow")


def test_fields_are_typed_and_extra_holds_undeclared_fields() -> None:
    frame = records([("app.bsky.feed.like", "a", like(clientTag="x", n=3)),
                     ("app.bsky.feed.like", "b", like())])
    table, problems = records_table(frame, "app.bsky.feed.like")
    assert problems.is_empty()
    assert table["subject"][0] == STRONG_REF
    assert table["createdAt"].dtype == pl.Datetime("us", "UTC")
    assert str(table["createdAt"][0]) == "2024-05-01 12:00:00+00:00"
    assert [None if e is None else orjson.loads(e) for e in table["extra"]] == [
        {"clientTag": "x", "n": 3}, None]


def test_a_wrong_type_is_null_with_a_problem_naming_the_field() -> None:
    bad = like()
    bad["subject"] = {"uri": 42, "cid": CID}
    frame = records([("app.bsky.feed.like", "a", bad), ("app.bsky.feed.like", "b", like())])
    table, problems = records_table(frame, "app.bsky.feed.like")
    assert table["subject"].to_list() == [{"uri": None, "cid": CID}, STRONG_REF]
    assert problems["rkey"].to_list() == ["a"]
    assert problems["error"][0].startswith("Record/subject/uri: a integer where")
    assert problems["collection"][0] == "app.bsky.feed.like"


def test_invalid_records_are_reported_but_kept() -> None:
    frame = records([("app.bsky.feed.like", "a", {"$type": "app.bsky.feed.like",
                                                  "createdAt": "2024-05-01T12:00:00Z"})])
    table, problems = records_table(frame, "app.bsky.feed.like")
    assert table.height == 1 and table["subject"][0] is None
    assert problems["error"].to_list() == [
        'invalid record: Record must have the property "subject"']


@pytest.mark.parametrize(("value", "kept"), [
    ("1990-01-01T00:00:00Z", True),
    ("1989-12-31T23:59:59.999Z", False),
    ("1990-01-01T00:30:00+01:00", False),   # 1989-12-31T23:30Z
    ("2100-12-31T23:59:59.999999Z", True),
    ("2101-01-01T00:00:00Z", False),
    ("2100-12-31T23:30:00-01:00", False),   # 2101-01-01T00:30Z
    ("1970-01-01T00:00:00.000Z", False),
    ("0001-01-01T00:00:00Z", False),
    ("2024-02-30T00:00:00Z", False),
    ("yesterday", False),
    ("2024-05-01T12:00:00.123456789+05:30", True),
    ("2023-07-21T01:33:51.481951", True),   # no timezone (some clients): read as UTC
    ("2023-07-21 01:33:51Z", False),
])
def test_datetimes_outside_1990_2100_or_unparseable_are_null(value: str, kept: bool) -> None:
    table, problems = records_table(records([("app.bsky.feed.like", "a", like(value))]),
                                    "app.bsky.feed.like")
    assert (table["createdAt"][0] is not None) is kept
    assert problems.height == (0 if kept else 1)
    if not kept:
        assert problems["error"][0].startswith("Record/createdAt: ")
        assert "1990-2100" in problems["error"][0]
    else:
        assert table["createdAt"][0].tzname() == "UTC"


def test_undecodable_records_give_a_row_of_nulls() -> None:
    table, _ = records_table(records([("app.bsky.feed.like", "a", None),
                                      ("app.bsky.feed.like", "b", like())]),
                             "app.bsky.feed.like")
    assert table["rkey"].to_list() == ["a", "b"]
    assert table["subject"][0] is None and table["subject"][1] == STRONG_REF


def test_blobs_and_cid_links_are_flat() -> None:
    blob = {"$type": "blob", "ref": {"$link": CID}, "mimeType": "image/png", "size": 9}
    legacy = {"cid": CID, "mimeType": "image/jpeg"}
    profile = {"$type": "app.bsky.actor.profile", "avatar": blob, "banner": legacy}
    table, problems = records_table(records([("app.bsky.actor.profile", "self", profile)]),
                                    "app.bsky.actor.profile")
    assert problems.is_empty()
    assert table["avatar"][0] == {"ref": CID, "mimeType": "image/png", "size": 9}
    assert table["banner"][0] == {"ref": CID, "mimeType": "image/jpeg", "size": None}


def test_an_open_unions_other_member_keeps_only_its_type() -> None:
    post = {"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2024-01-01T00:00:00Z",
            "embed": {"$type": "com.example.embed", "images": "not a list"}}
    table, problems = records_table(records([("app.bsky.feed.post", "a", post)]),
                                    "app.bsky.feed.post")
    assert problems.is_empty()  # valid: the embed union is open
    assert table["embed"][0]["$type"] == "com.example.embed"
    assert table["embed"][0]["images"] is None


def test_a_field_named_like_a_key_column_is_prefixed() -> None:
    schema = atrepo.lexicon_schema("app.bsky.feed.generator")
    assert schema is not None and "record_did" in schema
    generator = {"$type": "app.bsky.feed.generator", "did": "did:web:feeds.example.com",
                 "displayName": "f", "createdAt": "2024-01-01T00:00:00Z"}
    table, _ = records_table(records([("app.bsky.feed.generator", "f", generator)]),
                             "app.bsky.feed.generator")
    assert table["did"][0] == DID and table["record_did"][0] == "did:web:feeds.example.com"


def test_the_did_column_comes_from_the_records() -> None:
    frame = pl.concat([records([("app.bsky.feed.like", "a", like())], did="did:plc:one"),
                       records([("app.bsky.feed.like", "a", like())], did="did:plc:two")])
    table, _ = records_table(frame, "app.bsky.feed.like")
    assert table["did"].to_list() == ["did:plc:one", "did:plc:two"]


def test_inferred_schema_is_sorted_unified_and_order_independent() -> None:
    rows = [("com.example.thing", "1", {"$type": "com.example.thing", "b": 1, "a": "x",
                                        "nested": {"z": 1, "y": [1, 2]}}),
            ("com.example.thing", "2", {"$type": "com.example.thing", "b": "two", "c": True,
                                        "nested": {"y": [], "x": {"$link": CID}}})]
    table, problems = records_table(records(rows), "com.example.thing")
    backwards, _ = records_table(records(rows[::-1]), "com.example.thing")
    assert table.schema == backwards.schema == table_schema("com.example.thing", records(rows))
    assert table.columns == ["did", "rkey", "uri", "cid", "a", "b", "c", "nested", "extra"]
    assert table.schema["b"] == pl.String  # int and string: JSON text
    assert table["b"].to_list() == ["1", '"two"']
    assert table.schema["nested"] == pl.Struct({"x": pl.String, "y": pl.List(pl.Int64),
                                                "z": pl.Int64})
    assert table["nested"][1] == {"x": CID, "y": [], "z": None}
    assert problems.is_empty()


def test_unknown_collections_raise_listing_what_there_is() -> None:
    present = ["app.bsky.feed.like", "app.bsky.feed.post"]
    with pytest.raises(atrepo.AtrepoError, match="app.bsky.feed.post") as info:
        check_collection("app.bsky.feed.posts", present, did=DID)
    assert "did you mean app.bsky.feed.post" in str(info.value)
    assert DID in str(info.value)
    with pytest.raises(atrepo.AtrepoError, match="one collection, not a pattern"):
        check_collection("app.bsky.feed.*", present)
    check_collection("app.bsky.graph.follow", present)  # a lexicon: an empty table
    check_collection("com.example.thing", ["com.example.thing"])


def test_the_tables_page_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "tables.md").read_text(encoding="utf-8")
    blocks = list(re.finditer(r"```python\n(.*?)```", text, flags=re.DOTALL))
    assert len(blocks) >= 2
    monkeypatch.chdir(root)
    for block in blocks:
        # padded so that a failure names the line of docs/tables.md
        padding = "\n" * text.count("\n", 0, block.start(1))
        exec(compile(padding + block[1], "docs/tables.md", "exec"), {})  # noqa: S102


def test_diff_table_types_the_changed_records(ref_small: Any) -> None:
    from atrepo.tables import diff_table

    old, new = atrepo.read_car(ref_small.car), atrepo.read_car(ref_small.car2)
    diff = atrepo.diff(old, new)
    collection = "app.bsky.feed.post"
    changed = diff_table(diff, collection)
    assert atrepo.diff(old, new, table=collection).equals(changed)
    expected = diff.filter(collection=collection)
    assert changed.columns[:2] == ["action", "old_cid"]
    assert pl.Schema(list(changed.schema.items())[2:]) == atrepo.lexicon_schema(collection)
    assert changed["action"].to_list() == expected["action"].to_list()
    assert {"create", "delete"} <= set(changed["action"])
    new_rows, _ = records_table(new.records, collection)
    old_rows, _ = records_table(old.records, collection)
    for action, side in (("create", new_rows), ("update", new_rows), ("delete", old_rows)):
        mine = changed.filter(action=action).drop("action", "old_cid")
        theirs = side.filter(pl.col("rkey").is_in(mine["rkey"].to_list()))
        assert mine.sort("rkey").equals(theirs.sort("rkey")), action


# -- RepoSnapshot.table ---------------------------------------------------------------------

def snapshot(records: dict[str, Any]) -> atrepo.RepoSnapshot:
    from atrepo.testing import make_repo_car

    car, _ = make_repo_car(records, did=DID)
    return atrepo.read_car(car)


def test_an_empty_repository_gives_the_declared_columns() -> None:
    snap = snapshot({})
    for collection in ("app.bsky.feed.post", "app.bsky.actor.profile"):
        table = snap.table(collection)
        assert table.height == 0 and table.schema == atrepo.lexicon_schema(collection)


def test_snapshot_table_is_the_declared_table_every_call() -> None:
    snap = atrepo.read_car(SAMPLE)
    first = snap.table("app.bsky.feed.post")
    assert first.schema == atrepo.lexicon_schema("app.bsky.feed.post")
    assert all(snap.table("app.bsky.feed.post").equals(first) for _ in range(100))
    assert first.equals(records_table(snap.records, "app.bsky.feed.post")[0])


def test_snapshot_problems_name_the_field_and_records_keep_the_raw_json() -> None:
    bad = like(createdAt="0001-01-01T00:00:00Z")
    snap = snapshot({"app.bsky.feed.like/3kaaaaaaaaaa2": bad,
                     "app.bsky.feed.like/3kaaaaaaaaaa3": like(),
                     "app.bsky.feed.like/3kaaaaaaaaaa4": b"\xa1\x61"})  # not DAG-CBOR
    table = snap.table("app.bsky.feed.like")
    assert table["createdAt"].is_null().to_list() == [True, False, True]
    problems = snap.problems
    assert problems["rkey"].to_list() == ["3kaaaaaaaaaa4", "3kaaaaaaaaaa2"]
    assert problems["error"][1].startswith("Record/createdAt: '0001-01-01T00:00:00Z'")
    assert orjson.loads(snap.records["record"][0])["createdAt"] == "0001-01-01T00:00:00Z"


def test_snapshot_table_of_an_unknown_collection_raises() -> None:
    snap = atrepo.read_car(SAMPLE)
    with pytest.raises(atrepo.AtrepoError, match="did you mean app.bsky.feed.post") as info:
        snap.table("app.bsky.feed.posts")
    assert "app.bsky.graph.follow" in str(info.value) and snap.did in str(info.value)


# -- any JSON at all -------------------------------------------------------------------

_KEYS = st.sampled_from(["text", "createdAt", "embed", "images", "image", "record", "uri",
                         "cid", "$type", "facets", "index", "byteStart", "features",
                         "subject", "langs", "reply", "root", "$link", "ref", "size",
                         "mimeType", "avatar", "other"])
_SCALARS = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.text(max_size=8)
            | st.sampled_from(["app.bsky.embed.images", "app.bsky.embed.record", "blob", CID,
                               "2024-01-01T00:00:00Z", "app.bsky.richtext.facet#tag"]))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_KEYS, inner, max_size=5), max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(bodies=st.lists(st.dictionaries(_KEYS, _JSON, max_size=6), min_size=1, max_size=4),
       collection=st.sampled_from(["app.bsky.feed.post", "app.bsky.actor.profile",
                                   "app.bsky.feed.like", "com.example.thing"]))
def test_any_json_records_give_a_table_and_never_raise(bodies: list[dict[str, Any]],
                                                       collection: str) -> None:
    rows = [(collection, f"k{i}", {"$type": collection, **body})
            for i, body in enumerate(bodies)]
    frame = records(rows)
    table, problems = records_table(frame, collection)
    assert table.height == len(rows)
    assert table.schema == table_schema(collection, frame)
    if collection != "com.example.thing":
        assert table.schema == atrepo.lexicon_schema(collection)
    assert set(problems["rkey"]) <= set(table["rkey"])


def test_an_integer_beyond_int64_is_null_with_a_problem_row() -> None:
    """A valid record (the lexicon sets no upper bound) whose integer Int64 cannot hold
    (JSON parsers read up to 2**64 - 1 as an integer)."""
    post = {"$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2024-05-01T12:00:00Z",
            "facets": [{"index": {"byteStart": 2 ** 63, "byteEnd": 3}, "features": []}]}
    assert atrepo.validate_record(post) == []
    frame = records([("app.bsky.feed.post", "3k2a", post)])
    table, problems = records_table(frame, "app.bsky.feed.post")
    assert table["facets"][0][0]["index"] == {"byteStart": None, "byteEnd": 3}
    assert problems["error"].to_list() == [
        "Record/facets/0/index/byteStart: an integer outside Int64; null in the table"]
