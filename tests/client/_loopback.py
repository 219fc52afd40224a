"""Clients for tests against the sandbox: loopback-only transports and no DNS.

Imported by the test modules of this directory (pytest puts it on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from atrepo._flows.effects import DnsFailure
from atrepo.client import AsyncClient, Client

__all__ = ["KINDS", "AsyncLoopbackTransport", "AsyncNoDns", "LoopbackTransport", "NoDns",
           "call", "client", "paged"]

KINDS = ["sync", "async"]


def _loopback_only(request: httpx.Request) -> None:
    host = request.url.host
    if host != "localhost":
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            pass
        raise httpx.ConnectError(f"tests never leave loopback (asked for {host})",
                                 request=request)


class LoopbackTransport(httpx.HTTPTransport):
    """An HTTP transport that refuses every host but loopback."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _loopback_only(request)
        return super().handle_request(request)


class AsyncLoopbackTransport(httpx.AsyncHTTPTransport):
    """:class:`LoopbackTransport` for ``httpx.AsyncClient``."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _loopback_only(request)
        return await super().handle_async_request(request)


class NoDns:
    """A DNS resolver that answers nothing: tests ask no nameserver."""

    def txt(self, name: str) -> Sequence[str]:
        raise DnsFailure(name, "tests use no DNS")


class AsyncNoDns:
    """:class:`NoDns` for the async driver."""

    async def txt(self, name: str) -> Sequence[str]:
        raise DnsFailure(name, "tests use no DNS")


def client(kind: str, sandbox: Any, cache: Path, *,
           transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
           **options: Any) -> Client | AsyncClient:
    """A new Client ("sync") or AsyncClient ("async") on the sandbox: loopback only, no DNS.

    ``transport`` replaces the loopback one (give it a loopback base); ``options`` are more
    client options (``timeout`` also becomes the httpx client's, which is the one used).
    """
    options = {"plc_url": sandbox.plc_url, "handle_resolver": sandbox.pds_url,
               "cache_dir": cache, "progress": False, **options}
    timeout = options.get("timeout", 20)
    if kind == "sync":
        http = httpx.Client(transport=transport or LoopbackTransport(), trust_env=False,
                            timeout=timeout)
        return Client(http=http, dns=NoDns(), **options)
    ahttp = httpx.AsyncClient(transport=transport or AsyncLoopbackTransport(),
                              trust_env=False, timeout=timeout)
    return AsyncClient(http=ahttp, dns=AsyncNoDns(), **options)


def call(kind: str, sandbox: Any, tmp_path: Path, method: str, *args: Any,
         **kwargs: Any) -> Any:
    """Call ``method(*args, **kwargs)`` on a fresh client (cache ``tmp_path / kind``)."""
    made = client(kind, sandbox, tmp_path / kind)
    if isinstance(made, Client):
        with made:
            return getattr(made, method)(*args, **kwargs)

    async def go() -> Any:
        async with made:
            return await getattr(made, method)(*args, **kwargs)

    return asyncio.run(go())


def paged(http: httpx.Client, url: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of a cursor-paged XRPC listing (``key``: "records", "repos", ...)."""
    while True:
        res = http.get(url, params=params)
        assert res.status_code == 200, res.text
        body = res.json()
        yield from body[key]
        if not body[key] or not body.get("cursor"):
            return
        params["cursor"] = body["cursor"]
