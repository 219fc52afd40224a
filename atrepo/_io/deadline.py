"""Whole-response deadlines: connect, headers and body of one request within one budget.

httpx's timeouts bound each network operation (a connect, one read), never the response:
a host that trickles its status line and headers one byte a second, each byte well within
the read timeout, holds a request forever. A :class:`Deadline` is the time one response
may take, and the drivers make every network operation of a request ask it how long it may
still wait, headers included:

* :func:`guard` wraps the network backend of a client's connection pools (httpcore's
  ``NetworkBackend``, the seam httpcore offers for this) in one that caps each connect,
  read and write at the time left on the current deadline;
* :func:`within` makes a deadline the current one for the request it surrounds (a
  ``contextvars`` variable: the sync driver's threads and the async driver's tasks each
  see their own request's deadline);
* once the time is up, the next operation fails at once with httpcore's timeout, which
  httpx raises as ``httpx.TimeoutException`` and the driver reports as
  ``TransportError("response too slow")``.

Transports without a connection pool (``httpx.MockTransport``, or one of the caller's
own) are left alone; the body sinks still check the deadline between chunks.
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeAlias

import httpcore
import httpx

from ..errors import TransportError

__all__ = ["Deadline", "guard", "within"]

Clock: TypeAlias = Callable[[], float]
SocketOptions: TypeAlias = Iterable[Any] | None

_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "atrepo_response_deadline", default=None)


class Deadline:
    """The moment one response must be done by: ``total`` seconds on ``clock`` from now.

    Args:
        url: the URL, for the error.
        total: seconds allowed, or None for no deadline.
        clock: monotonic seconds (``time.monotonic``; a fake in tests).
    """

    def __init__(self, url: str, total: float | None, clock: Clock = time.monotonic) -> None:
        self.url = url
        self.total = total
        self._clock = clock
        self._at = None if total is None else clock() + total

    def remaining(self) -> float | None:
        """Return the seconds left (at most 0), or None without a deadline."""
        return None if self._at is None else self._at - self._clock()

    def passed(self) -> bool:
        """Return True once the deadline has passed."""
        left = self.remaining()
        return left is not None and left <= 0

    def error(self) -> TransportError:
        """Return the TransportError that says the response took too long."""
        return TransportError("response too slow", url=self.url, total_timeout=self.total)

    def check(self) -> None:
        """Return while time is left.

        Raises:
            TransportError: the deadline passed ("response too slow").
        """
        if self.passed():
            raise self.error()


@contextlib.contextmanager
def within(deadline: Deadline) -> Iterator[None]:
    """Make ``deadline`` the current one for the network operations inside."""
    token = _current.set(deadline)
    try:
        yield
    finally:
        _current.reset(token)


def _cap(timeout: float | None, error: type[Exception]) -> float | None:
    """Return ``timeout`` capped at the current deadline's time left.

    Raises:
        error: the deadline has passed (one of httpcore's timeout exceptions).
    """
    deadline = _current.get()
    left = None if deadline is None else deadline.remaining()
    if left is None:
        return timeout
    if left <= 0:
        raise error("response deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A network stream whose every operation waits at most until the current deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._stream.start_tls(ssl_context, server_hostname,
                                              _cap(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AsyncStream(httpcore.AsyncNetworkStream):
    """:class:`_Stream` for the async backend."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, _cap(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, _cap(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._stream.start_tls(
            ssl_context, server_hostname, _cap(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """A network backend whose streams heed the current deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: SocketOptions = None) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_tcp(
            host, port, _cap(timeout, httpcore.ConnectTimeout), local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: SocketOptions = None) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_unix_socket(
            path, _cap(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    """:class:`_Backend` for the async pools."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: SocketOptions = None) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._backend.connect_tcp(
            host, port, _cap(timeout, httpcore.ConnectTimeout), local_address, socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: SocketOptions = None
                                  ) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._backend.connect_unix_socket(
            path, _cap(timeout, httpcore.ConnectTimeout), socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def guard(http: httpx.Client | httpx.AsyncClient) -> None:
    """Make the connection pools of ``http``'s transports heed the current deadline.

    Idempotent and cheap (a few attribute reads), so the drivers call it before every
    request. httpx does not let a transport's pool be given a network backend, so the
    pool's backend is wrapped where httpx keeps it; connections opened before the first
    call keep their unwrapped streams.
    """
    mounts: dict[Any, Any] = getattr(http, "_mounts", {})
    for transport in (getattr(http, "_transport", None), *mounts.values()):
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, (_Backend, _AsyncBackend)) or backend is None:
            continue
        if isinstance(backend, httpcore.NetworkBackend):
            typing.cast(Any, pool)._network_backend = _Backend(backend)
        elif isinstance(backend, httpcore.AsyncNetworkBackend):
            typing.cast(Any, pool)._network_backend = _AsyncBackend(backend)
