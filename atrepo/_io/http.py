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
* Bodies are read raw and decoded by :mod:`atrepo._io.decoding`, which counts every
  ``Content-Encoding`` layer's output as it is produced, so a compression bomb, stacked or
  not, is cut at ``max_bytes`` (or by its ratio) with a few pieces in memory.
* An :class:`HttpDownload` streams a 2xx body into its file; a download that fails for any
  reason (too large, too slow, connection lost, cancelled) deletes its partial file. A
  non-2xx download answers with the error body, capped at ``ERROR_BODY_MAX``, and leaves
  the file untouched. Errors writing the file itself (``OSError``) are not network
  failures: they propagate unchanged, since retrying cannot help.
* ``total_timeout`` bounds each whole response, connect and headers included
  (:mod:`atrepo._io.deadline`): past it the request ends in
  ``TransportError("response too slow")``.
* :func:`run_async` steps the flow in worker threads and performs only its effects on the
  event loop: what a flow does between effects (disk and CPU work) never blocks the loop.
* A :class:`Sleep` is ``time.sleep`` / ``asyncio.sleep`` (or the ``sleep`` given, in tests);
  the flow gets None back.
* A :class:`Gather` runs its flows with the same driver, at most its ``width`` at once:
  in a thread pool of that size (sync) or as tasks behind a semaphore (async, each flow
  still stepped off the loop); its flows share the client's per-host limits like any
  other. The flow that yielded it gets their values back, or the first failure thrown.
* Every httpx failure becomes a :class:`~atrepo.errors.TransportError` naming the URL and
  chaining the httpx exception; every DNS failure (:mod:`atrepo._io.dns`) becomes a
  ``DnsFailure``. Both are thrown into the flow, which falls back or raises an
  ``AtrepoError``.
* With per-host limits (:mod:`atrepo._io.limits`), an HTTP effect holds its origin's slot
  for the whole request and waits for the origin's turn (rate, pauses); its response tells
  the limits how the host wants to be paced. Nothing else holds a slot or takes a turn.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Generic, TypeAlias, TypeVar

import httpx

from .._flows.effects import (
    ERROR_BODY_MAX,
    DnsAnswer,
    DnsFailure,
    DnsTxt,
    Effect,
    Flow,
    Gather,
    HttpDownload,
    HttpGet,
    HttpResponse,
    Result,
    Sleep,
)
from .._warn import remember_caller
from ..errors import ResponseTooLarge, TransportError
from .deadline import Clock, Deadline, guard, within
from .decoding import ACCEPT_ENCODING, Decoder
from .dns import AsyncDnsResolver, DnsResolver
from .limits import AsyncHostLimits, HostLimits

__all__ = ["run_async", "run_sync"]

T = TypeVar("T")
Outcome: TypeAlias = Result | Exception  # a failure is thrown into the flow

_REASON_MAX: Final = 200
_HTTPX_ERRORS: Final = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


# -- body sinks ----------------------------------------------------------------------------


class _Sink:
    """Where one response goes: its status and headers checked, its body decoded and kept.

    The body arrives raw (still content-encoded) through :meth:`feed` and is decoded by a
    :class:`~atrepo._io.decoding.Decoder` under the cap that applies to the status: the
    effect's ``max_bytes`` for a 2xx body (strict: passing it fails the response), a
    truncation for an error body. Subclasses say what keeping a decoded piece means.
    """

    follow_redirects = True

    def __init__(self, url: str, deadline: Deadline) -> None:
        self.url = url
        self.deadline = deadline
        self._decoder: Decoder | None = None
        self._strict = True
        self._full = False

    def start(self, response: httpx.Response) -> None:
        """Check the status line and headers, before any body is read.

        Raises:
            TransportError: the response announces a body over its cap.
            httpx.DecodingError: a 2xx body in an encoding atrepo does not decode.
        """
        strict, cap = self._open(response)
        self._strict = strict
        declared = response.headers.get("content-length", "")
        if strict and declared.isascii() and declared.isdigit() and int(declared) > cap:
            raise ResponseTooLarge(self.url, max_bytes=cap)
        # an in-memory response (httpx.MockTransport) was decoded by httpx when it was made
        encoding = "" if response.is_stream_consumed else response.headers.get(
            "content-encoding", "")
        try:
            self._decoder = Decoder(encoding, url=self.url, max_bytes=cap, strict=strict)
        except httpx.DecodingError:
            if strict:
                raise
            self._full = True  # an error body atrepo cannot decode: its status is the answer

    def feed(self, raw: bytes) -> bool:
        """Decode and keep ``raw``; return False once a truncated body is full.

        An error body that does not decode ends where it stops decoding: flows only read
        its status and, when they can, its XRPC error.

        Raises:
            TransportError: the body passes its cap, or the deadline passed.
            httpx.DecodingError: a 2xx body is not what its encoding says.
        """
        self.deadline.check()
        if self._decoder is None or self._full:
            return False
        return self._keep_all(self._decoder.feed(raw))

    def response(self, response: httpx.Response) -> HttpResponse:
        """Finish the body (decoders flushed unless it was cut); return the answer."""
        if self._decoder is not None and not self._full:
            self._keep_all(self._decoder.flush())
        headers = {key.lower(): value for key, value in response.headers.items()}
        return HttpResponse(status=response.status_code, headers=headers, body=self._body(),
                            url=str(response.url))

    def _keep_all(self, pieces: Iterator[bytes]) -> bool:
        try:
            for piece in pieces:
                if not self._keep(piece):
                    self._full = True
                    return False
        except httpx.DecodingError:
            if self._strict:
                raise
            self._full = True
            return False
        return True

    def _open(self, response: httpx.Response) -> tuple[bool, int]:
        """Get ready for ``response``'s body; return (strict, cap) for it."""
        raise NotImplementedError

    def _keep(self, piece: bytes) -> bool:
        """Keep a decoded piece; False once a truncated body is full."""
        raise NotImplementedError

    def _body(self) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sink holds (see subclasses)."""


class _Body(_Sink):
    """Collects a body in memory: a 2xx body whole under ``max_bytes``, others truncated."""

    def __init__(self, effect: HttpGet, deadline: Deadline) -> None:
        super().__init__(effect.url, deadline)
        self._max_bytes = effect.max_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self.follow_redirects = effect.follow_redirects

    def _open(self, response: httpx.Response) -> tuple[bool, int]:
        self._strict = response.is_success
        return self._strict, self._max_bytes

    def _keep(self, piece: bytes) -> bool:
        room = self._max_bytes - self._size
        if len(piece) > room:
            if self._strict:
                raise ResponseTooLarge(self.url, max_bytes=self._max_bytes)
            piece = piece[:room]
        self._chunks.append(piece)
        self._size += len(piece)
        # a 2xx body is read to its end, so that one byte too many is noticed
        return self._strict or self._size < self._max_bytes

    def _body(self) -> bytes:
        return b"".join(self._chunks)


class _Download(_Sink):
    """Streams a 2xx body into the effect's file under ``max_bytes``.

    A non-2xx body goes to a :class:`_Body` capped at ``ERROR_BODY_MAX`` instead, and the
    file is not opened. :meth:`close` deletes the file unless :meth:`response` completed.
    """

    def __init__(self, effect: HttpDownload, deadline: Deadline) -> None:
        super().__init__(effect.url, deadline)
        self._effect = effect
        self._error_body = _Body(HttpGet(effect.url, max_bytes=ERROR_BODY_MAX), deadline)
        self._file: BinaryIO | None = None
        self._size = 0
        self._done = False

    def _open(self, response: httpx.Response) -> tuple[bool, int]:
        if not response.is_success:
            return self._error_body._open(response)
        self._file = open(self._effect.path, "wb")  # closed by close() or _body()
        return True, self._effect.max_bytes

    def _keep(self, piece: bytes) -> bool:
        if self._file is None:
            return self._error_body._keep(piece)
        self._size += len(piece)
        if self._size > self._effect.max_bytes:
            raise ResponseTooLarge(self.url, max_bytes=self._effect.max_bytes)
        self._file.write(piece)
        return True

    def _body(self) -> bytes:
        if self._file is None:
            return self._error_body._body()
        self._file.close()
        self._done = True
        return b""  # the data is in the file

    def close(self) -> None:
        """Close the file and, unless the download completed, delete it."""
        if self._file is None or self._done:
            return
        self._file.close()
        Path(self._effect.path).unlink(missing_ok=True)


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


def _failure(sink: _Sink, exc: Exception) -> TransportError:
    """The TransportError for an httpx failure: "response too slow" once past the deadline."""
    if isinstance(exc, httpx.TimeoutException) and sink.deadline.passed():
        failure = sink.deadline.error()
        failure.__cause__ = exc
        return failure
    return _transport_failure(sink.url, exc)


def _sink(effect: HttpGet | HttpDownload, total_timeout: float | None, clock: Clock) -> _Sink:
    """Where a response body goes: memory (HttpGet) or the effect's file (HttpDownload)."""
    deadline = Deadline(effect.url, total_timeout, clock)
    if isinstance(effect, HttpGet):
        return _Body(effect, deadline)
    return _Download(effect, deadline)


def _headers(effect: HttpGet | HttpDownload) -> dict[str, str]:
    """The request headers: only the encodings :mod:`.decoding` undoes, then the effect's."""
    return {"accept-encoding": ACCEPT_ENCODING, **dict(effect.headers)}


def _raw_sync(response: httpx.Response) -> Iterator[bytes]:
    """The body as it came off the wire (or, made in memory, as it was made)."""
    return iter((response.content,)) if response.is_stream_consumed else response.iter_raw()


async def _raw_async(response: httpx.Response) -> AsyncIterator[bytes]:
    """:func:`_raw_sync` for an async response."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for raw in response.aiter_raw():
        yield raw


def _fetch_sync(http: httpx.Client, effect: HttpGet | HttpDownload,
                total_timeout: float | None, clock: Clock) -> HttpResponse | TransportError:
    """GET the effect's URL into its sink; a failure is returned (to be thrown), not raised."""
    guard(http)
    sink = _sink(effect, total_timeout, clock)
    try:
        with within(sink.deadline), http.stream(
                "GET", effect.url, headers=_headers(effect),
                follow_redirects=sink.follow_redirects) as response:
            sink.start(response)
            for raw in _raw_sync(response):
                if not sink.feed(raw):
                    break
            return sink.response(response)
    except _HTTPX_ERRORS as exc:
        return _failure(sink, exc)
    except TransportError as exc:  # too large or too slow
        return exc
    finally:
        sink.close()


async def _fetch_async(http: httpx.AsyncClient, effect: HttpGet | HttpDownload,
                       total_timeout: float | None, clock: Clock) -> HttpResponse | TransportError:
    """_fetch_sync with httpx.AsyncClient."""
    guard(http)
    sink = _sink(effect, total_timeout, clock)
    try:
        with within(sink.deadline):
            async with http.stream("GET", effect.url, headers=_headers(effect),
                                   follow_redirects=sink.follow_redirects) as response:
                sink.start(response)
                async for raw in _raw_async(response):
                    if not sink.feed(raw):
                        break
                return sink.response(response)
    except _HTTPX_ERRORS as exc:
        return _failure(sink, exc)
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
            def fetch() -> HttpResponse | TransportError:
                return _fetch_sync(self.http, effect, self.total_timeout, self.clock)

            return self.limits.send(effect.url, fetch) if self.limits else fetch()
        if isinstance(effect, Sleep):
            self.sleep(max(0.0, effect.seconds))
            return None
        if isinstance(effect, DnsTxt):
            try:
                return DnsAnswer(tuple(self.dns.txt(effect.name)))
            except DnsFailure as exc:
                return exc
        if isinstance(effect, Gather):
            return self.gather(effect)
        raise TypeError(f"unknown effect {effect!r}")

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its end (see :func:`run_sync`)."""
        stepper = _Stepper(flow)
        try:
            effect = stepper.start()
            while effect is not None:
                effect = stepper.advance(self.perform(effect))
            return stepper.value
        finally:
            flow.close()

    def gather(self, effect: Gather) -> tuple[Any, ...] | Exception:
        """Run the flows of ``effect`` in threads, ``width`` at a time, each in a copy of
        this thread's context; their values, or the first failure."""
        flows = effect.flows
        pool = ThreadPoolExecutor(max_workers=max(1, min(effect.width, len(flows))),
                                  thread_name_prefix="atrepo-gather")
        futures = []
        try:
            futures = [pool.submit(contextvars.copy_context().run, self.run, flow)
                       for flow in flows]
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)   # the running ones end first
            _close_all(flows)
        return _gathered([None if f.cancelled() else f.exception() for f in futures],
                         lambda: tuple(f.result() for f in futures))


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
            def fetch() -> Awaitable[HttpResponse | TransportError]:
                return _fetch_async(self.http, effect, self.total_timeout, self.clock)

            return await (self.limits.send(effect.url, fetch) if self.limits else fetch())
        if isinstance(effect, Sleep):
            await self.sleep(max(0.0, effect.seconds))
            return None
        if isinstance(effect, DnsTxt):
            try:
                return DnsAnswer(tuple(await self.dns.txt(effect.name)))
            except DnsFailure as exc:
                return exc
        raise TypeError(f"unknown effect {effect!r}")  # a Gather is run's (its context)

    async def run(self, flow: Flow[T], context: contextvars.Context) -> T:
        """Run ``flow`` to its end, stepped in ``context`` off the loop (see
        :func:`run_async`)."""
        stepper = _Stepper(flow)
        try:
            effect = await _off_loop(context, stepper.start)
            while effect is not None:
                outcome = await (self.gather(effect, context) if isinstance(effect, Gather)
                                 else self.perform(effect))
                effect = await _off_loop(context, functools.partial(stepper.advance, outcome))
            return stepper.value
        finally:
            flow.close()

    async def gather(self, effect: Gather, context: contextvars.Context
                     ) -> tuple[Any, ...] | Exception:
        """Run the flows of ``effect`` as tasks, ``width`` at a time, each stepped in a copy
        of ``context``; their values, or the first failure. Once one failed, those still
        waiting for their turn never start and the running ones finish, as in the sync
        driver; cancelled, it cancels them and waits for them to end."""
        import asyncio  # keeps asyncio off sync paths

        gate = asyncio.Semaphore(max(1, effect.width))
        failed = False

        async def one(flow: Flow[Any]) -> Any:
            nonlocal failed
            async with gate:
                if failed:
                    return None  # never started: the Gather answers with a failure
                try:
                    return await self.run(flow, context.copy())
                except Exception:
                    failed = True
                    raise

        tasks = [asyncio.ensure_future(one(flow)) for flow in effect.flows]
        try:
            await asyncio.wait(tasks)
        except BaseException:   # cancelled (or interrupted): so are the flows
            for task in tasks:
                task.cancel()
            while not all(task.done() for task in tasks):
                try:
                    await asyncio.wait(tasks)
                except asyncio.CancelledError:
                    continue        # cancelled again: the running flows still have to end
            raise
        finally:
            _close_all(effect.flows)
        return _gathered([t.exception() for t in tasks],
                         lambda: tuple(t.result() for t in tasks))


def _close_all(flows: Sequence[Flow[Any]]) -> None:
    """Close every flow of a Gather (a no-op for those that ran to their end)."""
    for flow in flows:
        flow.close()


def _gathered(failures: Sequence[BaseException | None],
              values: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...] | Exception:
    """A Gather's answer: the first failure in order (to be thrown), else the values.

    Raises:
        BaseException: a flow ended in something that is not an ``Exception``
            (``KeyboardInterrupt``, ...): it goes on up, not into the flow.
    """
    for failure in failures:
        if failure is not None and not isinstance(failure, Exception):
            raise failure
    first = next((failure for failure in failures if failure is not None), None)
    return first if isinstance(first, Exception) else values()


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
    return _Sync(http, dns, total_timeout, limits, sleep, clock).run(flow)


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

    The flow itself is stepped in worker threads (see :func:`_off_loop`): only the
    effects run on the event loop.
    """
    context = contextvars.copy_context()  # one for the whole flow, as on a thread
    context.run(remember_caller)  # the flow's warnings name the awaiting user code
    return await _Async(http, dns, total_timeout, limits, sleep, clock).run(flow, context)


async def _off_loop(context: contextvars.Context, step: Callable[[], T]) -> T:
    """Return ``step()``, run in ``context`` in a worker thread of the running loop.

    A flow's local work between two effects (reading and checking a CAR, appending to the
    pack, walking the tree, file locks and fsyncs) runs there, so the event loop keeps
    serving other tasks. Cancelled, it still waits for the step to end, so the flow is
    never closed while it runs.
    """
    import asyncio  # keeps asyncio off sync paths

    running = asyncio.get_running_loop().run_in_executor(None, context.run, step)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        while not running.done():
            try:
                await asyncio.wait([running])
            except asyncio.CancelledError:
                continue  # cancelled again: the step still has to end first
        raise
