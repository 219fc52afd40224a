"""Sandbox handles stay on the machine: no DNS query and no HTTPS well-known leave it.

With ``handle_resolver`` on loopback, or for a handle under a testing TLD (``.test``, ...),
the clients ask the resolver only. The DNS resolver and the transport below record every
lookup and request, so the test sees what would have left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from _loopback import KINDS, AsyncLoopbackTransport, LoopbackTransport

from atrepo._flows.effects import DnsFailure
from atrepo.client import AsyncClient, Client


class _Dns:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def txt(self, name: str) -> Sequence[str]:
        self.asked.append(name)
        raise DnsFailure(name, "no DNS in tests")


class _AsyncDns(_Dns):
    async def txt(self, name: str) -> Sequence[str]:  # type: ignore[override]
        return super().txt(name)


class _Seen(LoopbackTransport):
    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        return super().handle_request(request)


class _AsyncSeen(AsyncLoopbackTransport):
    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        return await super().handle_async_request(request)


@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_handles_ask_only_the_loopback_resolver(kind, sandbox, tmp_path):
    alice = sandbox.account("alice.test")
    options = {"plc_url": sandbox.plc_url, "handle_resolver": sandbox.pds_url,
               "cache_dir": tmp_path, "progress": False}
    dns: Any
    seen: Any
    if kind == "sync":
        dns, seen = _Dns(), _Seen()
        with Client(http=httpx.Client(transport=seen, trust_env=False), dns=dns,
                    **options) as client:
            by_handle = client.resolve("alice.test")
            by_did = client.resolve(alice["did"])  # the claimed handle is checked forward
            snap = client.get_repo("alice.test")
    else:
        dns, seen = _AsyncDns(), _AsyncSeen()

        async def go() -> Any:
            async with AsyncClient(http=httpx.AsyncClient(transport=seen, trust_env=False),
                                   dns=dns, **options) as client:
                return (await client.resolve("alice.test"), await client.resolve(alice["did"]),
                        await client.get_repo("alice.test"))

        by_handle, by_did, snap = asyncio.run(go())
    assert by_handle.did == alice["did"] and by_handle.handle_verified
    assert by_did.handle == "alice.test" and by_did.handle_verified
    assert len(snap) == alice["records"]
    assert dns.asked == []
    assert "alice.test" not in seen.hosts and set(seen.hosts) <= {"127.0.0.1", "localhost"}
