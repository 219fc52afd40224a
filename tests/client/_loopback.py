"""Clients for tests against the sandbox: loopback-only transports and no DNS.

Imported by the test modules of this directory (pytest puts it on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from atrepo._flows.effects import DnsFailure
from atrepo.client import AsyncClient, Client

__all__ = ["KINDS", "_AsyncLoopbackTransport", "_AsyncNoDns", "_LoopbackTransport", "_NoDns",
           "_run"]

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


class _LoopbackTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _loopback_only(request)
        return super().handle_request(request)


class _AsyncLoopbackTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _loopback_only(request)
        return await super().handle_async_request(request)


class _NoDns:
    def txt(self, name: str) -> Sequence[str]:
        raise DnsFailure(name, "tests use no DNS")


class _AsyncNoDns:
    async def txt(self, name: str) -> Sequence[str]:
        raise DnsFailure(name, "tests use no DNS")


def _run(kind: str, sandbox: Any, tmp_path: Path, method: str, *args: Any) -> Any:
    """Call ``method`` on a fresh Client or AsyncClient pointed at the sandbox."""
    options = {"plc_url": sandbox.plc_url, "handle_resolver": sandbox.pds_url,
               "cache_dir": tmp_path / kind, "progress": False}
    if kind == "sync":
        http = httpx.Client(transport=_LoopbackTransport(), trust_env=False, timeout=20)
        with Client(http=http, dns=_NoDns(), **options) as client:
            return getattr(client, method)(*args)

    async def go() -> Any:
        http = httpx.AsyncClient(transport=_AsyncLoopbackTransport(), trust_env=False,
                                 timeout=20)
        async with AsyncClient(http=http, dns=_AsyncNoDns(), **options) as client:
            return await getattr(client, method)(*args)

    return asyncio.run(go())
