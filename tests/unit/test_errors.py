"""Unit tests for atrepo.errors: the one error tree, its message format and its attributes."""

from __future__ import annotations

import pickle

import pytest

from atrepo import errors
from atrepo.errors import (
    AtrepoError,
    CarError,
    DecodeError,
    MstError,
    RateLimited,
    RepoUnavailable,
    ResolutionError,
    ResponseTooLarge,
    SandboxError,
    SignatureError,
    TransportError,
)

EXAMPLES: list[AtrepoError] = [
    DecodeError("bad block", cid="bafy", hint="re-download"),
    CarError("truncated", offset=12, cid=None),
    MstError("missing block", cid="bafyx"),
    SignatureError("does not verify", did="did:plc:a", key="did:key:z"),
    ResolutionError("not found", identifier="alice.test"),
    RepoUnavailable("gone", did="did:plc:a", status="takendown"),
    RateLimited("slow down", host="pds.test", retry_after=2.5),
    TransportError("reset", url="http://x.test/"),
    ResponseTooLarge("http://x.test/", max_bytes=10),
    SandboxError("refused", method="com.atproto.repo.createRecord", status=400),
]


def test_every_error_is_an_atrepo_error() -> None:
    assert errors.__all__ == sorted(errors.__all__)
    assert all(issubclass(getattr(errors, name), AtrepoError) for name in errors.__all__)


def test_decode_errors_are_value_errors() -> None:
    for cls in (DecodeError, CarError, MstError):
        assert issubclass(cls, ValueError)
    for other in (SignatureError, ResolutionError, TransportError, RateLimited):
        assert not issubclass(other, ValueError)
    assert issubclass(ResponseTooLarge, TransportError)


def test_message_format_is_summary_fields_hint() -> None:
    err = DecodeError("bad block", cid="bafy", hint="re-download", n=3, skip=None)
    assert str(err) == "bad block; cid=bafy; n=3; re-download"
    assert err.message == "bad block" and err.hint == "re-download"
    assert err.fields == {"cid": "bafy", "n": 3, "skip": None}
    assert str(AtrepoError("plain")) == "plain"


def test_attributes_keep_the_values() -> None:
    car = CarError("truncated", offset=12)
    assert car.offset == 12 and car.cid is None
    assert MstError("x", cid=b"raw").cid == "b'raw'"
    limited = RateLimited("slow down", host="pds.test", retry_after=2.5)
    assert limited.host == "pds.test" and limited.retry_after == 2.5
    assert RepoUnavailable("gone").status == "not_found"
    assert ResponseTooLarge("http://x.test/", max_bytes=10).url == "http://x.test/"


@pytest.mark.parametrize("err", EXAMPLES, ids=lambda e: type(e).__name__)
def test_errors_survive_pickling(err: AtrepoError) -> None:
    # errors travel back from the worker processes of a parallel walk
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert str(copy) == str(err)
    assert copy.fields == err.fields and copy.hint == err.hint
    assert vars(copy) == vars(err)
