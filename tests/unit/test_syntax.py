"""Unit tests for :mod:`atrepo.syntax` beyond the interop vectors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from atrepo import syntax
from atrepo.errors import DecodeError
from atrepo.syntax import AtUri, parse_at_uri, split_repo_key

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"

VALIDATORS: list[Callable[[object], bool]] = [
    syntax.is_at_identifier,
    syntax.is_at_uri,
    syntax.is_cid_string,
    syntax.is_datetime,
    syntax.is_did,
    syntax.is_handle,
    syntax.is_language,
    syntax.is_nsid,
    syntax.is_record_key,
    syntax.is_tid,
    syntax.is_uri,
]


def test_all_is_sorted_and_complete() -> None:
    assert syntax.__all__ == sorted(syntax.__all__)
    for name in syntax.__all__:
        assert hasattr(syntax, name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"at://{DID}", AtUri(DID, None, None)),
        ("at://alice.bsky.social", AtUri("alice.bsky.social", None, None)),
        (f"at://{DID}/app.bsky.feed.post", AtUri(DID, "app.bsky.feed.post", None)),
        (
            f"at://{DID}/app.bsky.feed.post/3jwdwj2ctlk26",
            AtUri(DID, "app.bsky.feed.post", "3jwdwj2ctlk26"),
        ),
    ],
)
def test_parse_at_uri_round_trips(text: str, expected: AtUri) -> None:
    parsed = parse_at_uri(text)
    assert parsed == expected
    assert str(parsed) == text


def test_at_uri_is_frozen_and_slotted() -> None:
    uri = parse_at_uri(f"at://{DID}/app.bsky.feed.post/self")
    with pytest.raises(dataclasses.FrozenInstanceError):
        uri.rkey = "other"  # type: ignore[misc]
    assert not hasattr(uri, "__dict__")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "at://",
        f"at://{DID}/",
        f"at://{DID}/app.bsky.feed.post/",
        f"at://{DID}/app.bsky.feed.post/self/extra",
        f"at://{DID}/not-an-nsid",
        f"at://{DID}/app.bsky.feed.post/bad key",
        f"at://{DID}#frag",
        f"at://{DID}?q=1",
        f"AT://{DID}",
        f"at://{DID}\n",
    ],
)
def test_parse_at_uri_rejects(text: str) -> None:
    with pytest.raises(DecodeError, match="invalid AT-URI"):
        parse_at_uri(text)


def test_parse_at_uri_error_is_value_error_with_short_message() -> None:
    with pytest.raises(ValueError) as info:
        parse_at_uri("at://" + "x" * 10_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("text", ["at://\ud800", "at://\x00", "at://did:plc:a\x1b[2J"])
def test_errors_escape_control_characters(text: str) -> None:
    # a lone surrogate in a message cannot even be printed to a UTF-8 terminal
    with pytest.raises(DecodeError) as info:
        parse_at_uri(text)
    assert info.value.fields["value"] == repr(text)
    assert str(info.value).isprintable()
    with pytest.raises(DecodeError) as info:
        split_repo_key(text + "/x")
    assert str(info.value).isprintable()


@pytest.mark.parametrize("value", [None, 42, b"at://did:plc:abc"])
def test_parse_at_uri_rejects_non_str(value: object) -> None:
    with pytest.raises(DecodeError):
        parse_at_uri(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("app.bsky.feed.post/3jwdwj2ctlk26", ("app.bsky.feed.post", "3jwdwj2ctlk26")),
        ("app.bsky.actor.profile/self", ("app.bsky.actor.profile", "self")),
        ("com.example.fooBar/a:b~c_d-e.f", ("com.example.fooBar", "a:b~c_d-e.f")),
    ],
)
def test_split_repo_key(key: str, expected: tuple[str, str]) -> None:
    assert split_repo_key(key) == expected


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/",
        "app.bsky.feed.post",
        "app.bsky.feed.post/",
        "/3jwdwj2ctlk26",
        "app.bsky.feed.post/a/b",
        "app.bsky.feed.post//x",
        "not_an_nsid/self",
        "app.bsky.feed.post/..",
        "app.bsky.feed.post/.",
        "app.bsky.feed.post/has space",
        "app.bsky.feed.post/" + "o" * 513,
        "app.bsky.feed.post/self\n",
    ],
)
def test_split_repo_key_rejects(key: str) -> None:
    with pytest.raises(DecodeError, match="invalid repo key"):
        split_repo_key(key)


@pytest.mark.parametrize("value", [None, 1, b"app.bsky.feed.post/self"])
def test_split_repo_key_rejects_non_str(value: object) -> None:
    with pytest.raises(DecodeError):
        split_repo_key(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "value",
    [None, 0, 1.5, b"did:plc:abc", bytearray(b"x"), ["a"], {"a": 1}, object()],
    ids=lambda v: type(v).__name__,
)
def test_non_str_is_false(validator: Callable[[object], bool], value: object) -> None:
    assert validator(value) is False


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "value",
    ["", "\n", "\ud800", "\x00", "a" * 100_000, "did:plc:abc\n", "ｄｉｄ:plc:abc"],
    ids=["empty", "newline", "surrogate", "nul", "huge", "trailing-newline", "fullwidth"],
)
def test_odd_str_is_false_and_does_not_raise(
    validator: Callable[[object], bool], value: str
) -> None:
    assert validator(value) is False


def test_str_subclass_is_accepted() -> None:
    class Sub(str):
        pass

    assert syntax.is_did(Sub(DID))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1985-04-12T23:59:60Z", False),  # leap second: datetime cannot represent it
        ("1985-04-12T23:20:50Z", True),
        ("1985-04-12T23:20:50+24:00", False),  # offset must be under a day
        ("2000-02-29T00:00:00Z", True),
        ("1900-02-29T00:00:00Z", False),
        ("0000-02-29T00:00:00Z", True),  # year 0 is a leap year (proleptic Gregorian)
        ("0000-01-01T00:59:59+01:00", False),
        ("0000-01-01T01:00:00+01:00", True),
        ("0000-01-01T00:00:00-01:00", True),
        ("9999-12-31T23:59:59.999Z", True),
        ("1985-04-12T23:20:50.123456789012345678901Z", False),  # 21 fraction digits
    ],
)
def test_datetime_semantics(value: str, expected: bool) -> None:
    assert syntax.is_datetime(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("did:plc:ewvi7nxzyoun6zhxrhs64oiz", True),
        ("did:web:example.com", True),
        ("did:plc:abc:", False),
        ("did:plc:" + "a" * 2040, True),  # 2048 characters
        ("did:plc:" + "a" * 2041, False),
    ],
)
def test_did_edges(value: str, expected: bool) -> None:
    assert syntax.is_did(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm", True),
        ("Qmb" + "a" * 43, False),  # CIDv0
        ("bafy", False),
        ("b" * 257, False),
    ],
)
def test_cid_edges(value: str, expected: bool) -> None:
    assert syntax.is_cid_string(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("en", True),
        ("en-US", True),
        ("zh-yue-HK", True),  # extlang
        ("x-whatever", True),
        ("EN", False),
        ("en-US-x", False),
        ("en--US", False),
    ],
)
def test_language_edges(value: str, expected: bool) -> None:
    assert syntax.is_language(value) is expected
