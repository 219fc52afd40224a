"""The sync and async drivers (:mod:`atrepo._io.http`), each scenario run through both.

HTTP goes to ``httpx.MockTransport`` handlers and DNS to a fake resolver; sleeps and the
deadline clock are fakes, so nothing waits. Nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from atrepo._flows.effects import (
    DnsFailure,
    DnsTxt,
    Flow,
    HttpDownload,
    HttpGet,
    HttpResponse,
    Sleep,
)
from atrepo._flows.identity import resolve, resolve_did, resolve_handle
from atrepo.retry import RetryPolicy
from atrepo._flows.repo import get_latest_commit, get_repo
from atrepo._io.http import run_async, run_sync
from atrepo.crypto import format_did_key
from atrepo.errors import RepoUnavailable, ResolutionError, TransportError

PLC = "https://plc.test"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
HANDLE = "alice.example.com"  # not a testing TLD: DNS and HTTPS are asked
PDS = "https://pds.test"
XRPC = "https://resolver.test"
WELL_KNOWN = f"https://{HANDLE}/.well-known/atproto-did"
_POINT = ec.derive_private_key(7, ec.SECP256K1()).public_key().public_bytes(
    Encoding.X962, PublicFormat.CompressedPoint)
DID_KEY = format_did_key("k256", _POINT)
ENC_DID = DID.replace(":", "%3A")
GET_REPO = f"{PDS}/xrpc/com.atproto.sync.getRepo?did={ENC_DID}"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
REV = "3l3qo2vutsw2b"
MODES = ["sync", "async"]
FAST = RetryPolicy(base_delay=0.001, max_delay=0.002)
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

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self.chunks = chunks
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk


class FakeTime:
    """A clock that advances ``tick`` seconds per reading, and a sleep that only records."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 0.0
        self.tick = tick
        self.slept: list[float] = []

    def clock(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def run(mode: str, flow: Flow[Any], handler: Handler, zone: dict[str, Sequence[str]] | None = None,
        *, fake: FakeTime | None = None, **kwargs: Any) -> Any:
    """Run ``flow`` with the sync or the async driver against ``handler`` and ``zone``.

    Sleeps and the deadline clock are ``fake``'s (a fresh FakeTime unless given).
    """
    transport = httpx.MockTransport(handler)
    fake = fake or FakeTime()
    if mode == "sync":
        with httpx.Client(transport=transport) as http:
            return run_sync(flow, http, FakeDns(zone), sleep=fake.sleep, clock=fake.clock,
                            **kwargs)

    async def main() -> Any:
        async with httpx.AsyncClient(transport=transport) as http:
            return await run_async(flow, http, AsyncFakeDns(zone), sleep=fake.asleep,
                                   clock=fake.clock, **kwargs)

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
    chunks = Chunks([b"{"] * 5)
    handler = routes({f"{PLC}/{DID}": reply(200, stream=chunks)})
    with pytest.raises(TransportError, match="response too slow") as info:
        run(mode, _capture(HttpGet(f"{PLC}/{DID}")), handler, total_timeout=2.5,
            fake=FakeTime(tick=1.0))  # each reading of the clock is one second later
    assert info.value.url == f"{PLC}/{DID}" and chunks.sent < 5


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


# -- downloads, retries and sleeps ---------------------------------------------------------


class Broken(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends one chunk and then loses the connection."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"x" * 1000
        raise httpx.ReadError("connection reset")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise httpx.ReadError("connection reset")


@pytest.mark.parametrize("mode", MODES)
def test_download_writes_the_file(mode, tmp_path):
    path = tmp_path / "repo.car"
    path.write_bytes(b"old content that is longer than the new one")
    car = bytes(range(256)) * 100

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == GET_REPO
        assert request.headers["accept"] == "application/vnd.ipld.car"
        return httpx.Response(200, content=car)

    assert run(mode, get_repo(PDS, DID, path=str(path)), handler) is None
    assert path.read_bytes() == car


@pytest.mark.parametrize("mode", MODES)
def test_download_decodes_gzip(mode, tmp_path):
    path = tmp_path / "repo.car"
    car = b"car bytes " * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=gzip.compress(car),
                              headers={"content-encoding": "gzip"})

    run(mode, get_repo(PDS, DID, path=str(path)), handler)
    assert path.read_bytes() == car


@pytest.mark.parametrize("mode", MODES)
def test_gzip_bomb_is_cut_and_leaves_no_file(mode, tmp_path):
    path = tmp_path / "repo.car"
    bomb = gzip.compress(b"\0" * (4 << 20))
    assert len(bomb) < 64 * 1024
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=bomb, headers={"content-encoding": "gzip"})

    with pytest.raises(TransportError, match="response too large") as info:
        run(mode, get_repo(PDS, DID, path=str(path), max_bytes=1 << 20), handler)
    assert info.value.url == GET_REPO
    assert not path.exists()
    assert len(calls) == 1  # not retried


@pytest.mark.parametrize("mode", MODES)
def test_declared_length_too_large(mode, tmp_path):
    path = tmp_path / "repo.car"
    handler: Handler = lambda request: httpx.Response(200, content=b"x" * 2000)  # noqa: E731
    with pytest.raises(TransportError, match="response too large"):
        run(mode, get_repo(PDS, DID, path=str(path), max_bytes=1000), handler)
    assert not path.exists()


@pytest.mark.parametrize("mode", MODES)
def test_broken_download_leaves_no_file_and_is_retried(mode, tmp_path):
    path = tmp_path / "repo.car"
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, stream=Broken())

    with pytest.raises(TransportError) as info:
        run(mode, get_repo(PDS, DID, path=str(path), policy=FAST), handler)
    assert info.value.url == GET_REPO
    assert not path.exists()
    assert len(calls) == FAST.retries + 1


@pytest.mark.parametrize("mode", MODES)
def test_download_error_body_leaves_the_file_alone(mode, tmp_path):
    path = tmp_path / "repo.car"
    taken: Handler = lambda request: httpx.Response(  # noqa: E731
        400, json={"error": "RepoTakendown", "message": "gone"})
    with pytest.raises(RepoUnavailable) as info:
        run(mode, get_repo(PDS, DID, path=str(path)), taken)
    assert info.value.status == "takendown"
    assert not path.exists()

    def capture() -> Flow[HttpResponse]:
        response = yield HttpDownload(GET_REPO, str(path))
        return response

    huge: Handler = lambda request: httpx.Response(500, content=b"e" * (200 << 10))  # noqa: E731
    response = run(mode, capture(), huge)
    assert (response.status, len(response.body)) == (500, 64 * 1024)
    assert not path.exists()


@pytest.mark.parametrize("mode", MODES)
def test_sleep_is_performed(mode):
    def naps() -> Flow[bool]:
        answer = yield Sleep(0.02)
        yield Sleep(-1.0)  # nothing to wait for
        return answer is None

    fake = FakeTime()
    assert run(mode, naps(), lambda request: httpx.Response(599), fake=fake) is True
    assert fake.slept == [0.02, 0.0]


@pytest.mark.parametrize("mode", MODES)
def test_retries_through_the_driver(mode, tmp_path):
    statuses = iter([503, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 200:
            return httpx.Response(200, json={"cid": CID, "rev": REV})
        return httpx.Response(status, headers={"retry-after": "0"})

    fake = FakeTime()
    assert run(mode, get_latest_commit(PDS, DID, policy=FAST), handler, fake=fake) == (CID, REV)
    assert len(fake.slept) == 2


# -- content encodings: decoded by atrepo, counted per layer ---------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_only_decodable_encodings_are_asked_for(mode):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept-encoding"])
        return httpx.Response(200, content=b"{}")

    run(mode, _capture(HttpGet(f"{PLC}/{DID}")), handler)
    assert seen == ["gzip, deflate"]


@pytest.mark.parametrize("mode", MODES)
def test_streamed_stacked_encodings_decode(mode):
    body = json.dumps(make_doc()).encode()
    handler = routes({f"{PLC}/{DID}": reply(
        200, headers={"content-encoding": "gzip, gzip"},
        stream=Chunks([gzip.compress(gzip.compress(body))]))})
    response = run(mode, _capture(HttpGet(f"{PLC}/{DID}")), handler)
    assert response.body == body


@pytest.mark.parametrize("mode", MODES)
def test_streamed_stacked_bomb_is_cut_at_max_bytes(mode):
    bomb = gzip.compress(gzip.compress(bytes(64 << 20), 9), 9)
    chunks = Chunks([bomb[i:i + 512] for i in range(0, len(bomb), 512)])
    handler = routes({f"{PLC}/{DID}": reply(200, headers={"content-encoding": "gzip, gzip"},
                                            stream=chunks)})
    with pytest.raises(TransportError, match="response too large") as info:
        run(mode, _capture(HttpGet(f"{PLC}/{DID}", max_bytes=1 << 20)), handler)
    assert info.value.url == f"{PLC}/{DID}" and info.value.fields["max_bytes"] == 1 << 20


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("encoding,body", [("br", b"\x8b\x00"), ("gzip", b"not gzip")])
def test_an_error_body_that_does_not_decode_still_gives_its_status(mode, encoding, body):
    handler = routes({f"{PLC}/{DID}": reply(404, headers={"content-encoding": encoding},
                                            stream=Chunks([body]))})
    response = run(mode, _capture(HttpGet(f"{PLC}/{DID}")), handler)
    assert (response.status, response.body) == (404, b"")
    with pytest.raises(ResolutionError, match="DID not found"):
        run(mode, resolve_did(DID, plc_url=PLC), handler)


@pytest.mark.parametrize("mode", MODES)
def test_a_2xx_body_in_an_unknown_encoding_is_a_transport_error(mode):
    handler = routes({f"{PLC}/{DID}": reply(200, headers={"content-encoding": "br"},
                                            stream=Chunks([b"\x8b\x00"]))})
    with pytest.raises(TransportError, match="request failed") as info:
        run(mode, _capture(HttpGet(f"{PLC}/{DID}")), handler)
    assert "unsupported content encoding" in str(info.value)
