"""Listings as sans-IO flows: pages of listRepos and listReposByCollection, and their cursors.

Each page flow asks through the one retry loop, :func:`~atrepo._flows.xrpc.request`, and
validates the page it gets (https://atproto.com/specs/sync): an entry whose DID is not DID
syntax, or a page that is not the method's shape, is a :class:`TransportError` naming the
host. :func:`walk_cursor` decides after each page whether paging goes on.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from ..repos import Did, RepoRef
from .effects import Flow, HttpResponse
from .policy import RetryPolicy
from .xrpc import get_json, host_of, unexpected, validate, xrpc_error, xrpc_url

__all__ = ["list_repos_by_collection_page", "list_repos_page", "walk_cursor"]

_PAGE_BODY: Final = 16 << 20           # a listRepos page of 1000 entries is ~200 KB
_MAX_LIST_LIMIT: Final = 1000          # com.atproto.sync.listRepos
_MAX_COLLECTION_LIMIT: Final = 2000    # com.atproto.sync.listReposByCollection
_NOT_IMPLEMENTED: Final = frozenset({"MethodNotImplemented", "XRPCNotSupported"})


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
    response = yield from get_json(url, host=host_of(host), max_bytes=_PAGE_BODY,
                                   policy=policy)
    if not response.ok:
        raise unexpected(response, url)
    page = validate(_ReposPage, response, what="listRepos", url=url, host=host)
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
    response = yield from get_json(url, host=host_of(host), max_bytes=_PAGE_BODY,
                                   policy=policy)
    if _not_implemented(response):
        return None
    if not response.ok:
        raise unexpected(response, url)
    page = validate(_CollectionPage, response, what="listReposByCollection", url=url,
                    host=host)
    return [repo.did for repo in page.repos], page.cursor or None


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
