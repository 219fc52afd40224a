"""Hostile-network behaviour the reference PDS cannot produce, in front of the real PDS.

A transport forwards every request to the sandbox, except that it injects faults into the
first few getRepo requests: 429 with Retry-After, 500s, dropped connections, truncated and
oversized bodies. A fault may also send the request on to another server instead: a
loopback server (tests/client/_servers.py) that trickles the real body out slowly, over a
real socket, so that the client's timeouts apply. The client must recover where it should
and fail with the right error where it must — never hang or raise anything but an
AtrepoError. Both clients are tested.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import atrepo
from _loopback import KINDS, AsyncLoopbackTransport, LoopbackTransport, client
from _servers import LoopbackServer, Reply
from atrepo import RetryPolicy
from atrepo.client import Client

# a fault answers in place of the PDS, or names the request to send instead
Fault = Callable[[httpx.Request], httpx.Response | httpx.Request]


def _status(code: int, **headers: str) -> Fault:
    return lambda request: httpx.Response(code, headers=headers, json={"error": "Injected"})


def _drop(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("peer closed connection mid-body", request=request)


class _Faulty:
    """Injects ``faults`` (in order) into getRepo requests, then lets them through."""

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = list(faults)
        self.get_repo_calls = 0

    def pick(self, request: httpx.Request) -> Fault | None:
        if "com.atproto.sync.getRepo" not in request.url.path:
            return None
        self.get_repo_calls += 1
        return self.faults.pop(0) if self.faults else None


class _SyncTransport(LoopbackTransport):
    def __init__(self, faulty: _Faulty) -> None:
        super().__init__()
        self.faulty = faulty

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faulty.pick(request)
        answer = request if fault is None else fault(request)
        if isinstance(answer, httpx.Response):
            return answer
        return super().handle_request(answer)


class _AsyncTransport(AsyncLoopbackTransport):
    def __init__(self, faulty: _Faulty) -> None:
        super().__init__()
        self.faulty = faulty

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faulty.pick(request)
        answer = request if fault is None else fault(request)
        if isinstance(answer, httpx.Response):
            return answer
        return await super().handle_async_request(answer)


def _get_repo(kind: str, sandbox: Any, tmp_path: Any, faults: list[Fault],
              **extra: Any) -> tuple[Any, int]:
    """get_repo of alice (by DID) through the faulty transport: (snapshot or error, calls)."""
    faulty = _Faulty(faults)
    did = sandbox.account("alice.test")["did"]
    transport = _SyncTransport(faulty) if kind == "sync" else _AsyncTransport(faulty)
    # the same budgets as the default policy, with millisecond backoff delays
    made = client(kind, sandbox, tmp_path / kind, transport=transport,
                  **{"timeout": 30.0, "retry": RetryPolicy(base_delay=0.001), **extra})
    if isinstance(made, Client):
        with made:
            try:
                return made.get_repo(did), faulty.get_repo_calls
            except atrepo.AtrepoError as exc:
                return exc, faulty.get_repo_calls

    async def go() -> tuple[Any, int]:
        async with made:
            try:
                return await made.get_repo(did), faulty.get_repo_calls
            except atrepo.AtrepoError as exc:
                return exc, faulty.get_repo_calls

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_recovers_from_429_and_5xx(kind, sandbox, tmp_path):
    faults = [_status(429, **{"retry-after": "0"}), _status(500), _status(503), _drop]
    snap, calls = _get_repo(kind, sandbox, tmp_path, faults)
    assert isinstance(snap, atrepo.RepoSnapshot) and snap.verified
    assert len(snap) == sandbox.account("alice.test")["records"]
    assert calls == 5


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_429_ends_in_rate_limited(kind, sandbox, tmp_path):
    error, calls = _get_repo(kind, sandbox, tmp_path,
                             [_status(429, **{"retry-after": "0"})] * 20)
    assert isinstance(error, atrepo.RateLimited)
    assert error.host == urlsplit(sandbox.pds_url).netloc
    assert calls == 7   # the first try + 6 waited-out 429s


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_resets_end_in_transport_error(kind, sandbox, tmp_path):
    error, calls = _get_repo(kind, sandbox, tmp_path, [_drop] * 20)
    assert isinstance(error, atrepo.TransportError)
    assert "getRepo" in str(error.url) and calls == 5


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_body_is_a_car_error(kind, sandbox, tmp_path):
    def truncated(request: httpx.Request) -> httpx.Response:
        with httpx.Client(trust_env=False) as http:
            body = http.send(request).content
        return httpx.Response(200, content=body[: len(body) // 2],
                              headers={"content-type": "application/vnd.ipld.car"})

    error, _ = _get_repo(kind, sandbox, tmp_path, [truncated])
    assert isinstance(error, atrepo.CarError) and error.offset is not None


@pytest.mark.parametrize("kind", KINDS)
def test_oversized_body_is_cut(kind, sandbox, tmp_path):
    error, calls = _get_repo(kind, sandbox, tmp_path, [], max_repo_bytes=10_000)
    assert isinstance(error, atrepo.TransportError) and "too large" in str(error)
    assert calls == 1
    assert not list((tmp_path / kind / "downloads").glob("*"))  # no partial file left


# -- slow bodies, over a real socket ---------------------------------------------------------


class _Trickle:
    """A loopback server that serves alice's real getRepo body in ``chunks`` pieces, ``gap``
    seconds apart; the fault sends getRepo requests to it. ``sent`` counts the pieces written
    per request, so a test can tell a body cut short from one sent whole.

    The body is fetched from the sandbox once, before the client starts: fetched per request,
    it would count against the client's timeout, which the server's headers must not wait on.
    """

    def __init__(self, sandbox: Any, *, chunks: int, gap: float) -> None:
        self.did = sandbox.account("alice.test")["did"]
        with httpx.Client(trust_env=False, timeout=30) as http:
            self.body = http.get(f"{sandbox.pds_url}/xrpc/com.atproto.sync.getRepo",
                                 params={"did": self.did}).raise_for_status().content
        self.chunks = chunks
        self.gap = gap
        self.sent: list[int] = []
        self.server = LoopbackServer(self._route)

    def _route(self, path: str) -> Reply:
        split = urlsplit(path)
        if (split.path != "/xrpc/com.atproto.sync.getRepo"
                or parse_qs(split.query).get("did") != [self.did]):
            return 404, {"content-type": "text/plain"}, f"not alice's getRepo: {path}".encode()
        return 200, {"content-type": "application/vnd.ipld.car"}, self._pieces(self.body)

    def _pieces(self, body: bytes) -> Iterator[bytes]:
        size = -(-len(body) // self.chunks)
        self.sent.append(0)
        request = len(self.sent) - 1
        for start in range(0, len(body), size):
            yield body[start:start + size]
            self.sent[request] += 1
            time.sleep(self.gap)  # the slow host: how the trickle is made, not an ordering

    def fault(self, request: httpx.Request) -> httpx.Request:
        return httpx.Request("GET", self.server.url + request.url.raw_path.decode(),
                             headers=request.headers, extensions=request.extensions)  # timeouts


@pytest.mark.parametrize("kind", KINDS)
def test_moderately_slow_body_succeeds(kind, sandbox, tmp_path):
    trickle = _Trickle(sandbox, chunks=20, gap=0.02)
    with trickle.server:
        snap, calls = _get_repo(kind, sandbox, tmp_path, [trickle.fault], timeout=2.0)
    assert isinstance(snap, atrepo.RepoSnapshot) and snap.verified
    assert len(snap) == sandbox.account("alice.test")["records"]
    assert calls == 1 and len(trickle.server.paths) == 1


# a pause between pieces longer than `timeout` (the body would take 20 s); and pieces each
# within `timeout` whose whole body takes far longer than `body_timeout` (uncut, 7.5 s)
SLOW_BODIES = {
    "stalling": (20, 1.0, {"timeout": 0.2}, "timed out"),
    "trickling past body_timeout": (15, 0.1, {"body_timeout": 0.3}, "too slow"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("slow", list(SLOW_BODIES))
def test_slow_bodies_fail_every_attempt_early(kind, slow, sandbox, tmp_path):
    chunks, gap, options, phrase = SLOW_BODIES[slow]
    trickle = _Trickle(sandbox, chunks=chunks, gap=gap)
    with trickle.server:
        error, calls = _get_repo(kind, sandbox, tmp_path, [trickle.fault] * 20, **options)
    assert isinstance(error, atrepo.TransportError) and phrase in str(error)
    assert urlsplit(sandbox.pds_url).netloc in str(error) and "getRepo" in str(error.url)
    assert calls == 5  # every attempt of the retry budget, each cut short:
    assert len(trickle.sent) == 5 and max(trickle.sent) < chunks  # no body was sent whole
    assert not list((tmp_path / kind / "downloads").glob("*"))  # no partial file left
