"""Drivers: perform the effects a flow yields, with httpx and dnspython.

:func:`run_sync` and :func:`run_async` are the same loop (STYLE.md sec. 4.1): start the flow,
perform each effect, send the result back or throw the failure in, and return the flow's
value. They differ only in ``await``; everything else (bounding bodies, mapping errors,
stepping the generator) is shared.

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
* A :class:`Sleep` is ``time.sleep`` / ``asyncio.sleep``; the flow gets None back.
* Every httpx failure becomes a :class:`~atrepo.errors.TransportError` naming the URL and
  chaining the httpx exception; every DNS failure becomes a ``DnsFailure``. Both are thrown
  into the flow, which falls back or raises an ``AtrepoError``.
* DNS goes through the small :class:`DnsResolver` / :class:`AsyncDnsResolver` protocols so
  tests can inject fakes; the default implementations wrap dnspython.
* With a :class:`HostLimits` (threads) or :class:`AsyncHostLimits` (tasks), at most
  ``per_host`` HTTP effects are in flight to one origin (scheme, host, port) at a time,
  however many flows share it: a PDS is somebody's server, and a bulk call over thousands of
  repositories mostly hits a handful of hosts. Only the request holds the slot, from
  sending to the end of its body; a :class:`Sleep` (a retry's backoff) holds none. A
  redirect counts against the origin first asked.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, Generic, Protocol, TypeAlias, TypeVar

import dns.exception as dns_exception
import dns.resolver as dns_resolver
import httpx

from .._flows.effects import (
    DnsAnswer,
    DnsFailure,
    ERROR_BODY_MAX,
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

if TYPE_CHECKING:
    import asyncio

    import dns.asyncresolver as dns_asyncresolver

__all__ = [
    "AsyncDnsResolver",
    "AsyncHostLimits",
    "AsyncSystemDnsResolver",
    "DnsResolver",
    "HostLimits",
    "SystemDnsResolver",
    "run_async",
    "run_sync",
]

T = TypeVar("T")
Outcome: TypeAlias = Result | TransportError | DnsFailure

DEFAULT_DNS_TIMEOUT: Final = 10.0  # seconds for one TXT lookup, all retries included
_REASON_MAX: Final = 200
_HTTPX_ERRORS: Final = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


# -- DNS -----------------------------------------------------------------------------------


class DnsResolver(Protocol):
    """Looks up TXT records; raises :class:`DnsFailure` when there are none to give."""

    def txt(self, name: str) -> Sequence[str]:
        """Return the TXT records of ``name``, one string each."""
        ...


class AsyncDnsResolver(Protocol):
    """The ``async`` twin of :class:`DnsResolver`."""

    async def txt(self, name: str) -> Sequence[str]:
        """Return the TXT records of ``name``, one string each."""
        ...


class SystemDnsResolver:
    """:class:`DnsResolver` over dnspython's stub resolver (the system's nameservers).

    Args:
        timeout: seconds allowed for one lookup, retries included.
        resolver: a configured ``dns.resolver.Resolver``; by default one reading the system
            configuration is created on first use.
    """

    def __init__(self, *, timeout: float = DEFAULT_DNS_TIMEOUT,
                 resolver: dns_resolver.Resolver | None = None) -> None:
        self._timeout = timeout
        self._resolver = resolver

    def txt(self, name: str) -> list[str]:
        """Return the TXT records of ``name``.

        Raises:
            DnsFailure: NXDOMAIN, no TXT records, timeout, no nameserver, no configuration.
        """
        try:
            if self._resolver is None:
                self._resolver = dns_resolver.Resolver()  # reads /etc/resolv.conf
            answer = self._resolver.resolve(name, "TXT", lifetime=self._timeout, search=False)
        except (dns_exception.DNSException, OSError) as exc:
            raise DnsFailure(name, _dns_reason(exc)) from exc
        return _txt_strings(answer)


class AsyncSystemDnsResolver:
    """:class:`AsyncDnsResolver` over ``dns.asyncresolver`` (the system's nameservers).

    Args:
        timeout: seconds allowed for one lookup, retries included.
        resolver: a configured ``dns.asyncresolver.Resolver``; by default one reading the
            system configuration is created on first use.
    """

    def __init__(self, *, timeout: float = DEFAULT_DNS_TIMEOUT,
                 resolver: dns_asyncresolver.Resolver | None = None) -> None:
        self._timeout = timeout
        self._resolver = resolver

    async def txt(self, name: str) -> list[str]:
        """Return the TXT records of ``name``.

        Raises:
            DnsFailure: NXDOMAIN, no TXT records, timeout, no nameserver, no configuration.
        """
        import dns.asyncresolver as dns_asyncresolver  # imports asyncio: keep it off sync paths

        try:
            if self._resolver is None:
                self._resolver = dns_asyncresolver.Resolver()
            answer = await self._resolver.resolve(name, "TXT", lifetime=self._timeout,
                                                  search=False)
        except (dns_exception.DNSException, OSError) as exc:
            raise DnsFailure(name, _dns_reason(exc)) from exc
        return _txt_strings(answer)


def _txt_strings(answer: dns_resolver.Answer) -> list[str]:
    """Return each TXT record of ``answer`` as one string (its character-strings joined)."""
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]


def _dns_reason(exc: Exception) -> str:
    """Return a short reason for a DNS failure, for error messages."""
    if isinstance(exc, dns_resolver.NXDOMAIN):
        return "NXDOMAIN"
    if isinstance(exc, dns_resolver.NoAnswer):
        return "no TXT records"
    if isinstance(exc, dns_exception.Timeout):
        return "timeout"
    if isinstance(exc, dns_resolver.NoNameservers):
        return "no nameserver answered"
    return type(exc).__name__


# -- per-host limits -----------------------------------------------------------------------


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


# -- HTTP ----------------------------------------------------------------------------------


class _Body:
    """Collects a response body under the effect's ``max_bytes`` and an optional deadline."""

    def __init__(self, effect: HttpGet, total_timeout: float | None) -> None:
        self._effect = effect
        self._total_timeout = total_timeout
        self._deadline = None if total_timeout is None else time.monotonic() + total_timeout
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
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise TransportError("response too slow", url=self._effect.url,
                                 total_timeout=self._total_timeout)
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

    def __init__(self, effect: HttpDownload, total_timeout: float | None) -> None:
        self._effect = effect
        self._total_timeout = total_timeout
        self._deadline = None if total_timeout is None else time.monotonic() + total_timeout
        self._error_body = _Body(HttpGet(effect.url, max_bytes=ERROR_BODY_MAX), total_timeout)
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
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise TransportError("response too slow", url=self._effect.url,
                                 total_timeout=self._total_timeout)
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


def _sink(effect: HttpGet | HttpDownload, total_timeout: float | None) -> _Body | _Download:
    """Where a response body goes: memory (HttpGet) or the effect's file (HttpDownload)."""
    if isinstance(effect, HttpGet):
        return _Body(effect, total_timeout)
    return _Download(effect, total_timeout)


def _fetch_sync(http: httpx.Client, effect: HttpGet | HttpDownload,
                total_timeout: float | None) -> HttpResponse | TransportError:
    """GET the effect's URL into its sink; a failure is returned (to be thrown), not raised."""
    sink = _sink(effect, total_timeout)
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
                       total_timeout: float | None) -> HttpResponse | TransportError:
    """_fetch_sync with httpx.AsyncClient."""
    sink = _sink(effect, total_timeout)
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


def _perform_sync(effect: Effect, http: httpx.Client, dns: DnsResolver,
                  total_timeout: float | None, limits: HostLimits | None) -> Outcome:
    """Perform one effect; return its result, or the failure to throw into the flow."""
    if isinstance(effect, (HttpGet, HttpDownload)):
        with limits.slot(effect.url) if limits else contextlib.nullcontext():
            return _fetch_sync(http, effect, total_timeout)
    if isinstance(effect, Sleep):
        time.sleep(max(0.0, effect.seconds))
        return None
    if isinstance(effect, DnsTxt):
        try:
            return DnsAnswer(tuple(dns.txt(effect.name)))
        except DnsFailure as exc:
            return exc
    raise TypeError(f"unknown effect {effect!r}")


async def _perform_async(effect: Effect, http: httpx.AsyncClient, dns: AsyncDnsResolver,
                         total_timeout: float | None, limits: AsyncHostLimits | None) -> Outcome:
    """Perform one effect; return its result, or the failure to throw into the flow."""
    if isinstance(effect, (HttpGet, HttpDownload)):
        async with limits.slot(effect.url) if limits else contextlib.nullcontext():
            return await _fetch_async(http, effect, total_timeout)
    if isinstance(effect, Sleep):
        import asyncio  # keeps asyncio off sync paths

        await asyncio.sleep(max(0.0, effect.seconds))
        return None
    if isinstance(effect, DnsTxt):
        try:
            return DnsAnswer(tuple(await dns.txt(effect.name)))
        except DnsFailure as exc:
            return exc
    raise TypeError(f"unknown effect {effect!r}")


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
             total_timeout: float | None = None, limits: HostLimits | None = None) -> T:
    """Run ``flow`` to completion, performing its effects with ``http`` and ``dns``.

    Args:
        flow: the flow, not yet started.
        http: the client for HTTP effects (its timeouts and limits apply).
        dns: the resolver for DNS effects.
        total_timeout: seconds allowed for one HTTP response body, or None for no limit
            beyond ``http``'s own timeouts (which bound each read, not the whole body).
        limits: the per-host request limits shared with the other threads of the same
            client, or None for none.

    Returns:
        The flow's return value.

    Raises:
        AtrepoError: whatever the flow raises, including a TransportError it did not catch.
    """
    stepper = _Stepper(flow)
    try:
        effect = stepper.start()
        while effect is not None:
            effect = stepper.advance(_perform_sync(effect, http, dns, total_timeout, limits))
        return stepper.value
    finally:
        flow.close()


async def run_async(flow: Flow[T], http: httpx.AsyncClient, dns: AsyncDnsResolver, *,
                    total_timeout: float | None = None,
                    limits: AsyncHostLimits | None = None) -> T:
    """Run ``flow`` to completion: :func:`run_sync` with ``await``.

    Args:
        flow: the flow, not yet started.
        http: the async client for HTTP effects.
        dns: the async resolver for DNS effects.
        total_timeout: seconds allowed for one HTTP response body, or None.
        limits: the per-host request limits shared with the other tasks of the same
            client, or None for none.

    Returns:
        The flow's return value.

    Raises:
        AtrepoError: whatever the flow raises, including a TransportError it did not catch.
    """
    stepper = _Stepper(flow)
    try:
        effect = stepper.start()
        while effect is not None:
            effect = stepper.advance(
                await _perform_async(effect, http, dns, total_timeout, limits))
        return stepper.value
    finally:
        flow.close()
