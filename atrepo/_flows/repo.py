"""One repository's endpoints as sans-IO flows: getRepo, getLatestCommit, describeRepo.

Each flow builds its URL with :func:`~atrepo._flows.xrpc.xrpc_url` and asks through the one
retry loop, :func:`~atrepo._flows.xrpc.request` (https://atproto.com/specs/sync).

A repository the host will not serve ends in :class:`RepoUnavailable` with ``.status``
``not_found`` (404, 410 or ``RepoNotFound``), ``deactivated``, ``takendown`` or
``suspended`` (XRPC errors ``RepoDeactivated``, ``RepoTakendown``, ``RepoSuspended``).
Every other unexpected answer is a :class:`TransportError` naming the URL, the status and the
XRPC error.
"""

from __future__ import annotations

from typing import Any, Final

from ..errors import RepoUnavailable
from .effects import DEFAULT_DOWNLOAD_MAX_BYTES, ERROR_BODY_MAX, Flow, HttpDownload, HttpResponse
from ..retry import RetryPolicy
from .xrpc import get_json, host_of, json_body, malformed, request, unexpected, xrpc_error, xrpc_url

__all__ = ["describe_repo", "get_latest_commit", "get_repo"]

_CAR_HEADERS: Final = (("accept", "application/vnd.ipld.car"),)
_SMALL_BODY: Final = ERROR_BODY_MAX     # getLatestCommit: a CID and a TID
_DESCRIBE_BODY: Final = 4 << 20        # describeRepo also carries the DID document
_NOT_FOUND_STATUSES: Final = frozenset({404, 410})
_UNAVAILABLE: Final = {
    "RepoNotFound": "not_found",
    "RepoDeactivated": "deactivated",
    "RepoTakendown": "takendown",
    "RepoSuspended": "suspended",
}


def get_repo(pds: str, did: str, *, path: str, since: str | None = None,
             max_bytes: int = DEFAULT_DOWNLOAD_MAX_BYTES,
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
    response = yield from request(lambda: effect, host=host_of(pds), policy=policy)
    _check_repo_response(response, did=did, url=url)


def get_latest_commit(pds: str, did: str, *,
                      policy: RetryPolicy = RetryPolicy()) -> Flow[tuple[str, str]]:
    """Ask for the head of ``did``'s repository without downloading it.

    Returns:
        A flow whose value is ``(cid, rev)`` of the latest commit: enough to tell whether a
        cached snapshot is still current.

    Raises:
        RepoUnavailable: the host does not serve the repository.
        RateLimited, TransportError: as for :func:`get_repo`, or a malformed reply.
    """
    obj, url = yield from _ask(pds, did, "com.atproto.sync.getLatestCommit", _SMALL_BODY,
                               policy, did=did)
    cid, rev = obj.get("cid"), obj.get("rev")
    if not (isinstance(cid, str) and cid and isinstance(rev, str) and rev):
        raise malformed("getLatestCommit", url, host_of(pds))
    return cid, rev


def describe_repo(pds: str, did: str, *,
                  policy: RetryPolicy = RetryPolicy()) -> Flow[list[str]]:
    """Ask which collections ``did``'s repository holds (``com.atproto.repo.describeRepo``).

    Returns:
        A flow whose value is the collection NSIDs, as the host lists them: this lets a
        caller skip repositories that hold none of the collections it wants.

    Raises:
        RepoUnavailable: the host does not serve the repository.
        RateLimited, TransportError: as for :func:`get_repo`, or a malformed reply.
    """
    obj, url = yield from _ask(pds, did, "com.atproto.repo.describeRepo", _DESCRIBE_BODY,
                               policy, repo=did)
    collections = obj.get("collections")
    if not isinstance(collections, list) or not all(isinstance(c, str) for c in collections):
        raise malformed("describeRepo", url, host_of(pds))
    return collections


def _ask(pds: str, did: str, method: str, max_bytes: int, policy: RetryPolicy, /,
         **params: str) -> Flow[tuple[dict[str, Any], str]]:
    """GET ``method`` about ``did``'s repository; return its JSON object ({} if none), URL.

    Raises:
        RepoUnavailable, RateLimited, TransportError: as :func:`_check_repo_response` says.
    """
    url = xrpc_url(pds, method, **params)
    response = yield from get_json(url, host=host_of(pds), max_bytes=max_bytes, policy=policy)
    _check_repo_response(response, did=did, url=url)
    obj = json_body(response.body)
    return (obj if isinstance(obj, dict) else {}), url


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
    raise unexpected(response, url)
