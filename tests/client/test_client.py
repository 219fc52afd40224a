"""Client and AsyncClient against the real reference PLC + PDS (atrepo/sandbox.py).

Every scenario runs for both clients. Nothing leaves loopback: HTTP goes through a transport
that refuses any other host, and DNS through a resolver that answers nothing (the sandbox's
``.test`` handles resolve through the PDS's resolveHandle, the configured handle_resolver).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx
import polars as pl
import pytest
from _loopback import (
    KINDS,
    AsyncLoopbackTransport,
    AsyncNoDns,
    LoopbackTransport,
    NoDns,
    call,
    paged,
)

import atrepo
from atrepo.client import AsyncClient, Client


def _listed_records(sandbox: Any, did: str,
                    collections: Sequence[str]) -> set[tuple[str, str, str]]:
    out = set()
    with httpx.Client(trust_env=False, timeout=20) as http:
        for collection in collections:
            prefix = f"at://{did}/{collection}/"
            out.update((collection, r["uri"][len(prefix):], r["cid"]) for r in paged(
                http, f"{sandbox.pds_url}/xrpc/com.atproto.repo.listRecords", "records",
                repo=did, collection=collection, limit=100))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_resolve_handle_and_identity(kind, sandbox, tmp_path):
    alice = sandbox.account("alice.test")
    assert call(kind, sandbox, tmp_path, "resolve_handle", "alice.test") == alice["did"]
    ident = call(kind, sandbox, tmp_path, "resolve", "alice.test")
    assert ident.did == alice["did"] and ident.handle == "alice.test" and ident.handle_verified
    assert ident.pds == sandbox.pds_url
    assert ident.signing_key.startswith("did:key:z")
    by_did = call(kind, sandbox, tmp_path, "resolve", alice["did"])
    assert by_did.handle == "alice.test" and by_did.handle_verified
    assert call(kind, sandbox, tmp_path, "resolve", f"at://{alice['did']}/app.bsky.feed.post").did \
        == alice["did"]


@pytest.mark.parametrize("kind", KINDS)
def test_get_repo_equals_the_pds_listing(kind, sandbox, tmp_path):
    alice = sandbox.account("alice.test")
    snap = call(kind, sandbox, tmp_path, "get_repo", "alice.test")
    assert snap.verified is True and snap.did == alice["did"] and snap.handle == "alice.test"
    got = set(zip(snap.records["collection"], snap.records["rkey"], snap.records["cid"]))
    assert got == _listed_records(sandbox, alice["did"], snap.collections["collection"])
    assert len(snap) == alice["records"]
    assert snap.problems.is_empty()
    filtered = call(kind, sandbox, tmp_path, "get_repo", alice["did"], ["app.bsky.feed.post"])
    assert set(filtered.records["collection"]) == {"app.bsky.feed.post"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("handle", "status"), [("bob.test", "deactivated"),
                                                ("carol.test", "takendown"),
                                                ("dave.test", "not_found")])
def test_unavailable_repos_say_why(kind, handle, status, sandbox, tmp_path):
    account = sandbox.account(handle)
    with pytest.raises(atrepo.RepoUnavailable) as info:
        call(kind, sandbox, tmp_path, "get_repo", account["did"])
    assert info.value.status == status and info.value.did == account["did"]


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_handle_is_a_resolution_error(kind, sandbox, tmp_path):
    with pytest.raises(atrepo.ResolutionError) as info:
        call(kind, sandbox, tmp_path, "resolve", "nobody.test")
    assert "nobody.test" in str(info.value)


def test_sync_client_works_inside_a_running_event_loop(sandbox, tmp_path):
    async def notebook_cell() -> str:
        return call("sync", sandbox, tmp_path, "resolve_handle", "alice.test")  # type: ignore[no-any-return]

    assert asyncio.run(notebook_cell()) == sandbox.account("alice.test")["did"]


def _iterate(kind: str, sandbox: Any, tmp_path: Any, **kw: Any) -> list[Any]:
    """iter_repos drained through either client."""
    options = {"plc_url": sandbox.plc_url, "handle_resolver": sandbox.pds_url,
               "cache_dir": tmp_path / kind, "progress": False}
    if kind == "sync":
        with Client(http=httpx.Client(transport=LoopbackTransport(), trust_env=False),
                    dns=NoDns(), **options) as client:
            return list(client.iter_repos(sandbox.pds_url, **kw))

    async def go() -> list[Any]:
        async with AsyncClient(http=httpx.AsyncClient(transport=AsyncLoopbackTransport(),
                                                      trust_env=False),
                               dns=AsyncNoDns(), **options) as client:
            return [repo async for repo in client.iter_repos(sandbox.pds_url, **kw)]

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_list_repos_reports_every_state(kind, sandbox, tmp_path):
    frame = call(kind, sandbox, tmp_path, "list_repos", sandbox.pds_url)
    assert frame.columns == ["did", "head", "rev", "active", "status"]
    rows = {did: (active, status) for did, _, _, active, status in frame.iter_rows()}
    assert rows[sandbox.account("alice.test")["did"]] == (True, None)
    assert rows[sandbox.account("bob.test")["did"]] == (False, "deactivated")
    assert rows[sandbox.account("carol.test")["did"]] == (False, "takendown")
    assert sandbox.account("dave.test")["did"] not in rows
    assert frame.filter(pl.col("active"))["head"].null_count() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_iter_repos_limit_and_resume(kind, sandbox, tmp_path):
    everyone = [r.did for r in _iterate(kind, sandbox, tmp_path)]
    assert [r.did for r in _iterate(kind, sandbox, tmp_path, limit=2)] == everyone[:2]
    first = _iterate(kind, sandbox, tmp_path, limit=1, resume=True)
    rest = _iterate(kind, sandbox, tmp_path, resume=True)
    assert [r.did for r in first + rest] == everyone


@pytest.mark.parametrize("kind", KINDS)
def test_fetch_records_collects_failures(kind, sandbox, tmp_path):
    names = ["alice.test", sandbox.account("bob.test")["did"], "nobody.test",
             sandbox.account("carol.test")["did"]]
    options = {"plc_url": sandbox.plc_url, "handle_resolver": sandbox.pds_url,
               "cache_dir": tmp_path / kind, "progress": False, "max_concurrency": 3}

    def check(frame: pl.DataFrame, errors: pl.DataFrame) -> None:
        alice = sandbox.account("alice.test")
        assert frame.columns == ["did", "collection", "rkey", "uri", "cid", "record"]
        assert frame["did"].unique().to_list() == [alice["did"]]
        assert frame.height == alice["records"]
        assert errors.columns == ["did", "error", "status"]
        assert errors["did"].to_list() == [sandbox.account("bob.test")["did"], "nobody.test",
                                           sandbox.account("carol.test")["did"]]
        assert errors["status"].to_list() == ["deactivated", None, "takendown"]
        assert errors["error"][1].startswith("ResolutionError")

    if kind == "sync":
        with Client(http=httpx.Client(transport=LoopbackTransport(), trust_env=False),
                    dns=NoDns(), **options) as client:
            check(client.fetch_records(names), client.last_errors)
        return

    async def go() -> None:
        async with AsyncClient(http=httpx.AsyncClient(transport=AsyncLoopbackTransport(),
                                                      trust_env=False),
                               dns=AsyncNoDns(), **options) as client:
            check(await client.fetch_records(names), client.last_errors)

    asyncio.run(go())


class _Counting(LoopbackTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        return super().handle_request(request)


def _counting_client(sandbox: Any, cache_dir: Any) -> tuple[Client, _Counting]:
    transport = _Counting()
    client = Client(http=httpx.Client(transport=transport, trust_env=False), dns=NoDns(),
                    plc_url=sandbox.plc_url, handle_resolver=sandbox.pds_url,
                    cache_dir=cache_dir, progress=False)
    return client, transport


def test_identity_cache_avoids_repeat_requests(sandbox, tmp_path):
    client, transport = _counting_client(sandbox, tmp_path)
    with client:
        first = client.resolve("alice.test")
        assert transport.requests
    client, transport = _counting_client(sandbox, tmp_path)   # a new client, same cache dir
    with client:
        assert client.resolve("alice.test") == first
        assert client.resolve(first.did) == first   # cached under the DID as well
        assert transport.requests == []


def test_resolution_failures_are_cached_briefly(sandbox, tmp_path):
    client, transport = _counting_client(sandbox, tmp_path)
    with client:
        with pytest.raises(atrepo.ResolutionError):
            client.resolve("nobody.test")
        asked = len(transport.requests)
        with pytest.raises(atrepo.ResolutionError, match="cached failure"):
            client.resolve("nobody.test")
        assert len(transport.requests) == asked


def test_stale_cached_key_is_refreshed_when_the_signature_fails(sandbox, tmp_path):
    client, _ = _counting_client(sandbox, tmp_path)
    with client:
        alice = client.resolve("alice.test")
        bob = client.resolve(sandbox.account("bob.test")["did"])
        rotated = alice.model_copy(update={"signing_key": bob.signing_key})
        client._pipeline.identities.put(alice.did, rotated)   # as if alice rotated her key
        snap = client.get_repo(alice.did)
        assert snap.verified is True
        assert client.resolve(alice.did).signing_key == alice.signing_key


def test_unchanged_repo_is_reused_from_the_cache(sandbox, tmp_path):
    alice = sandbox.account("alice.test")
    client, transport = _counting_client(sandbox, tmp_path)
    with client:
        first = client.get_repo(alice["did"])
        assert any("getRepo" in url for url in transport.requests)
        transport.requests.clear()
        again = client.get_repo(alice["did"])
        assert [u for u in transport.requests if "/xrpc/" in u] == [
            u for u in transport.requests if "getLatestCommit" in u]
        assert len(transport.requests) == 1
        assert again.records.equals(first.records) and again.verified
        assert (first.source, again.source) == ("full", "cache")
        assert first.bytes_downloaded > 0 and again.bytes_downloaded == 0
        index_path = next((tmp_path / "repos").glob("*/snapshots.json"))
        index = json.loads(index_path.read_text())
        assert [e["rev"] for e in index["snapshots"]] == [first.rev]
        index["snapshots"][0]["rev"] = "2222222222222"  # an older rev: stale
        index_path.write_text(json.dumps(index))
        transport.requests.clear()
        assert len(client.get_repo(alice["did"])) == len(first)
        assert any("getRepo" in url and "since=2222222222222" in url
                   for url in transport.requests)
        assert any("getRepo" in url for url in transport.requests)


@pytest.mark.parametrize("kind", KINDS)
def test_list_repos_by_collection_falls_back_on_a_pds(kind, sandbox, tmp_path):
    with pytest.warns(UserWarning, match="does not serve com.atproto.sync.listReposByCollection"):
        frame = call(kind, sandbox, tmp_path, "list_repos_by_collection",
                     "app.bsky.feed.post", sandbox.pds_url)
    assert frame.columns == ["did"]
    assert frame["did"].to_list() == [sandbox.account("alice.test")["did"]]
    with pytest.warns(UserWarning):
        none = call(kind, sandbox, tmp_path, "list_repos_by_collection", "app.none.here",
                    sandbox.pds_url)
    assert none.height == 0


def test_module_shortcuts_use_one_default_client(sandbox, tmp_path, monkeypatch):
    import atrepo._shortcuts as shortcuts

    client = Client(http=httpx.Client(transport=LoopbackTransport(), trust_env=False),
                    dns=NoDns(), plc_url=sandbox.plc_url, handle_resolver=sandbox.pds_url,
                    cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(shortcuts, "_default", client)
    with client:
        alice = sandbox.account("alice.test")
        assert atrepo.resolve("alice.test").did == alice["did"]
        assert len(atrepo.get_repo("alice.test")) == alice["records"]
        assert alice["did"] in atrepo.list_repos(sandbox.pds_url)["did"].to_list()
        assert shortcuts.default_client() is client


def test_a_verifying_client_checks_what_a_non_verifying_one_stored(sandbox, tmp_path):
    alice = sandbox.account("alice.test")
    unchecked = Client(http=httpx.Client(transport=LoopbackTransport(), trust_env=False),
                       dns=NoDns(), plc_url=sandbox.plc_url, handle_resolver=sandbox.pds_url,
                       cache_dir=tmp_path, progress=False, verify=False)
    with unchecked:
        first = unchecked.get_repo("alice.test")
        assert not first.verified and first.source == "full"
    client, transport = _counting_client(sandbox, tmp_path)
    with client:
        again = client.get_repo("alice.test")
        assert again.source == "cache" and again.verified is True   # checked now, not trusted
        assert again.handle == "alice.test" and client.resolve(alice["did"]).handle_verified
        assert not any("getRepo" in url for url in transport.requests)


@pytest.mark.parametrize("damage", ["truncated", "missing"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_pack_is_downloaded_again(kind, damage, sandbox, tmp_path):
    """A pack shorter than its index says, or gone (a kill inside eviction, a full disk)."""
    first = call(kind, sandbox, tmp_path, "get_repo", "alice.test")
    pack = next((tmp_path / kind / "repos").glob("*/blocks.car"))
    if damage == "missing":
        pack.unlink()
    else:
        with pack.open("r+b") as out:
            out.truncate(pack.stat().st_size // 2)
    for _ in range(2):    # every later call failed with a CarError before
        again = call(kind, sandbox, tmp_path, "get_repo", "alice.test")
        assert again.records.equals(first.records) and again.verified
    assert again.source == "cache"                    # the first of the two downloaded it
    assert len(call(kind, sandbox, tmp_path, "snapshots", "alice.test")) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("handle", "status"), [("bob.test", "deactivated"),
                                                ("carol.test", "takendown")])
def test_unavailable_accounts_by_handle_say_why(kind, handle, status, sandbox, tmp_path):
    """The PDS no longer resolves these handles, but says the account's state (docs/sandbox.md)."""
    with pytest.raises(atrepo.RepoUnavailable) as info:   # was: ResolutionError
        call(kind, sandbox, tmp_path, "get_repo", handle)
    assert info.value.status == status and info.value.fields["handle"] == handle
    assert handle in str(info.value)
    with pytest.raises(atrepo.RepoUnavailable):           # not served from a cached failure
        call(kind, sandbox, tmp_path, "get_repo", handle)


@pytest.mark.parametrize("kind", KINDS)
def test_a_deleted_accounts_handle_does_not_resolve(kind, sandbox, tmp_path):
    """The PDS forgot dave's handle with his account: nothing tells it from one never used."""
    with pytest.raises(atrepo.ResolutionError, match="handle does not resolve"):
        call(kind, sandbox, tmp_path, "get_repo", "dave.test")
