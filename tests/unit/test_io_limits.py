"""Per-host limits (:mod:`atrepo._io.limits`) under the drivers: what holds a slot, per origin.

Flows run at once, in threads (sync driver) or tasks (async driver), against
``httpx.MockTransport`` handlers. Order is forced with events: a fake ``sleep`` that waits
for another flow's request, and a barrier that only opens when requests are in flight
together. A deadlock (a slot held when it must not be) ends in a broken event or barrier,
never in a hang.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from atrepo._flows.effects import DnsFailure, Flow, HttpGet, Sleep
from atrepo._io.http import run_async, run_sync
from atrepo._io.limits import AsyncHostLimits, HostLimits
from atrepo.errors import TransportError

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
    assert limits.slot("https://pds.test/xrpc/a") is limits.slot("https://PDS.test:443/b")
    assert limits.slot("https://pds.test/") is not limits.slot("http://pds.test/")
    assert limits.slot("http://pds.test:8080/") is not limits.slot("http://pds.test/")


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
