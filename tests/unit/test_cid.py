"""Unit tests for atrepo.cid: the CID value type, its fast string forms, and cid_for.

Every rejection must be a :class:`~atrepo.DecodeError` naming the input in a printable,
bounded form; never an IndexError or TypeError from multiformats underneath.
"""

from __future__ import annotations

import base64
import hashlib
import pickle

import multiformats
import pytest

from atrepo.cid import (
    CID,
    MAX_CID_CHARS,
    cid_for,
    cid_str,
    cid_strs,
    is_blessed,
    raw_cid,
)
from atrepo.errors import AtrepoError, DecodeError

CID_A = cid_for(b"a")
CID_RAW = cid_for(b"a", codec="raw")


def _rejects(value: object) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        CID.decode(value)  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, AtrepoError) and isinstance(err, ValueError)
    assert str(err).isprintable() and len(str(err)) < 400
    return err


# --- accepted ----------------------------------------------------------------------------------

def test_blessed_cid_forms() -> None:
    raw = bytes(CID_A)
    assert raw == b"\x01\x71\x12\x20" + hashlib.sha256(b"a").digest()
    assert is_blessed(raw) and is_blessed(bytes(CID_RAW))
    assert str(CID_A).startswith("bafyrei") and str(CID_RAW).startswith("bafkrei")
    assert CID.decode(str(CID_A)) == CID_A == CID.decode(raw) == CID.decode(bytearray(raw))
    assert CID.decode(memoryview(raw)) == CID_A
    assert raw_cid(CID_A) == raw_cid(str(CID_A)) == raw_cid(raw) == raw


def test_equal_and_hash_like_multiformats() -> None:
    theirs = multiformats.CID.decode(str(CID_A))
    assert CID_A == theirs and hash(CID_A) == hash(theirs)
    assert isinstance(CID_A, multiformats.CID)
    assert CID_A != CID_RAW and (CID_A == "x") is False


def test_pickle_round_trip() -> None:
    assert pickle.loads(pickle.dumps(CID_A)) == CID_A
    assert repr(CID_A) == f"CID('{CID_A}')"


def test_other_cid_forms_fall_back_to_multiformats() -> None:
    v0 = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
    cid = CID.decode(v0)
    assert str(cid) == v0 and cid.version == 0
    sha512 = multiformats.CID("base32", 1, "dag-cbor",
                              multiformats.multihash.digest(b"a", "sha2-512"))
    assert CID.decode(str(sha512)) == sha512 and not is_blessed(bytes(sha512))


def test_cid_str_matches_base32() -> None:
    raws = [bytes(cid_for(b"%d" % i)) for i in range(600)] + [bytes(CID_RAW)]
    expected = ["b" + base64.b32encode(r).decode().lower().rstrip("=") for r in raws]
    assert [cid_str(r) for r in raws] == expected
    assert cid_strs(raws) == expected
    assert cid_strs(raws[:3] + [b"\x01\x02"]) == expected[:3] + ["baeba"]


def test_cid_for_refuses_other_codecs() -> None:
    with pytest.raises(DecodeError, match="unsupported codec"):
        cid_for(b"a", codec="json")


# --- rejected (these raised IndexError or TypeError from multiformats) -------------------------

SHORT_STRINGS = ["\x00", "b", "z", "f", "u", "m", "B", "", "Q", "é", "\ud800", "bafy\x00",
                 "b" + "a" * 58, str(CID_A)[:-1], str(CID_A) + "a", str(CID_A).upper()[:-1]]


@pytest.mark.parametrize("text", SHORT_STRINGS, ids=[ascii(s) for s in SHORT_STRINGS])
def test_hostile_strings_are_decode_errors(text: str) -> None:
    err = _rejects(text)
    assert err.message == "invalid CID string"
    assert "value=" in str(err)


def test_control_characters_are_escaped_in_the_message() -> None:
    err = _rejects("\x00")
    assert err.fields["value"] == "'\\x00'"


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x01", b"\x12", b"\x01\x71", b"\x01\x71\x12",
                                 b"\x01\x71\x12\x20", bytes(CID_A)[:-1], b"\xff" * 40])
def test_hostile_bytes_are_decode_errors(raw: bytes) -> None:
    assert _rejects(raw).message == "invalid binary CID"


@pytest.mark.parametrize("value", [None, 5, 1.5, ["bafy"], object()])
def test_other_types_are_decode_errors(value: object) -> None:
    err = _rejects(value)
    assert err.fields["type"] == type(value).__name__


def test_overlong_string_is_refused_before_decoding() -> None:
    # base58 decoding is quadratic: 300,000 characters took 18 s before the length cap
    err = _rejects("z" + "2" * 300_000)
    assert err.message == "CID string too long"
    assert err.fields["length"] == 300_001 and err.fields["max_chars"] == MAX_CID_CHARS


@pytest.mark.parametrize("value", [5, None, 1.5, ["bafy"]])
def test_raw_cid_refuses_other_types(value: object) -> None:
    # an int was taken as a count of zero bytes (bytes(5)), None raised TypeError
    with pytest.raises(DecodeError, match="neither a string nor bytes"):
        raw_cid(value)  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="invalid CID string"):
        raw_cid("\x00")


def test_raw_cid_takes_every_cid_form() -> None:
    raw = bytes(CID_A)
    theirs = multiformats.CID.decode(str(CID_A))
    assert {raw_cid(form) for form in (CID_A, theirs, raw, bytearray(raw), memoryview(raw),
                                       str(CID_A))} == {raw}


@pytest.mark.parametrize("data", ["a", None, 5])
def test_cid_for_refuses_what_is_not_bytes(data: object) -> None:
    with pytest.raises(DecodeError, match="cid_for needs bytes"):
        cid_for(data)  # type: ignore[arg-type]
    assert cid_for(bytearray(b"a")) == CID_A
