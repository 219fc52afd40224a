"""What one fetch does locally, and where: the commit checked once, the event loop left free,
one getLatestCommit for an export's changed repository, a Gather's requests side by side.

A loopback server (tests/client/_servers.py) plays PLC and PDS for one reference repository.
Counting calls of ``crypto.verify_commit`` shows a fresh ``get_repo`` checks the signature
once (not again when the store opens the new commit). For ``AsyncClient``, a ticker task
counts turns of the event loop while the store appends and walks a 30,000-record
repository: that work waits, in its thread, for the ticker to move on; on the loop the
ticker could not tick, and the wait would end unmet. An export run twice over a loopback
PDS whose head moves between the runs asks ``getLatestCommit`` once in the second run. Both
drivers run a :class:`~atrepo._flows.effects.Gather` of requests to a loopback server that
holds each until two are in flight (``gather=2``): the host's two slots are all taken, never
more, and a failure of one flow reaches the flow that gathered them. Counts and events, no
time limits.
"""

from __future__ import annotations

import asyncio
import json
import threading
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import atrepo
from _loopback import (KINDS, AsyncLoopbackTransport, AsyncNoDns, LoopbackTransport, NoDns,
                       client)
from _servers import LoopbackServer, Reply
from atrepo import crypto
from atrepo._bulk import FetchRun
from atrepo._flows.effects import Flow, HttpGet, HttpResponse, expect, gather
from atrepo._io.http import run_async, run_sync
from atrepo._io.limits import AsyncHostLimits, HostLimits
from atrepo._snapshot_store import SnapshotStore
from atrepo.client import Client

WAIT = 20.0  # seconds before a missing event counts as a blocked loop


def _did_document(did: str, key: str, pds_url: str) -> Reply:
    """A PLC reply: the DID document of ``did`` with signing ``key`` and its PDS at ``pds_url``."""
    doc = {"id": did, "alsoKnownAs": [],
           "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey",
                                   "controller": did,
                                   "publicKeyMultibase": key.removeprefix("did:key:")}],
           "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                        "serviceEndpoint": pds_url}]}
    return 200, {"content-type": "application/json"}, json.dumps(doc).encode()


def _serve(ref: Any) -> LoopbackServer:
    """A loopback PLC + PDS for the reference repository ``ref``."""
    did, key = ref.truth["did"], ref.truth["signing_key"]
    car = ref.car.read_bytes()

    def route(path: str) -> Reply:
        if urlsplit(path).path == "/xrpc/com.atproto.sync.getRepo":
            return 200, {"content-type": "application/vnd.ipld.car"}, car
        return _did_document(did, key, server.url)

    server = LoopbackServer(route)
    return server


def _get_repo(kind: str, server: LoopbackServer, tmp_path: Any, did: str) -> Any:
    hosts = SimpleNamespace(plc_url=server.url, pds_url=server.url)
    made = client(kind, hosts, tmp_path / kind, rate_limit=None)
    if isinstance(made, Client):
        with made:
            return made.get_repo(did)

    async def go() -> Any:
        async with made:
            return await made.get_repo(did)

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_a_fetch_checks_the_commit_signature_once(kind, ref_small, tmp_path, monkeypatch):
    checks: list[str] = []
    real = crypto.verify_commit

    def counted(*args: Any, **kwargs: Any) -> Any:
        checks.append(kwargs.get("did", ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(crypto, "verify_commit", counted)
    with _serve(ref_small) as server:
        snap = _get_repo(kind, server, tmp_path, ref_small.truth["did"])
        assert snap.verified and len(snap) == ref_small.truth["record_count"]
    assert checks == [ref_small.truth["did"]]


def test_async_client_does_disk_and_cpu_work_off_the_event_loop(ref_medium, tmp_path,
                                                                 monkeypatch):
    did = ref_medium.truth["did"]
    seen: dict[str, Any] = {}
    turns = threading.Condition()
    ticks = 0
    real_add = SnapshotStore.add

    def watched_add(self: SnapshotStore, *args: Any, **kwargs: Any) -> Any:
        """The store's append, walk and record: then wait for the loop to turn 3 times."""
        seen["on_loop_thread"] = threading.get_ident() == seen["loop_thread"]
        with turns:
            before = ticks
        snap = real_add(self, *args, **kwargs)
        with turns:
            seen["loop_turned"] = turns.wait_for(lambda: ticks >= before + 3, WAIT)
        return snap

    monkeypatch.setattr(SnapshotStore, "add", watched_add)

    async def go(server: LoopbackServer) -> Any:
        nonlocal ticks
        seen["loop_thread"] = threading.get_ident()
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                with turns:
                    ticks += 1
                    turns.notify_all()
                await asyncio.sleep(0.001)

        hosts = SimpleNamespace(plc_url=server.url, pds_url=server.url)
        made = client("async", hosts, tmp_path / "async", rate_limit=None)
        ticking = asyncio.ensure_future(ticker())
        try:
            async with made:
                return await made.get_repo(did)
        finally:
            done.set()
            await ticking

    with _serve(ref_medium) as server:
        snap = asyncio.run(go(server))
    assert len(snap) == ref_medium.truth["record_count"] and snap.verified
    assert seen["on_loop_thread"] is False
    assert seen["loop_turned"] is True


def test_async_bulk_calls_record_off_the_event_loop(ref_small, tmp_path, monkeypatch):
    """Recording an outcome builds its frames: in a worker thread, one at a time."""
    threads: list[bool] = []
    real_record = FetchRun.record

    def watched(self: FetchRun, i: int, outcome: Any) -> None:
        threads.append(threading.get_ident() == loop_thread)
        real_record(self, i, outcome)

    monkeypatch.setattr(FetchRun, "record", watched)
    did = ref_small.truth["did"]

    async def go(server: LoopbackServer) -> Any:
        nonlocal loop_thread
        loop_thread = threading.get_ident()
        hosts = SimpleNamespace(plc_url=server.url, pds_url=server.url)
        async with client("async", hosts, tmp_path / "async", rate_limit=None) as made:
            return await made.fetch_records([did, did])

    loop_thread = 0
    with _serve(ref_small) as server:
        records = asyncio.run(go(server))
    assert records.height == 2 * ref_small.truth["record_count"]
    assert threads == [False, False]


def _serve_heads(ref: Any, head: dict[str, int]) -> LoopbackServer:
    """A loopback PLC + PDS for ``ref`` at commit ``head["n"]`` (1 or 2): getLatestCommit
    and listRepos name that commit, getRepo sends the first CAR whole or, ``since`` it, the second
    commit's blocks; everything else is the DID document."""
    did, key = ref.truth["did"], ref.truth["signing_key"]
    truths = {1: ref.truth, 2: ref.truth2}
    cars = {"whole": ref.car.read_bytes(), "since": ref.since.read_bytes()}
    car_headers = {"content-type": "application/vnd.ipld.car"}

    def route(path: str) -> Reply:
        parts = urlsplit(path)
        if parts.path == "/xrpc/com.atproto.sync.getLatestCommit":
            truth = truths[head["n"]]
            body = {"cid": truth["commit_cid"], "rev": truth["rev"]}
            return 200, {"content-type": "application/json"}, json.dumps(body).encode()
        if parts.path == "/xrpc/com.atproto.sync.getRepo":
            return 200, car_headers, cars["since" if "since=" in parts.query else "whole"]
        if parts.path == "/xrpc/com.atproto.sync.listRepos":
            truth = truths[head["n"]]
            body = {"repos": [{"did": did, "head": truth["commit_cid"], "rev": truth["rev"],
                               "active": True}]}
            return 200, {"content-type": "application/json"}, json.dumps(body).encode()
        return _did_document(did, key, server.url)

    server = LoopbackServer(route)
    return server


def _export(kind: str, server: LoopbackServer, cache: Any, names: list[str] | str,
            out: Any) -> Any:
    hosts = SimpleNamespace(plc_url=server.url, pds_url=server.url)
    made = client(kind, hosts, cache, rate_limit=None)
    if isinstance(made, Client):
        with made:
            return made.export(names, out)

    async def go() -> Any:
        async with made:
            return await made.export(names, out)

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_exporting_a_changed_repository_by_did_asks_get_latest_commit_once(kind, ref_small,
                                                                           tmp_path):
    """The export's answer (changed: fetch it) is the pipeline's too, not asked again."""
    did = ref_small.truth["did"]
    head = {"n": 1}
    latest = "/xrpc/com.atproto.sync.getLatestCommit"
    with _serve_heads(ref_small, head) as server:
        first = _export(kind, server, tmp_path / "cache", [did], tmp_path / "ds")
        assert first.written == 1
        asked = len(server.paths)
        head["n"] = 2          # the repository moves on: the store and the dataset hold rev 1
        second = _export(kind, server, tmp_path / "cache", [did], tmp_path / "ds")
        paths = [urlsplit(p) for p in server.paths[asked:]]
    assert second.written == 1
    assert [p.path for p in paths].count(latest) == 1
    (download,) = [p for p in paths if p.path == "/xrpc/com.atproto.sync.getRepo"]
    assert f"since={ref_small.truth['rev']}" in download.query   # incremental, as before
    ds = atrepo.open_dataset(tmp_path / "ds")
    assert ds.repos.collect()["rev"].to_list() == [ref_small.truth2["rev"]]
    assert ds.records.collect().height == ref_small.truth2["record_count"]


@pytest.mark.parametrize("kind", KINDS)
def test_exporting_a_changed_repository_its_host_listed_asks_no_get_latest_commit(
        kind, ref_small, tmp_path):
    """The repository's own PDS listed its new head: the pipeline takes that answer."""
    head = {"n": 1}
    latest = "/xrpc/com.atproto.sync.getLatestCommit"
    with _serve_heads(ref_small, head) as server:
        first = _export(kind, server, tmp_path / "cache", server.url, tmp_path / "ds")
        assert first.written == 1
        asked = len(server.paths)
        head["n"] = 2
        second = _export(kind, server, tmp_path / "cache", server.url, tmp_path / "ds")
        paths = [urlsplit(p) for p in server.paths[asked:]]
    assert second.written == 1
    assert [p.path for p in paths].count(latest) == 0
    (download,) = [p for p in paths if p.path == "/xrpc/com.atproto.sync.getRepo"]
    assert f"since={ref_small.truth['rev']}" in download.query
    ds = atrepo.open_dataset(tmp_path / "ds")
    assert ds.repos.collect()["rev"].to_list() == [ref_small.truth2["rev"]]
    assert ds.records.collect().height == ref_small.truth2["record_count"]


# -- a Gather, by both drivers ------------------------------------------------------------------


def _ask(url: str, ended: list[str]) -> Flow[str]:
    """GET ``url`` (one whose path says "bad" fails before asking); its body."""
    try:
        if "bad" in url:
            raise atrepo.AtrepoError("refused", url=url)
        response = yield from expect(HttpGet(url), HttpResponse)
        return response.body.decode()
    finally:
        ended.append(url)


def _gathered(base: str, names: list[str], ended: list[str]) -> Flow[object]:
    """Gather one request per name, 4 at a time; the values, or the failure caught."""
    try:
        return (yield from gather([_ask(f"{base}/{name}", ended) for name in names], 4))
    except atrepo.AtrepoError as failed:
        return failed


def _drive(kind: str, flow: Flow[object]) -> object:
    """``flow`` by ``kind``'s driver, two requests per host at most, no request rate."""
    if kind == "sync":
        with httpx.Client(transport=LoopbackTransport(), trust_env=False) as http:
            return run_sync(flow, http, NoDns(), limits=HostLimits(2))

    async def go() -> object:
        async with httpx.AsyncClient(transport=AsyncLoopbackTransport(),
                                     trust_env=False) as http:
            return await run_async(flow, http, AsyncNoDns(), limits=AsyncHostLimits(2))

    return asyncio.run(go())


def _answer(path: str) -> Reply:
    return 200, {}, path.encode()


@pytest.mark.parametrize("kind", KINDS)
def test_a_gather_runs_its_requests_side_by_side_within_the_host_slots(kind):
    names = [f"n{i}" for i in range(6)]
    ended: list[str] = []
    with LoopbackServer(_answer, gather=2) as server:
        values = _drive(kind, _gathered(server.url, names, ended))
    assert values == [f"/{name}" for name in names]          # in the flows' order
    assert server.max_in_flight == 2 and len(server.paths) == 6   # width 4, two slots
    assert sorted(ended) == sorted(f"{server.url}/{name}" for name in names)


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_flow_of_a_gather_is_thrown_into_the_flow_that_gathered(kind):
    # the flows start in order, so n0 and bad1 always do; once bad1 failed, the ones not yet
    # started may never start (bad3 failing too would not be first in order either)
    names = ["n0", "bad1", "n2", "bad3"]
    ended: list[str] = []
    with LoopbackServer(_answer, gather=2) as server:
        failed = _drive(kind, _gathered(server.url, names, ended))
    assert isinstance(failed, atrepo.AtrepoError)
    assert failed.fields["url"] == f"{server.url}/bad1"     # the first failure, in order
    urls = {f"{server.url}/{name}" for name in names}
    assert {f"{server.url}/n0", f"{server.url}/bad1"} <= set(ended) <= urls
    assert "/n0" in server.paths and server.max_in_flight <= 2
