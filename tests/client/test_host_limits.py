"""max_per_host: at most that many requests in flight to one host, for both clients.

A loopback "PLC" and a loopback "PDS" (tests/client/_servers.py) serve DID documents and
signed repository CARs, hold every request a little so that requests overlap, and record
the most they saw at once. A bulk ``fetch_records`` with ``max_concurrency=8`` must never
have more than ``max_per_host`` requests at either server, and must reach that many. The
drivers' own tests check that a retry's backoff sleep holds no slot.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from _loopback import (
    KINDS,
    _AsyncLoopbackTransport,
    _AsyncNoDns,
    _LoopbackTransport,
    _NoDns,
    client,
)
from _servers import LoopbackServer, Reply
from atrepo._flows.effects import Flow, HttpGet, Sleep
from atrepo._io.drivers import AsyncHostLimits, HostLimits, run_async, run_sync
from atrepo.errors import TransportError
from atrepo.client import Client
from atrepo.testing import SigningKey, make_repo_car

REPOS = 12
HOLD = 0.05  # seconds each server holds a request


def _did(i: int) -> str:
    return "did:plc:limits" + "abcdefghijklmnopqrstuvwxyz234567"[i] * 18


class _Network:
    """DID documents on one server, their repositories on another."""

    def __init__(self) -> None:
        self.key = SigningKey()
        self.plc = LoopbackServer(self._plc, delay=HOLD)
        self.pds = LoopbackServer(self._pds, delay=HOLD)
        self.cars = {_did(i): make_repo_car(
            {f"app.bsky.feed.post/3kaaaaaaaa{i:03d}": {"$type": "app.bsky.feed.post",
                                                      "text": f"post {i}",
                                                      "createdAt": "2024-01-01T00:00:00Z"}},
            did=_did(i), key=self.key)[0] for i in range(REPOS)}

    def _plc(self, path: str) -> Reply:
        did = path.lstrip("/")
        if did not in self.cars:
            return 404, {}, b"{}"
        doc = {"id": did, "alsoKnownAs": [],
               "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey",
                                       "controller": did,
                                       "publicKeyMultibase":
                                           self.key.did_key.removeprefix("did:key:")}],
               "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                            "serviceEndpoint": self.pds.url}]}
        return 200, {"content-type": "application/json"}, json.dumps(doc).encode()

    def _pds(self, path: str) -> Reply:
        parts = urlsplit(path)
        did = parse_qs(parts.query).get("did", [""])[0]
        if parts.path != "/xrpc/com.atproto.sync.getRepo" or did not in self.cars:
            return 400, {"content-type": "application/json"}, b'{"error": "InvalidRequest"}'
        car = self.cars[did]
        return 200, {"content-type": "application/vnd.ipld.car",
                     "content-length": str(len(car))}, car


def _fetch(kind: str, net: _Network, tmp_path: Any, per_host: int) -> Any:
    hosts = SimpleNamespace(plc_url=net.plc.url, pds_url=net.pds.url)
    made = client(kind, hosts, tmp_path / kind, max_concurrency=8, max_per_host=per_host)
    dids = list(net.cars)
    if isinstance(made, Client):
        with made:
            return made.fetch_records(dids), made.last_errors

    async def go() -> Any:
        async with made:
            return await made.fetch_records(dids), made.last_errors

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("per_host", [2, 8])
def test_requests_per_host_are_capped(kind, per_host, tmp_path):
    net = _Network()
    with net.plc, net.pds:
        records, errors = _fetch(kind, net, tmp_path, per_host)
    assert errors.is_empty() and records.height == REPOS
    assert len(net.plc.paths) == REPOS and len(net.pds.paths) == REPOS
    if per_host == 2:
        assert net.plc.max_in_flight == 2 and net.pds.max_in_flight == 2
    else:  # the servers can see more at once: the cap above is what held them at 2
        assert net.plc.max_in_flight > 2 and net.pds.max_in_flight > 2


# -- the drivers: what holds a slot, and for which host --------------------------------------


def _get_then_sleep(url: str, pause: float, marks: list[str], name: str) -> Flow[None]:
    yield HttpGet(url)
    marks.append(f"{name} got")
    yield Sleep(pause)
    marks.append(f"{name} done")


def _wait_then_get(url: str, pause: float, marks: list[str], name: str) -> Flow[None]:
    yield Sleep(pause)
    yield HttpGet(url)
    marks.append(f"{name} got")


def _ok(path: str) -> Reply:
    return 200, {"content-type": "text/plain"}, b"ok"


def _drive(kind: str, flows: list[Flow[Any]], slots: int) -> list[Any]:
    """Run ``flows`` at once (threads or tasks) under one HostLimits of ``slots`` per origin."""
    if kind == "sync":
        limits = HostLimits(slots)
        results: list[Any] = [None] * len(flows)

        def one(i: int, http: httpx.Client) -> None:
            results[i] = run_sync(flows[i], http, _NoDns(), limits=limits)

        with httpx.Client(transport=_LoopbackTransport(), trust_env=False) as http:
            threads = [threading.Thread(target=one, args=(i, http)) for i in range(len(flows))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
        return results

    async def go() -> list[Any]:
        limits = AsyncHostLimits(slots)
        async with httpx.AsyncClient(transport=_AsyncLoopbackTransport(),
                                     trust_env=False) as http:
            return list(await asyncio.gather(*(run_async(flow, http, _AsyncNoDns(),
                                                         limits=limits) for flow in flows)))

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_backoff_sleep_holds_no_slot(kind):
    """With one slot, a request goes out while another flow sleeps between its requests."""
    marks: list[str] = []
    with LoopbackServer(_ok) as server:
        first = _get_then_sleep(server.url + "/a", 1.0, marks, "first")
        second = _wait_then_get(server.url + "/b", 0.2, marks, "second")
        started = time.monotonic()
        _drive(kind, [first, second], 1)
    assert marks == ["first got", "second got", "first done"]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", KINDS)
def test_each_origin_has_its_own_slots(kind):
    """One slot per origin: two servers on two ports are each asked at once."""
    gate = threading.Barrier(2, timeout=5)  # both requests must be in flight together

    def meet(path: str) -> Reply:
        gate.wait()
        return _ok(path)

    with LoopbackServer(meet) as one, LoopbackServer(meet) as two:
        _drive(kind, [_get_then_sleep(server.url + "/", 0, [], "x") for server in (one, two)], 1)
    assert not gate.broken and one.paths == ["/"] and two.paths == ["/"]


def test_origins_spell_out_default_ports():
    limits = HostLimits(1)
    assert limits.slot("https://pds.test/xrpc/a") is limits.slot("https://PDS.test:443/b")
    assert limits.slot("https://pds.test/") is not limits.slot("http://pds.test/")
    assert limits.slot("http://pds.test:8080/") is not limits.slot("http://pds.test/")


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_url_under_limits_is_a_transport_error(kind):
    def flow() -> Flow[str]:
        try:
            yield HttpGet("http://[::1/did.json")
        except TransportError as exc:
            return exc.message
        return "no error"

    assert _drive(kind, [flow()], 1) == ["invalid URL"]
