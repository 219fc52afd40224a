"""Snapshots, diffs and incremental fetches against the real reference PDS.

A sandbox of its own (two bulk accounts whose records these tests change through the PDS
API), so the shared session sandbox keeps its seeded state. Every scenario runs for both
clients, each on its own account.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest
from _loopback import KINDS, LoopbackTransport, NoDns, call

import atrepo
from atrepo.car import read_car
from atrepo.client import Client
from atrepo.sandbox import REFERENCE, Sandbox
from atrepo.testing import encode_car

ACCOUNT = {"sync": "bulk000.test", "async": "bulk001.test"}
POST = "app.bsky.feed.post"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox.start(REFERENCE, bulk_accounts=3, bulk_records=300) as sandbox:
        yield sandbox


def _post(text: str) -> dict[str, Any]:
    return {"$type": POST, "text": text, "createdAt": "2026-11-21T12:00:00.000Z"}


def _change(sb: Sandbox, handle: str, snap: atrepo.RepoSnapshot, tag: str
            ) -> dict[tuple[str, str], str]:
    """Create one post, update one, delete one like; return {(collection, rkey): action}."""
    created, _ = sb.create_record(handle, POST, _post(f"new {tag}"))
    posts = snap.records.filter(pl.col("collection") == POST)
    likes = snap.records.filter(pl.col("collection") == "app.bsky.feed.like")
    updated = posts["rkey"][0]
    sb.put_record(handle, POST, updated, _post(f"edited {tag}"))
    deleted = likes["rkey"][0]
    sb.delete_record(handle, "app.bsky.feed.like", deleted)
    return {(POST, created.rsplit("/", 1)[1]): "create", (POST, updated): "update",
            ("app.bsky.feed.like", deleted): "delete"}


@pytest.mark.parametrize("kind", KINDS)
def test_diff_shows_exactly_the_changes_made_through_the_pds(kind, sb, tmp_path):
    handle = ACCOUNT[kind]
    first = call(kind, sb, tmp_path, "get_repo", handle)
    assert first.source == "full" and first.bytes_downloaded > 0
    changes = _change(sb, handle, first, kind)

    frame = call(kind, sb, tmp_path, "diff", handle)
    assert dict(zip(zip(frame["collection"], frame["rkey"]), frame["action"])) == changes
    by_action = {row["action"]: row for row in frame.iter_rows(named=True)}
    assert orjson.loads(by_action["create"]["record"])["text"] == f"new {kind}"
    assert orjson.loads(by_action["update"]["record"])["text"] == f"edited {kind}"
    assert orjson.loads(by_action["update"]["old_record"])["text"] != f"edited {kind}"
    assert by_action["delete"]["record"] is None and by_action["delete"]["old_record"]

    second = call(kind, sb, tmp_path, "snapshot", handle)
    assert second.source == "cache" and second.rev > first.rev
    listed = call(kind, sb, tmp_path, "snapshots", handle)
    assert listed.columns == ["rev", "data_cid", "fetched_at", "records", "collections"]
    assert listed["collections"].to_list() == [None, None]   # both whole, neither sparse
    assert listed["rev"].to_list() == [first.rev, second.rev]
    assert listed["records"].to_list() == [len(first), len(first)]  # +1 post, -1 like
    assert atrepo.diff(call(kind, sb, tmp_path, "snapshot", handle, first.rev), second) \
        .equals(frame)


def _counting_client(sb: Sandbox, cache: Path, **options: Any) -> tuple[Client, list[str]]:
    seen: list[str] = []
    http = httpx.Client(transport=LoopbackTransport(), trust_env=False, timeout=20,
                        event_hooks={"request": [lambda r: seen.append(str(r.url))]})
    return Client(http=http, dns=NoDns(), plc_url=sb.plc_url, handle_resolver=sb.pds_url,
                  cache_dir=cache, progress=False, **options), seen


def test_second_fetch_is_incremental_and_small(sb, tmp_path):
    handle = "bulk002.test"
    client, seen = _counting_client(sb, tmp_path)
    with client:
        first = client.get_repo(handle)
        sb.post(handle, "one more", langs=["en"])
        seen.clear()
        second = client.get_repo(handle)
    assert second.source == "incremental" and second.verified
    assert any(f"since={first.rev}" in url for url in seen)
    assert second.bytes_downloaded * 10 < first.bytes_downloaded
    assert len(second) == len(first) + 1
    full = call("sync", sb, tmp_path / "fresh", "get_repo", handle)
    assert second.records.equals(full.records)


class _DropOneBlock(LoopbackTransport):
    """Removes one record block from every getRepo?since= reply (a host that loses data)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if "getRepo" not in request.url.path or "since" not in request.url.params:
            return response
        carfile = read_car(response.read())
        blocks = [(bytes(cid), data) for cid, data in carfile]
        records = [i for i, (_, data) in enumerate(blocks) if b"$type" in data]
        raw, _ = blocks.pop(records[0])
        self.dropped.append(str(atrepo.CID.from_raw(raw)))
        body = encode_car(carfile.roots, blocks)
        return httpx.Response(200, headers={"content-type": "application/vnd.ipld.car"},
                              content=body)


def test_an_incomplete_incremental_fetch_falls_back_to_a_full_one(sb, tmp_path):
    handle = "bulk002.test"
    transport = _DropOneBlock()
    http = httpx.Client(transport=transport, trust_env=False, timeout=20)
    with Client(http=http, dns=NoDns(), plc_url=sb.plc_url, handle_resolver=sb.pds_url,
                cache_dir=tmp_path, progress=False) as client:
        first = client.get_repo(handle)
        sb.post(handle, "and another")
        second = client.get_repo(handle)
        assert transport.dropped, "the since reply was not intercepted"
        assert second.source == "full" and len(second) == len(first) + 1
        assert second.problems.height == 0
        assert client.snapshots(handle)["rev"].to_list() == [first.rev, second.rev]


def test_snapshots_offline_by_handle_and_unknown_ones(sb, tmp_path):
    handle = "bulk002.test"
    client, seen = _counting_client(sb, tmp_path)
    with client:
        snap = client.get_repo(handle)
        seen.clear()
        assert client.snapshot(handle).records.equals(snap.records)
        assert client.snapshot(snap.did, rev=snap.rev).rev == snap.rev
        assert client.snapshots(handle).height == 1
        assert seen == []  # no network
        with pytest.raises(atrepo.AtrepoError, match="no stored snapshot") as info:
            client.snapshot(handle, rev="2222222222222")
        assert "client.snapshots" in str(info.value)
        with pytest.raises(atrepo.ResolutionError, match="no stored snapshot"):
            client.snapshots("never-seen.test")
        assert client.snapshots("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").height == 0


def test_diff_respects_collections(sb, tmp_path):
    handle = "bulk000.test"
    whole = call("sync", sb, tmp_path, "get_repo", handle)
    changes = _change(sb, handle, whole, "collections")
    with pytest.warns(UserWarning, match="no stored snapshot"):
        created = call("sync", sb, tmp_path / "other", "diff", handle)
    assert set(created["action"]) == {"create"}
    frame = call("sync", sb, tmp_path, "diff", handle, [POST])
    assert set(frame["collection"]) == {POST}
    assert dict(zip(zip(frame["collection"], frame["rkey"]), frame["action"])) == \
        {key: action for key, action in changes.items() if key[0] == POST}


def test_ten_snapshots_cost_well_under_twice_one(sb, tmp_path):
    handle = "bulk002.test"
    client, _ = _counting_client(sb, tmp_path)
    with client:
        first = client.get_repo(handle)
        pack = next((tmp_path / "repos").glob("*/blocks.car"))
        one = pack.stat().st_size
        changes_per_round = max(1, len(first) // 100)   # 1% of the records
        for round_ in range(9):
            for i in range(changes_per_round):
                sb.post(handle, f"round {round_} post {i}")
            client.get_repo(handle)
        assert client.snapshots(handle).height == 10
    assert pack.stat().st_size < 1.5 * one


def test_cache_bound_evicts_the_least_recently_used_repository(sb, tmp_path):
    probe, _ = _counting_client(sb, tmp_path / "probe")
    with probe:
        one = probe.get_repo("bulk000.test").bytes_downloaded
    client, _ = _counting_client(sb, tmp_path / "bounded", max_cache_bytes=one + one // 2)
    with client:
        first = client.get_repo("bulk000.test")
        client.get_repo("bulk001.test")            # the store would pass its bound: evict
        assert client.snapshots(first.did).height == 0
        assert client.snapshots("bulk001.test").height == 1
        assert first.records.height == len(first)  # what is open keeps working
        assert first.get(*first.records.row(0)[1:3]) is not None
