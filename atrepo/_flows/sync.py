"""Repository sync endpoints (``com.atproto.sync.*``) as sans-IO flows, with retries.

Each public flow yields :class:`HttpGet` / :class:`HttpDownload` effects, plus
:class:`Sleep` between retries; a driver in :mod:`atrepo._io.drivers` performs them.
:func:`request` is the one retry loop: every XRPC call below goes through it, so each obeys
the same :class:`~atrepo._flows.policy.RetryPolicy` (429s waited out under their own budget,
transient failures backed off, everything else handed back to the caller).

Rules followed (https://atproto.com/specs/sync, https://atproto.com/specs/xrpc):

* Query parameters are URL-encoded; a base URL's trailing ``/`` is ignored.
* Backoff jitter is a pure function of ``(url, attempt)`` (a SHA-256 hash), and "now" comes
  from the response's ``Date`` header (0 when absent), so a flow replays identically.
* A repository the host will not serve ends in :class:`RepoUnavailable` with ``.status``
  ``not_found`` (404, 410 or ``RepoNotFound``), ``deactivated``, ``takendown`` or
  ``suspended`` (XRPC errors ``RepoDeactivated``, ``RepoTakendown``, ``RepoSuspended``).
  Every other unexpected answer is a :class:`TransportError` naming the URL, the status and
  the XRPC error.
* Replies are validated: a malformed body is a :class:`TransportError`, never a
  ``KeyError`` or a pydantic error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Final
from urllib.parse import urlencode, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import RateLimited, RepoUnavailable, ResponseTooLarge, TransportError
from ..syntax import is_did
from .effects import ERROR_BODY_MAX, Flow, HttpDownload, HttpGet, HttpResponse, Sleep
from .policy import RETRY_STATUSES, Decision, RetryPolicy, decide, retry_after

__all__ = [
    "RepoRef",
    "describe_repo",
    "get_latest_commit",
    "get_repo",
    "list_repos_by_collection_page",
    "list_repos_page",
    "request",
    "walk_cursor",
    "xrpc_error",
    "xrpc_url",
]

_CAR_HEADERS: Final = (("accept", "application/vnd.ipld.car"),)
_JSON_HEADERS: Final = (("accept", "application/json"),)
_SMALL_BODY: Final = ERROR_BODY_MAX     # getLatestCommit: a CID and a TID
_PAGE_BODY: Final = 16 << 20           # a listRepos page of 1000 entries is ~200 KB
_DESCRIBE_BODY: Final = 4 << 20        # describeRepo also carries the DID document
_MAX_LIST_LIMIT: Final = 1000          # com.atproto.sync.listRepos
_MAX_COLLECTION_LIMIT: Final = 2000    # com.atproto.sync.listReposByCollection
_TEXT_MAX: Final = 200                 # XRPC error names and messages kept for messages
_NOT_FOUND_STATUSES: Final = frozenset({404, 410})
_UNAVAILABLE: Final = {
    "RepoNotFound": "not_found",
    "RepoDeactivated": "deactivated",
    "RepoTakendown": "takendown",
    "RepoSuspended": "suspended",
}
_NOT_IMPLEMENTED: Final = frozenset({"MethodNotImplemented", "XRPCNotSupported"})

_Request = HttpGet | HttpDownload


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
        RateLimited: the host answered 429 more often than ``policy.rate_limit_retries``.
        TransportError: a body passed the effect's ``max_bytes`` (not retried: it would
            again), or transport failures or retryable statuses (5xx, 408, ...) outlasted
            ``policy.retries``; it names the URL and the last reason.
    """
    attempt = 0
    limited = 0
    while True:
        effect = effect_factory()
        jitter = _jitter(effect.url, attempt + limited)
        try:
            response = yield from _perform(effect)
        except TransportError as exc:
            if isinstance(exc, ResponseTooLarge):
                raise  # the same body would be too large again
            decision = decide(policy, outcome="transport", status=None, headers={},
                              attempt=attempt, rate_limited_so_far=limited, now=0.0,
                              jitter=jitter)
            if not decision.retry:
                raise _exhausted(effect.url, _reason(exc), attempt) from exc
        else:
            headers = dict(response.headers)
            now = _now(headers)
            decision = decide(policy, outcome="status" if response.status >= 400 else "ok",
                              status=response.status, headers=headers, attempt=attempt,
                              rate_limited_so_far=limited, now=now, jitter=jitter)
            if not decision.retry:
                return _final(response, decision, url=effect.url, host=host, now=now,
                              attempt=attempt)
        if decision.rate_limited:
            limited += 1
        else:
            attempt += 1
        yield Sleep(decision.delay)


def _final(response: HttpResponse, decision: Decision, *, url: str, host: str, now: float,
           attempt: int) -> HttpResponse:
    """Return ``response`` when retrying would not change it; raise when budgets ran out."""
    if decision.rate_limited:
        raise RateLimited("rate limited too often", host=host,
                          retry_after=retry_after(dict(response.headers), now), url=url)
    if response.status in RETRY_STATUSES:
        raise _exhausted(url, f"status {response.status}", attempt)
    return response


def _perform(effect: _Request) -> Flow[HttpResponse]:
    """Yield ``effect`` and return the driver's :class:`HttpResponse`."""
    result = yield effect
    if not isinstance(result, HttpResponse):
        raise TypeError(f"driver answered {type(effect).__name__} with {type(result).__name__}")
    return result


def _exhausted(url: str, reason: str, attempt: int) -> TransportError:
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


def _now(headers: dict[str, str]) -> float:
    """Return the response's ``Date`` as a Unix time, or 0.0 when absent or malformed."""
    value = headers.get("date")
    if not value:
        return 0.0
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, OverflowError):
        return 0.0


# -- XRPC plumbing -------------------------------------------------------------------------


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
    obj = _json(response.body)
    if not isinstance(obj, dict):
        return None, None
    return _text(obj.get("error")), _text(obj.get("message"))


def _json(body: bytes) -> Any:
    """Return ``body`` parsed as JSON, or None when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return None


def _text(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    text = " ".join(value.split())
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 3] + "..."


def xrpc_url(base: str, method: str, **params: str | int | None) -> str:
    """Return ``{base}/xrpc/{method}?{params}``, URL-encoded, leaving out None values.

    Example:
        >>> xrpc_url("https://pds.test/", "com.atproto.sync.getRepo", did="did:plc:x", since=None)
        'https://pds.test/xrpc/com.atproto.sync.getRepo?did=did%3Aplc%3Ax'
    """
    query = urlencode({key: value for key, value in params.items() if value is not None})
    url = f"{base.rstrip('/')}/xrpc/{method}"
    return f"{url}?{query}" if query else url


def _host(base: str) -> str:
    """Return the host part of a base URL (for RateLimited), or ``base`` itself."""
    try:
        return urlsplit(base).netloc or base
    except ValueError:
        return base


def _get_json(url: str, *, host: str, max_bytes: int,
              policy: RetryPolicy) -> Flow[HttpResponse]:
    request_ = HttpGet(url, headers=_JSON_HEADERS, max_bytes=max_bytes)
    return (yield from request(lambda: request_, host=host, policy=policy))


def _check_repo_response(response: HttpResponse, *, did: str, url: str) -> None:
    """Return when ``response`` is 2xx; raise what its error means for the repository.

    Raises:
        RepoUnavailable: the host says the repository is missing or not served.
        TransportError: any other non-2xx answer.
    """
    if response.ok:
        return
    error, message = xrpc_error(response)
    status = _UNAVAILABLE.get(error or "") if 400 <= response.status < 500 else None
    if status is None and response.status in _NOT_FOUND_STATUSES:
        status = "not_found"
    if status is not None:
        raise RepoUnavailable(f"repository {status.replace('_', ' ')}", did=did,
                              status=status, url=url, error=error, reason=message)
    raise _unexpected(response, url)


def _unexpected(response: HttpResponse, url: str) -> TransportError:
    error, message = xrpc_error(response)
    return TransportError("unexpected response", url=url, http_status=response.status,
                          error=error, reason=message)


def _malformed(what: str, url: str, host: str) -> TransportError:
    return TransportError(f"malformed {what} response", url=url, host=host)


# -- single repositories -------------------------------------------------------------------


def get_repo(pds: str, did: str, *, path: str, since: str | None = None,
             max_bytes: int = 4 << 30,
             policy: RetryPolicy = RetryPolicy()) -> Flow[None]:
    """Download the repository of ``did`` as a CAR file to ``path``.

    Args:
        pds: the PDS base URL, such as ``"https://pds.example"``.
        did: the repository's DID.
        path: the file to write; on failure no partial file is left.
        since: a revision; when given, the host may send only blocks newer than it.
        max_bytes: cap on the (decoded) CAR size.
        policy: the retry budgets and delays.

    Returns:
        A flow whose value is None: the CAR is in ``path``, not in memory.

    Raises:
        RepoUnavailable: the host does not serve the repository (``.status`` says why).
        RateLimited: the host kept answering 429.
        TransportError: the network failed, the CAR was too large, or another error status.
    """
    url = xrpc_url(pds, "com.atproto.sync.getRepo", did=did, since=since)
    effect = HttpDownload(url, path, headers=_CAR_HEADERS, max_bytes=max_bytes)
    response = yield from request(lambda: effect, host=_host(pds), policy=policy)
    _check_repo_response(response, did=did, url=url)


def get_latest_commit(pds: str, did: str, *,
                      policy: RetryPolicy = RetryPolicy()
                      ) -> Flow[tuple[str, str]]:
    """Ask for the head of ``did``'s repository without downloading it.

    Returns:
        A flow whose value is ``(cid, rev)`` of the latest commit: enough to tell whether a
        cached snapshot is still current.

    Raises:
        RepoUnavailable: the host does not serve the repository.
        RateLimited, TransportError: as for :func:`get_repo`, or a malformed reply.
    """
    url = xrpc_url(pds, "com.atproto.sync.getLatestCommit", did=did)
    response = yield from _get_json(url, host=_host(pds), max_bytes=_SMALL_BODY, policy=policy)
    _check_repo_response(response, did=did, url=url)
    obj = _json(response.body)
    cid = obj.get("cid") if isinstance(obj, dict) else None
    rev = obj.get("rev") if isinstance(obj, dict) else None
    if not (isinstance(cid, str) and cid and isinstance(rev, str) and rev):
        raise _malformed("getLatestCommit", url, _host(pds))
    return cid, rev


def describe_repo(pds: str, did: str, *,
                  policy: RetryPolicy = RetryPolicy()
                  ) -> Flow[list[str]]:
    """Ask which collections ``did``'s repository holds (``com.atproto.repo.describeRepo``).

    Returns:
        A flow whose value is the collection NSIDs, as the host lists them: this lets a
        caller skip repositories that hold none of the collections it wants.

    Raises:
        RepoUnavailable: the host does not serve the repository.
        RateLimited, TransportError: as for :func:`get_repo`, or a malformed reply.
    """
    url = xrpc_url(pds, "com.atproto.repo.describeRepo", repo=did)
    response = yield from _get_json(url, host=_host(pds), max_bytes=_DESCRIBE_BODY,
                                    policy=policy)
    _check_repo_response(response, did=did, url=url)
    obj = _json(response.body)
    collections = obj.get("collections") if isinstance(obj, dict) else None
    if not isinstance(collections, list) or not all(isinstance(c, str) for c in collections):
        raise _malformed("describeRepo", url, _host(pds))
    return collections


# -- many repositories ---------------------------------------------------------------------


def _check_did(value: str) -> str:
    if not is_did(value):
        raise ValueError("not a DID")
    return value


Did = Annotated[str, AfterValidator(_check_did)]


class RepoRef(BaseModel):
    """One repository as a host lists it (``com.atproto.sync.listRepos``).

    Attributes:
        did: the repository's DID.
        head: CID of the latest commit, when listed.
        rev: revision (TID) of the latest commit, when listed.
        active: False when the host does not serve the repository.
        status: why it is inactive (``takendown``, ``suspended``, ``deleted``,
            ``deactivated``, ``desynchronized``, ``throttled``, ...), or None.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    did: Did
    head: str | None = None
    rev: str | None = None
    active: bool = True
    status: str | None = None

    @field_validator("active", mode="before")
    @classmethod
    def _null_is_active(cls, value: object) -> object:
        return True if value is None else value  # the lexicon's default when left out


class _ReposPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    repos: list[RepoRef]
    cursor: str | None = None


class _CollectionRepo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    did: Did


class _CollectionPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    repos: list[_CollectionRepo]
    cursor: str | None = None


def list_repos_page(host: str, *, cursor: str | None, limit: int = 1000,
                    policy: RetryPolicy = RetryPolicy()
                    ) -> Flow[tuple[list[RepoRef], str | None]]:
    """Fetch one page of ``com.atproto.sync.listRepos`` from ``host``.

    Args:
        host: the PDS or relay base URL.
        cursor: the previous page's cursor, or None for the first page.
        limit: repositories per page, clamped to 1..1000.
        policy: the retry budgets and delays.

    Returns:
        A flow whose value is ``(repos, cursor)``; feed the cursor to :func:`walk_cursor`
        to decide whether to ask for another page.

    Raises:
        RateLimited: the host kept answering 429.
        TransportError: an error status, or a reply that is not a valid page (named by host).
    """
    url = xrpc_url(host, "com.atproto.sync.listRepos",
                   limit=_clamp(limit, _MAX_LIST_LIMIT), cursor=cursor)
    response = yield from _get_json(url, host=_host(host), max_bytes=_PAGE_BODY,
                                    policy=policy)
    if not response.ok:
        raise _unexpected(response, url)
    page = _validate(_ReposPage, response, what="listRepos", url=url, host=host)
    return list(page.repos), page.cursor or None


def list_repos_by_collection_page(
        host: str, collection: str, *, cursor: str | None, limit: int = 1000,
        policy: RetryPolicy = RetryPolicy(),
) -> Flow[tuple[list[str], str | None] | None]:
    """Fetch one page of ``com.atproto.sync.listReposByCollection`` from ``host``.

    Args:
        host: the relay (or PDS) base URL.
        collection: the collection NSID.
        cursor: the previous page's cursor, or None for the first page.
        limit: DIDs per page, clamped to 1..2000.
        policy: the retry budgets and delays.

    Returns:
        A flow whose value is ``(dids, cursor)``, or None when the host does not implement
        the method (404, 501, or 400 with ``MethodNotImplemented`` / ``XRPCNotSupported``),
        so the caller can fall back to listing every repository.

    Raises:
        RateLimited: the host kept answering 429.
        TransportError: another error status, or a reply that is not a valid page.
    """
    url = xrpc_url(host, "com.atproto.sync.listReposByCollection", collection=collection,
                   limit=_clamp(limit, _MAX_COLLECTION_LIMIT), cursor=cursor)
    response = yield from _get_json(url, host=_host(host), max_bytes=_PAGE_BODY,
                                    policy=policy)
    if _not_implemented(response):
        return None
    if not response.ok:
        raise _unexpected(response, url)
    page = _validate(_CollectionPage, response, what="listReposByCollection", url=url,
                     host=host)
    return [repo.did for repo in page.repos], page.cursor or None


def _not_implemented(response: HttpResponse) -> bool:
    """Return True when ``response`` says the XRPC method is not served here.

    A reference PDS (0.4) does not implement listReposByCollection: it proxies unknown
    methods to an app view and answers 401 ``AuthMissing`` to an anonymous caller, which
    for a public sync method means the same thing.
    """
    if response.status in (404, 501):
        return True
    error = xrpc_error(response)[0]
    if response.status == 401:
        return error == "AuthMissing"
    return response.status == 400 and error in _NOT_IMPLEMENTED


def _validate(model: type[Any], response: HttpResponse, *, what: str, url: str,
              host: str) -> Any:
    """Return ``response``'s JSON body validated as ``model``.

    Raises:
        TransportError: the body is not JSON or does not match ``model``.
    """
    obj = _json(response.body)
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise _malformed(what, url, host) from exc


def _clamp(limit: int, most: int) -> int:
    return max(1, min(int(limit), most))


def walk_cursor(previous: str | None, page_cursor: str | None,
                page_len: int) -> tuple[str | None, str | None]:
    """Decide whether paging continues after a page.

    Args:
        previous: the cursor the page was asked with (None for the first page).
        page_cursor: the cursor the page returned.
        page_len: how many items the page held.

    Returns:
        ``(next_cursor, warning)``: the cursor to ask with next, or None to stop; and a
        warning to log when stopping early because the host misbehaved (a cursor that did
        not advance, or an empty page that still carries a cursor — both would loop forever).

    Example:
        >>> walk_cursor(None, "c1", 1000)
        ('c1', None)
        >>> walk_cursor("c1", None, 10)
        (None, None)
        >>> walk_cursor("c1", "c1", 1000)[0] is None
        True
    """
    if not page_cursor:
        return None, None
    if page_cursor == previous:
        return None, f"cursor did not advance; cursor={page_cursor}; stopped listing"
    if page_len == 0:
        return None, f"empty page with a cursor; cursor={page_cursor}; stopped listing"
    return page_cursor, None
