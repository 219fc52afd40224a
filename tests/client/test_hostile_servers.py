"""Hostile hosts on loopback: compression bombs, trickled headers, looping cursors, wild waits.

A loopback "PLC" serves a DID document naming a loopback "PDS" (tests/client/_servers.py);
one of them misbehaves the way an attacker's server would. Each scenario runs through the
real Client and AsyncClient and must end in the right ``AtrepoError`` naming the host,
quickly and with bounded memory: never a hang, a ``MemoryError`` or a bare ``ValueError``.
Every server here gives up on its own after a bounded misbehaviour, so a client without
the protections ends in a wrong answer (a failed assertion), not a hung suite.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import atrepo
from _loopback import KINDS, LoopbackTransport, NoDns, client
from _servers import LoopbackServer, RawServer, Reply
from atrepo import RetryPolicy
from atrepo._flows.repo import get_latest_commit
from atrepo._io.http import run_sync
from atrepo.client import Client
from atrepo.testing import SigningKey

DID = "did:plc:hostilehostilehostileaaa"
KEY = SigningKey()
JSON = {"content-type": "application/json"}
FAST = RetryPolicy(base_delay=0.001, max_delay=0.002)


def _doc(pds_url: str) -> bytes:
    return json.dumps({
        "id": DID, "alsoKnownAs": [],
        "verificationMethod": [{"id": f"{DID}#atproto", "type": "Multikey", "controller": DID,
                                "publicKeyMultibase": KEY.did_key.removeprefix("did:key:")}],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                     "serviceEndpoint": pds_url}]}).encode()


class _Plc:
    """A PLC directory serving the one DID document, naming ``pds_url`` as its PDS."""

    def __init__(self, pds_url: str) -> None:
        self.pds_url = pds_url
        self.server = LoopbackServer(self._route)

    def _route(self, path: str) -> Reply:
        if path.lstrip("/") != DID:
            return 404, JSON, b'{"message": "DID not registered"}'
        return 200, JSON, _doc(self.pds_url)


def _run(kind: str, tmp_path: Path, plc_url: str, pds_url: str, method: str, *args: Any,
         kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
    """``method(*args, **kwargs)`` on a fresh client of ``kind`` made with ``options``: its
    value, or the AtrepoError it raised."""
    hosts = SimpleNamespace(plc_url=plc_url, pds_url=pds_url)
    made = client(kind, hosts, tmp_path / kind, **{"retry": FAST, **options})
    kwargs = kwargs or {}
    if isinstance(made, Client):
        with made:
            try:
                return getattr(made, method)(*args, **kwargs)
            except atrepo.AtrepoError as exc:
                return exc

    async def go() -> Any:
        async with made:
            try:
                return await getattr(made, method)(*args, **kwargs)
            except atrepo.AtrepoError as exc:
                return exc

    return asyncio.run(go())


def _peak_mib(call: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``call``; return its value and the peak of Python memory it allocated, in MiB."""
    tracemalloc.start()
    try:
        value = call()
        return value, tracemalloc.get_traced_memory()[1] / (1 << 20)
    finally:
        tracemalloc.stop()


# -- 1. compression bombs --------------------------------------------------------------------


def _gzip_stream(size: int) -> bytes:
    """``size`` zero bytes, gzipped a MiB at a time (without ever holding them)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(size >> 20)]
    return b"".join([*parts, packer.flush()])


def _deflate_stream(size: int) -> bytes:
    """``size`` zero bytes, zlib-deflated a MiB at a time."""
    packer = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    return b"".join([*(packer.compress(zeros) for _ in range(size >> 20)), packer.flush()])


BOMB = 256 << 20                           # decoded size of each bomb: 256 MiB of zeros
SINGLE = _gzip_stream(BOMB)                # ~250 KB on the wire
STACKED = gzip.compress(SINGLE, 9)         # gzip, gzip: a few KB on the wire
DEFLATED = _deflate_stream(BOMB)


def test_bombs_are_small_on_the_wire():
    assert len(STACKED) < 8 * 1024 < len(SINGLE) < BOMB // 500


def _bomb(body: bytes, encoding: str) -> Reply:
    return 200, {**JSON, "content-encoding": encoding}, body


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_gzip_did_document_is_cut_with_bounded_memory(kind, tmp_path):
    plc = LoopbackServer(lambda path: _bomb(STACKED, "gzip, gzip"))
    with plc:
        error, peak = _peak_mib(lambda: _run(kind, tmp_path, plc.url, plc.url, "resolve", DID))
    assert isinstance(error, atrepo.ResolutionError) and error.identifier == DID
    cause = error.__cause__
    assert isinstance(cause, atrepo.TransportError) and "too large" in str(cause)
    assert f"127.0.0.1:{plc.port}" in str(cause)
    assert peak < 32, f"{peak:.0f} MiB held for a {len(STACKED)}-byte body"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("encoding", ["gzip, gzip", "deflate, gzip", "gzip,gzip,identity"])
def test_stacked_encodings_of_an_xrpc_body_are_cut(kind, encoding, tmp_path):
    inner = SINGLE if encoding.startswith("gzip") else DEFLATED
    body = gzip.compress(inner, 9)
    pds = LoopbackServer(lambda path: _bomb(body, encoding))
    with pds:
        error, peak = _peak_mib(lambda: _run(kind, tmp_path, pds.url, pds.url, "list_repos",
                                             pds.url))
    assert isinstance(error, atrepo.TransportError) and "too large" in str(error)
    assert f"127.0.0.1:{pds.port}" in str(error) and len(pds.paths) == 1  # not retried
    assert peak < 32, f"{peak:.0f} MiB held for a {len(body)}-byte body"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip"])
def test_gzip_bomb_download_is_cut_by_its_ratio(kind, encoding, tmp_path):
    body = SINGLE if encoding == "gzip" else STACKED
    pds = LoopbackServer(lambda path: (200, {"content-type": "application/vnd.ipld.car",
                                             "content-encoding": encoding}, body))
    with pds:
        plc = _Plc(pds.url)
        with plc.server:  # the default max_repo_bytes (4 GiB) would let 256 MiB through
            error = _run(kind, tmp_path, plc.server.url, pds.url, "get_repo", DID)
    assert isinstance(error, atrepo.TransportError) and "too large" in str(error)
    assert f"127.0.0.1:{pds.port}" in str(error) and "getRepo" in str(error.url)
    assert error.fields["max_bytes"] < BOMB  # the ratio bound, not max_repo_bytes
    assert not list((tmp_path / kind / "downloads").glob("*"))  # no partial file left


# -- 2. trickled headers ----------------------------------------------------------------------


def _trickle_headers(gap: float, most: int) -> Callable[[socket.socket, bytes], None]:
    """A reply whose headers come one byte per ``gap`` seconds; after ``most`` bytes it
    gives up and finishes, a 404 with no body (so a client whose deadline only watches the
    body gets a wrong answer, not a hang)."""

    def respond(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nX-Slow: ")
        for _ in range(most):
            conn.sendall(b"x")
            time.sleep(gap)  # the slow host: how the trickle is made, not an ordering
        conn.sendall(b"\r\nContent-Length: 0\r\n\r\n")  # no body: the headers are all

    return respond


@pytest.mark.parametrize("kind", KINDS)
def test_trickled_headers_of_a_did_document_hit_the_deadline(kind, tmp_path):
    with RawServer(_trickle_headers(gap=0.05, most=200)) as plc:  # 10 s of headers
        error = _run(kind, tmp_path, plc.url, plc.url, "resolve", DID, timeout=2.0,
                     body_timeout=0.5)
    assert isinstance(error, atrepo.ResolutionError) and error.identifier == DID
    cause = error.__cause__
    assert isinstance(cause, atrepo.TransportError) and "too slow" in str(cause)
    assert f"127.0.0.1:{plc.port}" in str(cause)


@pytest.mark.parametrize("kind", KINDS)
def test_trickled_headers_of_get_repo_hit_the_deadline_each_attempt(kind, tmp_path):
    with RawServer(_trickle_headers(gap=0.05, most=200)) as pds:
        plc = _Plc(pds.url)
        with plc.server:
            # resolved first under the default deadline and cached, so that only the
            # trickling host meets the tiny one however busy the machine is
            assert _run(kind, tmp_path, plc.server.url, pds.url, "resolve", DID).did == DID
            error = _run(kind, tmp_path, plc.server.url, pds.url, "get_repo", DID,
                         timeout=2.0, body_timeout=0.5,
                         retry=RetryPolicy(retries=1, base_delay=0.001))
    assert isinstance(error, atrepo.TransportError) and "too slow" in str(error)
    assert f"127.0.0.1:{pds.port}" in str(error) and "getRepo" in str(error.url)
    assert len(pds.heads) == 2  # the first try and one retry, each cut at the deadline


# -- 3. listings that never end ---------------------------------------------------------------


class _Lister:
    """A listRepos host: ``page(cursor, limit)`` says what each page holds; it stops after
    ``most`` pages whatever happens (a client that never stops gets a wrong answer)."""

    def __init__(self, page: Callable[[str | None, int], tuple[int, str | None]],
                 most: int = 30) -> None:
        self.page = page
        self.most = most
        self.asked: list[str | None] = []
        self.server = LoopbackServer(self._route)
        self._lock = threading.Lock()

    def _route(self, path: str) -> Reply:
        query = parse_qs(urlsplit(path).query)
        cursor = query.get("cursor", [None])[0]
        limit = int(query.get("limit", ["1000"])[0])
        with self._lock:
            self.asked.append(cursor)
            last = len(self.asked) >= self.most
        rows, next_cursor = self.page(cursor, limit)
        repos = [{"did": f"did:plc:{n:024d}".replace("0", "a")[:32], "active": True}
                 for n in range(rows)]
        body = {"repos": repos, **({} if last or next_cursor is None else
                                   {"cursor": next_cursor})}
        return 200, JSON, json.dumps(body).encode()


def _alternating(cursor: str | None, limit: int) -> tuple[int, str | None]:
    return 5, "B" if cursor == "A" else "A"  # A, B, A, B, ...


@pytest.mark.parametrize("kind", KINDS)
def test_alternating_cursors_stop_with_an_error(kind, tmp_path):
    lister = _Lister(_alternating)
    with lister.server:
        error = _run(kind, tmp_path, lister.server.url, lister.server.url, "list_repos",
                     lister.server.url)
    assert isinstance(error, atrepo.TransportError) and "cursor repeated" in str(error)
    assert error.fields["host"] == f"127.0.0.1:{lister.server.port}"
    assert lister.asked == [None, "A", "B"]  # the answer to "B" named "A" again


@pytest.mark.parametrize("kind", KINDS)
def test_a_page_larger_than_asked_is_refused(kind, tmp_path):
    lister = _Lister(lambda cursor, limit: (limit * 5, None))
    with lister.server:
        error = _run(kind, tmp_path, lister.server.url, lister.server.url, "list_repos",
                     lister.server.url, kwargs={"limit": 10})
    assert isinstance(error, atrepo.TransportError) and "larger than the limit" in str(error)
    assert (error.fields["limit"], error.fields["rows"]) == (10, 50)
    assert error.fields["host"] == f"127.0.0.1:{lister.server.port}"


# -- 4. Retry-After values --------------------------------------------------------------------


def _limited(value: bytes) -> Callable[[socket.socket, bytes], None]:
    """Every request gets a 429 whose Retry-After is ``value`` (raw header bytes)."""

    def respond(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: " + value
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                     + b"Connection: close\r\n\r\n{}")

    return respond


@pytest.mark.parametrize("kind", KINDS)
def test_a_non_ascii_digit_retry_after_is_no_crash(kind, tmp_path):
    with RawServer(_limited("²".encode("latin-1"))) as pds:  # "²".isdigit() is True
        plc = _Plc(pds.url)
        with plc.server:
            error = _run(kind, tmp_path, plc.server.url, pds.url, "get_repo", DID,
                         retry=RetryPolicy(rate_limit_retries=2, base_delay=0.001))
    assert isinstance(error, atrepo.RateLimited), repr(error)
    assert error.host == f"127.0.0.1:{pds.port}" and error.retry_after is None
    assert len(pds.heads) == 3  # the first try and two backed-off retries


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_after_beyond_max_wait_is_not_waited_for(kind, tmp_path):
    with RawServer(_limited(b"1000000000")) as pds:
        plc = _Plc(pds.url)
        with plc.server:  # with max_wait tiny, a client that waits anyway asks 7 times
            error = _run(kind, tmp_path, plc.server.url, pds.url, "get_repo", DID,
                         retry=RetryPolicy(max_wait=0.01))
    assert isinstance(error, atrepo.RateLimited) and "longer than max_wait" in str(error)
    assert error.host == f"127.0.0.1:{pds.port}" and error.retry_after == 1e9
    assert len(pds.heads) == 1


def test_waits_of_one_request_stop_at_max_total_wait():
    """Through the sync driver over a real socket, with a sleep that only records."""
    slept: list[float] = []
    with RawServer(_limited(b"250")) as pds, httpx.Client(transport=LoopbackTransport()) as http:
        flow = get_latest_commit(pds.url, DID, policy=RetryPolicy())  # max_total_wait 600 s
        with pytest.raises(atrepo.RateLimited) as info:
            run_sync(flow, http, NoDns(), sleep=slept.append)
    assert slept == [250.0, 250.0]  # a third wait would pass 600 s
    assert "longer than max_total_wait" in str(info.value)
    assert info.value.retry_after == 250.0 and info.value.fields["waited"] == 500.0
    assert len(pds.heads) == 3
