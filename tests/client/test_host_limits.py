"""max_per_host: at most that many requests in flight to one host, for both clients.

A loopback "PLC" and a loopback "PDS" (tests/client/_servers.py) serve DID documents and
signed repository CARs, hold each request until a few are in flight together (``gather``),
and record the most they saw at once. A bulk ``fetch_records`` with ``max_concurrency=8``
must never have more than ``max_per_host`` requests at either server, and must reach that
many. The drivers' own tests (tests/unit/test_io_limits.py) check what holds a slot.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from _loopback import KINDS, client
from _servers import LoopbackServer, Reply
from atrepo.client import Client
from atrepo.testing import SigningKey, make_repo_car

REPOS = 12


def _did(i: int) -> str:
    return "did:plc:limits" + "abcdefghijklmnopqrstuvwxyz234567"[i] * 18


class _Network:
    """DID documents on one server, their repositories on another."""

    def __init__(self, gather: int) -> None:
        self.key = SigningKey()
        self.plc = LoopbackServer(self._plc, gather=gather)
        self.pds = LoopbackServer(self._pds, gather=gather)
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
    net = _Network(gather=min(per_host, 3))  # company enough to reach the cap, or pass 2
    with net.plc, net.pds:
        records, errors = _fetch(kind, net, tmp_path, per_host)
    assert errors.is_empty() and records.height == REPOS
    assert len(net.plc.paths) == REPOS and len(net.pds.paths) == REPOS
    if per_host == 2:
        assert net.plc.max_in_flight == 2 and net.pds.max_in_flight == 2
    else:  # the servers can see more at once: the cap above is what held them at 2
        assert net.plc.max_in_flight > 2 and net.pds.max_in_flight > 2
