"""The dnspython adapters (:mod:`atrepo._io.dns`), against a tiny DNS server on 127.0.0.1.

Both the sync and the async resolver are tested; nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.resolver
import dns.rrset
import httpx
import pytest

from atrepo._flows.effects import DnsFailure
from atrepo._flows.identity import resolve_handle
from atrepo._io.dns import AsyncSystemDnsResolver, SystemDnsResolver
from atrepo._io.http import run_async, run_sync

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
HANDLE = "alice.example.com"  # not a testing TLD: DNS is asked
MODES = ["sync", "async"]
# the resolvers' timeout: generous where the server answers (a busy machine must not turn an
# answer into a timeout), tight where it stays silent and the timeout is what is tested
ANSWERED = 10.0
SILENT = 0.3


class LoopbackDns:
    """A UDP DNS server on 127.0.0.1: TXT answers from ``zone``; None means NXDOMAIN; names
    not in the zone get no reply at all (so clients time out)."""

    def __init__(self, zone: dict[str, list[str] | None]) -> None:
        self.zone = zone
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True)
            if name not in self.zone:
                continue
            response = dns.message.make_response(query)
            texts = self.zone[name]
            if texts is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif texts:
                response.answer.append(dns.rrset.from_text(
                    question.name, 60, "IN", "TXT", *(f'"{text}"' for text in texts)))
            self.sock.sendto(response.to_wire(), peer)

    def configure(self, resolver: dns.resolver.Resolver) -> Any:
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        return resolver


@pytest.fixture
def loopback_dns() -> Iterator[LoopbackDns]:
    server = LoopbackDns({f"_atproto.{HANDLE}": [f"did={DID}", "other"],
                          "_atproto.gone.test": None, "_atproto.empty.test": []})
    server.thread.start()
    yield server
    server.stopping.set()
    server.thread.join()
    server.sock.close()


def _lookup(mode: str, server: LoopbackDns, name: str) -> list[str]:
    timeout = ANSWERED if name in server.zone else SILENT
    if mode == "sync":
        resolver = server.configure(dns.resolver.Resolver(configure=False))
        return SystemDnsResolver(timeout=timeout, resolver=resolver).txt(name)
    aresolver = server.configure(dns.asyncresolver.Resolver(configure=False))
    return asyncio.run(AsyncSystemDnsResolver(timeout=timeout, resolver=aresolver).txt(name))


@pytest.mark.parametrize("mode", MODES)
def test_dnspython_adapter_answers(mode, loopback_dns):
    assert _lookup(mode, loopback_dns, f"_atproto.{HANDLE}") in (
        [f"did={DID}", "other"], ["other", f"did={DID}"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,reason", [("_atproto.gone.test", "NXDOMAIN"),
                                         ("_atproto.empty.test", "no TXT records"),
                                         ("_atproto.silent.test", "timeout")])
def test_dnspython_adapter_failures(mode, loopback_dns, name, reason):
    with pytest.raises(DnsFailure) as info:
        _lookup(mode, loopback_dns, name)
    assert (info.value.name, info.value.reason) == (name, reason)


@pytest.mark.parametrize("mode", MODES)
def test_handle_resolution_through_dnspython(mode, loopback_dns):
    transport = httpx.MockTransport(lambda request: httpx.Response(599))
    if mode == "sync":
        resolver = SystemDnsResolver(resolver=loopback_dns.configure(
            dns.resolver.Resolver(configure=False)), timeout=ANSWERED)
        with httpx.Client(transport=transport) as http:
            assert run_sync(resolve_handle(HANDLE), http, resolver) == DID
        return

    async def main() -> str:
        resolver = AsyncSystemDnsResolver(resolver=loopback_dns.configure(
            dns.asyncresolver.Resolver(configure=False)), timeout=ANSWERED)
        async with httpx.AsyncClient(transport=transport) as http:
            return await run_async(resolve_handle(HANDLE), http, resolver)

    assert asyncio.run(main()) == DID
