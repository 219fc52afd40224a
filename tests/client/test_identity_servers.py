"""did:web and handles resolved end to end by the real clients, from a local HTTPS server.

``did:web:localhost%3A{port}`` is fetched from ``https://localhost:{port}/.well-known/did.json``
(the client always uses HTTPS for did:web and handles), so the server speaks TLS with a
certificate from a throwaway CA that only the test's httpx client trusts. A handle's
``https://{handle}/.well-known/atproto-did`` has no port to point elsewhere, so the test's
transport plays /etc/hosts: it sends the handle's host to the same loopback server, with the
handle as the TLS server name, so the certificate is still checked for it. Any other host is
refused, and DNS answers nothing: nothing leaves loopback.

Hostile documents (wrong key type, no PDS service, a foreign ``id``, oversized, not JSON, a
stalled body, a redirect away) must each end in ``atrepo.ResolutionError`` naming the DID.
Every scenario runs for both clients.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import atrepo
from _loopback import KINDS, AsyncNoDns, NoDns
from _servers import LoopbackServer, Reply, tls_contexts

from atrepo.client import AsyncClient, Client
from atrepo.testing import SigningKey

HANDLE = "alice.example.com"  # not a testing TLD: DNS and HTTPS are asked
OTHER_HANDLE = "mallory.example.com"
SERVER_TLS, CLIENT_TLS = tls_contexts(["localhost", HANDLE, OTHER_HANDLE])
KEY = SigningKey()
ED25519_KEY = "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"  # did:key spec example
JSON = {"content-type": "application/json"}


def _to_loopback(request: httpx.Request, port: int) -> httpx.Request:
    """Send handle hosts to the loopback server (checked as the handle); refuse the rest."""
    host = request.url.host
    if host in (HANDLE, OTHER_HANDLE):
        request.url = request.url.copy_with(host="127.0.0.1", port=port)
        request.extensions = {**request.extensions, "sni_hostname": host}
    elif host not in ("localhost", "127.0.0.1"):
        raise httpx.ConnectError(f"tests never leave loopback (asked for {host})",
                                 request=request)
    return request


class _Hosts(httpx.HTTPTransport):
    def __init__(self, port: int) -> None:
        super().__init__(verify=CLIENT_TLS)
        self.port = port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return super().handle_request(_to_loopback(request, self.port))


class _AsyncHosts(httpx.AsyncHTTPTransport):
    def __init__(self, port: int) -> None:
        super().__init__(verify=CLIENT_TLS)
        self.port = port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await super().handle_async_request(_to_loopback(request, self.port))


class _Site:
    """The HTTPS server: a DID document and the handles' well-known answers."""

    def __init__(self) -> None:
        self.server = LoopbackServer(self._route, tls=SERVER_TLS)
        self.did = f"did:web:localhost%3A{self.server.port}"
        self.doc: Callable[[], Reply] = lambda: _json(make_doc(self.did))
        self.well_known: Callable[[], Reply] = lambda: (200, {}, self.did.encode())

    def _route(self, path: str) -> Reply:
        if path == "/.well-known/did.json":
            return self.doc()
        if path == "/.well-known/atproto-did":
            return self.well_known()
        return 404, JSON, b'{"error": "NotFound"}'


def make_doc(did: str, **changes: Any) -> dict[str, Any]:
    doc = {"@context": ["https://www.w3.org/ns/did/v1"], "id": did,
           "alsoKnownAs": [f"at://{HANDLE}"],
           "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey",
                                   "controller": did,
                                   "publicKeyMultibase": KEY.did_key.removeprefix("did:key:")}],
           "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                        "serviceEndpoint": "https://pds.localhost"}]}
    doc.update(changes)
    return doc


def _json(value: Any) -> Reply:
    return 200, JSON, json.dumps(value).encode()


def _call(kind: str, site: _Site, tmp_path: Any, method: str, name: str,
          timeout: float = 5.0) -> Any:
    """``method(name)`` on a fresh Client or AsyncClient that can reach only ``site``."""
    options = {"plc_url": "http://127.0.0.1:9", "cache_dir": tmp_path / kind,
               "progress": False, "timeout": timeout}
    if kind == "sync":
        http = httpx.Client(transport=_Hosts(site.server.port), trust_env=False,
                            timeout=timeout)
        with site.server, Client(http=http, dns=NoDns(), **options) as client:
            return getattr(client, method)(name)

    async def go() -> Any:
        http = httpx.AsyncClient(transport=_AsyncHosts(site.server.port), trust_env=False,
                                 timeout=timeout)
        async with AsyncClient(http=http, dns=AsyncNoDns(), **options) as client:
            return await getattr(client, method)(name)

    with site.server:
        return asyncio.run(go())


# -- what works ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_did_web_on_localhost_resolves(kind, tmp_path):
    site = _Site()
    ident = _call(kind, site, tmp_path, "resolve", site.did)
    assert ident.did == site.did and ident.pds == "https://pds.localhost"
    assert ident.signing_key == KEY.did_key
    assert ident.handle == HANDLE and ident.handle_verified  # well-known answered the DID
    assert site.server.paths == ["/.well-known/did.json", "/.well-known/atproto-did"]


@pytest.mark.parametrize("kind", KINDS)
def test_handle_resolves_through_https_well_known(kind, tmp_path):
    site = _Site()
    ident = _call(kind, site, tmp_path, "resolve", HANDLE)
    assert ident.did == site.did and ident.handle == HANDLE and ident.handle_verified
    assert site.server.paths == ["/.well-known/atproto-did", "/.well-known/did.json"]


@pytest.mark.parametrize("kind", KINDS)
def test_resolve_handle_reads_the_first_line(kind, tmp_path):
    site = _Site()
    site.well_known = lambda: (200, {"content-type": "text/plain"}, f"{site.did}\n".encode())
    assert _call(kind, site, tmp_path, "resolve_handle", "@" + HANDLE.upper()) == site.did
    assert site.server.paths == ["/.well-known/atproto-did"]


@pytest.mark.parametrize("kind", KINDS)
def test_handle_the_document_does_not_claim_is_dropped(kind, tmp_path):
    site = _Site()
    site.doc = lambda: _json(make_doc(site.did, alsoKnownAs=[f"at://{OTHER_HANDLE}"]))
    ident = _call(kind, site, tmp_path, "resolve", HANDLE)
    assert ident.did == site.did and ident.handle is None and not ident.handle_verified


@pytest.mark.parametrize("kind", KINDS)
def test_claimed_handle_that_points_elsewhere_is_not_verified(kind, tmp_path):
    site = _Site()
    site.well_known = lambda: (200, {}, b"did:plc:ewvi7nxzyoun6zhxrhs64oiz")
    ident = _call(kind, site, tmp_path, "resolve", site.did)
    assert ident.did == site.did and ident.handle is None and not ident.handle_verified


# -- hostile DID documents -------------------------------------------------------------------


def _trickle(pieces: int, gap: float) -> Iterator[bytes]:
    yield b'{"id": "'
    for _ in range(pieces):
        time.sleep(gap)  # the stalled host: how the stall is made, not an ordering
        yield b"x"


def _huge(did: str, declared: bool) -> Reply:
    padding = "x" * (2 << 20)  # 2 MiB, over the 1 MiB cap on a DID document
    body = json.dumps(make_doc(did, padding=padding)).encode()
    if declared:
        return 200, {**JSON, "content-length": str(len(body))}, body
    return 200, JSON, (body[i:i + 65536] for i in range(0, len(body), 65536))


def _with(**changes: Any) -> Callable[[str], Reply]:
    return lambda did: _json(make_doc(did, **changes))


def _with_key(type_: str, multibase: str) -> Callable[[str], Reply]:
    return lambda did: _json(make_doc(did, verificationMethod=[
        {"id": f"{did}#atproto", "controller": did, "type": type_,
         "publicKeyMultibase": multibase}]))


def _with_pds(id_: str, type_: str, endpoint: str) -> Callable[[str], Reply]:
    return _with(service=[{"id": id_, "type": type_, "serviceEndpoint": endpoint}])


def _raw(status: int, body: bytes | Iterator[bytes], **headers: str) -> Callable[[str], Reply]:
    return lambda did: (status, {**JSON, **headers}, body)


# case: (what the error says, the server's reply for the DID)
HOSTILE: dict[str, tuple[str, Callable[[str], Reply]]] = {
    "ed25519 key (legacy type)": ("signing key is invalid",
                                  _with_key("Ed25519VerificationKey2020", ED25519_KEY)),
    "ed25519 key (Multikey)": ("unsupported did:key multicodec",
                               _with_key("Multikey", ED25519_KEY)),
    "key that is not base58": ("does not decode", _with_key("Multikey", "z0OIl")),
    "no signing key": ("no atproto signing key", _with(verificationMethod=[])),
    "no #atproto_pds service": ("no atproto PDS service",
                                _with_pds("#bsky_chat", "BskyChatService",
                                          "https://chat.localhost")),
    "PDS service of the wrong type": ("no atproto PDS service",
                                      _with_pds("#atproto_pds", "Other", "https://pds.localhost")),
    "PDS endpoint not a URL": ("not an http(s) URL",
                               _with_pds("#atproto_pds", "AtprotoPersonalDataServer",
                                         "javascript:alert(1)")),
    "someone else's id": ("does not match the DID",
                          lambda did: _json(make_doc("did:web:localhost%3A1"))),
    "id of another method": ("does not match the DID",
                             lambda did: _json(make_doc("did:plc:ewvi7nxzyoun6zhxrhs64oiz"))),
    "id not a string": ("malformed", _with(id=42)),
    "huge, declared": ("response too large", lambda did: _huge(did, declared=True)),
    "huge, streamed": ("response too large", lambda did: _huge(did, declared=False)),
    "not JSON": ("not a JSON object", _raw(200, b"<html>hello</html>",
                                           **{"content-type": "text/html"})),
    "JSON array": ("not a JSON object", lambda did: _json([make_doc(did)])),
    "not UTF-8": ("not a JSON object", _raw(200, b'{"id": "\xff\xfe"}')),
    "deeply nested": ("not a JSON object", _raw(200, b"[" * 100_000 + b"]" * 100_000)),
    "empty": ("not a JSON object", _raw(200, b"")),
    "404": ("DID not found", _raw(404, b'{"error": "NotFound"}')),
    "500": ("HTTP 500", _raw(500, b'{"error": "InternalServerError"}')),
    "redirect off loopback": ("connection failed",
                              _raw(302, b"", location="https://example.com/did.json")),
    "stalled body": ("timed out", lambda did: (200, JSON, _trickle(pieces=3, gap=2.0))),
}
# the client's timeout in each case: a tight one where the stall is what is tested (well
# under the stall's gap), else the default, so a busy machine never turns an answer into one
STALLS = {"stalled body": 0.5}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_document_is_a_resolution_error(kind, case, tmp_path):
    site = _Site()
    says, reply = HOSTILE[case]
    site.doc = lambda: reply(site.did)
    with pytest.raises(atrepo.ResolutionError) as caught:
        _call(kind, site, tmp_path, "resolve", site.did, timeout=STALLS.get(case, 5.0))
    assert caught.value.identifier == site.did and site.did in str(caught.value)
    assert says in str(caught.value)
    assert site.server.paths[0] == "/.well-known/did.json"


# -- hostile well-known answers for a handle ---------------------------------------------------


WELL_KNOWN: dict[str, Reply] = {
    "not a DID": (200, {}, b"hello"),
    "oversized": (200, {}, b"did:plc:ewvi7nxzyoun6zhxrhs64oiz" + b" " * 10_000),
    "not UTF-8": (200, {}, b"did:web:\xff"),
    "404": (404, {}, b"not here"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", sorted(WELL_KNOWN))
def test_hostile_well_known_is_a_resolution_error(kind, case, tmp_path):
    site = _Site()
    site.well_known = lambda: WELL_KNOWN[case]
    with pytest.raises(atrepo.ResolutionError) as caught:
        _call(kind, site, tmp_path, "resolve", HANDLE)
    assert caught.value.identifier == HANDLE and HANDLE in str(caught.value)
    assert site.server.paths == ["/.well-known/atproto-did"]
