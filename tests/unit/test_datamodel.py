"""Unit tests for atrepo.datamodel: to_json, from_json, the record hot path record_json, and
undecodable records inside a repository read with :func:`atrepo.read_car`.

Every rejection must be a :class:`~atrepo.DecodeError` (an AtrepoError and a ValueError).
"""

from __future__ import annotations

import json
import math

import pytest

import atrepo
from atrepo import cbor, datamodel
from atrepo.cbor import INT_MAX, INT_MIN, MAX_DEPTH, Link
from atrepo.cid import CID, cid_for
from atrepo.errors import AtrepoError, DecodeError
from atrepo.testing import SigningKey, make_repo_car

H = bytes.fromhex
CID_A = cid_for(b"a")
CID_RAW = cid_for(b"a", codec="raw")
LINK_A = {"$link": str(CID_A)}
TAG42_A = b"\xd8\x2a\x58\x25\x00" + bytes(CID_A)
BLOB = {"$type": "blob", "ref": {"$link": str(CID_RAW)}, "mimeType": "image/jpeg", "size": 10}


def _rejects(func: object, data: object) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        func(data)  # type: ignore[operator]
    err = info.value
    assert isinstance(err, AtrepoError) and isinstance(err, ValueError)
    assert str(err)
    return err


# --- to_json -----------------------------------------------------------------------------------

def test_to_json_bytes_are_unpadded_base64() -> None:
    assert datamodel.to_json(b"\x01\x02") == {"$bytes": "AQI"}
    assert datamodel.to_json(b"") == {"$bytes": ""}
    assert datamodel.to_json(b"\xfb\xff") == {"$bytes": "+/8"}  # standard alphabet


def test_to_json_links() -> None:
    assert datamodel.to_json(CID_A) == LINK_A
    assert datamodel.to_json(Link(bytes(CID_A))) == LINK_A
    assert datamodel.to_json(CID_RAW) == {"$link": str(CID_RAW)}
    assert str(CID_RAW).startswith("bafkrei") and str(CID_A).startswith("bafyrei")


def test_to_json_nested_and_scalars_unchanged() -> None:
    value = {"a": [1, None, True, "x", {"b": b"\x00"}], "c": CID_A, "n": INT_MIN}
    assert datamodel.to_json(value) == {"a": [1, None, True, "x", {"b": {"$bytes": "AA"}}],
                                        "c": LINK_A, "n": INT_MIN}


# --- from_json: accepted -----------------------------------------------------------------------

def test_from_json_link_bytes_blob() -> None:
    value = datamodel.from_json({"l": LINK_A, "b": {"$bytes": "AQI"}, "blob": BLOB})
    assert isinstance(value["l"], CID) and value["l"] == CID_A
    assert value["b"] == b"\x01\x02"
    assert value["blob"]["ref"] == CID_RAW
    assert value["blob"]["size"] == 10
    assert datamodel.to_json(value) == {"l": LINK_A, "b": {"$bytes": "AQI"}, "blob": BLOB}


def test_from_json_int_boundaries_and_type_field() -> None:
    assert datamodel.from_json({"a": INT_MAX, "b": INT_MIN}) == {"a": INT_MAX, "b": INT_MIN}
    assert datamodel.from_json({"$type": "app.bsky.feed.post"}) == {"$type": "app.bsky.feed.post"}


def test_from_json_integral_floats_are_integers() -> None:
    # JSON has one number type, so "123.0" is the integer 123
    value = datamodel.from_json({"a": 123.0, "l": [0.0, -0.0, -7.0, 2.0**53],
                                 "blob": dict(BLOB, size=10.0)})
    assert value == {"a": 123, "l": [0, 0, -7, 2**53], "blob": dict(BLOB, size=10,
                                                                  ref=CID_RAW)}
    assert all(type(n) is int for n in [value["a"], *value["l"], value["blob"]["size"]])
    assert datamodel.from_json(json.loads("123.0")) == 123
    assert datamodel.from_json(-(2.0**63)) == INT_MIN  # the one float at a 64-bit bound
    assert cbor.encode(value["a"]) == cbor.encode(123)


def test_from_json_then_encode_round_trip() -> None:
    obj = {"$type": "x.y.z", "text": "héllo", "l": LINK_A, "b": {"$bytes": "AQI"},
           "blob": BLOB, "n": [0, -1, None, False]}
    data = cbor.encode(datamodel.from_json(obj))
    assert json.loads(datamodel.record_json(data)) == obj
    assert datamodel.to_json(cbor.decode(data)) == obj


# --- from_json: rejected -----------------------------------------------------------------------

FROM_JSON_REJECTED = {
    "float": {"a": 1.5},
    "nan": {"a": math.nan},
    "infinity": {"a": math.inf},
    "float in list": [1, 0.5],
    "top-level float": 2.5,
    "tiny float": 5e-324,
    "integral float above 64 bits": 2.0**63,
    "integral float below 64 bits": -(2.0**64),
    "huge integral float": 1e300,
    "int above 64 bits": {"a": 2**63},
    "int below 64 bits": {"a": -(2**63) - 1},
    "$link not a string": {"$link": 1},
    "$link null": {"$link": None},
    "$link not a CID": {"$link": "notacid"},
    "$link empty": {"$link": ""},
    "$link with extra key": {"$link": str(CID_A), "x": 1},
    "$link with $type": {"$link": str(CID_A), "$type": "x"},
    "$link truncated": {"$link": str(CID_A)[:-3]},
    "$bytes not a string": {"$bytes": 1},
    "$bytes list": {"$bytes": [1]},
    "$bytes not base64": {"$bytes": "!!!"},
    "$bytes url-safe alphabet": {"$bytes": "-_8"},
    "$bytes with extra key": {"$bytes": "AQI", "x": 1},
    "$type empty": {"$type": ""},
    "$type int": {"$type": 1},
    "$type null": {"$type": None},
    "$type list": {"$type": ["x"]},
    "nested $type empty": {"a": {"$type": ""}},
    "blob without ref": {"$type": "blob", "mimeType": "a/b", "size": 1},
    "blob without mimeType": {"$type": "blob", "ref": {"$link": str(CID_RAW)}, "size": 1},
    "blob without size": {"$type": "blob", "ref": {"$link": str(CID_RAW)}, "mimeType": "a/b"},
    "blob ref as string": {"$type": "blob", "ref": str(CID_RAW), "mimeType": "a/b", "size": 1},
    "blob empty mimeType": {"$type": "blob", "ref": {"$link": str(CID_RAW)}, "mimeType": "",
                            "size": 1},
    "blob negative size": {"$type": "blob", "ref": {"$link": str(CID_RAW)}, "mimeType": "a/b",
                           "size": -1},
    "blob string size": {"$type": "blob", "ref": {"$link": str(CID_RAW)}, "mimeType": "a/b",
                         "size": "1"},
    "blob float size": {"$type": "blob", "ref": {"$link": str(CID_RAW)}, "mimeType": "a/b",
                        "size": 1.5},
    "blob bool size": {"$type": "blob", "ref": {"$link": str(CID_RAW)}, "mimeType": "a/b",
                       "size": True},
    "non-string key": {1: 2},
    "tuple": {"a": (1,)},
    "python bytes": {"a": b"x"},
    "set": {"a": {1}},
}


@pytest.mark.parametrize("obj", list(FROM_JSON_REJECTED.values()), ids=list(FROM_JSON_REJECTED))
def test_from_json_rejects(obj: object) -> None:
    _rejects(datamodel.from_json, obj)


def test_from_json_rejects_deep_nesting() -> None:
    obj: list[object] = []
    top = obj
    for _ in range(MAX_DEPTH + 5):
        child: list[object] = []
        obj.append(child)
        obj = child
    _rejects(datamodel.from_json, top)
    deep: dict[str, object] = {}
    for _ in range(50_000):
        deep = {"a": deep}
    _rejects(datamodel.from_json, deep)



# these raised IndexError (multiformats) and ValueError (base64) instead of a DecodeError
@pytest.mark.parametrize(("obj", "message", "shown"), [
    ({"$link": "\x00"}, "malformed $link object: not a CID", "'\\x00'"),
    ({"$link": "b"}, "malformed $link object: not a CID", "b"),
    ({"$link": "z"}, "malformed $link object: not a CID", "z"),
    ({"a": [{"$link": "\ud800"}]}, "malformed $link object: not a CID", "'\\ud800'"),
    ({"$bytes": "é"}, "malformed $bytes object: not base64", "é"),
    ({"$bytes": "A\x00"}, "malformed $bytes object: not base64", "'A\\x00'"),
    ({"$bytes": "\ud800"}, "malformed $bytes object: not base64", "'\\ud800'"),
])
def test_from_json_hostile_link_and_bytes_name_the_value(obj: object, message: str,
                                                         shown: str) -> None:
    err = _rejects(datamodel.from_json, obj)
    assert err.message == message
    assert err.fields["value"] == shown
    assert str(err).isprintable()


def test_from_json_huge_values_give_short_messages() -> None:
    err = _rejects(datamodel.from_json, {"a": 10**5000})  # too many digits to print
    assert err.fields["value"] == "<16610-bit integer>"
    nested: list[object] = [10**5000]
    for _ in range(10_000):
        nested = [nested]
    err = _rejects(datamodel.from_json, {"$link": nested})
    assert len(str(err)) < 300
    err = _rejects(datamodel.from_json, {"$bytes": "!" * 1_000_000})
    assert len(str(err)) < 300


# --- to_json: rejected -------------------------------------------------------------------------

TO_JSON_REJECTED = {
    "float": {"a": 1.5},
    "integral float": 1.0,  # a Python value: only JSON input has no separate integer type
    "int above 64 bits": [2**63],
    "huge int": 10**5000,
    "non-string key": {1: 2},
    "tuple": (1,),
    "object": object(),
    "set": {"a": {1}},
}


@pytest.mark.parametrize("value", list(TO_JSON_REJECTED.values()), ids=list(TO_JSON_REJECTED))
def test_to_json_rejects_what_the_data_model_does_not_hold(value: object) -> None:
    # to_json returned these unchanged: JSON that no atproto reader accepts
    err = _rejects(datamodel.to_json, value)
    assert str(err).isprintable() and len(str(err)) < 300


def test_to_json_rejects_deep_nesting() -> None:
    deep: list[object] = []
    for _ in range(50_000):
        deep = [deep]
    assert "nested too deeply" in str(_rejects(datamodel.to_json, deep))

# --- record_json: accepted ---------------------------------------------------------------------

def test_record_json_docstring_example() -> None:
    assert datamodel.record_json(H("a1652474797065617a")) == '{"$type":"z"}'


def test_record_json_links_bytes_and_ints() -> None:
    data = cbor.encode({"l": CID_A, "b": b"\x01\x02", "max": INT_MAX, "min": INT_MIN,
                        "s": "ü", "n": None, "t": True})
    assert json.loads(datamodel.record_json(data)) == {
        "l": LINK_A, "b": {"$bytes": "AQI"}, "max": INT_MAX, "min": INT_MIN, "s": "ü",
        "n": None, "t": True}


def test_record_json_empty_map() -> None:
    assert datamodel.record_json(b"\xa0") == "{}"


# --- record_json: rejected ---------------------------------------------------------------------

RECORD_REJECTED = {
    # not a map
    "array": "820102",
    "int": "01",
    "text": "6161",
    "null": "f6",
    "bytes": "4101",
    "link": TAG42_A.hex(),  # a bare CID link is not a map (the tag hook makes it a dict)
    # keys
    "bytes key": "a1410101",
    "int key": "a10101",
    "nested bytes key": "a16161a1410101",
    "duplicate keys": "a2616101616102",
    # tags other than 42 (incl. ones cbor2 decodes by itself)
    "tag 0": "a16161c074323031332d30332d32315432303a30343a30305a",
    "tag 1": "a16161c11a514b67b0",
    "tag 2": "a16161c24101",
    "tag 3": "a16161c34101",
    "tag 258": "a16161d9010282616161 62".replace(" ", ""),
    "tag 6": "a16161c601",
    "tag 55799": "a16161d9d9f701",
    "tag 42 of text": "a16161d82a6161",
    "tag 42 without 0x00 prefix": "a16161d82a5824" + bytes(CID_A).hex(),
    "tag 42 only prefix": "a16161d82a4100",
    # other invalid DAG-CBOR
    "indefinite map": "bf616101ff",
    "indefinite array in map": "a161619f01ff",
    "undefined": "a16161f7",
    "simple value": "a16161f0",
    "int below -2^63": "a161613b8000000000000000",
    "int -2^64": "a161613bffffffffffffffff",
    "bad utf-8": "a1616162c328",
    "bad utf-8 key": "a162c32801",
    "truncated": "a16161",
    "empty": "",
    "lone break": "ff",
}


@pytest.mark.parametrize("hexdata", list(RECORD_REJECTED.values()), ids=list(RECORD_REJECTED))
def test_record_json_rejects(hexdata: str) -> None:
    _rejects(datamodel.record_json, H(hexdata))


def test_record_json_rejects_deep_nesting() -> None:
    for depth in (MAX_DEPTH + 1, 10_000):
        _rejects(datamodel.record_json, b"\xa1\x61a" + b"\x81" * depth + b"\x01")


def test_record_json_not_a_map_message() -> None:
    err = _rejects(datamodel.record_json, H("820102"))
    assert "not a map" in err.message


# The atproto data model has no floats and integers are signed 64-bit; cbor.decode and
# from_json enforce that, so record_json (the ``record`` column) must too: whatever it
# returns has to be accepted back by from_json.

@pytest.mark.parametrize("hexdata", [
    "a16161fb3ff8000000000000",  # 1.5 (double)
    "a16161f93c00",              # 1.0 (half)
    "a16161fa3f800000",          # 1.0 (single)
    "a16161fb7ff8000000000000",  # NaN: orjson would silently write null
    "a16161fb7ff0000000000000",  # infinity: also written as null
], ids=["double", "half", "single", "nan", "infinity"])
def test_record_json_rejects_floats(hexdata: str) -> None:
    _rejects(datamodel.record_json, H(hexdata))


@pytest.mark.parametrize("hexdata", [
    "a161611b8000000000000000",  # 2**63
    "a161611bffffffffffffffff",  # 2**64 - 1
], ids=["2^63", "2^64-1"])
def test_record_json_rejects_ints_beyond_signed_64_bits(hexdata: str) -> None:
    _rejects(datamodel.record_json, H(hexdata))


@pytest.mark.parametrize("hexdata", ["a1616101 01", "a1616101 a0", "a1616101 ff"],
                         ids=["int", "map", "break"])
def test_trailing_bytes_strict_in_cbor_decode_lenient_in_record_json(hexdata: str) -> None:
    # One DAG-CBOR block is exactly one item: the strict decoder rejects extra bytes. The
    # record hot path documents that it does not look for them (the CID has bound the
    # bytes; finding the end costs a slower decoder per record): it decodes the one item.
    data = H(hexdata.replace(" ", ""))
    _rejects(cbor.decode, data)
    assert datamodel.record_json(data) == '{"a":1}'


def test_record_json_output_is_valid_json_data_model() -> None:
    samples = [
        cbor.encode({"a": [1, {"b": CID_A}], "c": b"\x00\x01", "$type": "x.y"}),
        cbor.encode(datamodel.from_json(BLOB)),
        H("a2616201616101"),  # non-canonical key order: accepted (the CID was checked)
    ]
    for data in samples:
        text = datamodel.record_json(data)
        value = datamodel.from_json(json.loads(text))
        assert json.loads(datamodel.record_json(cbor.encode(value))) == json.loads(text)


# --- undecodable records inside a repository --------------------------------------------------
# A record block whose CID checks out can still be undecodable; reading the repository must
# keep going, list it under ``problems`` and leave its ``record`` null, never raise.

DEEP = b"\xa1\x61a" + b"\x81" * 10_000 + b"\x01"
BAD_UTF8 = b"\xa2\x64text\x62\xc3\x28\x65$type\x63a.b"
GARBAGE = b"\xff\xfe\xfd"
NOT_A_MAP = cbor.encode([1, 2, 3])
BAD_RECORDS = {"com.ex.t/deep": DEEP, "com.ex.t/utf8": BAD_UTF8, "com.ex.t/garbage": GARBAGE,
               "com.ex.t/list": NOT_A_MAP}
GOOD_RECORDS = {"com.ex.t/a1": {"$type": "com.ex.t", "text": "fine"},
                "com.ex.t/zz": {"$type": "com.ex.t", "n": 2, "l": CID_A},
                "com.ex.u/self": {"$type": "com.ex.u", "b": b"\x01"}}
REPO_KEY = SigningKey()


def test_undecodable_records_become_problems() -> None:
    car, key = make_repo_car({**GOOD_RECORDS, **BAD_RECORDS}, key=REPO_KEY)
    snap = atrepo.read_car(car, signing_key=key)
    assert snap.verified
    records, problems = snap.records, snap.problems
    assert records.height == len(snap) == len(GOOD_RECORDS) + len(BAD_RECORDS)
    assert problems.columns == ["collection", "rkey", "cid", "error"]
    assert problems.height == len(BAD_RECORDS)
    expected = {(k.split("/")[0], k.split("/")[1], str(cid_for(v)))
                for k, v in BAD_RECORDS.items()}
    assert {(r["collection"], r["rkey"], r["cid"]) for r in problems.to_dicts()} == expected
    assert all(r["error"] for r in problems.to_dicts())
    by_key = {f"{r['collection']}/{r['rkey']}": r for r in records.to_dicts()}
    for key_ in BAD_RECORDS:
        assert by_key[key_]["record"] is None
        assert by_key[key_]["cid"] == str(cid_for(BAD_RECORDS[key_]))
        assert by_key[key_]["uri"] == f"at://{snap.did}/{key_}"
    assert '"fine"' in by_key["com.ex.t/a1"]["record"]
    assert snap.get("com.ex.t", "zz") == {"$type": "com.ex.t", "n": 2, "l": LINK_A}
    for key_ in BAD_RECORDS:
        collection, rkey = key_.split("/")
        with pytest.raises(DecodeError) as info:
            snap.get(collection, rkey)
        assert type(info.value) is DecodeError and str(info.value)


def test_problem_records_outside_filter_are_not_read() -> None:
    car, _ = make_repo_car({**GOOD_RECORDS, **BAD_RECORDS}, key=REPO_KEY)
    snap = atrepo.read_car(car, collections=["com.ex.u"])
    assert snap.records.height == 1 and snap.problems.height == 0
