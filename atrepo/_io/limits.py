"""Per-host politeness: requests in flight, a request rate, and pauses, shared by all tasks.

A PDS is somebody's server, and a bulk call over thousands of repositories mostly hits a
handful of hosts. With a :class:`HostLimits` (threads) or :class:`AsyncHostLimits` (tasks),
the drivers in :mod:`atrepo._io.http` send every HTTP request through :meth:`~HostLimits.send`,
which, per origin (scheme, host, port), however many flows share it:

* holds one of ``per_host`` slots from before the request to the end of its body;
* waits, holding the slot, for the origin's turn: a token of its
  :class:`~atrepo.retry.RateLimit` bucket, the end of a pause, the gap the host's
  ``RateLimit-*`` headers call for;
* reads the response for the origin's next turns: a 429 pauses the origin for every task,
  ``RateLimit-Remaining`` running low spreads the requests left until the reset.

What each of those means is decided by the pure functions of :mod:`atrepo._flows.pacing`;
the state they act on (:class:`_Pace`) is one class for both drivers, and the two limit
classes differ only in how they wait (``time.sleep`` or ``asyncio.sleep``, or the ``sleep``
given, with a ``clock`` to match, in tests). A :class:`~atrepo._flows.effects.Sleep` (a
retry's backoff) holds no slot and takes no token, and a redirect counts against the
origin first asked.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import httpx

from .._flows.effects import HttpResponse
from .._flows.pacing import advice, refill, response_time, token_wait
from ..retry import RateLimit, RetryPolicy

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncHostLimits", "HostLimits"]

S = TypeVar("S")
R = TypeVar("R")
Clock = Callable[[], float]


def _origin(url: str) -> str:
    """Return ``scheme://host:port`` of ``url`` (default ports spelled out)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url  # a slot of its own; the request then fails with a TransportError
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return f"{parsed.scheme}://{parsed.host}:{port}"


class _Pace:
    """One origin's pace: its token bucket, its pause and its gap. Callers hold a lock.

    Times are the limits' monotonic clock; the host's ``RateLimit-Reset`` (a Unix time) is
    turned into seconds from now before it gets here.
    """

    __slots__ = ("_gap", "_gap_until", "_last", "_paused_until", "_policy", "_rate", "_stamp",
                 "_strikes", "_tokens")

    def __init__(self, rate: RateLimit | None, policy: RetryPolicy, now: float) -> None:
        self._rate = rate
        self._policy = policy
        self._tokens = float(rate.capacity) if rate else 0.0
        self._stamp = now
        self._paused_until = -math.inf
        self._gap = 0.0
        self._gap_until = -math.inf
        self._last = -math.inf
        self._strikes = 0

    def turn(self, now: float) -> float:
        """Take the origin's turn at ``now`` (0.0), or return the seconds to wait first."""
        wait = self._paused_until - now
        if now < self._gap_until:
            wait = max(wait, self._last + self._gap - now)
        if self._rate is not None:
            self._tokens = refill(self._tokens, capacity=self._rate.capacity,
                                  rate=self._rate.rate, elapsed=now - self._stamp)
            self._stamp = now
            wait = max(wait, token_wait(self._tokens, rate=self._rate.rate))
        if wait > 0.0:
            return wait
        if self._rate is not None:
            self._tokens -= 1.0
        self._last = now
        return 0.0

    def observe(self, now: float, host_now: float, response: HttpResponse) -> None:
        """Take in what ``response`` (answered at ``now``) says about the origin's pace."""
        said = advice(self._policy, status=response.status, headers=dict(response.headers),
                      now=host_now, strikes=self._strikes)
        self._strikes = self._strikes + 1 if response.status == 429 else 0
        self._paused_until = max(self._paused_until, now + said.pause)
        if said.gap_for or now >= self._gap_until:  # the host said, or the old window ended
            self._gap, self._gap_until = said.gap, now + said.gap_for


class _Limits(Generic[S]):
    """The state both limit classes share: a slot and a :class:`_Pace` per origin."""

    def __init__(self, per_host: int, *, rate: RateLimit | None, policy: RetryPolicy,
                 clock: Clock, wall: Clock) -> None:
        self.per_host = per_host
        self.rate = rate
        self._policy = policy
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._origins: dict[str, tuple[S, _Pace]] = {}

    def _new_slot(self) -> S:
        raise NotImplementedError

    def _for(self, url: str) -> tuple[S, _Pace]:
        """Return the slot and pace of ``url``'s origin, made on first use."""
        origin = _origin(url)
        with self._lock:
            found = self._origins.get(origin)
            if found is None:
                found = self._origins[origin] = (self._new_slot(),
                                                 _Pace(self.rate, self._policy, self._clock()))
            return found

    def _turn(self, pace: _Pace) -> float:
        with self._lock:
            return pace.turn(self._clock())

    def _observe(self, pace: _Pace, outcome: object) -> None:
        if isinstance(outcome, HttpResponse):  # a TransportError says nothing of the pace
            host_now = response_time(dict(outcome.headers), self._wall())
            with self._lock:
                pace.observe(self._clock(), host_now, outcome)


class HostLimits(_Limits[threading.BoundedSemaphore]):
    """Per-origin politeness across threads; one per :class:`~atrepo.Client`.

    It keeps a semaphore and a few numbers per origin ever asked, a few hundred bytes each.

    Args:
        per_host: requests in flight to one origin at once.
        rate: the request rate per origin, or None for no rate limit (429 pauses and
            ``RateLimit-*`` headers are obeyed all the same).
        policy: bounds the pauses (``max_wait``) and the backoff of a 429 without a
            usable header.
        clock: monotonic seconds (a fake one in tests, with ``sleep`` to match).
        wall: Unix time, for ``RateLimit-Reset`` when a response has no ``Date``.
        sleep: waits for a turn.
    """

    def __init__(self, per_host: int, *, rate: RateLimit | None = None,
                 policy: RetryPolicy = RetryPolicy(), clock: Clock = time.monotonic,
                 wall: Clock = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(per_host, rate=rate, policy=policy, clock=clock, wall=wall)
        self._sleep = sleep

    def _new_slot(self) -> threading.BoundedSemaphore:
        return threading.BoundedSemaphore(self.per_host)

    def send(self, url: str, fetch: Callable[[], R]) -> R:
        """Return ``fetch()``, called in ``url``'s origin's slot and turn; learn from it."""
        slot, pace = self._for(url)
        with slot:
            while (wait := self._turn(pace)) > 0.0:
                self._sleep(wait)
            outcome = fetch()
            self._observe(pace, outcome)
            return outcome


class AsyncHostLimits(_Limits["asyncio.Semaphore"]):
    """:class:`HostLimits` for the tasks of one event loop (one per AsyncClient).

    Takes the same arguments; ``sleep`` is awaited (``asyncio.sleep`` by default).
    """

    def __init__(self, per_host: int, *, rate: RateLimit | None = None,
                 policy: RetryPolicy = RetryPolicy(), clock: Clock = time.monotonic,
                 wall: Clock = time.time,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        super().__init__(per_host, rate=rate, policy=policy, clock=clock, wall=wall)
        self._sleep = sleep

    def _new_slot(self) -> asyncio.Semaphore:
        import asyncio  # keeps asyncio off sync paths

        return asyncio.Semaphore(self.per_host)

    async def send(self, url: str, fetch: Callable[[], Awaitable[R]]) -> R:
        """:meth:`HostLimits.send` with ``await``."""
        import asyncio

        sleep = self._sleep or asyncio.sleep
        slot, pace = self._for(url)
        async with slot:
            while (wait := self._turn(pace)) > 0.0:
                await sleep(wait)
            outcome = await fetch()
            self._observe(pace, outcome)
            return outcome
