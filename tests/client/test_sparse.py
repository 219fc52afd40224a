"""Sparse fetch against the real PDS: the same rows as a full fetch, for far fewer bytes.

One module sandbox holds bulk000.test with 3,000 records (posts, likes, reposts, follows)
and a profile written here. A profile-only and a follows-only sparse fetch must equal the
same rows of a full fetch; the bytes they cost are measured against the full CAR's. Faults
the reference cannot produce come from a transport in front of the real PDS: a getBlocks
answer with one block left out (an error naming that block, never a short table), and a
host answering 501 for getBlocks (a full fetch instead). A full fetch, a diff and an
incremental fetch after a sparse one treat nothing as deleted. Both clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

import atrepo
from _loopback import KINDS, AsyncLoopbackTransport, LoopbackTransport, client
from atrepo import MstError
from atrepo.car import CarReader
from atrepo.client import Client
from atrepo.sandbox import REFERENCE, Sandbox
from atrepo.testing import encode_car

HANDLE = "bulk000.test"
RECORDS = 3000
PROFILE = "app.bsky.actor.profile"
FOLLOW = "app.bsky.graph.follow"

Rewrite = Callable[[httpx.Request, httpx.Response | None], httpx.Response | None]


@pytest.fixture(scope="module")
def big() -> Iterator[Sandbox]:
    """A sandbox whose bulk000.test holds 3,000 records and a profile (~20 s to seed)."""
    with Sandbox.start(REFERENCE, timeout=300, bulk_accounts=1,
                       bulk_records=RECORDS) as sandbox:
        sandbox.put_record(HANDLE, PROFILE, "self",
                           {"$type": PROFILE, "displayName": "Bulk Zero"})
        yield sandbox


class _Rewriting:
    """Sees every request to the PDS; ``rewrite`` may answer in its place (called with no
    response) or change the real answer (called with it)."""

    def __init__(self, rewrite: Rewrite) -> None:
        self.rewrite = rewrite
        self.paths: list[str] = []

    def before(self, request: httpx.Request) -> httpx.Response | None:
        self.paths.append(request.url.path)
        return self.rewrite(request, None)

    def after(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        changed = self.rewrite(request, response)
        return response if changed is None else changed


class _SyncTransport(LoopbackTransport):
    def __init__(self, rewriting: _Rewriting) -> None:
        super().__init__()
        self.rewriting = rewriting

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.rewriting.before(request)
        if answer is not None:
            return answer
        response = super().handle_request(request)
        response.read()
        return self.rewriting.after(request, response)


class _AsyncTransport(AsyncLoopbackTransport):
    def __init__(self, rewriting: _Rewriting) -> None:
        super().__init__()
        self.rewriting = rewriting

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.rewriting.before(request)
        if answer is not None:
            return answer
        response = await super().handle_async_request(request)
        await response.aread()
        return self.rewriting.after(request, response)


def _run(kind: str, sandbox: Sandbox, cache: Path, calls: Callable[[Any], Any], *,
         rewriting: _Rewriting | None = None) -> Any:
    """``calls(client)`` on a fresh client of ``kind`` (awaited for the async one)."""
    transport = None
    if rewriting is not None:
        transport = _SyncTransport(rewriting) if kind == "sync" else _AsyncTransport(rewriting)
    made = client(kind, sandbox, cache, transport=transport)
    if isinstance(made, Client):
        with made:
            return calls(made)

    async def go() -> Any:
        async with made:
            return await calls(made)

    return asyncio.run(go())


def _get(kind: str, sandbox: Sandbox, cache: Path, *args: Any,
         rewriting: _Rewriting | None = None, **kwargs: Any) -> Any:
    return _run(kind, sandbox, cache, lambda c: c.get_repo(*args, **kwargs),
                rewriting=rewriting)


def _rows(snap: atrepo.RepoSnapshot, collection: str) -> pl.DataFrame:
    return snap.records.filter(pl.col("collection") == collection)


@pytest.fixture(scope="module")
def full(big: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> atrepo.RepoSnapshot:
    """The whole repository, fetched in full once."""
    return _get("sync", big, tmp_path_factory.mktemp("full"), HANDLE)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("collection, most", [(PROFILE, 0.01), (FOLLOW, 0.2)])
def test_sparse_fetch_equals_the_full_rows_for_fewer_bytes(big: Sandbox, full: Any,
                                                            tmp_path: Path, kind: str,
                                                            collection: str,
                                                            most: float) -> None:
    snap = _get(kind, big, tmp_path, HANDLE, [collection], sparse=True)
    assert snap.source == "sparse" and snap.verified
    assert snap.records.equals(_rows(full, collection))
    assert snap.records.height == (1 if collection == PROFILE else
                                   full.collections.filter(
                                       pl.col("collection") == FOLLOW)["count"][0])
    # measured (benchmarks/bench_sparse.py --records 3000): profile 0.3% and follows (445 of
    # the 3,001 records) 12.8% of the full CAR's 0.84 MB
    assert 0 < snap.bytes_downloaded < most * full.bytes_downloaded
    assert full.source == "full" and full.bytes_downloaded > 500_000


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_none_fetches_a_big_repository_sparse_and_false_never(
        big: Sandbox, tmp_path: Path, kind: str) -> None:
    snap = _get(kind, big, tmp_path / "auto", HANDLE, [PROFILE])
    assert snap.source == "sparse" and snap.records.height == 1
    never = _get(kind, big, tmp_path / "never", HANDLE, [PROFILE], sparse=False)
    assert never.source == "full" and never.records.equals(snap.records)
    with pytest.raises(atrepo.AtrepoError, match="needs collections"):
        _get(kind, big, tmp_path / "all", HANDLE, sparse=True)


def _drop_one_block(request: httpx.Request, response: httpx.Response | None
                    ) -> httpx.Response | None:
    """Leave the last block out of every getBlocks answer (a status 200 answer)."""
    if response is None or not request.url.path.endswith("com.atproto.sync.getBlocks"):
        return None
    reader = CarReader()
    blocks = [(bytes(cid), data) for cid, data in reader.feed(response.content)]
    return httpx.Response(200, headers={"content-type": "application/vnd.ipld.car"},
                          content=encode_car([], blocks[:-1]))


@pytest.mark.parametrize("kind", KINDS)
def test_a_block_left_out_of_an_answer_is_an_error_naming_it(big: Sandbox, tmp_path: Path,
                                                             kind: str) -> None:
    rewriting = _Rewriting(_drop_one_block)
    with pytest.raises(MstError, match="left a block out") as caught:
        _get(kind, big, tmp_path, HANDLE, [FOLLOW], sparse=True, rewriting=rewriting)
    assert caught.value.cid is not None and caught.value.cid.startswith("bafy")
    # the head had not moved, so the fetch started over once and then gave up
    assert rewriting.paths.count("/xrpc/com.atproto.sync.getRecord") == 2
    # nothing was stored: the next fetch is a whole new one
    again = _get(kind, big, tmp_path, HANDLE, [FOLLOW], sparse=True)
    assert again.source == "sparse"


def _no_get_blocks(request: httpx.Request, response: httpx.Response | None
                   ) -> httpx.Response | None:
    if response is None and request.url.path.endswith("com.atproto.sync.getBlocks"):
        return httpx.Response(501, json={"error": "MethodNotImplemented",
                                         "message": "Method Not Implemented"})
    return None


@pytest.mark.parametrize("kind", KINDS)
def test_a_host_without_get_blocks_is_fetched_in_full(big: Sandbox, full: Any,
                                                      tmp_path: Path, kind: str) -> None:
    rewriting = _Rewriting(_no_get_blocks)
    snap = _get(kind, big, tmp_path, HANDLE, [FOLLOW], sparse=True, rewriting=rewriting)
    assert snap.source == "full"
    assert snap.records.equals(_rows(full, FOLLOW))
    assert "/xrpc/com.atproto.sync.getBlocks" in rewriting.paths


@pytest.mark.parametrize("kind", KINDS)
def test_after_a_sparse_fetch_nothing_counts_as_deleted(big: Sandbox, full: Any,
                                                        tmp_path: Path, kind: str) -> None:
    sparse = _get(kind, big, tmp_path, HANDLE, [PROFILE], sparse=True)
    assert sparse.source == "sparse"
    # the stored sparse snapshot: reopened for what it holds, refused for the rest
    stored = _run(kind, big, tmp_path, lambda c: c.get_repo(HANDLE, [PROFILE]))
    assert stored.source == "cache" and stored.records.equals(sparse.records)
    with pytest.warns(UserWarning, match="holds only app.bsky.actor.profile"):
        changes = _run(kind, big, tmp_path, lambda c: c.diff(HANDLE))
    assert changes.height == 0
    # that diff fetched the whole repository (same commit): every record is there again
    whole = _get(kind, big, tmp_path, HANDLE)
    assert whole.source == "cache" and whole.records.equals(full.records)
    # the profile changes: a diff of the whole repository shows just that
    big.put_record(HANDLE, PROFILE, "self", {"$type": PROFILE, "displayName": "Renamed"})
    try:
        changes = _run(kind, big, tmp_path, lambda c: c.diff(HANDLE))
        assert changes.select("collection", "rkey", "action").rows() == [
            (PROFILE, "self", "update")]
    finally:
        big.put_record(HANDLE, PROFILE, "self", {"$type": PROFILE, "displayName": "Bulk Zero"})


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_commit_after_a_sparse_fetch_is_fetched_again_not_diffed_as_deletions(
        big: Sandbox, tmp_path: Path, kind: str) -> None:
    _get(kind, big, tmp_path, HANDLE, [PROFILE], sparse=True)
    big.put_record(HANDLE, PROFILE, "self", {"$type": PROFILE, "displayName": "Other"})
    try:
        with pytest.warns(UserWarning, match="holds only"):
            changes = _run(kind, big, tmp_path, lambda c: c.diff(HANDLE))
        assert changes.select("rkey", "action").rows() == [("self", "update")]
        snap = _get(kind, big, tmp_path, HANDLE, [FOLLOW])
        assert snap.source == "cache" and snap.records.height > 0
        stored = _run(kind, big, tmp_path, lambda c: c.snapshots(HANDLE))
        assert stored.height == 2
    finally:
        big.put_record(HANDLE, PROFILE, "self", {"$type": PROFILE, "displayName": "Bulk Zero"})
