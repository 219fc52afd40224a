"""A dataset kept current against a real host whose accounts and records change between runs.

A sandbox of this module's own (the session ones are shared and must keep their accounts):
between exports, records are created, updated and deleted, and accounts deactivated, taken
down (admin) and deleted (admin); after every export the dataset must equal what the host
serves — read independently, record by record, with ``listRecords`` — and removed accounts
must be gone from the newest version but readable in the one before.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from _loopback import AsyncLoopbackTransport, LoopbackTransport, client, paged

import atrepo
from atrepo.client import Client
from atrepo.sandbox import REFERENCE, Sandbox

ADMIN = ("admin", "admin-pass")
POST = "app.bsky.feed.post"


@pytest.fixture(scope="module")
def sb() -> Any:
    """Four named accounts (bob deactivated, carol taken down, dave deleted) and bulk000 ..
    bulk005, 10 records each."""
    started = Sandbox.start(REFERENCE, timeout=120, bulk_accounts=6, bulk_records=10)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def http() -> Any:
    with httpx.Client(transport=LoopbackTransport(), trust_env=False, timeout=30) as made:
        yield made


def _tally(calls: dict[str, int], request: httpx.Request) -> None:
    method = request.url.path.rsplit("/", 1)[-1]
    calls[method] = calls.get(method, 0) + 1


class Counting(LoopbackTransport):
    """The loopback transport, counting requests by XRPC method."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _tally(self.calls, request)
        return super().handle_request(request)


class AsyncCounting(AsyncLoopbackTransport):
    """:class:`Counting` for the async client."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _tally(self.calls, request)
        return await super().handle_async_request(request)


def export(sb: Any, cache: Path, source: Any, out: Path, kind: str = "sync",
           transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
           **kw: Any) -> Any:
    made = client(kind, sb, cache, transport=transport)
    if isinstance(made, Client):
        with made:
            return made.export(source, out, **kw)

    async def go() -> Any:
        async with made:
            return await made.export(source, out, **kw)

    return asyncio.run(go())


# -- the host's real state, read without atrepo ----------------------------------------------

def served(sb: Any, http: httpx.Client) -> pl.DataFrame:
    """(did, collection, rkey, cid) of every record the host serves, by listRecords."""
    rows = []
    for repo in paged(http, f"{sb.pds_url}/xrpc/com.atproto.sync.listRepos", "repos"):
        if repo.get("active") is False:
            continue
        did = repo["did"]
        described = http.get(f"{sb.pds_url}/xrpc/com.atproto.repo.describeRepo",
                             params={"repo": did}).json()
        for collection in described["collections"]:
            for rec in paged(http, f"{sb.pds_url}/xrpc/com.atproto.repo.listRecords",
                             "records", repo=did, collection=collection, limit=100):
                rows.append((did, collection, rec["uri"].rsplit("/", 1)[1], rec["cid"]))
    return pl.DataFrame(rows, schema=["did", "collection", "rkey", "cid"], orient="row") \
        .sort("did", "collection", "rkey")


def held(out: Path, version: int | None = None) -> pl.DataFrame:
    ds = atrepo.open_dataset(out)
    ds = ds if version is None else ds.as_of(version)
    return ds.records.select("did", "collection", "rkey", "cid").sort(
        "did", "collection", "rkey").collect()


def statuses(out: Path) -> dict[str, str | None]:
    return dict(atrepo.open_dataset(out).repos.select("did", "status").collect().rows())


def admin(http: httpx.Client, sb: Any, method: str, body: dict[str, Any]) -> None:
    res = http.post(f"{sb.pds_url}/xrpc/{method}", json=body, auth=ADMIN)
    assert res.status_code == 200, res.text


def as_user(http: httpx.Client, sb: Any, handle: str, method: str,
            body: dict[str, Any] | None = None) -> None:
    """Call ``method`` as ``handle`` (``body``: its JSON input; None: a procedure without)."""
    account = sb.account(handle)
    session = http.post(f"{sb.pds_url}/xrpc/com.atproto.server.createSession",
                        json={"identifier": handle, "password": account["password"]})
    assert session.status_code == 200, session.text
    res = http.post(f"{sb.pds_url}/xrpc/{method}", json=body,
                    headers={"Authorization": f"Bearer {session.json()['accessJwt']}"})
    assert res.status_code == 200, res.text


def did(sb: Any, handle: str) -> str:
    return str(sb.account(handle)["did"])


# -- the scenario ----------------------------------------------------------------------------

def test_a_dataset_follows_its_host_through_record_and_account_changes(sb, http, tmp_path):
    out, cache = tmp_path / "ds", tmp_path / "cache"

    # 1. the first export: what the host serves; inactive listed accounts recorded
    first = export(sb, cache, sb.pds_url, out)
    assert held(out).equals(served(sb, http))
    assert first.written == 7 and first.errors.height == 0   # alice + 6 bulk
    state = statuses(out)
    assert (state[did(sb, "bob.test")], state[did(sb, "carol.test")]) == (
        "deactivated", "takendown")
    v1 = first.version

    # 2. records created, updated, deleted; accounts deactivated, taken down, deleted
    uri = sb.post("bulk000.test", "a new post")
    edited, victim = held(out).filter(pl.col("did") == did(sb, "bulk000.test"),
                                      pl.col("collection") == POST).head(2).rows(named=True)
    sb.put_record("bulk000.test", POST, edited["rkey"],
                  {"$type": POST, "text": "edited", "createdAt": "2025-01-01T00:00:00.000Z"})
    sb.delete_record("bulk000.test", POST, victim["rkey"])
    as_user(http, sb, "bulk001.test", "com.atproto.server.deactivateAccount", {})
    admin(http, sb, "com.atproto.admin.updateSubjectStatus",
          {"subject": {"$type": "com.atproto.admin.defs#repoRef",
                       "did": did(sb, "bulk002.test")},
           "takedown": {"applied": True, "ref": "dataset-test"}})
    admin(http, sb, "com.atproto.admin.deleteAccount", {"did": did(sb, "bulk003.test")})

    second = export(sb, cache, sb.pds_url, out, kind="async")
    assert held(out).equals(served(sb, http))
    assert second.written == 1 and second.removed == 3
    state = statuses(out)
    assert state[did(sb, "bulk001.test")] == "deactivated"
    assert state[did(sb, "bulk002.test")] == "takendown"
    assert state[did(sb, "bulk003.test")] in {"deleted", "not_found"}
    gone = {did(sb, h) for h in ("bulk001.test", "bulk002.test", "bulk003.test")}
    assert not gone & set(held(out)["did"])
    assert gone <= set(held(out, v1)["did"])      # readable in the version before
    ds = atrepo.open_dataset(out)
    assert ds.versions.filter(pl.col("version") > v1).select(
        pl.col("updated").sum(), pl.col("removed").sum()).row(0) == (1, 3)
    changes = ds.changes(v1).collect()
    mine = changes.filter(pl.col("did") == did(sb, "bulk000.test"))
    assert sorted(mine.select("collection", "rkey", "action").rows()) == sorted([
        (POST, edited["rkey"], "update"), (POST, uri.rsplit("/", 1)[1], "create"),
        (POST, victim["rkey"], "delete")])
    assert set(changes.filter(pl.col("did").is_in(list(gone)))["action"]) == {"delete"}
    for typed in ds.table(POST).collect(), ds.table("app.bsky.feed.like").collect():
        assert not gone & set(typed["did"])

    # 3. nothing changed: nothing downloaded, not even a getLatestCommit, no new version
    counting = Counting()
    third = export(sb, cache, sb.pds_url, out, transport=counting)
    assert third.written == 0 and third.version == second.version
    assert set(counting.calls) == {"com.atproto.sync.listRepos"}, counting.calls

    # 4. an account comes back; another must never be exported
    as_user(http, sb, "bulk001.test", "com.atproto.server.activateAccount")
    excluded = did(sb, "bulk004.test")
    fourth = export(sb, cache, sb.pds_url, out, exclude=[excluded])
    assert fourth.written == 1 and fourth.removed == 1
    assert held(out).equals(served(sb, http).filter(pl.col("did") != excluded))
    assert excluded not in statuses(out)                # not even a repos row
    assert statuses(out)[did(sb, "bulk001.test")] == "active"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_named_repositories_cost_one_small_request_when_unchanged(sb, http, tmp_path, kind):
    names = [did(sb, "alice.test"), did(sb, "bulk005.test")]
    out = tmp_path / "ds"
    assert export(sb, tmp_path / "cache", names, out, kind=kind).written == 2
    counting = Counting() if kind == "sync" else AsyncCounting()
    again = export(sb, tmp_path / "other-cache", names, out, kind=kind, transport=counting)
    assert (again.written, again.skipped) == (0, 2)
    assert counting.calls.get("com.atproto.sync.getRepo", 0) == 0
    assert counting.calls["com.atproto.sync.getLatestCommit"] == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_other_collections_are_refused_unless_starting_afresh(sb, tmp_path, kind):
    out = tmp_path / "ds"
    names = [did(sb, "alice.test")]
    export(sb, tmp_path / "cache", names, out, kind=kind)
    with pytest.raises(atrepo.AtrepoError, match="other collections"):
        export(sb, tmp_path / "cache", names, out, kind=kind, collections=[POST])
    fresh = export(sb, tmp_path / "cache", names, out, kind=kind, collections=[POST],
                   resume=False)
    ds = atrepo.open_dataset(out)
    assert set(ds.records.collect()["collection"]) == {POST}
    assert fresh.version == 1 and ds.versions["operation"].to_list() == ["export", "reset"]
    assert ds.as_of(0).records.collect()["collection"].n_unique() > 1
