"""Sandbox record helpers (atrepo/sandbox.py) against the real PDS they write to.

Every test removes what it wrote, so alice's seeded record count holds for the other tests
that share the session's sandbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from _loopback import paged

from atrepo.errors import AtrepoError, SandboxError
from atrepo.sandbox import Sandbox

POST = "app.bsky.feed.post"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, trust_env=False) as client:
        yield client


def listed(http: httpx.Client, sandbox: Sandbox, collection: str) -> dict[str, dict[str, Any]]:
    """uri -> {"cid", "value"} of alice's records in ``collection`` (listRecords, paged)."""
    return {rec["uri"]: rec for rec in paged(
        http, f"{sandbox.pds_url}/xrpc/com.atproto.repo.listRecords", "records",
        repo=sandbox.account("alice.test")["did"], collection=collection, limit=100)}


def test_create_put_delete_round_trip(sandbox: Sandbox, http: httpx.Client) -> None:
    before = listed(http, sandbox, "app.bsky.graph.follow")
    # a subject alice does not follow yet: the PDS deletes older follows of the same subject
    record = {"$type": "app.bsky.graph.follow", "subject": "did:plc:testtesttesttesttesttest",
              "createdAt": "2024-06-01T00:00:00.000Z"}
    uri, cid = sandbox.create_record("alice.test", "app.bsky.graph.follow", record,
                                     rkey="3kzzzzzzzzz22")
    try:
        assert uri == (f"at://{sandbox.account('alice.test')['did']}"
                       "/app.bsky.graph.follow/3kzzzzzzzzz22")
        now = listed(http, sandbox, "app.bsky.graph.follow")
        assert set(now) - set(before) == {uri}
        assert now[uri]["cid"] == cid and now[uri]["value"] == record

        edited = {**record, "createdAt": "2024-06-02T00:00:00.000Z"}
        uri2, cid2 = sandbox.put_record("alice.test", "app.bsky.graph.follow",
                                        "3kzzzzzzzzz22", edited)
        assert uri2 == uri and cid2 != cid
        assert listed(http, sandbox, "app.bsky.graph.follow")[uri]["value"] == edited
    finally:
        sandbox.delete_record("alice.test", "app.bsky.graph.follow", "3kzzzzzzzzz22")
    assert listed(http, sandbox, "app.bsky.graph.follow") == before


def test_post_is_a_valid_post_created_now(sandbox: Sandbox, http: httpx.Client) -> None:
    start = datetime.now(timezone.utc).replace(microsecond=0)   # createdAt has ms precision
    uri = sandbox.post("alice.test", "written by a test", langs=["en", "pt"])
    end = datetime.now(timezone.utc)
    try:
        value = listed(http, sandbox, POST)[uri]["value"]
        assert value["$type"] == POST and value["text"] == "written by a test"
        assert value["langs"] == ["en", "pt"]
        created = datetime.fromisoformat(value["createdAt"].replace("Z", "+00:00"))
        assert value["createdAt"].endswith("Z")
        assert start <= created <= end   # stamped while post() ran: "now", not a fixed time
    finally:
        sandbox.delete_record("alice.test", POST, uri.rsplit("/", 1)[1])
    assert uri not in listed(http, sandbox, POST)


def test_pds_refusals_are_sandbox_errors(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError) as caught:  # not a valid post: no createdAt
        uri, _ = sandbox.create_record("alice.test", POST, {"$type": POST, "text": "x"})
        sandbox.delete_record("alice.test", POST, uri.rsplit("/", 1)[1])  # had it been taken
    assert isinstance(caught.value, AtrepoError)
    assert caught.value.method == "com.atproto.repo.createRecord"
    assert caught.value.status == 400
    assert "method=com.atproto.repo.createRecord" in str(caught.value)
    with pytest.raises(SandboxError) as caught:  # taken down: no session
        sandbox.post("carol.test", "hello")
    assert caught.value.method == "com.atproto.server.createSession"
    assert caught.value.status is not None and caught.value.status >= 400


def test_a_stale_token_logs_in_again(sandbox: Sandbox, http: httpx.Client,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    warm = sandbox.post("alice.test", "warm the session")  # make sure a token is cached
    sandbox.delete_record("alice.test", POST, warm.rsplit("/", 1)[1])
    monkeypatch.setitem(sandbox._tokens, "alice.test", "not-a-jwt")
    uri = sandbox.post("alice.test", "after a stale token")
    try:
        assert uri in listed(http, sandbox, POST)
        assert sandbox._tokens["alice.test"] != "not-a-jwt"
    finally:
        sandbox.delete_record("alice.test", POST, uri.rsplit("/", 1)[1])


def test_repr_names_urls_and_state(sandbox: Sandbox) -> None:
    text = repr(sandbox)
    assert text.startswith("<Sandbox ") and text.endswith(" running>")
    assert f"plc={sandbox.plc_url}" in text and f"pds={sandbox.pds_url}" in text
    assert f"accounts={len(sandbox.accounts)}" in text
