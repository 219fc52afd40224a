"""Hostile-network behaviour the reference PDS cannot produce, in front of the real PDS.

A transport forwards every request to the sandbox, except that it injects faults into the
first few getRepo requests: 429 with Retry-After, 500s, dropped connections, truncated and
oversized bodies. The client must recover where it should and fail with the right error
where it must — never hang or raise anything but an AtrepoError. Both clients are tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import atrepo
from atrepo._flows.policy import RetryPolicy
from atrepo.client import AsyncClient, Client

Fault = Callable[[httpx.Request], httpx.Response | None]


def _status(code: int, **headers: str) -> Fault:
    return lambda request: httpx.Response(code, headers=headers, json={"error": "Injected"})


def _drop(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("peer closed connection mid-body", request=request)


class _Faulty:
    """Injects ``faults`` (in order) into getRepo requests, then lets them through."""

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = list(faults)
        self.get_repo_calls = 0

    def pick(self, request: httpx.Request) -> Fault | None:
        if "com.atproto.sync.getRepo" not in request.url.path:
            return None
        self.get_repo_calls += 1
        return self.faults.pop(0) if self.faults else None


class _SyncTransport(httpx.HTTPTransport):
    def __init__(self, faulty: _Faulty) -> None:
        super().__init__()
        self.faulty = faulty

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faulty.pick(request)
        if fault is not None:
            return fault(request)  # type: ignore[return-value]
        return super().handle_request(request)


class _AsyncTransport(httpx.AsyncHTTPTransport):
    def __init__(self, faulty: _Faulty) -> None:
        super().__init__()
        self.faulty = faulty

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faulty.pick(request)
        if fault is not None:
            return fault(request)  # type: ignore[return-value]
        return await super().handle_async_request(request)


def _get_repo(kind: str, sandbox: Any, tmp_path: Any, faults: list[Fault],
              **extra: Any) -> tuple[Any, int]:
    """get_repo of alice (by DID, so no handle lookups) through the faulty transport."""
    faulty = _Faulty(faults)
    did = sandbox.account("alice.test")["did"]
    # the same budgets as the default policy, with millisecond backoff delays
    options = {"plc_url": sandbox.plc_url, "cache_dir": tmp_path / kind, "progress": False,
               "retry": RetryPolicy(base_delay=0.001), **extra}
    if kind == "sync":
        with Client(http=httpx.Client(transport=_SyncTransport(faulty), trust_env=False),
                    **options) as client:
            try:
                return client.get_repo(did), faulty.get_repo_calls
            except atrepo.AtrepoError as exc:
                return exc, faulty.get_repo_calls

    async def go() -> tuple[Any, int]:
        http = httpx.AsyncClient(transport=_AsyncTransport(faulty), trust_env=False)
        async with AsyncClient(http=http, **options) as client:
            try:
                return await client.get_repo(did), faulty.get_repo_calls
            except atrepo.AtrepoError as exc:
                return exc, faulty.get_repo_calls

    return asyncio.run(go())


KINDS = ["sync", "async"]


@pytest.mark.parametrize("kind", KINDS)
def test_recovers_from_429_and_5xx(kind, sandbox, tmp_path):
    faults = [_status(429, **{"retry-after": "0"}), _status(500), _status(503), _drop]
    snap, calls = _get_repo(kind, sandbox, tmp_path, faults)
    assert isinstance(snap, atrepo.RepoSnapshot) and snap.verified
    assert len(snap) == sandbox.account("alice.test")["records"]
    assert calls == 5


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_429_ends_in_rate_limited(kind, sandbox, tmp_path):
    error, calls = _get_repo(kind, sandbox, tmp_path,
                             [_status(429, **{"retry-after": "0"})] * 20)
    assert isinstance(error, atrepo.RateLimited)
    assert error.host == urlsplit(sandbox.pds_url).netloc
    assert calls == 7   # the first try + 6 waited-out 429s


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_resets_end_in_transport_error(kind, sandbox, tmp_path):
    error, calls = _get_repo(kind, sandbox, tmp_path, [_drop] * 20)
    assert isinstance(error, atrepo.TransportError)
    assert "getRepo" in str(error.url) and calls == 5


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_body_is_a_car_error(kind, sandbox, tmp_path):
    def truncated(request: httpx.Request) -> httpx.Response:
        with httpx.Client(trust_env=False) as http:
            body = http.send(request).content
        return httpx.Response(200, content=body[: len(body) // 2],
                              headers={"content-type": "application/vnd.ipld.car"})

    error, _ = _get_repo(kind, sandbox, tmp_path, [truncated])
    assert isinstance(error, atrepo.CarError) and error.offset is not None


@pytest.mark.parametrize("kind", KINDS)
def test_oversized_body_is_cut(kind, sandbox, tmp_path):
    error, calls = _get_repo(kind, sandbox, tmp_path, [], max_repo_bytes=10_000)
    assert isinstance(error, atrepo.TransportError) and "too large" in str(error)
    assert calls == 1
    assert not list((tmp_path / kind / "downloads").glob("*"))  # no partial file left
