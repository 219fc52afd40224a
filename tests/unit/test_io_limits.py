"""Per-host limits (:mod:`atrepo._io.limits`): what holds a slot, per origin, and the pace.

Flows run at once, in threads (sync driver) or tasks (async driver), against
``httpx.MockTransport`` handlers. Order is forced with events: a fake ``sleep`` that waits
for another flow's request, and a barrier that only opens when requests are in flight
together. A deadlock (a slot held when it must not be) ends in a broken event or barrier,
never in a hang. The pace (rate, 429 pauses, ``RateLimit-*`` hints) runs on a fake clock
that moves only when the limits sleep, so every wait is an exact number.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from atrepo._flows.effects import DnsFailure, Flow, HttpGet, HttpResponse, Sleep
from atrepo._io.http import run_async, run_sync
from atrepo._io.limits import AsyncHostLimits, HostLimits
from atrepo.errors import TransportError
from atrepo.retry import RateLimit, RetryPolicy

MODES = ["sync", "async"]
WAIT = 10.0  # seconds before a missing event counts as a deadlock


class _NoDns:
    def txt(self, name: str) -> Sequence[str]:
        raise DnsFailure(name, "no DNS here")


class _AsyncNoDns:
    async def txt(self, name: str) -> Sequence[str]:
        raise DnsFailure(name, "no DNS here")


def _drive(mode: str, flows: list[Flow[Any]], slots: int, handler: Callable[..., Any],
           sleeps: Sequence[Callable[[float], Any]] | None = None) -> list[Any]:
    """Run ``flows`` at once under one limit of ``slots`` per origin; ``sleeps[i]`` performs
    flow i's Sleep effects. ``handler`` is sync for threads and async for tasks."""
    transport = httpx.MockTransport(handler)
    if mode == "sync":
        limits = HostLimits(slots)
        results: list[Any] = [None] * len(flows)

        def one(i: int, http: httpx.Client) -> None:
            sleep = sleeps[i] if sleeps else (lambda seconds: None)
            results[i] = run_sync(flows[i], http, _NoDns(), limits=limits, sleep=sleep)

        with httpx.Client(transport=transport) as http:
            threads = [threading.Thread(target=one, args=(i, http)) for i in range(len(flows))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
        return results

    async def go() -> list[Any]:
        limits = AsyncHostLimits(slots)

        async def nap(seconds: float) -> None:
            return None

        async with httpx.AsyncClient(transport=transport) as http:
            runs = [run_async(flow, http, _AsyncNoDns(), limits=limits,
                              sleep=sleeps[i] if sleeps else nap)
                    for i, flow in enumerate(flows)]
            return list(await asyncio.gather(*runs))

    return asyncio.run(go())


def _get_then_sleep(url: str, marks: list[str], name: str) -> Flow[None]:
    yield HttpGet(url)
    marks.append(f"{name} got")
    yield Sleep(1.0)
    marks.append(f"{name} done")


def _sleep_then_get(url: str, marks: list[str], name: str) -> Flow[None]:
    yield Sleep(1.0)
    yield HttpGet(url)
    marks.append(f"{name} got")


@pytest.mark.parametrize("mode", MODES)
def test_backoff_sleep_holds_no_slot(mode):
    """With one slot, a request goes out while another flow sleeps between its requests.

    The first flow's sleep lasts until the second flow's request is answered; the second
    flow's sleep lasts until the first flow's request is answered. If a sleep held the
    slot, the second request could not go out and the first sleep would never end.
    """
    marks: list[str] = []
    if mode == "sync":
        first_got, second_got = threading.Event(), threading.Event()

        def handler(request: httpx.Request) -> httpx.Response:
            (first_got if request.url.path == "/a" else second_got).set()
            return httpx.Response(200)

        def first_sleep(seconds: float) -> None:
            assert second_got.wait(WAIT), "the second request never went out"

        def second_sleep(seconds: float) -> None:
            assert first_got.wait(WAIT), "the first request never went out"

        sleeps: list[Callable[[float], Any]] = [first_sleep, second_sleep]
        _drive(mode, [_get_then_sleep("https://pds.test/a", marks, "first"),
                      _sleep_then_get("https://pds.test/b", marks, "second")], 1, handler,
               sleeps)
    else:
        afirst, asecond = asyncio.Event(), asyncio.Event()

        async def ahandler(request: httpx.Request) -> httpx.Response:
            (afirst if request.url.path == "/a" else asecond).set()
            return httpx.Response(200)

        async def afirst_sleep(seconds: float) -> None:
            await asyncio.wait_for(asecond.wait(), WAIT)

        async def asecond_sleep(seconds: float) -> None:
            await asyncio.wait_for(afirst.wait(), WAIT)

        _drive(mode, [_get_then_sleep("https://pds.test/a", marks, "first"),
                      _sleep_then_get("https://pds.test/b", marks, "second")], 1, ahandler,
               [afirst_sleep, asecond_sleep])
    assert marks == ["first got", "second got", "first done"]


@pytest.mark.parametrize("mode", MODES)
def test_each_origin_has_its_own_slots(mode):
    """One slot per origin: two origins (two ports) are each asked at once."""
    asked: list[str] = []
    flows = [_get_then_sleep(url, [], "x") for url in ("http://pds.test:1/", "http://pds.test:2/")]
    if mode == "sync":
        gate = threading.Barrier(2, timeout=WAIT)  # both requests must be in flight together

        def handler(request: httpx.Request) -> httpx.Response:
            gate.wait()
            asked.append(str(request.url))
            return httpx.Response(200)

        _drive(mode, flows, 1, handler)
        assert not gate.broken
    else:
        agate = asyncio.Barrier(2)

        async def ahandler(request: httpx.Request) -> httpx.Response:
            await asyncio.wait_for(agate.wait(), WAIT)
            asked.append(str(request.url))
            return httpx.Response(200)

        _drive(mode, flows, 1, ahandler)
    assert sorted(asked) == ["http://pds.test:1/", "http://pds.test:2/"]


def test_origins_spell_out_default_ports():
    limits = HostLimits(1)
    assert limits._for("https://pds.test/xrpc/a") is limits._for("https://PDS.test:443/b")
    assert limits._for("https://pds.test/") is not limits._for("http://pds.test/")
    assert limits._for("http://pds.test:8080/") is not limits._for("http://pds.test/")


@pytest.mark.parametrize("mode", MODES)
def test_invalid_url_under_limits_is_a_transport_error(mode):
    def flow() -> Flow[str]:
        try:
            yield HttpGet("http://[::1/did.json")
        except TransportError as exc:
            return exc.message
        return "no error"

    async def ahandler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    handler = ahandler if mode == "async" else (lambda request: httpx.Response(200))
    assert _drive(mode, [flow()], 1, handler) == ["invalid URL"]


# -- pace: rate, pauses and hints, on a fake clock -------------------------------------------


class _FakeTime:
    """A clock that moves only when someone sleeps; each sleep is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _limits(fake: _FakeTime, rate: RateLimit | None = None) -> HostLimits:
    return HostLimits(4, rate=rate, policy=RetryPolicy(base_delay=1.0, max_delay=8.0,
                                                       max_wait=60.0),
                      clock=fake.clock, wall=lambda: 1_000.0 + fake.now, sleep=fake.sleep)


def _answer(status: int = 200, **headers: str) -> HttpResponse:
    return HttpResponse(status, {k.replace("_", "-"): v for k, v in headers.items()})


def test_rate_is_kept_per_origin():
    fake = _FakeTime()
    limits = _limits(fake, RateLimit(requests=10, per=1.0, burst=2))
    sent: list[tuple[str, float]] = []
    for i in range(30):
        url = "https://a.test/x" if i % 3 else "https://b.test/x"
        limits.send(url, lambda url=url: sent.append((url, fake.now)) or _answer())
    for origin in ("https://a.test/x", "https://b.test/x"):
        times = [t for url, t in sent if url == origin]
        assert times[:2] == [0.0, 0.0]  # the burst
        assert max(sum(1 for t in times if s <= t < s + 1.0) for s in times) <= 10
    a_times = [t for url, t in sent if url == "https://a.test/x"]
    assert a_times[-1] == pytest.approx((20 - 2) / 8.0)  # the rest at (10 - 2) per second


def test_429_pauses_its_origin_only():
    fake = _FakeTime()
    limits = _limits(fake)
    limits.send("https://a.test/1", lambda: _answer(429, retry_after="30"))
    limits.send("https://b.test/1", lambda: _answer())  # another origin: no wait
    assert fake.slept == []
    limits.send("https://a.test/2", lambda: _answer())
    assert fake.slept == [30.0] and fake.now == 30.0


def test_429_without_header_pauses_by_strikes_and_success_resets_them():
    fake = _FakeTime()
    limits = _limits(fake)
    for _ in range(3):
        limits.send("https://a.test/", lambda: _answer(429))
    limits.send("https://a.test/", lambda: _answer())
    limits.send("https://a.test/", lambda: _answer(429))
    limits.send("https://a.test/", lambda: _answer())
    assert fake.slept == [1.0, 2.0, 4.0, 1.0]


def test_a_pause_is_capped_at_max_wait():
    fake = _FakeTime()
    limits = _limits(fake)
    limits.send("https://a.test/", lambda: _answer(429, retry_after="999999"))
    limits.send("https://a.test/", lambda: _answer())
    assert fake.slept == [60.0]


def test_remaining_running_low_spreads_requests_until_the_reset():
    fake = _FakeTime()
    limits = _limits(fake)
    low = {"ratelimit_limit": "100", "ratelimit_remaining": "4", "ratelimit_reset": "1008"}
    limits.send("https://a.test/", lambda: _answer(**low))  # 4 left, 8 s to the reset
    sent = []
    for _ in range(3):
        limits.send("https://a.test/", lambda: sent.append(fake.now) or _answer())
    assert sent == [2.0, 4.0, 6.0]
    fake.now = 8.0  # the window is over: no gap
    limits.send("https://a.test/", lambda: sent.append(fake.now) or _answer())
    limits.send("https://a.test/", lambda: sent.append(fake.now) or _answer())
    assert sent[3:] == [8.0, 8.0]


def test_plenty_remaining_lifts_an_earlier_gap():
    fake = _FakeTime()
    limits = _limits(fake)
    limits.send("https://a.test/", lambda: _answer(ratelimit_limit="100",
                                                   ratelimit_remaining="4",
                                                   ratelimit_reset="1008"))
    limits.send("https://a.test/", lambda: _answer(ratelimit_limit="100",
                                                   ratelimit_remaining="90",
                                                   ratelimit_reset="1060"))
    limits.send("https://a.test/", lambda: _answer())
    assert fake.slept == [2.0]  # the second waited its gap; the third did not


def test_nothing_remaining_pauses_until_the_reset_by_the_hosts_date():
    fake = _FakeTime()
    limits = _limits(fake)
    # the host's clock says 2000, its reset 2012: 12 s, whatever the local wall clock says
    limits.send("https://a.test/", lambda: _answer(ratelimit_remaining="0",
                                                   ratelimit_reset="2012",
                                                   date="Thu, 01 Jan 1970 00:33:20 GMT"))
    limits.send("https://a.test/", lambda: _answer())
    assert fake.slept == [12.0]


def test_a_transport_failure_changes_no_pace():
    fake = _FakeTime()
    limits = _limits(fake)
    failure = TransportError("connection failed", url="https://a.test/")
    assert limits.send("https://a.test/", lambda: failure) is failure
    limits.send("https://a.test/", lambda: _answer())
    assert fake.slept == []


def test_async_limits_pace_the_same_way():
    fake = _FakeTime()

    async def nap(seconds: float) -> None:
        fake.sleep(seconds)

    limits = AsyncHostLimits(2, rate=RateLimit(requests=4, per=1.0, burst=1),
                             clock=fake.clock, sleep=nap)
    sent: list[float] = []

    async def answer(status: int = 200, **headers: str) -> HttpResponse:
        sent.append(fake.now)
        return _answer(status, **headers)

    async def go() -> None:
        await limits.send("https://a.test/", lambda: answer(429, retry_after="5"))
        for _ in range(3):
            await limits.send("https://a.test/", answer)

    asyncio.run(go())
    assert sent == [0.0, 5.0, pytest.approx(5.0 + 1 / 3), pytest.approx(5.0 + 2 / 3)]
