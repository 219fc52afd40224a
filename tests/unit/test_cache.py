"""atrepo._io.cache: identities and resolution failures kept on disk, shared by clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from atrepo import ResolutionError
from atrepo._io.cache import ERROR_TTL, HIT_TTL, IdentityCache
from atrepo.identity import DidDocument, Identity

DID = "did:plc:" + "a" * 24
ALICE = Identity(did=DID, handle="alice.test", handle_verified=True,
                 pds="http://127.0.0.1:2583", signing_key="did:key:zQ3sh",
                 doc=DidDocument(id=DID))


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[IdentityCache]:
    made = IdentityCache(tmp_path / "identity")
    yield made
    made.close()


def test_an_identity_is_kept_under_its_name_and_its_did(cache, tmp_path):
    assert cache.get("alice.test") is None
    cache.put("alice.test", ALICE)
    assert cache.get("alice.test") == ALICE and cache.get(DID) == ALICE
    again = IdentityCache(tmp_path / "identity")   # another client on the same directory
    try:
        assert again.get("alice.test") == ALICE
    finally:
        again.close()


def test_a_failure_is_kept_and_raised_again(cache):
    cache.put_error("nobody.test", ResolutionError("handle does not resolve",
                                                   identifier="nobody.test"))
    with pytest.raises(ResolutionError, match="handle does not resolve") as info:
        cache.get("nobody.test")
    assert info.value.identifier == "nobody.test" and "cached failure" in str(info.value)
    cache.put("nobody.test", ALICE.model_copy(update={"handle": "nobody.test"}))
    assert cache.get("nobody.test").handle == "nobody.test"   # a success replaces it


def test_failures_are_kept_for_less_time_than_successes():
    assert 0 < ERROR_TTL < HIT_TTL


def test_a_failure_keeps_its_reason_fields_and_hint(cache):
    cache.put_error("nobody.test", ResolutionError(
        "handle does not resolve", identifier="nobody.test", tried="dns, well-known",
        hint="pass handle_resolver= for a sandbox"))
    with pytest.raises(ResolutionError) as info:
        cache.get("nobody.test")
    err = info.value
    assert err.message == "handle does not resolve" and err.identifier == "nobody.test"
    assert err.fields["tried"] == "dns, well-known"
    assert err.hint.startswith("pass handle_resolver= for a sandbox") and "cached" in err.hint


def test_answers_are_kept_per_resolver_configuration(tmp_path):
    without = IdentityCache(tmp_path / "identity", scope=("https://plc.directory", None, True))
    with_resolver = IdentityCache(tmp_path / "identity",
                                  scope=("https://plc.directory", "http://127.0.0.1:2583", True))
    unverified = IdentityCache(tmp_path / "identity", scope=("https://plc.directory", None, False))
    try:
        without.put_error("alice.test", ResolutionError("handle does not resolve",
                                                        identifier="alice.test"))
        assert with_resolver.get("alice.test") is None   # a configuration fix asks again
        unverified.put("alice.test", ALICE.model_copy(update={"handle_verified": False}))
        assert with_resolver.get(DID) is None             # not checked both ways: not served
        with pytest.raises(ResolutionError):
            without.get("alice.test")                     # its own scope still has it
    finally:
        for cache in (without, with_resolver, unverified):
            cache.close()
