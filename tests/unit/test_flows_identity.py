"""Identity flows driven by hand: no transport at all, as h11's tests drive a connection.

Each test starts a flow, checks the effect it yields, and sends a made-up response (or
throws a made-up failure) back in, the way a driver would: step by step with :func:`step`,
or from a script with :func:`atrepo.testing.drive`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import multibase

from atrepo._flows.effects import (
    DEFAULT_MAX_BYTES,
    DnsAnswer,
    DnsFailure,
    DnsTxt,
    Flow,
    HttpGet,
    HttpResponse,
)
from atrepo._flows.identity import (
    did_document_url,
    normalize_handle,
    parse_did_response,
    resolve,
    resolve_did,
    resolve_handle,
    verify_handle,
)
from atrepo.crypto import format_did_key
from atrepo.errors import AtrepoError, ResolutionError, TransportError
from atrepo.identity import DidDocument, Identity
from atrepo.testing import drive

PLC = "https://plc.test"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
OTHER_DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
HANDLE = "alice.example.com"  # not a testing TLD: every method of resolution is tried
PDS = "https://pds.test"
XRPC = "https://resolver.test"
CURVES = {"p256": ec.SECP256R1(), "k256": ec.SECP256K1()}


def _point(curve: str, *, compressed: bool = True) -> bytes:
    key = ec.derive_private_key(12345, CURVES[curve]).public_key()
    form = PublicFormat.CompressedPoint if compressed else PublicFormat.UncompressedPoint
    return key.public_bytes(Encoding.X962, form)


DID_KEY = {curve: format_did_key(curve, _point(curve)) for curve in CURVES}  # type: ignore[arg-type]
MULTIKEY = {curve: did_key.removeprefix("did:key:") for curve, did_key in DID_KEY.items()}


def make_doc(did: str = DID, *, handles: tuple[str, ...] = (HANDLE,), pds: Any = PDS,
             key_type: str = "Multikey", key: str | None = MULTIKEY["k256"],
             **extra: Any) -> dict[str, Any]:
    """Return a DID document as a PLC directory would serve it."""
    doc: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "alsoKnownAs": [f"at://{handle}" for handle in handles],
        "verificationMethod": [{"id": f"{did}#atproto", "type": key_type, "controller": did,
                                **({} if key is None else {"publicKeyMultibase": key})}],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                     "serviceEndpoint": pds}],
    }
    doc.update(extra)
    return doc


def ok(body: bytes | dict[str, Any] | str, *, status: int = 200, url: str = "") -> HttpResponse:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return HttpResponse(status=status, headers={}, body=body, url=url)


def finish(flow: Flow[Any], result: HttpResponse | DnsAnswer | BaseException) -> Any:
    """Hand the last result to ``flow`` and return the flow's value."""
    with pytest.raises(StopIteration) as done:
        step(flow, result)
    return done.value.value


def step(flow: Flow[Any], result: HttpResponse | DnsAnswer | BaseException) -> Any:
    """Hand ``result`` to ``flow`` as a driver would; return the next effect."""
    if isinstance(result, BaseException):
        return flow.throw(result)
    return flow.send(result)


Script = list[tuple[Callable[[Any], bool] | Any, HttpResponse | DnsAnswer | BaseException]]


def play(flow: Flow[Any], script: Script) -> Any:
    """Drive ``flow`` through ``script``: (expected effect, result) pairs; return its value."""
    value, driver = drive(flow, [result for _, result in script])
    for index, ((expected, _), effect) in enumerate(zip(script, driver.effects, strict=True)):
        assert effect == expected or (callable(expected) and expected(effect)), (index, effect)
    return value


def plc_get(did: str = DID) -> Callable[[Any], bool]:
    return lambda effect: isinstance(effect, HttpGet) and effect.url == f"{PLC}/{did}"


def url_is(url: str) -> Callable[[Any], bool]:
    return lambda effect: isinstance(effect, HttpGet) and effect.url == url


WELL_KNOWN = f"https://{HANDLE}/.well-known/atproto-did"
XRPC_URL = f"{XRPC}/xrpc/com.atproto.identity.resolveHandle?handle={HANDLE}"
NX = DnsFailure(f"_atproto.{HANDLE}", "NXDOMAIN")


def resolution_error(flow: Flow[Any], *results: HttpResponse | DnsAnswer | BaseException
                     ) -> ResolutionError:
    """Drive ``flow`` with ``results`` and return the ResolutionError it raises."""
    with pytest.raises(ResolutionError) as info:
        drive(flow, results)
    return info.value


# -- resolve_did: did:plc ------------------------------------------------------------------


def test_plc_document_resolves():
    flow = resolve_did(DID, plc_url=PLC)
    effect = next(flow)
    assert effect.url == f"{PLC}/{DID}"
    assert effect.max_bytes == DEFAULT_MAX_BYTES
    assert ("accept", "application/did+ld+json, application/json") in effect.headers
    doc = finish(flow, ok(make_doc()))
    assert isinstance(doc, DidDocument)
    assert doc.id == DID
    assert doc.pds_endpoint() == PDS
    assert doc.signing_key() == DID_KEY["k256"]
    assert doc.handles() == [HANDLE]
    assert doc.model_extra == {"@context": ["https://www.w3.org/ns/did/v1"]}


def test_plc_url_trailing_slash_is_ignored():
    assert next(resolve_did(DID, plc_url=PLC + "/")).url == f"{PLC}/{DID}"


@pytest.mark.parametrize("status", [404, 410])
def test_plc_not_found(status):
    err = resolution_error(resolve_did(DID, plc_url=PLC), ok("", status=status))
    assert err.message == "DID not found"
    assert err.identifier == DID
    assert err.fields["status"] == status


def test_plc_server_error_names_status():
    err = resolution_error(resolve_did(DID, plc_url=PLC), ok("oops", status=503))
    assert "503" in err.message and DID in str(err)


def test_plc_mismatched_id():
    err = resolution_error(resolve_did(DID, plc_url=PLC), ok(make_doc(OTHER_DID)))
    assert "does not match" in err.message
    assert err.identifier == DID and OTHER_DID in str(err)


def test_huge_document_is_refused():
    body = json.dumps(make_doc(padding="x" * DEFAULT_MAX_BYTES)).encode()
    err = resolution_error(resolve_did(DID, plc_url=PLC), ok(body))
    assert err.message == "DID document too large"


def test_custom_max_bytes_goes_into_the_effect():
    flow = resolve_did(DID, plc_url=PLC, max_bytes=100)
    assert next(flow).max_bytes == 100
    with pytest.raises(ResolutionError, match="too large"):
        step(flow, ok(make_doc()))


def test_oversized_body_thrown_by_driver_becomes_resolution_error():
    flow = resolve_did(DID, plc_url=PLC)
    next(flow)
    failure = TransportError("response too large", url=f"{PLC}/{DID}")
    with pytest.raises(ResolutionError) as info:
        step(flow, failure)
    assert info.value.identifier == DID
    assert info.value.fields["reason"] == "response too large"
    assert info.value.__cause__ is failure


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe\x00", b"[" * 100_000,
                                  b'{"id": 5}', b'{"alsoKnownAs": []}',
                                  b'{"id": "%s", "service": "nope"}' % DID.encode()])
def test_malformed_documents(body):
    err = resolution_error(resolve_did(DID, plc_url=PLC), ok(body))
    assert err.identifier == DID
    assert err.message.startswith("DID document is")


@pytest.mark.parametrize("doc", [
    make_doc(service=[]),
    make_doc(service=[{"id": "#atproto_pds", "type": "Other", "serviceEndpoint": PDS}]),
    make_doc(service=[{"id": "#other", "type": "AtprotoPersonalDataServer",
                       "serviceEndpoint": PDS}]),
], ids=["no-service", "wrong-type", "wrong-id"])
def test_missing_pds_service(doc):
    err = resolution_error(resolve_did(DID, plc_url=PLC), ok(doc))
    assert err.message == "DID document has no atproto PDS service"
    assert "AtprotoPersonalDataServer" in err.hint


@pytest.mark.parametrize("endpoint", ["ftp://pds.test", "pds.test", "https://", {"uri": PDS},
                                      "https://pds.test?x=1", "https://u:p@pds.test",
                                      "https://pds.test:99999"])
def test_bad_pds_endpoint(endpoint):
    err = resolution_error(resolve_did(DID, plc_url=PLC), ok(make_doc(pds=endpoint)))
    assert "PDS endpoint" in err.message


@pytest.mark.parametrize("doc", [make_doc(key=None), make_doc(verificationMethod=[])],
                         ids=["no-multibase", "no-method"])
def test_missing_signing_key(doc):
    err = resolution_error(resolve_did(DID, plc_url=PLC), ok(doc))
    assert err.message == "DID document has no atproto signing key"
    assert "#atproto" in err.hint


@pytest.mark.parametrize("key_type,key", [("Multikey", "zNotAKey"),
                                          ("Multikey", "not-multibase"),
                                          ("JsonWebKey2020", MULTIKEY["p256"])])
def test_invalid_signing_key(key_type, key):
    err = resolution_error(resolve_did(DID, plc_url=PLC), ok(make_doc(key_type=key_type,
                                                                      key=key)))
    assert "signing key is invalid" in err.message
    assert err.__cause__ is not None


@pytest.mark.parametrize("curve", ["p256", "k256"])
def test_multikey(curve):
    doc = finish_did(make_doc(key=MULTIKEY[curve]))
    assert doc.signing_key() == DID_KEY[curve]


@pytest.mark.parametrize("curve,key_type", [("k256", "EcdsaSecp256k1VerificationKey2019"),
                                            ("p256", "EcdsaSecp256r1VerificationKey2019")])
@pytest.mark.parametrize("compressed", [True, False])
def test_legacy_key_formats(curve, key_type, compressed):
    legacy = multibase.encode(_point(curve, compressed=compressed), "base58btc")
    doc = finish_did(make_doc(key_type=key_type, key=legacy))
    assert doc.signing_key() == DID_KEY[curve]


def test_relative_method_and_absolute_service_ids():
    doc = make_doc()
    doc["verificationMethod"][0]["id"] = "#atproto"
    doc["service"][0]["id"] = f"{DID}#atproto_pds"
    parsed = finish_did(doc)
    assert (parsed.pds_endpoint(), parsed.signing_key()) == (PDS, DID_KEY["k256"])


def test_pds_trailing_slash_is_trimmed():
    assert finish_did(make_doc(pds=PDS + "/")).pds_endpoint() == PDS


def finish_did(doc: dict[str, Any]) -> DidDocument:
    flow = resolve_did(DID, plc_url=PLC)
    next(flow)
    return finish(flow, ok(doc))


# -- resolve_did: did:web, unsupported methods -----------------------------------------------


@pytest.mark.parametrize("did,scheme,url", [
    ("did:web:example.com", "https", "https://example.com/.well-known/did.json"),
    ("did:web:Example.COM", "https", "https://example.com/.well-known/did.json"),
    ("did:web:localhost%3A8080", "http", "http://localhost:8080/.well-known/did.json"),
    ("did:web:pds.test%3a443", "https", "https://pds.test:443/.well-known/did.json"),
])
def test_did_web_urls(did, scheme, url):
    flow = resolve_did(did, plc_url=PLC, web_scheme=scheme)
    assert next(flow).url == url
    doc = finish(flow, ok(make_doc(did)))
    assert doc.id == did


@pytest.mark.parametrize("did,message", [
    ("did:web:example.com:users:alice", "path is not supported"),
    ("did:web:example.com%3Aabc", "port is not valid"),
    ("did:web:example.com%3A0", "port is not valid"),
    ("did:web:example.com%2Fpath", "not a valid hostname"),
    ("did:web:127.0.0.1", "not a valid hostname"),
    ("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", "unsupported DID method"),
    ("did:example:123", "unsupported DID method"),
    ("did:plc:short", "invalid did:plc identifier"),
    ("did:plc:ewvi7nxzyoun6zhxrhs64oi1", "invalid did:plc identifier"),
    ("did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ", "invalid did:plc identifier"),
    ("not a did", "invalid DID syntax"),
])
def test_rejected_dids_yield_nothing(did, message):
    with pytest.raises(ResolutionError, match=message) as info:
        next(resolve_did(did, plc_url=PLC))
    assert info.value.identifier == did


def test_did_document_url_is_pure():
    assert did_document_url(DID, plc_url=PLC) == f"{PLC}/{DID}"


# -- resolve_handle --------------------------------------------------------------------------


def test_handle_via_dns():
    flow = resolve_handle(HANDLE)
    assert next(flow) == DnsTxt(f"_atproto.{HANDLE}")
    assert finish(flow, DnsAnswer((f"did={DID}",))) == DID


def test_dns_ignores_unrelated_and_repeated_records():
    answer = DnsAnswer(("v=spf1 -all", f"did={DID}", f"did={DID} ", "did=not-a-did"))
    assert play(resolve_handle(HANDLE), [(DnsTxt(f"_atproto.{HANDLE}"), answer)]) == DID


@pytest.mark.parametrize("given", ["Alice.Example.COM", "@alice.example.com",
                                   " alice.example.com\n"])
def test_handle_is_normalised(given):
    assert next(resolve_handle(given)) == DnsTxt(f"_atproto.{HANDLE}")
    assert normalize_handle(given) == HANDLE


@pytest.mark.parametrize("handle", ["alice", "-alice.test", "alice..test", "a" * 300 + ".test",
                                    "did:plc:x", "", "alice.test/x", "1.2.3.4", None, 42])
def test_invalid_handle_syntax(handle):
    with pytest.raises(ResolutionError) as info:
        next(resolve_handle(handle))
    assert "handle" in info.value.message


@pytest.mark.parametrize("handle", ["alice.local", "bob.invalid", "x.onion", "a.localhost"])
def test_reserved_tlds_never_resolve(handle):
    with pytest.raises(ResolutionError, match="reserved top-level domain"):
        next(resolve_handle(handle))


LOOPBACK_XRPC = "http://127.0.0.1:2583"


@pytest.mark.parametrize("handle", ["alice.test", "bob.example", "carol.invalid",
                                    "dave.localhost"])
def test_testing_tlds_ask_only_the_resolver(handle):
    url = f"{XRPC}/xrpc/com.atproto.identity.resolveHandle?handle={handle}"
    script = [(url_is(url), ok({"did": DID}))]  # no DnsTxt, no HTTPS well-known
    assert play(resolve_handle(handle, xrpc_resolver=XRPC), script) == DID
    err = resolution_error(resolve_handle(handle, xrpc_resolver=XRPC), ok("", status=400))
    assert err.fields == {"identifier": handle, "xrpc": "HTTP 400"}
    assert "only handle_resolver was asked" in err.hint


@pytest.mark.parametrize("handle", ["alice.test", "bob.example"])
def test_testing_tlds_without_a_resolver_ask_nothing(handle):
    with pytest.raises(ResolutionError, match="resolves only through handle_resolver") as info:
        next(resolve_handle(handle))
    assert info.value.identifier == handle and "handle_resolver" in info.value.hint


@pytest.mark.parametrize("resolver", [LOOPBACK_XRPC, "http://localhost:2583/", "http://[::1]:80",
                                      "https://127.8.9.10", "http://pds.localhost"])
def test_a_loopback_resolver_is_the_only_one_asked(resolver):
    url = f"{resolver.rstrip('/')}/xrpc/com.atproto.identity.resolveHandle?handle={HANDLE}"
    assert play(resolve_handle(HANDLE, xrpc_resolver=resolver),
                [(url_is(url), ok({"did": DID}))]) == DID


@pytest.mark.parametrize("resolver", [XRPC, "http://10.0.0.1", "http://[bad", "http://::1"])
def test_a_resolver_elsewhere_is_asked_last(resolver):
    assert next(resolve_handle(HANDLE, xrpc_resolver=resolver)) == DnsTxt(f"_atproto.{HANDLE}")


def test_resolve_did_with_a_testing_handle_checks_it_on_the_resolver():
    doc = make_doc(handles=("alice.test",))
    xrpc = f"{LOOPBACK_XRPC}/xrpc/com.atproto.identity.resolveHandle?handle=alice.test"
    ident = play(resolve(DID, plc_url=PLC, xrpc_resolver=LOOPBACK_XRPC),
                 [(plc_get(), ok(doc)), (url_is(xrpc), ok({"did": DID}))])
    assert (ident.handle, ident.handle_verified) == ("alice.test", True)


def test_dns_failure_falls_back_to_well_known():
    flow = resolve_handle(HANDLE)
    next(flow)
    effect = step(flow, NX)
    assert effect == HttpGet(WELL_KNOWN, max_bytes=effect.max_bytes)
    assert effect.max_bytes < DEFAULT_MAX_BYTES
    assert finish(flow, ok(f"{DID}\n")) == DID


@pytest.mark.parametrize("answer", [DnsAnswer(()), DnsAnswer(("hello",)),
                                    DnsAnswer((f"did={DID}", f"did={OTHER_DID}"))],
                         ids=["empty", "no-did", "two-dids"])
def test_unusable_dns_answers_fall_back_to_well_known(answer):
    script = [(DnsTxt(f"_atproto.{HANDLE}"), answer), (url_is(WELL_KNOWN), ok(OTHER_DID))]
    assert play(resolve_handle(HANDLE), script) == OTHER_DID


def test_two_dids_in_txt_is_a_failure():
    answer = DnsAnswer((f"did={DID}", f"did={OTHER_DID}"))
    err = resolution_error(resolve_handle(HANDLE), answer, ok("", status=404))
    assert err.identifier == HANDLE
    assert err.fields["dns"] == "TXT records name different DIDs"
    assert err.fields["https"] == "HTTP 404"


@pytest.mark.parametrize("body", ["  did:plc:ewvi7nxzyoun6zhxrhs64oiz  \r\nignored\n",
                                  f"\n{DID}"])
def test_well_known_takes_the_first_line_trimmed(body):
    script = [(DnsTxt(f"_atproto.{HANDLE}"), NX), (url_is(WELL_KNOWN), ok(body))]
    assert play(resolve_handle(HANDLE), script) == DID


def test_well_known_scheme_is_configurable():
    flow = resolve_handle(HANDLE, web_scheme="http")
    next(flow)
    assert step(flow, NX).url == f"http://{HANDLE}/.well-known/atproto-did"


def test_both_fail_then_xrpc_resolver():
    script = [(DnsTxt(f"_atproto.{HANDLE}"), NX),
              (url_is(WELL_KNOWN), TransportError("connection failed", url=WELL_KNOWN)),
              (url_is(XRPC_URL), ok({"did": DID}))]
    assert play(resolve_handle(HANDLE, xrpc_resolver=XRPC), script) == DID


def test_xrpc_resolver_url_is_built_carefully():
    flow = resolve_handle(HANDLE, xrpc_resolver=XRPC + "/")
    next(flow)
    step(flow, NX)
    effect = step(flow, ok("", status=404))
    assert effect.url == XRPC_URL
    assert ("accept", "application/json") in effect.headers


@pytest.mark.parametrize("reply,reason", [
    (ok("", status=400), "HTTP 400"),
    (ok("not json"), "reply has no valid 'did'"),
    (ok({"did": "nope"}), "reply has no valid 'did'"),
    (ok({"did": 7}), "reply has no valid 'did'"),
    (ok("[1]"), "reply has no valid 'did'"),
    (TransportError("request timed out", url=XRPC_URL), "request timed out"),
])
def test_all_methods_fail(reply, reason):
    flow = resolve_handle(HANDLE, xrpc_resolver=XRPC)
    err = resolution_error(flow, NX, ok("<html>", status=200), reply)
    assert err.identifier == HANDLE
    assert HANDLE in str(err)
    assert err.fields == {"identifier": HANDLE, "dns": "NXDOMAIN",
                          "https": "body is not a DID", "xrpc": reason}
    assert "handle_resolver" not in err.hint


@pytest.mark.parametrize("body,reason", [(b"\xff\xfe", "body is not UTF-8"),
                                         (b"", "body is not a DID"),
                                         (b"did:plc:x y", "body is not a DID")])
def test_without_xrpc_resolver_two_methods_then_error(body, reason):
    err = resolution_error(resolve_handle(HANDLE), NX, ok(body))
    assert err.fields["https"] == reason
    assert "xrpc" not in err.fields
    assert "handle_resolver" in err.hint


def test_verify_handle():
    assert play(verify_handle(HANDLE, DID), [(DnsTxt(f"_atproto.{HANDLE}"),
                                              DnsAnswer((f"did={DID}",)))]) is True
    assert play(verify_handle(HANDLE, OTHER_DID), [(DnsTxt(f"_atproto.{HANDLE}"),
                                                    DnsAnswer((f"did={DID}",)))]) is False
    assert play(verify_handle(HANDLE, DID), [(DnsTxt(f"_atproto.{HANDLE}"), NX),
                                             (url_is(WELL_KNOWN), ok("", status=404))]) is False
    with pytest.raises(StopIteration) as done:
        next(verify_handle("not a handle", DID))
    assert done.value.value is False


# -- resolve -------------------------------------------------------------------------------


DNS_OK = (DnsTxt(f"_atproto.{HANDLE}"), DnsAnswer((f"did={DID}",)))


def test_resolve_handle_verified_both_ways():
    ident = play(resolve(HANDLE, plc_url=PLC), [DNS_OK, (plc_get(), ok(make_doc()))])
    assert isinstance(ident, Identity)
    assert (ident.did, ident.handle, ident.handle_verified) == (DID, HANDLE, True)
    assert (ident.pds, ident.signing_key) == (PDS, DID_KEY["k256"])
    assert ident.doc.id == DID


def test_resolve_handle_not_claimed_by_document():
    doc = make_doc(handles=("mallory.test",))
    ident = play(resolve("@Alice.Example.Com", plc_url=PLC), [DNS_OK, (plc_get(), ok(doc))])
    assert (ident.did, ident.handle, ident.handle_verified) == (DID, None, False)


def test_resolve_handle_claimed_among_several():
    doc = make_doc(handles=("old.test", HANDLE.upper()))
    ident = play(resolve(HANDLE, plc_url=PLC), [DNS_OK, (plc_get(), ok(doc))])
    assert ident.handle == HANDLE and ident.handle_verified


def test_resolve_handle_that_does_not_resolve():
    err = resolution_error(resolve(HANDLE, plc_url=PLC), NX, ok("", status=404))
    assert err.identifier == HANDLE


def test_resolve_handle_whose_did_does_not_resolve():
    err = resolution_error(resolve(HANDLE, plc_url=PLC), DNS_OK[1], ok("", status=404))
    assert err.message == "DID not found" and err.identifier == DID


def test_resolve_did_verifies_the_claimed_handle_forward():
    ident = play(resolve(DID, plc_url=PLC), [(plc_get(), ok(make_doc())), DNS_OK])
    assert (ident.did, ident.handle, ident.handle_verified) == (DID, HANDLE, True)


def test_resolve_did_uses_the_first_valid_claimed_handle():
    doc = make_doc(alsoKnownAs=["https://example.com", "at://not_valid", f"at://{HANDLE}",
                                "at://second.test"])
    ident = play(resolve(DID, plc_url=PLC), [(plc_get(), ok(doc)), DNS_OK])
    assert ident.handle == HANDLE


def test_resolve_did_whose_handle_points_elsewhere():
    other = (DnsTxt(f"_atproto.{HANDLE}"), DnsAnswer((f"did={OTHER_DID}",)))
    ident = play(resolve(DID, plc_url=PLC), [(plc_get(), ok(make_doc())), other])
    assert (ident.handle, ident.handle_verified) == (None, False)


def test_resolve_did_whose_handle_does_not_resolve():
    script = [(plc_get(), ok(make_doc())), (DnsTxt(f"_atproto.{HANDLE}"), NX),
              (url_is(WELL_KNOWN), TransportError("connection failed", url=WELL_KNOWN)),
              (url_is(XRPC_URL), ok("", status=400))]
    ident = play(resolve(DID, plc_url=PLC, xrpc_resolver=XRPC), script)
    assert (ident.did, ident.handle, ident.handle_verified) == (DID, None, False)


def test_resolve_did_without_handle_makes_one_request():
    ident = play(resolve(DID, plc_url=PLC), [(plc_get(), ok(make_doc(handles=())))])
    assert (ident.handle, ident.handle_verified) == (None, False)


def test_resolve_did_with_reserved_handle_is_unverified():
    doc = make_doc(handles=("handle.invalid",))
    ident = play(resolve(DID, plc_url=PLC), [(plc_get(), ok(doc))])
    assert (ident.handle, ident.handle_verified) == (None, False)


def test_resolve_did_without_verification_reports_the_claim():
    ident = play(resolve(DID, plc_url=PLC, verify=False), [(plc_get(), ok(make_doc()))])
    assert (ident.handle, ident.handle_verified) == (HANDLE, False)


def test_resolve_did_web():
    did = "did:web:localhost%3A2583"
    script = [(url_is("http://localhost:2583/.well-known/did.json"), ok(make_doc(did))),
              (DnsTxt(f"_atproto.{HANDLE}"), DnsAnswer((f"did={did}",)))]
    ident = play(resolve(did, plc_url=PLC, web_scheme="http"), script)
    assert (ident.did, ident.handle) == (did, HANDLE)


@pytest.mark.parametrize("uri,first", [
    (f"at://{DID}/app.bsky.feed.post/3jwdwj2ctlk26", plc_get()),
    (f"at://{DID}", plc_get()),
    (f"at://{HANDLE}/app.bsky.feed.post", DnsTxt(f"_atproto.{HANDLE}")),
])
def test_resolve_at_uri_uses_its_authority(uri, first):
    flow = resolve(uri, plc_url=PLC)
    effect = next(flow)
    assert effect == first or first(effect)


@pytest.mark.parametrize("identifier,message", [
    ("at://", "invalid AT-URI"),
    (f"at://{DID}/not an nsid", "invalid AT-URI"),
    ("did:PLC:xyz", "invalid DID syntax"),
    ("did:nope", "invalid DID syntax"),
    ("did:example:123", "unsupported DID method"),
    ("hello world", "invalid handle syntax"),
    (None, "not a string"),
    (b"alice.test", "not a string"),
])
def test_resolve_rejects_malformed_identifiers(identifier, message):
    with pytest.raises(ResolutionError, match=message):
        next(resolve(identifier, plc_url=PLC))


def test_long_identifiers_are_shortened_in_messages():
    with pytest.raises(ResolutionError) as info:
        next(resolve("x" * 10_000, plc_url=PLC))
    assert len(str(info.value)) < 300


def test_effects_of_other_kinds_are_a_driver_bug():
    flow = resolve_handle(HANDLE)
    next(flow)
    with pytest.raises(TypeError, match="driver answered a DnsTxt"):
        flow.send(ok(DID))


# -- every failure ---------------------------------------------------------------------------


def test_every_failure_is_an_atrepo_error():
    for flow in (resolve("nope", plc_url=PLC), resolve_did("did:x:y", plc_url=PLC)):
        with pytest.raises(AtrepoError):
            next(flow)


# -- hostile input: any response ends in a value or a ResolutionError ------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=10)
_DOC_KEYS = st.sampled_from(["id", "alsoKnownAs", "verificationMethod", "service",
                             "publicKeyMultibase", "type", "serviceEndpoint"])
_DOCLIKE = st.builds(lambda base, patch: {**base, **patch},
                     st.just(make_doc()), st.dictionaries(_DOC_KEYS, _JSON, max_size=3))


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300) | _DOCLIKE.map(lambda doc: json.dumps(doc).encode()),
       status=st.sampled_from([200, 204, 301, 404, 500]))
def test_any_did_response_is_a_document_or_resolution_error(body, status):
    try:
        doc = parse_did_response(DID, HttpResponse(status=status, body=body))
    except ResolutionError as err:
        assert err.identifier == DID
    else:
        assert doc.id == DID
        assert doc.pds_endpoint() is not None and doc.signing_key() is not None


@settings(max_examples=300, deadline=None)
@given(txt=st.lists(st.text(max_size=40) | st.just(f"did={DID}"), max_size=4),
       body=st.binary(max_size=100), xrpc=st.binary(max_size=100))
def test_any_handle_answers_give_a_did_or_resolution_error(txt, body, xrpc):
    flow = resolve_handle(HANDLE, xrpc_resolver=XRPC)
    try:
        effect = next(flow)
        for result in (DnsAnswer(tuple(txt)), ok(body), ok(xrpc)):
            effect = step(flow, result)
    except StopIteration as done:
        assert isinstance(done.value, str) and done.value.startswith("did:")
    except ResolutionError as err:
        assert err.identifier == HANDLE
    else:
        raise AssertionError(f"flow still wants {effect!r}")
