"""Politeness per host on real sockets: the request rate of a real run, and 429 pauses.

A loopback server (tests/client/_servers.py) plays PLC and PDS on one origin, so one bucket
paces every request of a bulk ``fetch_records``, and stamps each request with the time of a
fake clock that moves only when the limits wait. The rate test counts the requests in every
window of that clock: what is checked is what the server saw, never wall-clock speed. The
429 test orders two requests with events: the second goes out only after the first was
answered 429, and must then wait for the pause the first was given.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from _loopback import KINDS, AsyncLoopbackTransport, AsyncNoDns, LoopbackTransport, NoDns, client
from _servers import LoopbackServer, Reply
from atrepo._flows.xrpc import get_json
from atrepo._io.http import run_async, run_sync
from atrepo._io.limits import AsyncHostLimits, HostLimits
from atrepo.client import Client
from atrepo.retry import RateLimit, RetryPolicy
from atrepo.testing import SigningKey, make_repo_car

REPOS = 15                                       # 2 requests each: a DID document, a getRepo
RATE = RateLimit(requests=10, per=1.0, burst=3)  # 3 at once, then 7 per second
WAIT = 10.0  # seconds before a missing event counts as a deadlock


class FakeTime:
    """A clock for several threads that moves only when one of them sleeps.

    ``sleep(s)`` moves the clock to ``s`` after the time that thread last read, as a real
    sleep would end then; the clock never runs back.
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()
        self._read = threading.local()
        self.slept: list[float] = []

    def clock(self) -> float:
        with self._lock:
            self._read.at = self._now
            return self._now

    def peek(self) -> float:
        """The time, for the server's stamps (not a read of a sleeper)."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self._now = max(self._now, getattr(self._read, "at", 0.0) + seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


def _did(i: int) -> str:
    return "did:plc:polite" + "abcdefghijklmnopqrstuvwxyz234567"[i] * 18


class _Host:
    """DID documents and repositories on one loopback origin, every request stamped."""

    def __init__(self, fake: FakeTime) -> None:
        self.fake = fake
        self.key = SigningKey()
        self.stamps: list[float] = []
        self.server = LoopbackServer(self._route)
        self.cars = {_did(i): make_repo_car(
            {f"app.bsky.feed.post/3kaaaaaaaa{i:03d}": {"$type": "app.bsky.feed.post",
                                                      "text": f"post {i}",
                                                      "createdAt": "2024-01-01T00:00:00Z"}},
            did=_did(i), key=self.key)[0] for i in range(REPOS)}

    def _route(self, path: str) -> Reply:
        self.stamps.append(self.fake.peek())
        parts = urlsplit(path)
        if parts.path == "/xrpc/com.atproto.sync.getRepo":
            car = self.cars[parse_qs(parts.query)["did"][0]]
            return 200, {"content-type": "application/vnd.ipld.car"}, car
        did = parts.path.lstrip("/")
        doc = {"id": did, "alsoKnownAs": [],
               "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey",
                                       "controller": did,
                                       "publicKeyMultibase":
                                           self.key.did_key.removeprefix("did:key:")}],
               "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                            "serviceEndpoint": self.server.url}]}
        return 200, {"content-type": "application/json"}, json.dumps(doc).encode()


def _busiest(stamps: Sequence[float], per: float) -> int:
    """The most requests in any window of ``per`` seconds (each window opens at a request)."""
    return max(sum(1 for t in stamps if start <= t < start + per) for start in stamps)


def _fetch_all(kind: str, host: _Host, tmp_path: Any, rate: RateLimit | None) -> Any:
    hosts = SimpleNamespace(plc_url=host.server.url, pds_url=host.server.url)
    # one request at a time to the host: only the request holding the slot waits, so the
    # clock moves only between requests, and each stamp is the time that request's turn came
    made = client(kind, hosts, tmp_path / kind, max_concurrency=8, max_per_host=1,
                  rate_limit=rate)
    fake = host.fake
    if isinstance(made, Client):
        made._limits = HostLimits(1, rate=rate, clock=fake.clock, sleep=fake.sleep)
        with made:
            return made.fetch_records(list(host.cars)), made.last_errors

    made._limits = AsyncHostLimits(1, rate=rate, clock=fake.clock, sleep=fake.asleep)

    async def go() -> Any:
        async with made:
            return await made.fetch_records(list(host.cars)), made.last_errors

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_a_bulk_run_stays_under_the_rate_limit(kind, tmp_path):
    host = _Host(FakeTime())
    with host.server:
        records, errors = _fetch_all(kind, host, tmp_path, RATE)
    assert errors.is_empty() and records.height == REPOS
    assert len(host.stamps) == 2 * REPOS
    assert host.stamps[:RATE.capacity] == [0.0] * RATE.capacity  # the burst went at once
    assert RATE.requests - 1 <= _busiest(host.stamps, RATE.per) <= RATE.requests
    # the rest came at the bucket's rate, so the run took that long on the host's clock
    assert host.stamps[-1] == pytest.approx((2 * REPOS - RATE.capacity) / RATE.rate)


@pytest.mark.parametrize("kind", KINDS)
def test_without_a_rate_the_same_run_passes_the_limit(kind, tmp_path):
    """The counting above can fail: unpaced, every request lands in one window."""
    host = _Host(FakeTime())
    with host.server:
        records, errors = _fetch_all(kind, host, tmp_path, None)
    assert errors.is_empty() and records.height == REPOS
    assert _busiest(host.stamps, RATE.per) == 2 * REPOS > RATE.requests
    assert host.fake.slept == []


class _Limited:
    """A host whose first answer to ``/xrpc/a`` is a 429 asking for 30 seconds."""

    def __init__(self, fake: FakeTime) -> None:
        self.fake = fake
        self.seen: list[tuple[str, float]] = []
        self.server = LoopbackServer(self._route)

    def _route(self, path: str) -> Reply:
        first = not self.seen
        self.seen.append((path, self.fake.peek()))
        json_type = {"content-type": "application/json"}
        if first:
            return 429, {**json_type, "retry-after": "30"}, b'{"error": "RateLimitExceeded"}'
        return 200, json_type, b"{}"


def _ask(server: LoopbackServer, path: str) -> Any:
    return get_json(server.url + path, host="127.0.0.1", max_bytes=1024, policy=RetryPolicy())


def test_a_429_pauses_the_host_for_every_thread():
    fake = FakeTime()
    host = _Limited(fake)
    limits = HostLimits(2, clock=fake.clock, sleep=fake.sleep)
    limited, second_done = threading.Event(), threading.Event()
    answers: dict[str, int] = {}

    def a_backoff(seconds: float) -> None:  # the first flow's own wait: until the second is in
        assert seconds == 30.0
        limited.set()
        assert second_done.wait(WAIT), "the second request never finished"

    def never(seconds: float) -> None:
        raise AssertionError("the second flow was never limited itself")

    def first(http: httpx.Client) -> None:
        answers["a"] = run_sync(_ask(host.server, "/xrpc/a"), http, NoDns(), limits=limits,
                                sleep=a_backoff).status

    def second(http: httpx.Client) -> None:
        assert limited.wait(WAIT), "the first request was never limited"
        answers["b"] = run_sync(_ask(host.server, "/xrpc/b"), http, NoDns(), limits=limits,
                                sleep=never).status
        second_done.set()

    with host.server, httpx.Client(transport=LoopbackTransport(), trust_env=False) as http:
        threads = [threading.Thread(target=f, args=(http,)) for f in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 2)
    assert answers == {"a": 200, "b": 200}
    # the second request waited out the pause the first was given, on the limits' clock
    assert host.seen == [("/xrpc/a", 0.0), ("/xrpc/b", 30.0), ("/xrpc/a", 30.0)]
    assert fake.slept == [30.0]


def test_a_429_pauses_the_host_for_every_task():
    fake = FakeTime()
    host = _Limited(fake)

    async def go() -> dict[str, int]:
        limits = AsyncHostLimits(2, clock=fake.clock, sleep=fake.asleep)
        limited, second_done = asyncio.Event(), asyncio.Event()

        async def a_backoff(seconds: float) -> None:
            assert seconds == 30.0
            limited.set()
            await asyncio.wait_for(second_done.wait(), WAIT)

        async def never(seconds: float) -> None:
            raise AssertionError("the second flow was never limited itself")

        async with httpx.AsyncClient(transport=AsyncLoopbackTransport(),
                                     trust_env=False) as http:
            async def first() -> int:
                response = await run_async(_ask(host.server, "/xrpc/a"), http, AsyncNoDns(),
                                           limits=limits, sleep=a_backoff)
                return response.status

            async def second() -> int:
                await asyncio.wait_for(limited.wait(), WAIT)
                response = await run_async(_ask(host.server, "/xrpc/b"), http, AsyncNoDns(),
                                           limits=limits, sleep=never)
                second_done.set()
                return response.status

            a, b = await asyncio.gather(first(), second())
            return {"a": a, "b": b}

    with host.server:
        assert asyncio.run(go()) == {"a": 200, "b": 200}
    assert host.seen == [("/xrpc/a", 0.0), ("/xrpc/b", 30.0), ("/xrpc/a", 30.0)]
    assert fake.slept == [30.0]
