"""Bluesky research views: declared columns, facets sliced on UTF-8 bytes, TID times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrepo
from atrepo import bluesky
from atrepo.frames import RECORDS_SCHEMA
from atrepo.tables import DATETIME_RANGE

DID = "did:plc:viewstest0000000000000000"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
VIEWS = ["posts", "post_facets", "likes", "reposts", "follows", "blocks", "profiles", "lists",
         "list_items", "starter_packs", "threadgates", "postgates"]
TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"


def records(rows: list[tuple[str, str, dict[str, Any]]]) -> pl.DataFrame:
    return pl.DataFrame([(DID, c, r, f"at://{DID}/{c}/{r}", CID, orjson.dumps(v).decode())
                         for c, r, v in rows], schema=RECORDS_SCHEMA, orient="row")


def post(text: str, **fields: Any) -> dict[str, Any]:
    return {"$type": "app.bsky.feed.post", "text": text,
            "createdAt": "2024-05-01T12:00:00Z", **fields}


def facet(start: Any, end: Any, kind: str = "tag", **value: Any) -> dict[str, Any]:
    feature = {"$type": f"app.bsky.richtext.facet#{kind}", **value}
    return {"index": {"byteStart": start, "byteEnd": end}, "features": [feature]}


@pytest.fixture(scope="module")
def sample() -> atrepo.RepoSnapshot:
    return atrepo.read_car("examples/data/sample.car")


@pytest.mark.parametrize("name", VIEWS)
def test_views_have_the_same_columns_on_any_input(name: str,
                                                  sample: atrepo.RepoSnapshot) -> None:
    view = getattr(bluesky, name)
    full = view(sample)
    empty = view(records([]))
    assert full.schema == empty.schema == view(sample.records.lazy()).schema
    assert full.columns[:4] == ["did", "rkey", "uri", "cid"]
    assert empty.height == 0


def test_view_row_counts_match_the_collections(sample: atrepo.RepoSnapshot) -> None:
    counts = dict(sample.collections.iter_rows())
    assert bluesky.posts(sample).height == counts["app.bsky.feed.post"]
    assert bluesky.likes(sample).height == counts["app.bsky.feed.like"]
    assert bluesky.follows(sample).height == counts["app.bsky.graph.follow"]
    assert bluesky.lists(sample)["purpose"].is_in(
        ["modlist", "curatelist", "referencelist"]).all()


def test_posts_flatten_reply_quote_embed_and_facets() -> None:
    root = "at://did:plc:root/app.bsky.feed.post/3jzfcijpj2z2a"
    parent = "at://did:plc:parent/app.bsky.feed.post/3jzfcijpj2z2b"
    quoted = "at://did:plc:quoted/app.bsky.feed.post/3jzfcijpj2z2c"
    image = {"$type": "blob", "ref": {"$link": CID}, "mimeType": "image/png", "size": 1}
    text = "olá @ann.test #café https://x.example"
    data = text.encode()
    facets = [facet(data.index(b"@"), data.index(b" #"), "mention", did="did:plc:ann"),
              facet(data.index(b"#"), data.index(b" http"), "tag", tag="café"),
              facet(data.index(b"https"), len(data), "link", uri="https://x.example")]
    rows = [
        ("app.bsky.feed.post", "3kaaaaaaaaaa2", post(
            text, langs=["pt"], facets=facets, tags=["extra"],
            reply={"root": {"uri": root, "cid": CID}, "parent": {"uri": parent, "cid": CID}},
            embed={"$type": "app.bsky.embed.recordWithMedia",
                   "record": {"$type": "app.bsky.embed.record",
                              "record": {"uri": quoted, "cid": CID}},
                   "media": {"$type": "app.bsky.embed.images",
                             "images": [{"image": image, "alt": "a"},
                                        {"image": image, "alt": "b"}]}})),
        ("app.bsky.feed.post", "self", post("plain", embed={
            "$type": "app.bsky.embed.video", "video": image, "alt": "clip"})),
    ]
    frame = bluesky.posts(records(rows))
    first, second = frame.row(0, named=True), frame.row(1, named=True)
    assert first["reply_root_did"] == "did:plc:root"
    assert first["reply_parent_uri"] == parent and first["reply_parent_did"] == "did:plc:parent"
    assert first["quote_uri"] == quoted and first["quote_did"] == "did:plc:quoted"
    assert first["embed_type"] == "record_with_media"
    assert first["image_count"] == 2 and first["image_alts"] == ["a", "b"]
    assert first["mentions"] == ["did:plc:ann"] and first["links"] == ["https://x.example"]
    assert first["tags"] == ["café", "extra"]
    assert first["tid_time"] is not None and second["tid_time"] is None  # "self" is no TID
    assert second["embed_type"] == "video" and second["video_cid"] == CID
    assert second["video_alt"] == "clip" and second["image_count"] == 0
    assert second["mentions"] == [] and second["quote_uri"] is None
    spans = bluesky.post_facets(records(rows))
    assert spans["text"].to_list() == ["@ann.test", "#café", "https://x.example"]
    assert spans["feature"].to_list() == ["mention", "tag", "link"]
    assert spans["problem"].is_null().all()


def test_other_views_take_the_subjects_apart() -> None:
    subject = {"uri": "at://did:plc:bob/app.bsky.feed.post/3jzfcijpj2z2a", "cid": CID}
    rows = [("app.bsky.feed.like", "3kaaaaaaaaaa2", {
                "$type": "app.bsky.feed.like", "subject": subject,
                "createdAt": "1970-01-01T00:00:00Z"}),
            ("app.bsky.graph.follow", "3kaaaaaaaaaa3", {
                "$type": "app.bsky.graph.follow", "subject": "did:plc:carol",
                "createdAt": "2024-01-01T00:00:00Z"}),
            ("app.bsky.feed.threadgate", "3kaaaaaaaaaa4", {
                "$type": "app.bsky.feed.threadgate", "post": subject["uri"],
                "allow": [{"$type": "app.bsky.feed.threadgate#listRule",
                           "list": "at://did:plc:bob/app.bsky.graph.list/1"},
                          {"$type": "app.bsky.feed.threadgate#mentionRule"}],
                "createdAt": "2024-01-01T00:00:00Z"}),
            ("app.bsky.feed.postgate", "3kaaaaaaaaaa5", {
                "$type": "app.bsky.feed.postgate", "post": subject["uri"],
                "embeddingRules": [{"$type": "app.bsky.feed.postgate#disableRule"}],
                "createdAt": "2024-01-01T00:00:00Z"})]
    frame = records(rows)
    liked = bluesky.likes(frame).row(0, named=True)
    assert liked["subject_did"] == "did:plc:bob" and liked["subject_cid"] == CID
    assert liked["created_at"] is None  # 1970: a client's zero clock
    assert bluesky.problems(frame, "app.bsky.feed.like").height == 1
    assert bluesky.follows(frame)["subject_did"].to_list() == ["did:plc:carol"]
    gate = bluesky.threadgates(frame).row(0, named=True)
    assert gate["allow"] == ["listRule", "mentionRule"]
    assert gate["allow_lists"] == ["at://did:plc:bob/app.bsky.graph.list/1"]
    assert bluesky.postgates(frame)["embedding_disabled"].to_list() == [True]


def test_views_read_anything_with_records(sample: atrepo.RepoSnapshot) -> None:
    class Holder:
        records = sample.records.lazy()

    assert bluesky.likes(Holder()).equals(bluesky.likes(sample))
    with pytest.raises(TypeError, match="RepoSnapshot"):
        bluesky.posts(42)


# -- facets on UTF-8 bytes ----------------------------------------------------------------

def _reference_slice(data: bytes, start: int, end: int) -> str | None:
    """The spec's rule, spelled out differently: decode the byte range strictly."""
    if not (0 <= start <= end <= len(data)):
        return None
    try:
        covered = data[start:end].decode("utf-8")
        data[:start].decode("utf-8")
        data[end:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return covered


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=400, deadline=None)
@given(text=TEXT, start=st.integers(-5, 200), end=st.integers(-5, 200))
def test_slice_utf8_cuts_exactly_the_spec_bytes(text: str, start: int, end: int) -> None:
    data = text.encode("utf-8")
    assert bluesky.slice_utf8(data, start, end) == _reference_slice(data, start, end)


@settings(max_examples=60, deadline=None)
@given(text=TEXT, ranges=st.lists(st.tuples(st.integers(-3, 130), st.integers(-3, 130)),
                                  max_size=4))
def test_random_facets_never_crash_and_misaligned_ones_are_problems(
        text: str, ranges: list[tuple[int, int]]) -> None:
    facets = [facet(start, end, tag=f"t{i}") for i, (start, end) in enumerate(ranges)]
    frame = records([("app.bsky.feed.post", "3kaaaaaaaaaa2", post(text, facets=facets))])
    spans = bluesky.post_facets(frame)
    data = text.encode("utf-8")
    expected = [_reference_slice(data, s, e) for s, e in ranges]
    assert spans["text"].to_list() == expected
    assert spans["problem"].is_null().to_list() == [e is not None for e in expected]
    found = bluesky.problems(frame)["error"]
    misaligned = found.filter(found.str.contains("not a whole-character range"))
    assert misaligned.len() == sum(e is None for e in expected)
    negative = any(s < 0 or e < 0 for s, e in ranges)  # also against the lexicon's minimum
    assert (found.len() > misaligned.len()) is negative
    assert bluesky.posts(frame)["tags"].to_list() == [[f"t{i}" for i in range(len(ranges))]]


def test_a_facet_with_a_wrong_typed_offset_is_a_problem() -> None:
    frame = records([("app.bsky.feed.post", "3kaaaaaaaaaa2",
                      post("abc", facets=[facet("0", 2, tag="x")]))])
    spans = bluesky.post_facets(frame)
    assert spans["text"].to_list() == [None]
    assert bluesky.problems(frame).height == 2  # the wrong type, and the unusable range


# -- datetimes at and past the bounds --------------------------------------------------

MOMENTS = st.datetimes(min_value=datetime(1985, 1, 1), max_value=datetime(2106, 1, 1),
                       timezones=st.just(timezone.utc))


@settings(max_examples=150, deadline=None)
@given(moment=MOMENTS, offset_minutes=st.integers(-23 * 60, 23 * 60))
def test_datetimes_are_kept_exactly_within_the_bounds(moment: datetime,
                                                      offset_minutes: int) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    local = moment.astimezone(zone)
    sign = "+" if offset_minutes >= 0 else "-"
    text = (local.strftime("%Y-%m-%dT%H:%M:%S.%f")
            + f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}")
    like = {"$type": "app.bsky.feed.like", "createdAt": text,
            "subject": {"uri": "at://did:plc:x/app.bsky.feed.post/3jzfcijpj2z2a", "cid": CID}}
    frame = bluesky.likes(records([("app.bsky.feed.like", "3kaaaaaaaaaa2", like)]))
    inside = DATETIME_RANGE[0] <= moment < DATETIME_RANGE[1]
    assert frame["created_at"][0] == (moment if inside else None)


# -- TID times ----------------------------------------------------------------------------

def _tid(micros: int, clock: int) -> str:
    value = (micros << 10) | clock
    return "".join(TID_CHARS[(value >> (5 * (12 - i))) & 31] for i in range(13))


@settings(max_examples=200, deadline=None)
@given(micros=st.integers(0, (1 << 53) - 1), clock=st.integers(0, 1023))
def test_tid_time_decodes_the_microseconds(micros: int, clock: int) -> None:
    rkey = _tid(micros, clock)
    assert atrepo.syntax.is_tid(rkey)
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)
    got = pl.select(bluesky.tid_time(pl.lit(rkey))).item()
    inside = DATETIME_RANGE[0] <= moment < DATETIME_RANGE[1]
    assert got == (moment if inside else None)


def test_tid_time_is_null_for_other_keys() -> None:
    keys = pl.Series(["self", "3jzfcijpj2z2", "3JZFCIJPJ2Z2A", "kzfcijpj2z2aa", None])
    assert pl.select(bluesky.tid_time(pl.lit(keys))).to_series().is_null().all()
