"""XRPC plumbing as sans-IO flows: URLs, the one retry loop, and reading replies.

:func:`request` is the one retry loop: every XRPC call (the repository endpoints in
:mod:`atrepo._flows.repo`, the listings in :mod:`atrepo._flows.listing`) goes through it, so
each obeys the same :class:`~atrepo.retry.RetryPolicy` (429s waited out under their
own budget, transient failures backed off, everything else handed back to the caller).
:func:`xrpc_url` builds every XRPC URL the package asks for.

Rules followed (https://atproto.com/specs/xrpc):

* Query parameters are URL-encoded; a base URL's trailing ``/`` is ignored.
* Backoff jitter is a pure function of ``(url, attempt)`` (a SHA-256 hash), and "now" comes
  from the response's ``Date`` header (0 when absent), so a flow replays identically.
* An error body is read for its ``error`` and ``message`` only, whatever it holds: a
  malformed reply is a :class:`TransportError` naming the URL, never a ``KeyError`` or a
  pydantic error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, ValidationError

from ..errors import RateLimited, ResponseTooLarge, TransportError
from .effects import Flow, HttpDownload, HttpGet, HttpResponse, Sleep, expect
from ..retry import RetryPolicy
from .pacing import response_time
from .policy import ASKED_TOO_LONG, RETRY_STATUSES, WAITED_TOO_LONG, Decision, decide, retry_after

__all__ = [
    "JSON_HEADERS",
    "get_json",
    "host_of",
    "json_body",
    "malformed",
    "request",
    "unexpected",
    "validate",
    "xrpc_error",
    "xrpc_url",
]

JSON_HEADERS: Final = (("accept", "application/json"),)
_TEXT_MAX: Final = 200  # XRPC error names and messages kept for messages

M = TypeVar("M", bound=BaseModel)
_Request = HttpGet | HttpDownload


# -- URLs ----------------------------------------------------------------------------------


def xrpc_url(base: str, method: str, **params: str | int | None) -> str:
    """Return ``{base}/xrpc/{method}?{params}``, URL-encoded, leaving out None values.

    Example:
        >>> xrpc_url("https://pds.test/", "com.atproto.sync.getRepo", did="did:plc:x", since=None)
        'https://pds.test/xrpc/com.atproto.sync.getRepo?did=did%3Aplc%3Ax'
    """
    query = urlencode({key: value for key, value in params.items() if value is not None})
    url = f"{base.rstrip('/')}/xrpc/{method}"
    return f"{url}?{query}" if query else url


def host_of(base: str) -> str:
    """Return the host part of a base URL (for :class:`RateLimited`), or ``base`` itself.

    Example:
        >>> host_of("https://pds.test:8443/x")
        'pds.test:8443'
    """
    try:
        return urlsplit(base).netloc or base
    except ValueError:
        return base


# -- the retry loop ------------------------------------------------------------------------


def request(effect_factory: Callable[[], _Request], *, host: str,
            policy: RetryPolicy = RetryPolicy()) -> Flow[HttpResponse]:
    """Perform an HTTP effect, retrying per ``policy``; return the final response.

    Args:
        effect_factory: returns the :class:`HttpGet` or :class:`HttpDownload` to perform;
            called once per attempt.
        host: the host named in :class:`RateLimited`.
        policy: the retry budgets and delays.

    Returns:
        A flow whose value is the first response that retrying cannot change: a 2xx, or a
        non-retryable error status (4xx, 501, ...) for the caller to interpret.

    Raises:
        RateLimited: the host answered 429 more often than ``policy.rate_limit_retries``,
            asked to wait longer than ``policy.max_wait``, or the waits would pass
            ``policy.max_total_wait``; it names the host, what the host asked
            (``retry_after``) and which bound stopped us.
        TransportError: a body passed the effect's ``max_bytes`` (not retried: it would
            again), or transport failures or retryable statuses (5xx, 408, ...) outlasted
            ``policy.retries`` or ``policy.max_total_wait``; it names the URL and the last
            reason.
    """
    attempt = 0
    limited = 0
    waited = 0.0
    while True:
        effect = effect_factory()
        jitter = _jitter(effect.url, attempt + limited)
        try:
            response = yield from expect(effect, HttpResponse)
        except TransportError as exc:
            if isinstance(exc, ResponseTooLarge):
                raise  # the same body would be too large again
            decision = decide(policy, outcome="transport", status=None, headers={},
                              attempt=attempt, rate_limited_so_far=limited, now=0.0,
                              jitter=jitter, waited=waited)
            if not decision.retry:
                raise _exhausted(effect.url, _reason(exc), attempt, decision, policy,
                                 waited) from exc
        else:
            headers = dict(response.headers)
            now = response_time(headers, fallback=0.0)
            decision = decide(policy, outcome="status" if response.status >= 400 else "ok",
                              status=response.status, headers=headers, attempt=attempt,
                              rate_limited_so_far=limited, now=now, jitter=jitter,
                              waited=waited)
            if not decision.retry:
                return _final(response, decision, url=effect.url, host=host, now=now,
                              attempt=attempt, policy=policy, waited=waited)
        if decision.rate_limited:
            limited += 1
        else:
            attempt += 1
        waited += decision.delay
        yield Sleep(decision.delay)


def _final(response: HttpResponse, decision: Decision, *, url: str, host: str, now: float,
           attempt: int, policy: RetryPolicy, waited: float) -> HttpResponse:
    """Return ``response`` when retrying would not change it; raise when budgets ran out."""
    if decision.rate_limited:
        asked = retry_after(dict(response.headers), now)
        if decision.reason == ASKED_TOO_LONG:
            raise RateLimited("host asked to wait longer than max_wait", host=host,
                              retry_after=asked, url=url, max_wait=policy.max_wait)
        if decision.reason == WAITED_TOO_LONG:
            raise RateLimited("rate limited longer than max_total_wait", host=host,
                              retry_after=asked, url=url, waited=waited,
                              max_total_wait=policy.max_total_wait)
        raise RateLimited("rate limited too often", host=host, retry_after=asked, url=url)
    if response.status in RETRY_STATUSES:
        raise _exhausted(url, f"status {response.status}", attempt, decision, policy, waited)
    return response


def _exhausted(url: str, reason: str, attempt: int, decision: Decision, policy: RetryPolicy,
               waited: float) -> TransportError:
    if decision.reason == WAITED_TOO_LONG:
        return TransportError("request failed for longer than max_total_wait", url=url,
                              reason=reason, attempts=attempt + 1, waited=waited,
                              max_total_wait=policy.max_total_wait)
    return TransportError("request failed after retries", url=url, reason=reason,
                          attempts=attempt + 1)


def _reason(exc: TransportError) -> str:
    """Return the short reason of a thrown TransportError (its summary and cause)."""
    detail = exc.fields.get("reason")
    return f"{exc.message} ({detail})" if detail else exc.message


def _jitter(url: str, attempt: int) -> float:
    """Return a number in [0, 1) fixed by ``(url, attempt)``: replayable, yet spread out.

    Example:
        >>> _jitter("https://pds.test/x", 0) == _jitter("https://pds.test/x", 0)
        True
        >>> 0.0 <= _jitter("https://pds.test/x", 1) < 1.0
        True
    """
    digest = hashlib.sha256(f"{url}\n{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64




def get_json(url: str, *, host: str, max_bytes: int,
             policy: RetryPolicy) -> Flow[HttpResponse]:
    """GET ``url`` asking for JSON, through :func:`request`; return the final response."""
    effect = HttpGet(url, headers=JSON_HEADERS, max_bytes=max_bytes)
    return (yield from request(lambda: effect, host=host, policy=policy))


# -- reading replies -----------------------------------------------------------------------


def json_body(body: bytes) -> Any:
    """Return ``body`` parsed as JSON, or None when it is not JSON.

    Example:
        >>> json_body(b'{"did": "did:plc:x"}'), json_body(b"\\xff"), json_body(b"[" * 100_000)
        ({'did': 'did:plc:x'}, None, None)
    """
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return None


def xrpc_error(response: HttpResponse) -> tuple[str | None, str | None]:
    """Return the ``(error, message)`` of an XRPC error body; None for what is missing.

    Any body is accepted: non-JSON, wrong types, deep nesting or invalid UTF-8 give
    ``(None, None)`` rather than an exception, and long strings are cut for messages.

    Example:
        >>> xrpc_error(HttpResponse(400, body=b'{"error": "RepoNotFound", "message": "no"}'))
        ('RepoNotFound', 'no')
        >>> xrpc_error(HttpResponse(502, body=b"<html>Bad Gateway</html>"))
        (None, None)
    """
    obj = json_body(response.body)
    if not isinstance(obj, dict):
        return None, None
    return _text(obj.get("error")), _text(obj.get("message"))


def _text(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    text = " ".join(value.split())
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 3] + "..."


def unexpected(response: HttpResponse, url: str) -> TransportError:
    """Return the error for a non-2xx answer nothing else explains (URL, status, XRPC error)."""
    error, message = xrpc_error(response)
    return TransportError("unexpected response", url=url, http_status=response.status,
                          error=error, reason=message)


def malformed(what: str, url: str, host: str) -> TransportError:
    """Return the error for a 2xx reply to ``what`` whose body is not what the method says."""
    return TransportError(f"malformed {what} response", url=url, host=host)


def validate(model: type[M], response: HttpResponse, *, what: str, url: str,
             host: str) -> M:
    """Return ``response``'s JSON body validated as ``model``.

    Raises:
        TransportError: the body is not JSON or does not match ``model``.
    """
    try:
        return model.model_validate(json_body(response.body))
    except ValidationError as exc:
        raise malformed(what, url, host) from exc
