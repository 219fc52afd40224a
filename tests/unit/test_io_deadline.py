"""Whole-response deadlines (:mod:`atrepo._io.deadline`), with fake clocks and fake streams."""

from __future__ import annotations

import asyncio
from typing import Any

import httpcore
import httpx
import pytest

from atrepo._io.deadline import Deadline, _AsyncBackend, _Backend, _cap, _Stream, guard, within
from atrepo.errors import TransportError

URL = "https://pds.test/x"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStream(httpcore.NetworkStream):
    """Records the timeout of every read; each read takes one second on ``clock``."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.timeouts: list[float | None] = []

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.timeouts.append(timeout)
        self.clock.now += 1.0
        return b"x"


def test_deadline_counts_down_on_its_clock():
    clock = FakeClock()
    deadline = Deadline(URL, 2.5, clock)
    assert deadline.remaining() == 2.5 and not deadline.passed()
    deadline.check()
    clock.now += 3.0
    assert deadline.passed()
    with pytest.raises(TransportError, match="response too slow") as info:
        deadline.check()
    assert info.value.url == URL and info.value.fields["total_timeout"] == 2.5
    assert Deadline(URL, None, clock).remaining() is None


def test_every_read_waits_at_most_until_the_deadline():
    clock = FakeClock()
    inner = FakeStream(clock)
    stream = _Stream(inner)
    with within(Deadline(URL, 2.5, clock)):
        assert stream.read(1, timeout=30.0) == b"x"  # 2.5 s left: capped
        assert stream.read(1, timeout=1.0) == b"x"   # 1.5 s left: its own timeout is less
        assert stream.read(1, timeout=None) == b"x"  # 0.5 s left
        with pytest.raises(httpcore.ReadTimeout):    # nothing left: fails before reading
            stream.read(1, timeout=30.0)
    assert inner.timeouts == [2.5, 1.0, 0.5]
    assert stream.read(1, timeout=30.0) == b"x"      # outside a request: its own timeout
    assert inner.timeouts[-1] == 30.0


def test_guard_wraps_each_pool_once_and_leaves_other_transports_alone():
    with httpx.Client() as http:
        guard(http)
        backend = http._transport._pool._network_backend  # type: ignore[attr-defined]
        assert isinstance(backend, _Backend)
        guard(http)
        assert http._transport._pool._network_backend is backend  # type: ignore[attr-defined]
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=mock) as http:
        guard(http)  # no pool: nothing to wrap
        assert http._transport is mock


def test_guard_wraps_async_pools():
    async def go() -> Any:
        async with httpx.AsyncClient() as http:
            guard(http)
            return http._transport._pool._network_backend  # type: ignore[attr-defined]

    assert isinstance(asyncio.run(go()), _AsyncBackend)


def test_each_task_sees_its_own_request_deadline():
    clock = FakeClock()
    seen: dict[str, float | None] = {}

    async def request(name: str, total: float) -> None:
        with within(Deadline(URL, total, clock)):
            await asyncio.sleep(0)  # the other task runs here, inside its own deadline
            seen[name] = _cap(None, httpcore.ReadTimeout)

    async def go() -> None:
        await asyncio.gather(request("a", 1.0), request("b", 5.0))

    asyncio.run(go())
    assert seen == {"a": 1.0, "b": 5.0}
