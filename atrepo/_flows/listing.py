"""Listings as sans-IO flows: pages of listRepos, listReposByCollection and listHosts, and
their cursors.

Each page flow asks through the one retry loop, :func:`~atrepo._flows.xrpc.request`, and
validates the page it gets (https://atproto.com/specs/sync): an entry whose DID is not DID
syntax, or a page that is not the method's shape, is a :class:`TransportError` naming the
host. :func:`walk_cursor` decides after each page whether paging goes on.

A listing is bounded, whatever the host sends. The cursor a page flow returns is a
:class:`PageCursor`: a ``str`` (so it is sent, saved and compared like any cursor) that also
remembers the listing it belongs to, so that the next page flow asked with it can refuse

* a cursor seen before in the same listing (A, B, A, B loops forever, and comparing with
  the previous cursor alone only catches A, A);
* a page holding more entries than the ``limit`` it was asked with;
* more than ``max_pages`` pages or ``max_rows`` entries in one listing.

Each ends in a :class:`TransportError` naming the host. A plain ``str`` cursor (one read
back from a resume file) starts a new listing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from ..errors import TransportError
from ..repos import Did, RepoRef
from .effects import Flow, HttpResponse
from ..retry import RetryPolicy
from .xrpc import get_json, host_of, unexpected, validate, xrpc_error, xrpc_url

__all__ = ["MAX_PAGES", "MAX_ROWS", "HostRef", "PageAsked", "PageCursor", "host_url",
           "list_hosts_page", "list_repos_by_collection_page", "list_repos_page", "next_cursor",
           "page_asked", "walk_cursor"]

_PAGE_BODY: Final = 16 << 20           # a listRepos page of 1000 entries is ~200 KB
_MAX_LIST_LIMIT: Final = 1000          # com.atproto.sync.listRepos
_MAX_COLLECTION_LIMIT: Final = 2000    # com.atproto.sync.listReposByCollection
_MAX_HOSTS_LIMIT: Final = 1000         # com.atproto.sync.listHosts
_NOT_IMPLEMENTED: Final = frozenset({"MethodNotImplemented", "XRPCNotSupported"})
MAX_PAGES: Final = 1_000_000           # pages in one listing: a relay of 100M accounts
                                       # lists in 100,000 full pages
MAX_ROWS: Final = 100_000_000          # entries in one listing: 2.5x the whole network today


@dataclass(slots=True)
class _Trail:
    """What one listing has seen so far: every cursor, and the pages and entries counted."""

    host: str
    seen: set[str] = field(default_factory=set)
    pages: int = 0
    rows: int = 0


class PageCursor(str):
    """A listing's cursor that remembers the listing: a ``str`` with a :class:`_Trail`.

    A cursor belongs to one walk forward through one listing: asking again with an older
    cursor of the same listing counts its later cursors as seen.
    """

    trail: _Trail

    def __new__(cls, value: str, trail: _Trail) -> PageCursor:
        cursor = super().__new__(cls, value)
        cursor.trail = trail
        return cursor


def _trail(host: str, cursor: str | None) -> _Trail:
    """Return the trail ``cursor`` carries, or a new one (a first page, or a resumed cursor)."""
    if isinstance(cursor, PageCursor):
        return cursor.trail
    trail = _Trail(host_of(host))
    if cursor:
        trail.seen.add(cursor)
    return trail


@dataclass(frozen=True, slots=True)
class PageAsked:
    """One page asked for: its URL, the limit it was asked with, and its listing's trail."""

    url: str
    limit: int
    trail: _Trail


def page_asked(url: str, *, host: str, cursor: str | None, limit: int) -> PageAsked:
    """Return the record of a page asked for at ``url`` with ``cursor``, for :func:`next_cursor`.

    For listings that are not XRPC methods (the PLC directory's export): the same bounds hold.
    """
    return PageAsked(url, limit, _trail(host, cursor))


def _ask(host: str, method: str, *, cursor: str | None, limit: int, most: int,
         policy: RetryPolicy, **params: str) -> Flow[tuple[HttpResponse, PageAsked]]:
    """GET one page of ``method`` (``limit`` clamped to 1..``most``); return the answer."""
    clamped = _clamp(limit, most)
    asked = PageAsked(xrpc_url(host, method, **params, limit=clamped, cursor=cursor), clamped,
                   _trail(host, cursor))
    response = yield from get_json(asked.url, host=host_of(host), max_bytes=_PAGE_BODY,
                                   policy=policy)
    return response, asked


def next_cursor(asked: PageAsked, page_cursor: str | None, rows: int, *, max_pages: int,
                 max_rows: int) -> PageCursor | None:
    """Count a page of ``rows`` entries on its trail; return its cursor as a PageCursor.

    Raises:
        TransportError: the page holds more entries than asked for, the listing passed
            ``max_pages`` or ``max_rows``, or ``page_cursor`` was seen before in it.
    """
    trail, url, host = asked.trail, asked.url, asked.trail.host
    if rows > asked.limit:
        raise TransportError("listing page larger than the limit asked", url=url, host=host,
                             limit=asked.limit, rows=rows)
    trail.pages += 1
    trail.rows += rows
    if trail.pages > max_pages or trail.rows > max_rows:
        raise TransportError("listing too long", url=url, host=host, pages=trail.pages,
                             rows=trail.rows, max_pages=max_pages, max_rows=max_rows)
    if not page_cursor:
        return None
    if page_cursor in trail.seen:
        raise TransportError("listing cursor repeated", url=url, host=host,
                             cursor=page_cursor[:80], pages=trail.pages)
    trail.seen.add(page_cursor)
    return PageCursor(page_cursor, trail)


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


# a hostname with an optional port, as a relay lists its hosts (no scheme, no path)
_HOSTNAME: Final = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?$"


class HostRef(BaseModel):
    """One host a relay lists (``com.atproto.sync.listHosts``): the relay's view of it.

    ``status`` is the relay's word for the host (``active``, ``idle``, ``offline``,
    ``throttled``, ``banned``) or None when the relay gives none; ``account_count`` and ``seq``
    (the newest event the relay has seen from it) are None when not given.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    hostname: StrictStr = Field(pattern=_HOSTNAME)
    status: StrictStr | None = Field(default=None, max_length=64)
    account_count: StrictInt | None = Field(default=None, alias="accountCount", ge=0)
    seq: StrictInt | None = Field(default=None, ge=0)


def host_url(hostname: str) -> str:
    """Return the base URL of a host a relay lists by name: ``https://``, or ``http://`` for
    a loopback host (a local sandbox; public hosts are served over HTTPS only).

    Example:
        >>> host_url("pds.example.com"), host_url("localhost:2583"), host_url("127.0.0.1:80")
        ('https://pds.example.com', 'http://localhost:2583', 'http://127.0.0.1:80')
    """
    name = hostname.rsplit(":", 1)[0] if hostname.count(":") == 1 else hostname
    loopback = name == "localhost" or name.endswith(".localhost") or name.startswith("127.")
    return ("http://" if loopback else "https://") + hostname


class _HostsPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    hosts: list[HostRef]
    cursor: str | None = None


def list_hosts_page(relay: str, *, cursor: str | None, limit: int = 1000,
                    policy: RetryPolicy = RetryPolicy(), max_pages: int = MAX_PAGES,
                    max_rows: int = MAX_ROWS) -> Flow[tuple[list[HostRef], str | None]]:
    """Fetch one page of ``com.atproto.sync.listHosts`` from ``relay``.

    Args:
        relay: the relay's base URL.
        cursor: the previous page's cursor (a :class:`PageCursor` continues its listing), or
            None for the first page.
        limit: hosts per page, clamped to 1..1000.
        policy: the retry budgets and delays.
        max_pages: the most pages one listing may take.
        max_rows: the most entries one listing may hold.

    Returns:
        A flow whose value is ``(hosts, cursor)``, the cursor a :class:`PageCursor` or None.

    Raises:
        RateLimited: the relay kept answering 429.
        TransportError: an error status, a reply that is not a valid page (a hostname that
            is not one, a count that is not a whole number), or a listing past its bounds;
            each names the relay.
    """
    response, asked = yield from _ask(relay, "com.atproto.sync.listHosts", cursor=cursor,
                                      limit=limit, most=_MAX_HOSTS_LIMIT, policy=policy)
    if not response.ok:
        raise unexpected(response, asked.url)
    page = validate(_HostsPage, response, what="listHosts", url=asked.url, host=relay)
    return list(page.hosts), next_cursor(asked, page.cursor, len(page.hosts),
                                         max_pages=max_pages, max_rows=max_rows)


def list_repos_page(host: str, *, cursor: str | None, limit: int = 1000,
                    policy: RetryPolicy = RetryPolicy(), max_pages: int = MAX_PAGES,
                    max_rows: int = MAX_ROWS) -> Flow[tuple[list[RepoRef], str | None]]:
    """Fetch one page of ``com.atproto.sync.listRepos`` from ``host``.

    Args:
        host: the PDS or relay base URL.
        cursor: the previous page's cursor (a :class:`PageCursor` continues its listing), or
            None for the first page.
        limit: repositories per page, clamped to 1..1000.
        policy: the retry budgets and delays.
        max_pages: the most pages one listing may take.
        max_rows: the most entries one listing may hold.

    Returns:
        A flow whose value is ``(repos, cursor)``, the cursor a :class:`PageCursor` or None;
        feed it to :func:`walk_cursor` to decide whether to ask for another page.

    Raises:
        RateLimited: the host kept answering 429.
        TransportError: an error status, a reply that is not a valid page, or a listing past
            its bounds (see the module docstring); each names the host.
    """
    response, asked = yield from _ask(host, "com.atproto.sync.listRepos", cursor=cursor,
                                      limit=limit, most=_MAX_LIST_LIMIT, policy=policy)
    if not response.ok:
        raise unexpected(response, asked.url)
    page = validate(_ReposPage, response, what="listRepos", url=asked.url, host=host)
    return list(page.repos), next_cursor(asked, page.cursor, len(page.repos),
                                          max_pages=max_pages, max_rows=max_rows)


def list_repos_by_collection_page(
        host: str, collection: str, *, cursor: str | None, limit: int = 1000,
        policy: RetryPolicy = RetryPolicy(), max_pages: int = MAX_PAGES,
        max_rows: int = MAX_ROWS,
) -> Flow[tuple[list[str], str | None] | None]:
    """Fetch one page of ``com.atproto.sync.listReposByCollection`` from ``host``.

    Args:
        host: the relay (or PDS) base URL.
        collection: the collection NSID.
        cursor: the previous page's cursor (a :class:`PageCursor` continues its listing), or
            None for the first page.
        limit: DIDs per page, clamped to 1..2000.
        policy: the retry budgets and delays.
        max_pages: the most pages one listing may take.
        max_rows: the most entries one listing may hold.

    Returns:
        A flow whose value is ``(dids, cursor)``, or None when the host does not implement
        the method (404, 501, or 400 with ``MethodNotImplemented`` / ``XRPCNotSupported``),
        so the caller can fall back to listing every repository.

    Raises:
        RateLimited: the host kept answering 429.
        TransportError: another error status, a reply that is not a valid page, or a listing
            past its bounds (see the module docstring).
    """
    response, asked = yield from _ask(host, "com.atproto.sync.listReposByCollection",
                                      cursor=cursor, limit=limit, most=_MAX_COLLECTION_LIMIT,
                                      policy=policy, collection=collection)
    if _not_implemented(response):
        return None
    if not response.ok:
        raise unexpected(response, asked.url)
    page = validate(_CollectionPage, response, what="listReposByCollection", url=asked.url,
                    host=host)
    return [repo.did for repo in page.repos], next_cursor(
        asked, page.cursor, len(page.repos), max_pages=max_pages, max_rows=max_rows)


def _not_implemented(response: HttpResponse) -> bool:
    """Return True when ``response`` says the XRPC method is not served here.

    A reference PDS (0.4) does not implement listReposByCollection: it proxies unknown
    methods to an app view and answers 401 ``AuthMissing`` to an anonymous caller, which
    for a public com.atproto.sync method means the same thing.
    """
    if response.status in (404, 501):
        return True
    error = xrpc_error(response)[0]
    if response.status == 401:
        return error == "AuthMissing"
    return response.status == 400 and error in _NOT_IMPLEMENTED


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
        The page flows already refuse any cursor their listing saw before.

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
