"""One repository's endpoints as sans-IO flows: getRepo, getLatestCommit, describeRepo,
and the two a sparse fetch needs, getRecord (a record's proof) and getBlocks.

Each flow builds its URL with :func:`~atrepo._flows.xrpc.xrpc_url` and asks through the one
retry loop, :func:`~atrepo._flows.xrpc.request` (https://atproto.com/specs/sync).

A repository the host will not serve ends in :class:`RepoUnavailable` with ``.status``
``not_found`` (404, 410 or ``RepoNotFound``), ``deactivated``, ``takendown`` or
``suspended`` (XRPC errors ``RepoDeactivated``, ``RepoTakendown``, ``RepoSuspended``).
Every other unexpected answer is a :class:`TransportError` naming the URL, the status and the
XRPC error; a host that does not implement a method (501, a 404 that names no repository
error, or the XRPC error ``MethodNotImplemented``) is a :class:`MethodMissing`, so that a
caller can fall back to ``getRepo``. Block answers are CARs whose every block is hashed
against its CID (a bad one is a :class:`CarError`); their bodies are capped like the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from ..car._reader import CarReader
from ..errors import CarError, MstError, RepoUnavailable, TransportError
from .effects import (DEFAULT_DOWNLOAD_MAX_BYTES, ERROR_BODY_MAX, Flow, HttpDownload, HttpGet,
                      HttpResponse)
from ..retry import RetryPolicy
from .xrpc import get_json, host_of, json_body, malformed, request, unexpected, xrpc_error, xrpc_url

__all__ = ["BLOCKS_MAX_BYTES", "BlockMissing", "Blocks", "MAX_CIDS_PER_REQUEST", "MethodMissing",
           "NoProof", "describe_repo", "get_blocks", "get_latest_commit", "get_record_proof",
           "get_repo"]

_CAR_HEADERS: Final = (("accept", "application/vnd.ipld.car"),)
_SMALL_BODY: Final = ERROR_BODY_MAX     # getLatestCommit: a CID and a TID
_DESCRIBE_BODY: Final = 4 << 20        # describeRepo also carries the DID document
_NOT_FOUND_STATUSES: Final = frozenset({404, 410})
# getBlocks takes its CIDs in the query string: 100 CIDs of 59 characters keep the URL under
# 8 KB, which every server and proxy in front of a PDS accepts
MAX_CIDS_PER_REQUEST: Final = 100
BLOCKS_MAX_BYTES: Final = 64 << 20  # one getBlocks/getRecord answer (100 blocks, each record
                                    # at most 1 MiB by the repository spec, in practice ~1 KB)
_UNAVAILABLE: Final = {
    "RepoNotFound": "not_found",
    "RepoDeactivated": "deactivated",
    "RepoTakendown": "takendown",
    "RepoSuspended": "suspended",
}
# a 404 with one of these errors comes from the method; any other 404 means it is missing
_KNOWN_404: Final = frozenset({*_UNAVAILABLE, "RecordNotFound", "BlockNotFound"})


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


class BlockMissing(MstError):
    """A host does not send a block of the repository that was asked for (named by ``cid``)."""


class MethodMissing(TransportError):
    """The host does not implement an XRPC method (501, 404, ``MethodNotImplemented``)."""


class NoProof(TransportError):
    """The host answers ``getRecord`` for an absent record with ``RecordNotFound`` instead
    of a proof of its absence (the reference sends the proof)."""


@dataclass(frozen=True, slots=True)
class Blocks:
    """Blocks a host sent, each checked against its CID.

    Attributes:
        blocks: binary CID -> bytes, in the order the CAR held them.
        roots: the CAR header's roots (binary CIDs).
        size: the body's length: what the answer cost.
    """

    blocks: dict[bytes, bytes]
    roots: list[bytes]
    size: int


def get_blocks(pds: str, did: str, cids: Sequence[str], *, max_bytes: int = BLOCKS_MAX_BYTES,
               policy: RetryPolicy = RetryPolicy()) -> Flow[Blocks]:
    """Ask for blocks of ``did``'s repository by CID (``com.atproto.sync.getBlocks``).

    Args:
        pds: the PDS base URL.
        did: the repository's DID.
        cids: at most :data:`MAX_CIDS_PER_REQUEST` CIDs (strings).
        max_bytes: cap on the answer's body.
        policy: the retry budgets and delays.

    Returns:
        A flow whose value is the :class:`Blocks` the host sent. Whether every CID asked for
        is among them is the caller's to check (a host may leave some out).

    Raises:
        MstError: the host says it does not hold some of the blocks (naming the first).
        MethodMissing: the host does not implement getBlocks.
        RepoUnavailable: the host does not serve the repository.
        CarError: the answer is not a CAR, or a block does not match its CID.
        RateLimited, TransportError: as for :func:`get_repo`.
    """
    if not 0 < len(cids) <= MAX_CIDS_PER_REQUEST:
        raise ValueError(f"getBlocks takes 1 to {MAX_CIDS_PER_REQUEST} CIDs, not {len(cids)}")
    url = xrpc_url(pds, "com.atproto.sync.getBlocks", did=did) + "&" + urlencode(
        [("cids", cid) for cid in cids])
    response = yield from _get_car(pds, url, max_bytes, policy)
    if response.status == 400:
        error, message = xrpc_error(response)
        if error == "BlockNotFound" or (error == "InvalidRequest" and message is not None
                                        and message.startswith("Could not find")):
            named = next((cid for cid in cids if message and cid in message), None)
            raise BlockMissing("the host does not hold a block of the repository",
                           cid=named or cids[0], did=did, url=url, reason=message,
                           hint="the repository may have changed meanwhile; fetch it again")
    _check_repo_response(response, did=did, url=url)
    return _car_blocks(response.body, url)


def get_record_proof(pds: str, did: str, collection: str, rkey: str, *,
                     max_bytes: int = BLOCKS_MAX_BYTES,
                     policy: RetryPolicy = RetryPolicy()) -> Flow[Blocks]:
    """Ask for the proof of one record (``com.atproto.sync.getRecord``): a CAR whose root is
    the current commit, holding the commit, the MST nodes from the root to the record's key
    and the record itself when it exists (the nodes alone prove its absence).

    Returns:
        A flow whose value is the :class:`Blocks` of the proof, with exactly one root.

    Raises:
        NoProof: the record does not exist and the host sends no proof of its absence.
        MethodMissing: the host does not implement getRecord.
        RepoUnavailable: the host does not serve the repository.
        CarError: the answer is not a CAR with one root, or a block does not match its CID.
        RateLimited, TransportError: as for :func:`get_repo`.
    """
    url = xrpc_url(pds, "com.atproto.sync.getRecord", did=did, collection=collection,
                   rkey=rkey)
    response = yield from _get_car(pds, url, max_bytes, policy)
    if 400 <= response.status < 500 and xrpc_error(response)[0] == "RecordNotFound":
        raise NoProof("the host sends no proof for an absent record", url=url)
    _check_repo_response(response, did=did, url=url)
    proof = _car_blocks(response.body, url)
    if len(proof.roots) != 1:
        raise CarError("a record proof needs exactly one root (the commit)", url=url,
                       roots=len(proof.roots))
    return proof


def _get_car(pds: str, url: str, max_bytes: int, policy: RetryPolicy) -> Flow[HttpResponse]:
    """GET a CAR answer through the retry loop; MethodMissing when the host lacks it."""
    effect = HttpGet(url, headers=_CAR_HEADERS, max_bytes=max_bytes)
    response = yield from request(lambda: effect, host=host_of(pds), policy=policy)
    error, message = xrpc_error(response)
    if response.status == 501 or error == "MethodNotImplemented" or (
            response.status == 404 and error not in _KNOWN_404):
        raise MethodMissing("the host does not implement this method", url=url,
                            http_status=response.status, error=error, reason=message)
    return response


def _car_blocks(body: bytes, url: str) -> Blocks:
    """The blocks of a CAR answer, each checked against its CID.

    Raises:
        CarError: the body is not a whole CAR, or a block does not match its CID.
    """
    reader = CarReader()
    try:
        blocks = {bytes(cid): data for cid, data in reader.feed(body)}
        reader.close()
    except CarError as exc:
        raise CarError(f"malformed CAR answer ({exc.message})", offset=exc.offset,
                       cid=exc.cid, url=url) from exc
    return Blocks(blocks, [bytes(root) for root in reader.roots or []], len(body))
