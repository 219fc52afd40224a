"""The compiled checking pass of ``table()`` against its Python reference.

``snapshot_table`` of a snapshot the core serves checks every record from its CBOR block in
the core (``rust/src/table.rs``), ``records_table`` of its ``records`` checks their JSON
texts in the core, and ``records_table`` with the core switched off is the reference
(``atrepo._table_check.Checker`` over the JSON text). Every case below builds all three and
requires the same table (``assert_frame_equal``) and the same problems, in the same order:
the reference-generated repositories and the real ones, the syntax interop vectors as field
values, and hypothesis-generated invalid records.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import atrepo
from atrepo import _accel, cbor
from atrepo.cid import CID
from atrepo.datamodel import from_json
from atrepo.lexicon._strings import grapheme_len
from atrepo.tables import records_table, snapshot_table
from atrepo.testing import make_repo_car
from _interop import INTEROP_DIR

pytestmark = pytest.mark.skipif(not _accel.accelerated, reason="the compiled core is not built")

ROOT = Path(__file__).resolve().parents[2]
REAL = sorted(p for p in (ROOT / "tests" / "fixtures" / "real").glob("*.car")
              if p.name != "repo_slice.car")  # a slice: its tree is incomplete
SYNTAX = INTEROP_DIR / "syntax"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
CID_TEXT = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
LINK = CID.decode(CID_TEXT)
BLOB_LINK = CID.decode("bafkreigo4p2o4ctnpg3updicbzu7rcwj4lrlji5p3ymtdxrhk3zaf5p6ny")
URI = f"at://{DID}/app.bsky.feed.post/3jzfcijpj2z2a"


def reference(records: pl.DataFrame, collection: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``records_table`` on the Python path (the core switched off for the call)."""
    with patch.object(_accel, "core", None):
        return records_table(records, collection)


def both(snap: atrepo.RepoSnapshot, collection: str) -> pl.DataFrame:
    """Check ``collection`` from the blocks and from the JSON texts in the core, and in the
    Python reference; assert the three agree; return the problems."""
    assert _accel.serves(snap.blocks)
    table, problems = snapshot_table(snap, collection)
    ref_table, ref_problems = reference(snap.records, collection)
    text_table, text_problems = records_table(snap.records, collection)
    for mine, theirs in ((table, ref_table), (problems, ref_problems), (text_table, ref_table),
                         (text_problems, ref_problems)):
        assert_frame_equal(mine, theirs)
    assert table.schema == atrepo.lexicon_schema(collection)
    return problems


def repo(records: dict[str, Any]) -> atrepo.RepoSnapshot:
    car, _ = make_repo_car(records, did=DID)
    return atrepo.read_car(car)


def declared(snap: atrepo.RepoSnapshot) -> list[str]:
    return [c for c in snap.collections["collection"] if atrepo.lexicon_schema(c) is not None]


@pytest.fixture(params=["ref_small", "ref_p256", "ref_medium"])
def generated(request: pytest.FixtureRequest) -> Path:
    car: Path = request.getfixturevalue(request.param).car
    return car


def test_every_collection_of_the_generated_repositories_agrees(generated: Path) -> None:
    snap = atrepo.read_car(generated)
    collections = declared(snap)
    assert "app.bsky.feed.post" in collections
    for collection in collections:
        both(snap, collection)


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_every_collection_of_real_repositories_agrees(path: Path) -> None:
    snap = atrepo.read_car(path)
    for collection in declared(snap):
        both(snap, collection)


def test_a_cold_table_verifies_blocks_as_records_does() -> None:
    good = {"$type": "app.bsky.feed.like", "subject": {"uri": URI, "cid": LINK},
            "createdAt": "2024-05-01T12:00:00Z"}
    car, _ = make_repo_car({"app.bsky.feed.like/3kaaaaaaaaaa2": good}, did=DID)
    data = bytearray(car)
    at = data.index(b"2024-05-01T12:00:00Z")
    data[at] = ord("1")  # the block no longer matches its CID
    snap = atrepo.read_car(bytes(data))
    with pytest.raises(atrepo.CarError) as core:
        snap.table("app.bsky.feed.like")
    with pytest.raises(atrepo.CarError) as reference:
        snap.records  # noqa: B018
    assert str(core.value) == str(reference.value)


def _without_block(car: bytes, data: bytes) -> bytes:
    """``car`` with the section whose block is ``data`` left out (CIDv1 sha-256: 36 bytes)."""
    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = car[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if byte < 0x80:
                return value, at

    length, at = varint(0)
    kept, at = [car[:at + length]], at + length
    while at < len(car):
        length, body = varint(at)
        if car[body + 36:body + length] != data:
            kept.append(car[at:body + length])
        at = body + length
    return b"".join(kept)


def test_a_cold_table_fails_on_the_first_bad_record_in_key_order_as_records_does() -> None:
    """A forged block before a missing one in key order: the forged one is the error, in the
    table as in records and in the reference, whichever the file order."""
    def like(day: str) -> dict[str, Any]:
        return {"$type": "app.bsky.feed.like", "subject": {"uri": URI, "cid": LINK},
                "createdAt": f"2024-05-{day}T12:00:00Z"}

    car, _ = make_repo_car({"app.bsky.feed.like/3kaaaaaaaaaa2": like("01"),
                            "app.bsky.feed.like/3kaaaaaaaaaa3": like("02")}, did=DID)
    car = _without_block(car, cbor.encode(like("02")))
    data = bytearray(car)
    at = data.index(b"2024-05-01T12:00:00Z")
    data[at] = ord("1")  # the first record's block no longer matches its CID
    with pytest.raises(atrepo.AtrepoError) as table:
        atrepo.read_car(bytes(data)).table("app.bsky.feed.like")
    with pytest.raises(atrepo.AtrepoError) as records:
        atrepo.read_car(bytes(data)).records  # noqa: B018
    with patch.object(_accel, "core", None), patch.object(_accel, "accelerated", False), \
            pytest.raises(atrepo.AtrepoError) as reference:
        atrepo.read_car(bytes(data)).table("app.bsky.feed.like")
    assert type(table.value) is type(records.value) is type(reference.value) is atrepo.CarError
    assert str(table.value) == str(records.value) == str(reference.value)


# -- the syntax interop vectors, as the values of formatted fields ---------------------------

def _vectors(name: str) -> list[str]:
    path = SYNTAX / name
    if not path.is_file():
        pytest.skip(f"interop vectors not found at {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


# (vector files, collection, the record with the value put in)
_PLACES: dict[str, tuple[str, Any]] = {
    "datetime": ("app.bsky.feed.like", lambda v: {
        "$type": "app.bsky.feed.like", "subject": {"uri": URI, "cid": CID_TEXT},
        "createdAt": v}),
    "aturi": ("app.bsky.feed.threadgate", lambda v: {
        "$type": "app.bsky.feed.threadgate", "post": v, "createdAt": "2024-05-01T12:00:00Z"}),
    "cid": ("app.bsky.feed.like", lambda v: {
        "$type": "app.bsky.feed.like", "subject": {"uri": URI, "cid": v},
        "createdAt": "2024-05-01T12:00:00Z"}),
    "did": ("app.bsky.graph.follow", lambda v: {
        "$type": "app.bsky.graph.follow", "subject": v, "createdAt": "2024-05-01T12:00:00Z"}),
    "handle": ("app.bsky.graph.verification", lambda v: {
        "$type": "app.bsky.graph.verification", "subject": DID, "handle": v,
        "displayName": "x", "createdAt": "2024-05-01T12:00:00Z"}),
    "language": ("app.bsky.feed.post", lambda v: {
        "$type": "app.bsky.feed.post", "text": "hi", "langs": [v],
        "createdAt": "2024-05-01T12:00:00Z"}),
    "uri": ("app.bsky.actor.profile", lambda v: {"$type": "app.bsky.actor.profile",
                                                  "website": v}),
}


@pytest.mark.parametrize("kind", sorted(_PLACES))
def test_format_vectors_give_the_same_verdicts(kind: str) -> None:
    values = [*_vectors(f"{kind}_syntax_valid.txt"), *_vectors(f"{kind}_syntax_invalid.txt")]
    collection, record = _PLACES[kind]
    snap = repo({f"{collection}/3kaaaaaaa{i:04d}": record(v) for i, v in enumerate(values)})
    problems = both(snap, collection)
    assert problems.height > 0  # some invalid vectors are invalid records too


# -- hypothesis: records of every kind of wrong --------------------------------------------

def _post(**fields: Any) -> dict[str, Any]:
    return {"$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2024-05-01T12:00:00Z",
            **fields}


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_LONG = st.sampled_from(["a", "\u00e9", "\U0001f600", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
                         "\U0001f1e7\U0001f1f7", "\u0915\u094d\u0937", "e\u0301", "\r\n",
                         "\u1100\u1161\u11a8", "\U0001f44d\U0001f3fd"]).flatmap(
    lambda unit: st.integers(0, 700).map(lambda n: unit * n))
_SCALAR = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 63 - 1) | _TEXT
           | st.just(LINK) | st.binary(max_size=6)
           | st.sampled_from(["2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z",
                              "2024-04-31T10:00:00.1234567891Z", "2024-05-01T12:00:00+01:00",
                              "2024-05-01T24:00:00Z", "1970-01-01T00:00:00Z", "2024-05-01",
                              "0000-02-29T00:00:00Z", "2101-01-01T00:00:00Z",
                              "did:plc:abc", "did:web:", URI, CID_TEXT, "bafkqaaa", "en",
                              "pt-BR", "i-klingon", "x", "https://example.com/a b",
                              "https://example.com", "blob", "image/png"]))
_KEYS = st.sampled_from(["text", "createdAt", "embed", "images", "image", "alt", "record",
                         "uri", "cid", "$type", "facets", "index", "byteStart", "byteEnd",
                         "features", "did", "tag", "langs", "reply", "root", "parent",
                         "labels", "values", "val", "tags", "ref", "size", "mimeType",
                         "aspectRatio", "width", "height", "external", "title",
                         "description", "thumb", "video", "captions", "lang", "file",
                         "$link", "other"])
_TYPES = st.sampled_from(["app.bsky.embed.images", "app.bsky.embed.external",
                          "app.bsky.embed.record", "app.bsky.embed.recordWithMedia",
                          "app.bsky.embed.video", "lex:app.bsky.embed.images#main",
                          "app.bsky.embed.images#image", "com.example.other",
                          "app.bsky.richtext.facet#mention", "app.bsky.richtext.facet#link",
                          "app.bsky.richtext.facet#tag", "com.atproto.label.defs#selfLabels",
                          "a#b#c", "blob"])
_VALUE = st.recursive(
    _SCALAR | _TYPES,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(_KEYS, inner, max_size=5)
    | st.fixed_dictionaries({"$type": _TYPES}, optional={"images": st.lists(inner, max_size=2),
                                                         "record": inner, "external": inner,
                                                         "media": inner, "uri": inner,
                                                         "did": inner, "tag": inner}),
    max_leaves=16)
_IMAGE = st.fixed_dictionaries(
    {"alt": _TEXT | _LONG, "image": st.sampled_from([
        {"$type": "blob", "ref": BLOB_LINK, "mimeType": "image/png", "size": 10},
        {"$type": "blob", "ref": BLOB_LINK, "mimeType": "image/png", "size": True},
        {"$type": "blob", "ref": BLOB_LINK, "mimeType": "image/png"},
        {"cid": CID_TEXT, "mimeType": "image/jpeg"},
        {"cid": CID_TEXT, "mimeType": "image/jpeg", "ref": "x"},
        {"$type": "blob", "ref": {"$link": CID_TEXT}, "mimeType": "image/png", "size": 1},
        {"$type": 5, "ref": BLOB_LINK, "mimeType": "image/png", "size": 1},
        {"$type": "blob", "ref": CID.decode("bafkqaaa"), "mimeType": "a", "size": 1},
        "not a blob"])},
    optional={"aspectRatio": _VALUE})
_POST = st.builds(
    _post,
    **{"text": _TEXT | _LONG | _VALUE, "createdAt": _SCALAR,
       "langs": st.lists(_SCALAR, max_size=4),
       "tags": st.lists(_TEXT | _LONG, max_size=9),
       "embed": (st.fixed_dictionaries({"$type": st.just("app.bsky.embed.images"),
                                        "images": st.lists(_IMAGE, max_size=5)}) | _VALUE),
       "facets": st.lists(st.fixed_dictionaries(
           {"index": st.fixed_dictionaries({"byteStart": _SCALAR, "byteEnd": _SCALAR}),
            "features": st.lists(_VALUE, max_size=2)}), max_size=2),
       "reply": _VALUE, "labels": _VALUE, "other": _VALUE})
_RECORDS = {
    "app.bsky.feed.post": _POST,
    "app.bsky.feed.like": st.builds(lambda s, c, x: {"$type": "app.bsky.feed.like",
                                                     "subject": s, "createdAt": c, "via": x},
                                    _VALUE, _SCALAR, _VALUE),
    "app.bsky.actor.profile": st.builds(
        lambda d, a, w, p: {"$type": "app.bsky.actor.profile", "displayName": d,
                            "avatar": a, "website": w, "pinnedPost": p},
        _TEXT | _LONG, _IMAGE.map(lambda i: i["image"]) | _VALUE, _SCALAR, _VALUE),
    "app.bsky.graph.follow": st.builds(lambda s, c: {"$type": "app.bsky.graph.follow",
                                                     "subject": s, "createdAt": c},
                                       _SCALAR, _SCALAR),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), collection=st.sampled_from(sorted(_RECORDS)))
def test_generated_invalid_records_agree(data: st.DataObject, collection: str) -> None:
    bodies = data.draw(st.lists(_RECORDS[collection], min_size=1, max_size=4))
    if data.draw(st.booleans()):
        bodies[0] = {**bodies[0], "$type": data.draw(_VALUE)}  # not the collection's
    snap = repo({f"{collection}/3kaaaaaaa{i:04d}": body for i, body in enumerate(bodies)})
    both(snap, collection)


def test_the_core_decides_common_records_itself() -> None:
    """Posts of the usual shapes are not left to the reference (that is the speed)."""
    from atrepo._table_check import _core_checker

    days = [date.fromordinal(date(2024, 1, 1).toordinal() + i) for i in range(0, 400, 2)]
    records = {f"app.bsky.feed.post/3kaaaaaaa{i:04d}": _post(
        createdAt=f"{day.isoformat()}T12:00:{i % 60:02d}.{i:03d}Z", langs=["en", "pt-BR"],
        reply={"root": {"uri": URI, "cid": CID_TEXT}, "parent": {"uri": URI, "cid": CID_TEXT}},
        facets=[{"index": {"byteStart": 0, "byteEnd": 2}, "features": [
            {"$type": "app.bsky.richtext.facet#mention", "did": DID},
            {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/x"}]}])
        for i, day in enumerate(days)}
    snap = repo(records)
    keys, values = snap._walk()
    _, _, found, deferred, lost = _accel.core.check_table(
        _core_checker("app.bsky.feed.post"), snap.blocks.core_car(), snap.did, keys, values)
    assert (found, deferred, lost) == ([], [], [])
    assert both(snap, "app.bsky.feed.post").is_empty()


# -- datetimes: the core's reading against polars' (the reference's route) ----------------

def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


# near the common form `YYYY-MM-DDTHH:MM:SS[.f]Z`, at and past every bound of each part
_DATETIME = st.builds(
    lambda *parts: "{}-{}-{}{}{}:{}:{}{}{}".format(*parts),
    st.sampled_from(["1989", "1990", "2000", "2024", "2100", "2101", "1900", "0000", "1970",
                     "0001"]) | _digits(4),
    st.sampled_from(["00", "01", "02", "04", "12", "13"]) | _digits(2),
    st.sampled_from(["00", "01", "28", "29", "30", "31", "32"]) | _digits(2),
    st.sampled_from(["T", "T", "t", " "]),
    st.sampled_from(["00", "23", "24"]) | _digits(2),
    st.sampled_from(["00", "59", "60"]) | _digits(2),
    st.sampled_from(["00", "59", "60", "61"]) | _digits(2),
    st.sampled_from(["", "."]) | st.text("0123456789", min_size=1, max_size=11).map("."
                                                                                  .__add__),
    st.sampled_from(["Z", "Z", "z", "", "+00:00", "-05:30", "+0000", "+24:00", "ZZ"]))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_DATETIME, min_size=1, max_size=8))
def test_datetimes_read_as_the_reference_reads_them(values: list[str]) -> None:
    """Each string the core reads itself gives the value polars gives it (fraction cut to
    microseconds), null with the same problem outside 1990-2100; the rest go to the
    reference."""
    records = {f"app.bsky.feed.post/3kaaaaaaa{i:04d}": _post(createdAt=v)
               for i, v in enumerate(values)}
    both(repo(records), "app.bsky.feed.post")


def test_the_core_reads_common_datetimes_and_words_the_lost_ones() -> None:
    from atrepo._table_check import _core_checker

    values = ["2024-05-01T12:00:00.1234567Z", "1970-01-01T00:00:00Z", "2100-12-31T23:59:59Z",
              "2101-01-01T00:00:00.000Z", "2000-02-29T01:02:03.000001Z"]
    records = {f"app.bsky.feed.post/3kaaaaaaa{i:04d}": _post(createdAt=v)
               for i, v in enumerate(values)}
    snap = repo(records)
    problems = both(snap, "app.bsky.feed.post")
    table = snap.table("app.bsky.feed.post")
    assert table["createdAt"].to_list() == [
        datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc), None,
        datetime(2100, 12, 31, 23, 59, 59, tzinfo=timezone.utc), None,
        datetime(2000, 2, 29, 1, 2, 3, 1, tzinfo=timezone.utc)]
    assert problems["rkey"].to_list() == ["3kaaaaaaa0001", "3kaaaaaaa0003"]
    assert problems["error"][0] == ("Record/createdAt: '1970-01-01T00:00:00Z' does not parse "
                                    "as a datetime or lies outside 1990-2100; null in the table")
    keys, cids = snap._walk()
    _, _, _, deferred, lost = _accel.core.check_table(
        _core_checker("app.bsky.feed.post"), snap.blocks.core_car(), snap.did, keys, cids)
    assert deferred == []  # all five read by the core
    field = table.columns.index("createdAt") - 4  # after did, rkey, uri, cid
    assert lost == [(1, field, "1970-01-01T00:00:00Z"), (3, field, "2101-01-01T00:00:00.000Z")]


# -- graphemes: unicode-segmentation against the Python count ------------------------------

_CLUSTERS = ["a", "\u00e9", "e\u0301", "\U0001f600", "\U0001f44d\U0001f3fd", "\u2764\ufe0f",
             "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1e7\U0001f1f7",
             "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
             "\u0915\u094d\u0937", "\u0e01\u0e33", "\u1100\u1161\u11a8", "\uac01", "\r\n",
             "\u0600\u0661", "\u3042", "\u0627\u064e"]


@pytest.mark.parametrize("cluster", _CLUSTERS)
def test_grapheme_counts_agree_at_the_limit(cluster: str) -> None:
    """Posts of 299-301 graphemes of one cluster kind: both counts, the same verdicts."""
    assert grapheme_len(cluster * 7) == 7
    records = {f"app.bsky.feed.post/3kaaaaaaa{n:04d}": _post(text=cluster * n)
               for n in (299, 300, 301, 1000)}
    problems = both(repo(records), "app.bsky.feed.post")
    over = {"3kaaaaaaa0301", "3kaaaaaaa1000"}
    grapheme_rows = problems.filter(pl.col("error").str.contains("graphemes"))
    assert set(grapheme_rows["rkey"]) == over


# -- JSON texts that CBOR cannot hold: floats, integers beyond Int64, repeated keys ----------

_JSON_SCALAR = (_SCALAR.filter(lambda v: not isinstance(v, (bytes, CID)))
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.integers(-(2 ** 70), 2 ** 70))
_JSON_VALUE = st.recursive(_JSON_SCALAR | _TYPES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(_KEYS, inner, max_size=5), max_leaves=16)


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(st.dictionaries(_KEYS, _JSON_VALUE, max_size=6), min_size=1,
                       max_size=4),
       collection=st.sampled_from(sorted(_RECORDS)))
def test_json_texts_agree(bodies: list[dict[str, Any]], collection: str) -> None:
    texts = [json.dumps({"$type": collection, **body}, ensure_ascii=False) for body in bodies]
    texts += ['{"$type": "app.bsky.feed.like", "createdAt": 1, "createdAt": "x"}', "[1]",
              '{"text": "\\u00e9\\n\\ud83d\\ude00"}']
    frame = pl.DataFrame({"did": DID, "collection": collection,
                          "rkey": [f"k{i}" for i in range(len(texts))], "uri": URI,
                          "cid": CID_TEXT, "record": texts})
    table, problems = records_table(frame, collection)
    ref_table, ref_problems = reference(frame, collection)
    assert_frame_equal(table, ref_table)
    assert_frame_equal(problems, ref_problems)


@settings(max_examples=100, deadline=None)
@given(blocks=st.lists(st.binary(max_size=40) | st.sampled_from([
    b"\xa1\x65$type\x72app.bsky.feed.post",            # a map holding only $type
    b"\xa1\x65$type\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",  # a float
    b"\xa1\x64text\xc2\x41\x01",                        # a bignum tag
    b"\xa1\x64text\x1b\xff\xff\xff\xff\xff\xff\xff\xff",  # an integer beyond Int64
    b"\x81\x01", b"\xd8\x2a\x42\x00\x01"]), min_size=1, max_size=4))
def test_any_record_block_gives_the_same_rows(blocks: list[bytes]) -> None:
    """Blocks that do not decode, or do not decode to a map, are rows of nulls both ways."""
    snap = repo({f"app.bsky.feed.post/3kaaaaaaa{i:04d}": block for i, block in enumerate(blocks)})
    both(snap, "app.bsky.feed.post")


# -- edge cases of the typed columns: shapes, nulls, bounds, the fallback and both halves ----

def _core_verdict(snap: atrepo.RepoSnapshot, collection: str) -> tuple[list[Any], list[int]]:
    """The core's own problems and deferred rows of ``collection`` (no reference involved)."""
    from atrepo._table_check import _core_checker

    keys, values = snap._walk()
    start = sum(1 for k in keys if k < collection + "/")
    end = start + sum(1 for k in keys if k.startswith(collection + "/"))
    _, _, found, deferred, _ = _accel.core.check_table(
        _core_checker(collection), snap.blocks.core_car(), snap.did, keys, values,
        start=start, end=end)
    return found, deferred


def _posts(bodies: list[Any]) -> atrepo.RepoSnapshot:
    return repo({f"app.bsky.feed.post/3kaaaaaaa{i:04d}": b for i, b in enumerate(bodies)})


_OFF_FORM = "2024-05-01T12:00:00+01:00"  # a valid datetime the core leaves to the reference


def test_a_collection_absent_from_the_repository_is_an_empty_table_of_the_schema() -> None:
    snap = repo({"app.bsky.feed.like/3kaaaaaaaaaa2": {
        "$type": "app.bsky.feed.like", "subject": {"uri": URI, "cid": LINK},
        "createdAt": "2024-05-01T12:00:00Z"}})
    for collection in ("app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.actor.profile"):
        both(snap, collection)
    assert snap.table("app.bsky.feed.post").height == 0


def test_one_record_of_each_declared_collection_of_a_generated_repository(
        ref_small: Any) -> None:
    snap = atrepo.read_car(ref_small.car)
    for collection in declared(snap):
        first = snap.records.filter(pl.col("collection") == collection).row(0, named=True)
        one = repo({f"{collection}/{first['rkey']}": json.loads(first["record"])})
        both(one, collection)


def test_records_left_to_the_reference_come_back_in_row_order() -> None:
    """All rows deferred, then deferred rows between the core's own (first, middle, last)."""
    every = [_post(text=f"t{i}", createdAt=_OFF_FORM) for i in range(5)]
    snap = _posts(every)
    assert _core_verdict(snap, "app.bsky.feed.post")[1] == [0, 1, 2, 3, 4]
    both(snap, "app.bsky.feed.post")
    mixed = [_post(text=f"t{i}", createdAt=_OFF_FORM if i in (0, 3, 7) else
                   "2024-05-01T12:00:00Z", langs=["en"] if i % 2 else None) for i in range(8)]
    snap = _posts(mixed)
    assert _core_verdict(snap, "app.bsky.feed.post")[1] == [0, 3, 7]
    table = snap.table("app.bsky.feed.post")
    assert table["text"].to_list() == [f"t{i}" for i in range(8)]
    both(snap, "app.bsky.feed.post")


_IMAGE_OK = {"alt": "a", "image": {"$type": "blob", "ref": BLOB_LINK, "mimeType": "image/png",
                                   "size": 10}}


@pytest.mark.parametrize("embed", [
    None,                                                     # a null struct
    {"$type": "app.bsky.embed.images"},                       # a struct whose fields are null
    {"$type": "app.bsky.embed.images", "images": []},
    {"$type": "app.bsky.embed.images", "images": [None, _IMAGE_OK, None]},
    {"$type": "app.bsky.embed.images", "images": [{"alt": None, "image": None}]},
    {"$type": "app.bsky.embed.recordWithMedia",
     "record": {"$type": "app.bsky.embed.record", "record": {"uri": URI, "cid": CID_TEXT}},
     "media": {"$type": "app.bsky.embed.images", "images": [_IMAGE_OK, _IMAGE_OK]}},
    {"$type": "app.bsky.embed.recordWithMedia", "record": None, "media": None},
    {"$type": "app.bsky.embed.external",
     "external": {"uri": "https://example.com", "title": "", "description": ""}},
    {"$type": "com.example.other", "images": [_IMAGE_OK]},   # an open union's other member
])
def test_null_structs_all_null_fields_and_nested_lists_agree(embed: Any) -> None:
    """Each shape of embed between, before and after rows that hold other shapes, so the
    struct's lazily filled fields catch up at every kind of row."""
    others = [_post(), _post(embed={"$type": "app.bsky.embed.images", "images": [_IMAGE_OK]}),
              _post(reply={}), _post(reply={"root": None, "parent": {"uri": URI, "cid": LINK}})]
    bodies = [_post(embed=embed) if embed is not None else _post()]
    for other in others:
        bodies += [other, _post(embed=embed) if embed is not None else _post()]
    bodies += [_post(createdAt=_OFF_FORM), _post(embed=embed, createdAt=_OFF_FORM)]
    both(_posts(bodies), "app.bsky.feed.post")


def test_lists_of_unions_nested_lists_and_empty_lists_agree() -> None:
    mention = {"$type": "app.bsky.richtext.facet#mention", "did": DID}
    link = {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com"}
    tag = {"$type": "app.bsky.richtext.facet#tag", "tag": "t\u00e9"}
    other = {"$type": "com.example.facet#thing", "did": DID, "uri": 5}
    index = {"byteStart": 0, "byteEnd": 2}
    facets = [
        [], None, [{"index": index, "features": []}],
        [{"index": index, "features": [mention, link, tag, other, None]}],
        [{"index": None, "features": None}, {"index": index, "features": [tag]}],
        [{"index": index, "features": [{"did": DID}]}],       # a member without $type
        [{"index": index, "features": [mention] * 40}] * 30,
    ]
    bodies = [_post(facets=f, langs=[] if i % 2 else ["en", None, "pt"], tags=["a"] * i)
              for i, f in enumerate(facets)]
    both(_posts(bodies + [_post(facets=facets[3], createdAt=_OFF_FORM)]), "app.bsky.feed.post")


def test_long_and_non_ascii_strings_agree() -> None:
    texts = ["", "x" * 12, "x" * 13, "\u00e9" * 6, "\u00e9" * 7, "\U0001f600" * 3,
             "\U0001f600" * 4, "a" * 300_000, "\u4e2d\u6587" * 50_000, "\x00\x01\x7f",
             "\ud7ff\ue000\uffff\U0010ffff", "\u200d" * 1000]
    bodies = [_post(text=t, tags=[t, t[:3]], langs=[t[:12]]) for t in texts]
    snap = _posts(bodies)
    both(snap, "app.bsky.feed.post")
    assert snap.table("app.bsky.feed.post")["text"].to_list() == texts


def test_integers_at_the_int64_bounds_agree() -> None:
    low, high = INT_BOUNDS = (-(2 ** 63), 2 ** 63 - 1)
    values = [low, low + 1, -1, 0, 1, high - 1, high, True, "1"]
    bodies = [_post(embed={"$type": "app.bsky.embed.images", "images": [{
        **_IMAGE_OK, "aspectRatio": {"width": v, "height": v}}]},
        facets=[{"index": {"byteStart": v, "byteEnd": v}, "features": []}]) for v in values]
    snap = _posts(bodies)
    both(snap, "app.bsky.feed.post")
    widths = snap.table("app.bsky.feed.post")["embed"].struct.field("images").list.first()
    assert widths.struct.field("aspectRatio").struct.field("width").to_list()[:7] == [
        *values[:7]]
    assert INT_BOUNDS == (low, high)


def test_datetimes_at_the_bounds_agree() -> None:
    values = ["1989-12-31T23:59:59.999999Z", "1990-01-01T00:00:00Z", "1990-01-01T00:00:00.000000Z",
              "2100-12-31T23:59:59.999999Z", "2100-12-31T23:59:59.9999999Z",
              "2101-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
              "2000-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "1970-01-01T00:00:00Z",
              "1989-12-31T23:00:00-01:00", "2100-12-31T23:30:00-01:00"]
    both(_posts([_post(createdAt=v) for v in values]), "app.bsky.feed.post")


def test_extra_present_absent_and_only_extra_agree() -> None:
    bodies = [_post(), _post(other=1), _post(other=None, more={"a": [1, {"b": "\u00e9"}]}),
              {"$type": "app.bsky.feed.post", "zzz": "only extra"}, _post(other="x" * 100),
              _post(other=1, createdAt=_OFF_FORM), _post(createdAt=_OFF_FORM)]
    snap = _posts(bodies)
    both(snap, "app.bsky.feed.post")
    assert snap.table("app.bsky.feed.post")["extra"].is_null().to_list() == [
        True, False, False, False, False, False, True]


def test_many_records_checked_in_two_halves_agree() -> None:
    """More rows than the core checks on one thread: misfits, rows left to the reference and
    blocks that are no record in both halves, each row in its place."""
    n = 20_600
    odd = {5: _post(text=5), 9: _post(createdAt=_OFF_FORM), 11: b"\x81\x01",
           n - 7: _post(langs=7), n - 5: _post(createdAt=_OFF_FORM), n - 3: b"\xa0",
           n // 2: _post(createdAt=_OFF_FORM), n // 2 + 1: _post(embed={"$type": 1})}
    bodies = [odd.get(i, _post(text=f"p{i}", langs=["en"] if i % 3 else None))
              for i in range(n)]
    snap = repo({f"app.bsky.feed.post/3kaa{i:09d}": b for i, b in enumerate(bodies)})
    _, deferred = _core_verdict(snap, "app.bsky.feed.post")
    assert deferred == [9, n // 2, n - 5]
    problems = both(snap, "app.bsky.feed.post")
    assert set(problems["rkey"]) >= {f"3kaa{i:09d}" for i in (5, n - 7, n // 2 + 1)}
    text = snap.table("app.bsky.feed.post")["text"]
    assert text[1000] == "p1000" and text[n - 1000] == f"p{n - 1000}"


@pytest.mark.parametrize("share", ["some", "all"])
def test_every_collection_merges_rows_left_to_the_reference(ref_medium: Any, share: str) -> None:
    """A float (which only the reference reads) sends a JSON text to the reference: the rows
    it reads join the core's rows with the same dtypes, in their places, in every declared
    collection."""
    snap = atrepo.read_car(ref_medium.car)
    for collection in declared(snap):
        records = snap.records.filter(pl.col("collection") == collection).head(40)
        texts = records["record"].to_list()
        floated = [t if share == "some" and i % 3 else t[:-1] + ', "zz": 1.5}'
                   for i, t in enumerate(texts)]
        frame = records.with_columns(pl.Series("record", floated, dtype=pl.String))
        table, problems = records_table(frame, collection)
        ref_table, ref_problems = reference(frame, collection)
        assert_frame_equal(table, ref_table)
        assert_frame_equal(problems, ref_problems)
        assert table["extra"].is_not_null().sum() >= len(texts) // 3


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_sequences_with_rows_left_to_the_reference_agree(data: st.DataObject) -> None:
    """Longer runs of hostile posts, some sent to the reference, so that null structs, lists
    and lazily filled fields meet rows of every kind before and after them."""
    bodies = data.draw(st.lists(_POST, min_size=2, max_size=12))
    deferred = data.draw(st.sets(st.integers(0, len(bodies) - 1), max_size=len(bodies)))
    bodies = [{**b, "createdAt": _OFF_FORM} if i in deferred else b
              for i, b in enumerate(bodies)]
    both(_posts(bodies), "app.bsky.feed.post")


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a record's JSON (map keys and list indices)."""
    found = [path] if path else []
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found += _places(item, (*path, key))
    return found


def _put(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with the value at ``path`` replaced (removed for ``_GONE``)."""
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if len(path) == 1 and new is _GONE:
        del copy[path[0]]
    else:
        copy[path[0]] = _put(copy[path[0]], path[1:], new)
    return copy


_GONE = object()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_records_of_every_collection_agree(ref_small: Any, data: st.DataObject) -> None:
    """Real records of each declared collection with values replaced anywhere inside them
    (by hostile values, nulls, or nothing), among unchanged ones."""
    snap = atrepo.read_car(ref_small.car)
    collection = data.draw(st.sampled_from(declared(snap)))
    texts = snap.records.filter(pl.col("collection") == collection)["record"].to_list()
    bodies = [from_json(json.loads(t)) for t in data.draw(
        st.lists(st.sampled_from(texts), min_size=1, max_size=6))]
    for i, body in enumerate(bodies):
        for _ in range(data.draw(st.integers(0, 3))):
            places = _places(body)
            if not places:
                break
            place = data.draw(st.sampled_from(places))
            body = _put(body, place, data.draw(_VALUE | st.just(None) | st.just(_GONE)))
        bodies[i] = body
    both(repo({f"{collection}/3kaaaaaaa{i:04d}": b for i, b in enumerate(bodies)}), collection)


def test_a_null_struct_differs_from_a_struct_of_null_fields() -> None:
    snap = _posts([_post(), _post(reply={}), _post(), _post(reply={"root": None})])
    both(snap, "app.bsky.feed.post")
    reply = snap.table("app.bsky.feed.post")["reply"]
    assert reply.is_null().to_list() == [True, False, True, False]
    assert reply.struct.field("root").is_null().all()
    assert reply.struct.field("parent").is_null().all()
