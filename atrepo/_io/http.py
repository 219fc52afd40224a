"""The drivers: perform the effects a flow yields, with httpx (and the DNS resolvers).

:func:`run_sync` and :func:`run_async` are the same loop: start the flow, perform each
effect, send the result back or throw the failure in, and return the flow's value. They
differ only in ``await``; everything else (bounding bodies, mapping errors, stepping the
generator) is shared.

Invariants:

* A body larger than the effect's ``max_bytes`` is never held: a 2xx response announcing
  more (``Content-Length``) or streaming more is aborted and
  ``TransportError("response too large")`` is thrown into the flow. Error bodies (non-2xx)
  are truncated to the cap instead, since flows only glance at them.
* An :class:`HttpDownload` streams a 2xx body into its file, counting the *decoded* bytes
  (httpx inflates gzip), so a compression bomb is cut at ``max_bytes``; a download that
  fails for any reason (too large, too slow, connection lost, cancelled) deletes its partial
  file. A non-2xx download answers with the error body, capped at ``ERROR_BODY_MAX``, and
  leaves the file untouched. Errors writing the file itself (``OSError``) are not network
  failures: they propagate unchanged, since retrying cannot help.
* A :class:`Sleep` is ``time.sleep`` / ``asyncio.sleep`` (or the ``sleep`` given, in tests);
  the flow gets None back.
* Every httpx failure becomes a :class:`~atrepo.errors.TransportError` naming the URL and
  chaining the httpx exception; every DNS failure (:mod:`atrepo._io.dns`) becomes a
  ``DnsFailure``. Both are thrown into the flow, which falls back or raises an
  ``AtrepoError``.
* With per-host limits (:mod:`atrepo._io.limits`), an HTTP effect holds its origin's slot
  for the whole request; nothing else does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Generic, TypeAlias, TypeVar

import httpx

from .._flows.effects import (
    ERROR_BODY_MAX,
    DnsAnswer,
    DnsFailure,
    DnsTxt,
    Effect,
    Flow,
    HttpDownload,
    HttpGet,
    HttpResponse,
    Result,
    Sleep,
)
from ..errors import ResponseTooLarge, TransportError
from .dns import AsyncDnsResolver, DnsResolver
from .limits import AsyncHostLimits, HostLimits

__all__ = ["run_async", "run_sync"]

T = TypeVar("T")
Outcome: TypeAlias = Result | TransportError | DnsFailure
Clock: TypeAlias = Callable[[], float]

_REASON_MAX: Final = 200
_HTTPX_ERRORS: Final = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


# -- body sinks ----------------------------------------------------------------------------


class _Deadline:
    """When one whole response must be done: ``total_timeout`` seconds on ``clock`` from now."""

    def __init__(self, url: str, total_timeout: float | None, clock: Clock) -> None:
        self._url = url
        self._total_timeout = total_timeout
        self._clock = clock
        self._at = None if total_timeout is None else clock() + total_timeout

    def check(self) -> None:
        """Return while time is left.

        Raises:
            TransportError: the deadline passed ("response too slow").
        """
        if self._at is not None and self._clock() > self._at:
            raise TransportError("response too slow", url=self._url,
                                 total_timeout=self._total_timeout)


class _Body:
    """Collects a response body under the effect's ``max_bytes`` and a deadline."""

    def __init__(self, effect: HttpGet, deadline: _Deadline) -> None:
        self._effect = effect
        self._deadline = deadline
        self._chunks: list[bytes] = []
        self._size = 0
        self._strict = True
        self.follow_redirects = effect.follow_redirects

    def start(self, response: httpx.Response) -> None:
        """Check the status line and headers before reading.

        Raises:
            TransportError: a 2xx response announces more than ``max_bytes``.
        """
        self._strict = response.is_success
        declared = response.headers.get("content-length", "")
        if self._strict and declared.isdigit() and int(declared) > self._effect.max_bytes:
            raise self._too_large()

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; return False once a truncated (non-2xx) body is full.

        Raises:
            TransportError: a 2xx body passes ``max_bytes``, or the deadline passed.
        """
        self._deadline.check()
        room = self._effect.max_bytes - self._size
        if len(chunk) > room:
            if self._strict:
                raise self._too_large()
            chunk = chunk[:room]
        self._chunks.append(chunk)
        self._size += len(chunk)
        # a 2xx body is read to its end, so that one byte too many is noticed
        return self._strict or self._size < self._effect.max_bytes

    def response(self, response: httpx.Response) -> HttpResponse:
        """Return the collected :class:`HttpResponse`."""
        headers = {key.lower(): value for key, value in response.headers.items()}
        return HttpResponse(status=response.status_code, headers=headers,
                            body=b"".join(self._chunks), url=str(response.url))

    def close(self) -> None:
        """Nothing to release: the body is in memory."""

    def _too_large(self) -> TransportError:
        return ResponseTooLarge(self._effect.url, max_bytes=self._effect.max_bytes)


class _Download:
    """Streams a 2xx body into the effect's file under ``max_bytes`` and the deadline.

    A non-2xx body goes to a :class:`_Body` capped at ``ERROR_BODY_MAX`` instead, and the
    file is not opened. :meth:`close` deletes the file unless :meth:`response` completed.
    """

    def __init__(self, effect: HttpDownload, deadline: _Deadline) -> None:
        self._effect = effect
        self._deadline = deadline
        self._error_body = _Body(HttpGet(effect.url, max_bytes=ERROR_BODY_MAX), deadline)
        self._file: BinaryIO | None = None
        self.follow_redirects = True
        self._size = 0
        self._done = False

    def start(self, response: httpx.Response) -> None:
        """Check the status line and headers; open the file for a 2xx response.

        Raises:
            TransportError: a 2xx response announces more than ``max_bytes``.
            OSError: the file cannot be created.
        """
        if not response.is_success:
            self._error_body.start(response)  # lenient for non-2xx: never raises
            return
        declared = response.headers.get("content-length", "")
        identity = response.headers.get("content-encoding", "identity") == "identity"
        if identity and declared.isdigit() and int(declared) > self._effect.max_bytes:
            raise self._too_large()
        self._file = open(self._effect.path, "wb")  # closed by close() or response()

    def add(self, chunk: bytes) -> bool:
        """Write (or, for an error body, keep) ``chunk``; False once an error body is full.

        Raises:
            TransportError: the decoded body passes ``max_bytes``, or the deadline passed.
            OSError: the file cannot be written.
        """
        if self._file is None:
            return self._error_body.add(chunk)
        self._deadline.check()
        self._size += len(chunk)
        if self._size > self._effect.max_bytes:
            raise self._too_large()
        self._file.write(chunk)
        return True

    def response(self, response: httpx.Response) -> HttpResponse:
        """Finish the file; return the :class:`HttpResponse` (``body=b""`` for 2xx)."""
        if self._file is None:
            return self._error_body.response(response)
        self._file.close()
        self._done = True
        headers = {key.lower(): value for key, value in response.headers.items()}
        return HttpResponse(status=response.status_code, headers=headers, body=b"",
                            url=str(response.url))

    def close(self) -> None:
        """Close the file and, unless the download completed, delete it."""
        if self._file is None or self._done:
            return
        self._file.close()
        Path(self._effect.path).unlink(missing_ok=True)

    def _too_large(self) -> TransportError:
        return ResponseTooLarge(self._effect.url, max_bytes=self._effect.max_bytes)


# -- fetching ------------------------------------------------------------------------------


def _transport_failure(url: str, exc: Exception) -> TransportError:
    """Return the TransportError for an httpx exception, with ``exc`` as its cause."""
    if isinstance(exc, httpx.TimeoutException):
        summary = "request timed out"
    elif isinstance(exc, httpx.ConnectError):
        summary = "connection failed"
    elif isinstance(exc, httpx.TooManyRedirects):
        summary = "too many redirects"
    elif isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        summary = "invalid URL"
    else:
        summary = "request failed"
    reason = " ".join(str(exc).split())[:_REASON_MAX] or type(exc).__name__
    failure = TransportError(summary, url=url, reason=reason)
    failure.__cause__ = exc  # as `raise failure from exc` would, though it is thrown, not raised
    return failure


def _sink(effect: HttpGet | HttpDownload, total_timeout: float | None,
          clock: Clock) -> _Body | _Download:
    """Where a response body goes: memory (HttpGet) or the effect's file (HttpDownload)."""
    deadline = _Deadline(effect.url, total_timeout, clock)
    if isinstance(effect, HttpGet):
        return _Body(effect, deadline)
    return _Download(effect, deadline)


def _fetch_sync(http: httpx.Client, effect: HttpGet | HttpDownload,
                total_timeout: float | None, clock: Clock) -> HttpResponse | TransportError:
    """GET the effect's URL into its sink; a failure is returned (to be thrown), not raised."""
    sink = _sink(effect, total_timeout, clock)
    try:
        with http.stream("GET", effect.url, headers=effect.headers,
                         follow_redirects=sink.follow_redirects) as response:
            sink.start(response)
            for chunk in response.iter_bytes():
                if not sink.add(chunk):
                    break
            return sink.response(response)
    except _HTTPX_ERRORS as exc:
        return _transport_failure(effect.url, exc)
    except TransportError as exc:  # too large or too slow
        return exc
    finally:
        sink.close()


async def _fetch_async(http: httpx.AsyncClient, effect: HttpGet | HttpDownload,
                       total_timeout: float | None, clock: Clock) -> HttpResponse | TransportError:
    """_fetch_sync with httpx.AsyncClient."""
    sink = _sink(effect, total_timeout, clock)
    try:
        async with http.stream("GET", effect.url, headers=effect.headers,
                               follow_redirects=sink.follow_redirects) as response:
            sink.start(response)
            async for chunk in response.aiter_bytes():
                if not sink.add(chunk):
                    break
            return sink.response(response)
    except _HTTPX_ERRORS as exc:
        return _transport_failure(effect.url, exc)
    except TransportError as exc:
        return exc
    finally:
        sink.close()  # also on cancellation: no partial file is left behind


# -- performing effects --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sync:
    """How the sync driver performs effects: one client's settings for one run."""

    http: httpx.Client
    dns: DnsResolver
    total_timeout: float | None
    limits: HostLimits | None
    sleep: Callable[[float], None]
    clock: Clock

    def perform(self, effect: Effect) -> Outcome:
        """Perform one effect; return its result, or the failure to throw into the flow."""
        if isinstance(effect, (HttpGet, HttpDownload)):
            with self.limits.slot(effect.url) if self.limits else contextlib.nullcontext():
                return _fetch_sync(self.http, effect, self.total_timeout, self.clock)
        if isinstance(effect, Sleep):
            self.sleep(max(0.0, effect.seconds))
            return None
        if isinstance(effect, DnsTxt):
            try:
                return DnsAnswer(tuple(self.dns.txt(effect.name)))
            except DnsFailure as exc:
                return exc
        raise TypeError(f"unknown effect {effect!r}")


@dataclass(frozen=True, slots=True)
class _Async:
    """:class:`_Sync` for the async driver."""

    http: httpx.AsyncClient
    dns: AsyncDnsResolver
    total_timeout: float | None
    limits: AsyncHostLimits | None
    sleep: Callable[[float], Awaitable[None]]
    clock: Clock

    async def perform(self, effect: Effect) -> Outcome:
        """Perform one effect; return its result, or the failure to throw into the flow."""
        if isinstance(effect, (HttpGet, HttpDownload)):
            async with self.limits.slot(effect.url) if self.limits else contextlib.nullcontext():
                return await _fetch_async(self.http, effect, self.total_timeout, self.clock)
        if isinstance(effect, Sleep):
            await self.sleep(max(0.0, effect.seconds))
            return None
        if isinstance(effect, DnsTxt):
            try:
                return DnsAnswer(tuple(await self.dns.txt(effect.name)))
            except DnsFailure as exc:
                return exc
        raise TypeError(f"unknown effect {effect!r}")


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio  # keeps asyncio off sync paths

    await asyncio.sleep(seconds)


class _Stepper(Generic[T]):
    """Steps a flow: sends results, throws failures, and keeps the flow's return value."""

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.value: T

    def start(self) -> Effect | None:
        """Run the flow to its first effect; None when it finished without one."""
        return self._step(lambda: next(self._flow))

    def advance(self, outcome: Outcome) -> Effect | None:
        """Hand ``outcome`` to the flow; return its next effect, or None when it finished."""
        if isinstance(outcome, Exception):
            return self._step(lambda: self._flow.throw(outcome))
        return self._step(lambda: self._flow.send(outcome))

    def _step(self, step: Callable[[], Effect]) -> Effect | None:
        try:
            return step()
        except StopIteration as done:
            self.value = done.value
            return None


def run_sync(flow: Flow[T], http: httpx.Client, dns: DnsResolver, *,
             total_timeout: float | None = None, limits: HostLimits | None = None,
             sleep: Callable[[float], None] = time.sleep,
             clock: Clock = time.monotonic) -> T:
    """Run ``flow`` to completion, performing its effects with ``http`` and ``dns``.

    Args:
        flow: the flow, not yet started.
        http: the client for HTTP effects (its timeouts and limits apply).
        dns: the resolver for DNS effects.
        total_timeout: seconds allowed for one HTTP response body, or None for no limit
            beyond ``http``'s own timeouts (which bound each read, not the whole body).
        limits: the per-host request limits shared with the other threads of the same
            client, or None for none.
        sleep: performs a :class:`Sleep` (a fake one in tests).
        clock: monotonic seconds, for ``total_timeout`` (a fake one in tests).

    Returns:
        The flow's return value.

    Raises:
        AtrepoError: whatever the flow raises, including a TransportError it did not catch.
    """
    driver = _Sync(http, dns, total_timeout, limits, sleep, clock)
    stepper = _Stepper(flow)
    try:
        effect = stepper.start()
        while effect is not None:
            effect = stepper.advance(driver.perform(effect))
        return stepper.value
    finally:
        flow.close()


async def run_async(flow: Flow[T], http: httpx.AsyncClient, dns: AsyncDnsResolver, *,
                    total_timeout: float | None = None,
                    limits: AsyncHostLimits | None = None,
                    sleep: Callable[[float], Awaitable[None]] = _asyncio_sleep,
                    clock: Clock = time.monotonic) -> T:
    """Run ``flow`` to completion: :func:`run_sync` with ``await``.

    Args:
        flow: the flow, not yet started.
        http: the async client for HTTP effects.
        dns: the async resolver for DNS effects.
        total_timeout: seconds allowed for one HTTP response body, or None.
        limits: the per-host request limits shared with the other tasks of the same
            client, or None for none.
        sleep: performs a :class:`Sleep` (``asyncio.sleep``; a fake one in tests).
        clock: monotonic seconds, for ``total_timeout`` (a fake one in tests).

    Returns:
        The flow's return value.

    Raises:
        AtrepoError: whatever the flow raises, including a TransportError it did not catch.
    """
    driver = _Async(http, dns, total_timeout, limits, sleep, clock)
    stepper = _Stepper(flow)
    try:
        effect = stepper.start()
        while effect is not None:
            effect = stepper.advance(await driver.perform(effect))
        return stepper.value
    finally:
        flow.close()
