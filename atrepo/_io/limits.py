"""Per-host limits: at most ``per_host`` HTTP requests in flight to one origin.

A PDS is somebody's server, and a bulk call over thousands of repositories mostly hits a
handful of hosts. With a :class:`HostLimits` (threads) or :class:`AsyncHostLimits` (tasks),
the drivers in :mod:`atrepo._io.http` hold an origin's slot (scheme, host, port) from sending
a request to the end of its body, however many flows share the origin. A
:class:`~atrepo._flows.effects.Sleep` (a retry's backoff) holds none, and a redirect counts
against the origin first asked.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncHostLimits", "HostLimits"]


def _origin(url: str) -> str:
    """Return ``scheme://host:port`` of ``url`` (default ports spelled out)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url  # a slot of its own; the request then fails with a TransportError
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return f"{parsed.scheme}://{parsed.host}:{port}"


class HostLimits:
    """At most ``per_host`` HTTP requests in flight to one origin, across threads.

    One per :class:`~atrepo.Client`, shared by all its threads. It keeps a semaphore per
    origin ever asked, a few hundred bytes each.
    """

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    def slot(self, url: str) -> threading.BoundedSemaphore:
        """Return the semaphore of ``url``'s origin; hold it for the whole request."""
        origin = _origin(url)
        with self._lock:
            slot = self._slots.get(origin)
            if slot is None:
                slot = self._slots[origin] = threading.BoundedSemaphore(self.per_host)
            return slot


class AsyncHostLimits:
    """:class:`HostLimits` for the tasks of one event loop (one per AsyncClient)."""

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._slots: dict[str, asyncio.Semaphore] = {}

    def slot(self, url: str) -> asyncio.Semaphore:
        """Return the semaphore of ``url``'s origin; hold it for the whole request."""
        import asyncio  # keeps asyncio off sync paths

        origin = _origin(url)
        slot = self._slots.get(origin)
        if slot is None:  # no await in between: tasks of one loop cannot race here
            slot = self._slots[origin] = asyncio.Semaphore(self.per_host)
        return slot
