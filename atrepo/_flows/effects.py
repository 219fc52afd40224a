"""The effects flows yield, the values drivers send back, and the ``Flow`` type.

A flow is a generator in the style of httpx's ``auth_flow``: it yields an effect
(:class:`HttpGet`, :class:`HttpDownload`, :class:`DnsTxt`, :class:`Sleep` or
:class:`Gather`), and the driver in :mod:`atrepo._io.http` performs it and sends the result
back (:class:`HttpResponse`, :class:`DnsAnswer`, None after a :class:`Sleep`, the flows'
values after a :class:`Gather`). The flow's return value is the result of the whole
protocol step. Flows yield through :func:`expect` (or :func:`gather`), which checks that the
answer has the type the effect calls for.

Invariants:

* Effects and results are frozen values; nothing here performs I/O.
* A failed effect is *thrown into* the flow rather than sent: an HTTP failure (connection,
  timeout, oversized body) as :class:`atrepo.errors.TransportError`, a DNS failure as
  :class:`DnsFailure`. Flows that have a fallback catch them around the ``yield``.
* :class:`DnsFailure` is internal: flows must turn it into a ``ResolutionError`` or fall back,
  so it never reaches users.
* Non-2xx HTTP statuses are *not* failures: they arrive as an :class:`HttpResponse` and the
  flow decides what they mean.
* A :class:`Gather` is the only concurrency: independent flows (each request with its own
  retry loop) run side by side under the same driver, so the per-host limits bound them
  as they bound any request; a failure of one of them is thrown into the flow that
  yielded it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, TypeVar

__all__ = [
    "DEFAULT_DOWNLOAD_MAX_BYTES",
    "DEFAULT_MAX_BYTES",
    "DnsAnswer",
    "DnsFailure",
    "DnsTxt",
    "ERROR_BODY_MAX",
    "Effect",
    "Flow",
    "Gather",
    "HttpDownload",
    "HttpGet",
    "HttpResponse",
    "Result",
    "Sleep",
    "expect",
    "gather",
]

DEFAULT_MAX_BYTES: Final = 1 << 20  # 1 MiB: far above any real DID document or JSON reply
DEFAULT_DOWNLOAD_MAX_BYTES: Final = 4 << 30  # 4 GiB: above the largest real repositories
ERROR_BODY_MAX: Final = 64 * 1024  # a download's non-2xx body: enough for any XRPC error

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpGet:
    """Fetch a URL with GET.

    Attributes:
        url: absolute ``http(s)`` URL.
        headers: extra request headers as ``(name, value)`` pairs.
        max_bytes: hard cap on the (decoded) body of a 2xx response; a driver that reads
            more aborts the request and throws ``TransportError("response too large")``.
            Bodies of other statuses are truncated to this size instead.
        follow_redirects: whether the driver follows 3xx redirects (bounded by the client).
    """

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    follow_redirects: bool = True


@dataclass(frozen=True, slots=True)
class HttpDownload:
    """Fetch a URL with GET and stream a 2xx body into a file (redirects are followed).

    The driver answers with an :class:`HttpResponse` whose ``body`` is ``b""`` for a 2xx
    status (the data is in the file) and the error body, at most :data:`ERROR_BODY_MAX`
    bytes, for any other status (the file is then left untouched).

    Attributes:
        url: absolute ``http(s)`` URL.
        path: the file to create or truncate; a failed download leaves no file behind.
        headers: extra request headers as ``(name, value)`` pairs.
        max_bytes: hard cap on the *decoded* bytes written (so a compression bomb is cut
            short); a driver that would write more aborts, deletes the partial file and
            throws ``TransportError("response too large")``.
    """

    url: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    max_bytes: int = DEFAULT_DOWNLOAD_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before the next effect (a retry backoff); the driver sends back None.

    Attributes:
        seconds: how long to wait; zero or less means not at all.
    """

    seconds: float


@dataclass(frozen=True, slots=True)
class DnsTxt:
    """Look up the TXT records of a DNS name.

    Attributes:
        name: the fully qualified name, without a trailing dot.
    """

    name: str


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The answer to an :class:`HttpGet` or :class:`HttpDownload`, whatever its status.

    Attributes:
        status: the HTTP status code.
        headers: response headers, keys lowercased (repeated headers joined by ``", "``).
        body: the complete body, at most the request's ``max_bytes``.
        url: the final URL, after any redirects.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    body: bytes = b""
    url: str = ""

    @property
    def ok(self) -> bool:
        """Return True for a 2xx status."""
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The answer to a :class:`DnsTxt`.

    Attributes:
        texts: one string per TXT record, its character-strings concatenated.
    """

    texts: tuple[str, ...] = ()


class DnsFailure(Exception):
    """A DNS lookup failed (NXDOMAIN, no answer, timeout, no nameservers).

    Internal: drivers throw it into flows, and flows fall back or raise ``ResolutionError``.

    Attributes:
        name: the name that was looked up.
        reason: a short description, such as ``"NXDOMAIN"`` or ``"timeout"``.
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"DNS lookup failed; name={name}; reason={reason}")


@dataclass(frozen=True, slots=True)
class Gather:
    """Run independent flows side by side; the driver sends back their values, in order.

    At most ``width`` of them run at once (each request still waits for its host's slot
    and turn). When one fails, those not yet started are not started, the running ones
    are let finish, and the first failure, in the flows' order, is thrown into the flow
    that yielded the Gather. The driver closes every flow before it answers.

    Attributes:
        flows: the flows, not yet started.
        width: how many may run at once (at least 1).
    """

    flows: tuple[Generator[Any, Any, Any], ...]
    width: int


Effect: TypeAlias = HttpGet | HttpDownload | DnsTxt | Sleep | Gather
# None answers a Sleep, a tuple (the flows' values) a Gather
Result: TypeAlias = HttpResponse | DnsAnswer | tuple[Any, ...] | None
Flow: TypeAlias = Generator[Effect, Result, T]
A = TypeVar("A", HttpResponse, DnsAnswer)


def expect(effect: Effect, answer: type[A]) -> Flow[A]:
    """Yield ``effect`` and return the driver's answer, checked to be an ``answer``.

    Raises:
        TypeError: the driver sent something else (a driver bug, never bad input).

    Example:
        >>> flow = expect(DnsTxt("_atproto.alice.test"), DnsAnswer)
        >>> next(flow)
        DnsTxt(name='_atproto.alice.test')
        >>> try:
        ...     flow.send(DnsAnswer(("did=did:plc:x",)))
        ... except StopIteration as done:
        ...     print(done.value)
        DnsAnswer(texts=('did=did:plc:x',))
    """
    result = yield effect
    if not isinstance(result, answer):
        raise TypeError(f"driver answered a {type(effect).__name__} with "
                        f"{type(result).__name__}")
    return result


def gather(flows: Sequence[Flow[T]], width: int) -> Flow[list[T]]:
    """Run ``flows`` at most ``width`` at a time (see :class:`Gather`); return their values.

    With one flow, or ``width`` 1, they simply run one after another, no Gather yielded.

    Raises:
        Exception: the first failure of a flow, in order.
        TypeError: the driver answered the Gather with something else (a driver bug).

    Example:
        >>> def one(n):
        ...     yield Sleep(0)
        ...     return n
        >>> flow = gather([one(1), one(2)], width=2)
        >>> effect = next(flow)
        >>> type(effect).__name__, len(effect.flows), effect.width
        ('Gather', 2, 2)
        >>> try:
        ...     flow.send((1, 2))
        ... except StopIteration as done:
        ...     print(done.value)
        [1, 2]
    """
    if width <= 1 or len(flows) <= 1:
        values = []
        for flow in flows:
            values.append((yield from flow))
        return values
    result = yield Gather(tuple(flows), width)
    if not isinstance(result, tuple) or len(result) != len(flows):
        raise TypeError(f"driver answered a Gather of {len(flows)} flows with "
                        f"{type(result).__name__}")
    return list(result)
