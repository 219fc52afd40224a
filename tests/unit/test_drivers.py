"""The sync and async drivers, each scenario run through both.

HTTP goes to ``httpx.MockTransport`` handlers and DNS to a fake resolver, except for the
dnspython adapters, which talk to a tiny DNS server on 127.0.0.1. Nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.resolver
import dns.rrset
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from atrepo._flows.effects import DnsFailure, DnsTxt, Effect, Flow, HttpGet, HttpResponse
from atrepo._flows.identity import resolve, resolve_did, resolve_handle
from atrepo._io.drivers import AsyncSystemDnsResolver, SystemDnsResolver, run_async, run_sync
from atrepo.crypto import format_did_key
from atrepo.errors import ResolutionError, TransportError

PLC = "https://plc.test"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
HANDLE = "alice.test"
PDS = "https://pds.test"
XRPC = "https://resolver.test"
WELL_KNOWN = f"https://{HANDLE}/.well-known/atproto-did"
_POINT = ec.derive_private_key(7, ec.SECP256K1()).public_key().public_bytes(
    Encoding.X962, PublicFormat.CompressedPoint)
DID_KEY = format_did_key("k256", _POINT)
MODES = ["sync", "async"]
Handler = Callable[[httpx.Request], httpx.Response]


def make_doc(did: str = DID, handle: str = HANDLE) -> dict[str, Any]:
    return {
        "id": did,
        "alsoKnownAs": [f"at://{handle}"],
        "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey", "controller": did,
                                "publicKeyMultibase": DID_KEY.removeprefix("did:key:")}],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                     "serviceEndpoint": PDS}],
    }


class FakeDns:
    """A DNS resolver with a fixed zone: name -> records, or DnsFailure when absent."""

    def __init__(self, zone: dict[str, Sequence[str]] | None = None) -> None:
        self.zone = zone or {}
        self.asked: list[str] = []

    def txt(self, name: str) -> Sequence[str]:
        self.asked.append(name)
        if name not in self.zone:
            raise DnsFailure(name, "NXDOMAIN")
        return self.zone[name]


class AsyncFakeDns(FakeDns):
    async def txt(self, name: str) -> Sequence[str]:  # type: ignore[override]
        await asyncio.sleep(0)
        return FakeDns.txt(self, name)


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A streamed body without Content-Length, usable by both clients."""

    def __init__(self, chunks: Sequence[bytes], delay: float = 0.0) -> None:
        self.chunks = chunks
        self.delay = delay
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            time.sleep(self.delay)
            self.sent += 1
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.delay)
            self.sent += 1
            yield chunk


def run(mode: str, flow: Flow[Any], handler: Handler, zone: dict[str, Sequence[str]] | None = None,
        **kwargs: Any) -> Any:
    """Run ``flow`` with the sync or the async driver against ``handler`` and ``zone``."""
    transport = httpx.MockTransport(handler)
    if mode == "sync":
        with httpx.Client(transport=transport) as http:
            return run_sync(flow, http, FakeDns(zone), **kwargs)

    async def main() -> Any:
        async with httpx.AsyncClient(transport=transport) as http:
            return await run_async(flow, http, AsyncFakeDns(zone), **kwargs)

    return asyncio.run(main())


def routes(table: dict[str, Handler]) -> Handler:
    """Return a handler answering by URL; unknown URLs get a 599 the flows do not expect."""

    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        answer = table.get(url, reply(599, text=f"unexpected {url}"))
        return answer(request)

    return handler


def reply(status: int, **kwargs: Any) -> Handler:
    """Return a handler that answers every request with a fresh ``httpx.Response``."""
    return lambda request: httpx.Response(status, **kwargs)


def raises(exc_type: type[Exception], message: str = "boom") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)  # type: ignore[call-arg]
    return handler


PLC_OK = {f"{PLC}/{DID}": reply(200, json=make_doc())}


@pytest.mark.parametrize("mode", MODES)
def test_resolve_handle_and_did(mode):
    ident = run(mode, resolve(HANDLE, plc_url=PLC), routes(PLC_OK),
                {f"_atproto.{HANDLE}": [f"did={DID}"]})
    assert (ident.did, ident.handle, ident.handle_verified) == (DID, HANDLE, True)
    assert (ident.pds, ident.signing_key) == (PDS, DID_KEY)


@pytest.mark.parametrize("mode", MODES)
def test_request_headers_and_response_headers(mode):
    def plc(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept"].startswith("application/did+ld+json")
        return httpx.Response(200, json=make_doc(), headers={"X-Thing": "1"})

    flow = _capture(HttpGet(f"{PLC}/{DID}", headers=(("accept", "application/did+ld+json"),)))
    response = run(mode, flow, routes({f"{PLC}/{DID}": plc}))
    assert response.status == 200
    assert response.headers["x-thing"] == "1"
    assert response.url == f"{PLC}/{DID}"
    assert json.loads(response.body)["id"] == DID


@pytest.mark.parametrize("mode", MODES)
def test_redirects_are_followed(mode):
    table = {WELL_KNOWN: reply(302, headers={"location": "https://elsewhere.test/d"}),
             "https://elsewhere.test/d": reply(200, text=DID)}
    response = run(mode, _capture(HttpGet(WELL_KNOWN)), routes(table))
    assert (response.status, response.url, response.body) == (200, "https://elsewhere.test/d",
                                                             DID.encode())
    unfollowed = run(mode, _capture(HttpGet(WELL_KNOWN, follow_redirects=False)), routes(table))
    assert unfollowed.status == 302


@pytest.mark.parametrize("mode", MODES)
def test_dns_failure_falls_back_to_well_known(mode):
    handler = routes({WELL_KNOWN: reply(200, text=f"{DID}\n")})
    assert run(mode, resolve_handle(HANDLE), handler) == DID


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout,
                                   httpx.RemoteProtocolError])
def test_connection_errors_fall_back_to_xrpc(mode, error):
    table = {WELL_KNOWN: raises(error),
             f"{XRPC}/xrpc/com.atproto.identity.resolveHandle?handle={HANDLE}":
                 reply(200, json={"did": DID})}
    assert run(mode, resolve_handle(HANDLE, xrpc_resolver=XRPC), routes(table)) == DID


@pytest.mark.parametrize("mode", MODES)
def test_nothing_resolves(mode):
    handler = routes({WELL_KNOWN: raises(httpx.ConnectError, "refused")})
    with pytest.raises(ResolutionError) as info:
        run(mode, resolve_handle(HANDLE), handler)
    assert info.value.identifier == HANDLE
    assert info.value.fields["dns"] == "NXDOMAIN"
    assert info.value.fields["https"] == "connection failed"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "streamed"])
def test_oversized_body_becomes_resolution_error(mode, streamed):
    big = b"x" * (1 << 20)
    body = {"stream": Chunks([big, big])} if streamed else {"content": big + big}
    handler = routes({f"{PLC}/{DID}": reply(200, **body)})
    with pytest.raises(ResolutionError) as info:
        run(mode, resolve_did(DID, plc_url=PLC), handler)
    cause = info.value.__cause__
    assert isinstance(cause, TransportError)
    assert cause.message == "response too large" and cause.url == f"{PLC}/{DID}"
    assert info.value.identifier == DID
    if streamed:
        assert body["stream"].sent == 2  # aborted before reading on


@pytest.mark.parametrize("mode", MODES)
def test_oversized_well_known_falls_through(mode):
    table = {WELL_KNOWN: reply(200, stream=Chunks([DID.encode() + b"\n" * 10_000]))}
    with pytest.raises(ResolutionError) as info:
        run(mode, resolve_handle(HANDLE), routes(table))
    assert info.value.fields["https"] == "response too large"


@pytest.mark.parametrize("mode", MODES)
def test_error_bodies_are_truncated_not_fatal(mode):
    handler = routes({f"{PLC}/{DID}": reply(404, content=b"x" * (3 << 20))})
    response = run(mode, _capture(HttpGet(f"{PLC}/{DID}", max_bytes=1000)), handler)
    assert (response.status, len(response.body)) == (404, 1000)
    with pytest.raises(ResolutionError, match="DID not found"):
        run(mode, resolve_did(DID, plc_url=PLC), handler)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.PoolTimeout])
def test_timeout(mode, error):
    with pytest.raises(ResolutionError) as info:
        run(mode, resolve_did(DID, plc_url=PLC), routes({f"{PLC}/{DID}": raises(error)}))
    cause = info.value.__cause__
    assert isinstance(cause, TransportError) and cause.message == "request timed out"
    assert isinstance(cause.__cause__, error)
    assert info.value.fields["reason"] == "request timed out"


@pytest.mark.parametrize("mode", MODES)
def test_slow_body_hits_the_total_timeout(mode):
    handler = routes({f"{PLC}/{DID}": reply(200, stream=Chunks([b"{"] * 5, 0.02))})
    with pytest.raises(TransportError, match="response too slow"):
        run(mode, _capture(HttpGet(f"{PLC}/{DID}")), handler, total_timeout=0.01)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("handler,summary", [
    (raises(httpx.ConnectError, "refused"), "connection failed"),
    (raises(httpx.ReadError, "reset\nby peer"), "request failed"),
    (raises(httpx.UnsupportedProtocol), "invalid URL"),
    (reply(200, headers={"content-encoding": "gzip"}, content=b"not gzip"), "request failed"),
])
def test_uncaught_transport_errors_name_the_url(mode, handler, summary):
    with pytest.raises(TransportError) as info:
        run(mode, _capture(HttpGet(f"{PLC}/{DID}")), handler)
    assert info.value.message == summary
    assert info.value.url == f"{PLC}/{DID}"
    assert isinstance(info.value.__cause__, httpx.HTTPError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_invalid_url_is_a_transport_error(mode):
    with pytest.raises(TransportError, match="invalid URL"):
        run(mode, _capture(HttpGet("https://host.test:abc/")), routes({}))


@pytest.mark.parametrize("mode", MODES)
def test_unknown_effect_is_a_bug(mode):
    def flow() -> Flow[None]:
        yield "what"  # type: ignore[misc]

    with pytest.raises(TypeError, match="unknown effect"):
        run(mode, flow(), routes({}))


@pytest.mark.parametrize("mode", MODES)
def test_flow_without_effects(mode):
    def flow() -> Flow[int]:
        return 42
        yield  # pragma: no cover - makes this a generator

    assert run(mode, flow(), routes({})) == 42


@pytest.mark.parametrize("mode", MODES)
def test_flow_is_closed_when_the_driver_stops(mode):
    closed: list[bool] = []

    def flow() -> Flow[None]:
        try:
            yield DnsTxt("x.test")
        finally:
            closed.append(True)

    class Broken(FakeDns):
        def txt(self, name: str) -> Sequence[str]:
            raise KeyboardInterrupt

    class AsyncBroken(FakeDns):
        async def txt(self, name: str) -> Sequence[str]:  # type: ignore[override]
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        if mode == "sync":
            with httpx.Client(transport=httpx.MockTransport(routes({}))) as http:
                run_sync(flow(), http, Broken())
        else:
            async def main() -> None:
                async with httpx.AsyncClient(transport=httpx.MockTransport(routes({}))) as http:
                    await run_async(flow(), http, AsyncBroken())
            asyncio.run(main())
    assert closed == [True]


def _capture(effect: HttpGet) -> Flow[HttpResponse]:
    """A one-effect flow that returns the raw response (no interpretation)."""
    response = yield effect
    assert isinstance(response, HttpResponse)
    return response


# -- dnspython adapters, against a DNS server on loopback -----------------------------------


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
    if mode == "sync":
        resolver = server.configure(dns.resolver.Resolver(configure=False))
        return SystemDnsResolver(timeout=0.3, resolver=resolver).txt(name)
    aresolver = server.configure(dns.asyncresolver.Resolver(configure=False))
    return asyncio.run(AsyncSystemDnsResolver(timeout=0.3, resolver=aresolver).txt(name))


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
    transport = httpx.MockTransport(routes({}))
    if mode == "sync":
        resolver = SystemDnsResolver(resolver=loopback_dns.configure(
            dns.resolver.Resolver(configure=False)), timeout=0.3)
        with httpx.Client(transport=transport) as http:
            assert run_sync(resolve_handle(HANDLE), http, resolver) == DID
        return

    async def main() -> str:
        resolver = AsyncSystemDnsResolver(resolver=loopback_dns.configure(
            dns.asyncresolver.Resolver(configure=False)), timeout=0.3)
        async with httpx.AsyncClient(transport=transport) as http:
            return await run_async(resolve_handle(HANDLE), http, resolver)

    assert asyncio.run(main()) == DID


def test_effect_types_are_frozen_values():
    effect: Effect = HttpGet("https://x.test")
    assert effect == HttpGet("https://x.test") and hash(effect) == hash(HttpGet("https://x.test"))
    with pytest.raises(AttributeError):
        effect.url = "https://y.test"  # type: ignore[misc]
    assert not hasattr(effect, "__dict__")
