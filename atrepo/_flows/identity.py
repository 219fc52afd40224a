"""Identity resolution as sans-IO flows: handle -> DID -> DID document -> :class:`Identity`.

Each public function returns a generator (a :data:`~atrepo._flows.effects.Flow`) that yields
:class:`HttpGet` / :class:`DnsTxt` effects; a driver in :mod:`atrepo._io.http` performs
them. Flows compose with ``yield from``, and a failed effect is thrown into the flow, so the
fallbacks below are plain ``try``/``except`` around a ``yield``.

Rules followed (https://atproto.com/specs/did, https://atproto.com/specs/handle):

* Only ``did:plc`` (``GET {plc_url}/{did}``) and hostname-level ``did:web``
  (``GET https://{host}/.well-known/did.json``, port as ``%3A``) are supported; path-based
  ``did:web`` is not part of atproto.
* A DID document is JSON of at most ``max_bytes``, its ``id`` equals the DID, and it has an
  atproto PDS service and signing key; anything else is a ``ResolutionError``.
* A handle resolves by DNS TXT ``_atproto.{handle}`` (``did=...``), then HTTPS
  ``/.well-known/atproto-did``, then, if configured, an XRPC ``resolveHandle`` service. One
  method failing (including TXT records naming different DIDs) falls through to the next.
* Only the XRPC service is asked, and nothing leaves the machine for DNS or HTTPS, when the
  service is on loopback (a local sandbox answers for its own handles) or the handle is under
  a TLD reserved for testing and examples (``.test``, ``.example``, ``.invalid``,
  ``.localhost``; RFC 2606 and 6761), which no nameserver or web server answers for. Without
  a service such a handle does not resolve. The other reserved TLDs (``.local``, ``.onion``,
  ...) never resolve.
* A handle is only reported when it verifies both ways: it resolves to the DID, and the DID
  document claims it in ``alsoKnownAs``. Otherwise ``Identity.handle`` is None.

Every failure ends in :class:`atrepo.errors.ResolutionError` naming the identifier.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from .._text import preview as _preview
from ..errors import DecodeError, ResolutionError, TransportError
from ..identity import DidDocument, Identity
from ..syntax import is_did, is_handle, parse_at_uri
from .effects import (
    DEFAULT_MAX_BYTES,
    DnsAnswer,
    DnsFailure,
    DnsTxt,
    Flow,
    HttpGet,
    HttpResponse,
    expect,
)
from .xrpc import JSON_HEADERS, json_body, xrpc_url

__all__ = [
    "did_document_url",
    "normalize_handle",
    "parse_did_response",
    "resolve",
    "resolve_did",
    "resolve_handle",
    "verify_handle",
]

# did:plc identifiers are 24 characters of lowercase base32 (https://web.plc.directory/spec);
# checking them also keeps the identifier a single, harmless URL path segment.
_PLC_RE: Final = re.compile(r"did:plc:[a-z2-7]{24}")
_PLC_PREFIX: Final = "did:plc:"
_WEB_PREFIX: Final = "did:web:"
_AT_URI_PREFIX: Final = "at://"
# https://atproto.com/specs/handle#additional-non-syntax-restrictions: never resolved.
_RESERVED_TLDS: Final = frozenset({"alt", "arpa", "internal", "local", "onion"})
# RFC 2606 / 6761 names for testing and examples: no public DNS or web server answers for
# them, so only a configured resolver (a sandbox's PDS) is asked.
_TESTING_TLDS: Final = frozenset({"example", "invalid", "localhost", "test"})
_SMALL_BODY: Final = 8 * 1024  # a well-known or resolveHandle reply carries one DID
_MAX_PORT: Final = 65_535
_DID_HEADERS: Final = (("accept", "application/did+ld+json, application/json"),)
_NOT_FOUND: Final = frozenset({404, 410})


class _Miss(Exception):
    """One handle resolution method gave no answer; ``reason`` says why (internal)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """Return ``body`` parsed as a JSON object, or None if it is not one."""
    value = json_body(body)
    return value if isinstance(value, dict) else None


# -- DIDs ----------------------------------------------------------------------------------


def did_document_url(did: str, *, plc_url: str, web_scheme: str = "https") -> str:
    """Return the URL the DID document of ``did`` is fetched from.

    Args:
        did: a ``did:plc`` or ``did:web`` DID.
        plc_url: the PLC directory, such as ``"https://plc.directory"``.
        web_scheme: scheme for ``did:web`` hosts; ``"http"`` only for local testing.

    Raises:
        ResolutionError: invalid DID syntax, an unsupported method, a malformed ``did:plc``
            identifier, or a ``did:web`` with a path or a bad host or port.
    """
    if not is_did(did):
        raise ResolutionError("invalid DID syntax", identifier=_preview(did))
    if did.startswith(_PLC_PREFIX):
        if _PLC_RE.fullmatch(did) is None:
            raise ResolutionError("invalid did:plc identifier", identifier=did,
                                  hint="expected 'did:plc:' and 24 base32 characters")
        return f"{plc_url.rstrip('/')}/{did}"
    if did.startswith(_WEB_PREFIX):
        return f"{web_scheme}://{_web_authority(did)}/.well-known/did.json"
    raise ResolutionError("unsupported DID method", identifier=did, method=did.split(":")[1],
                          hint="atproto supports did:plc and did:web")


def _web_authority(did: str) -> str:
    """Return ``host[:port]`` of a hostname-level ``did:web`` (https://atproto.com/specs/did).

    Raises:
        ResolutionError: a path (``did:web:host:path``), or a bad host or port.
    """
    encoded = did[len(_WEB_PREFIX):]
    if ":" in encoded:
        raise ResolutionError("did:web with a path is not supported by atproto", identifier=did,
                              hint="only hostname-level did:web DIDs are valid")
    host, _, port = unquote(encoded).partition(":")
    host = host.lower()
    if not (is_handle(host) or host == "localhost"):
        raise ResolutionError("did:web host is not a valid hostname", identifier=did)
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) <= _MAX_PORT):
        raise ResolutionError("did:web port is not valid", identifier=did, port=_preview(port))
    return f"{host}:{port}" if port else host


def parse_did_response(did: str, response: HttpResponse, *,
                       max_bytes: int = DEFAULT_MAX_BYTES) -> DidDocument:
    """Return the DID document in ``response``, checked for atproto use.

    Pure: interprets a response, performs nothing.

    Raises:
        ResolutionError: HTTP 404/410 ("DID not found"), another non-2xx status, a body that
            is too large or not a JSON object, a malformed document, an ``id`` other than
            ``did``, or no atproto PDS service or signing key.
    """
    if response.status in _NOT_FOUND:
        raise ResolutionError("DID not found", identifier=did, status=response.status,
                              url=response.url)
    if not response.ok:
        raise ResolutionError(f"DID document request failed with HTTP {response.status}",
                              identifier=did, status=response.status, url=response.url)
    if len(response.body) > max_bytes:
        raise ResolutionError("DID document too large", identifier=did, max_bytes=max_bytes)
    doc = _validate_document(did, response.body)
    if doc.id != did:
        raise ResolutionError("DID document id does not match the DID", identifier=did,
                              id=_preview(doc.id))
    doc.parse_pds_endpoint()  # raises ResolutionError, with a hint
    doc.parse_signing_key()
    return doc


def _validate_document(did: str, body: bytes) -> DidDocument:
    """Return ``body`` as a :class:`DidDocument`, or raise ResolutionError."""
    obj = _json_object(body)
    if obj is None:
        raise ResolutionError("DID document is not a JSON object", identifier=did)
    try:
        return DidDocument.model_validate(obj)
    except ValueError as exc:  # pydantic.ValidationError
        msg = "DID document is malformed"
        raise ResolutionError(msg, identifier=did, reason=_first_line(str(exc))) from exc


def resolve_did(did: str, *, plc_url: str, web_scheme: str = "https",
                max_bytes: int = DEFAULT_MAX_BYTES) -> Flow[DidDocument]:
    """Resolve ``did`` to its DID document (https://atproto.com/specs/did).

    Args:
        did: a ``did:plc`` or hostname-level ``did:web`` DID.
        plc_url: the PLC directory.
        web_scheme: scheme for ``did:web`` hosts (``"http"`` only for local testing).
        max_bytes: the largest document accepted.

    Returns:
        A flow whose value is the checked :class:`DidDocument`.

    Raises:
        ResolutionError: see :func:`did_document_url` and :func:`parse_did_response`; a
            transport failure is chained as the cause.
    """
    url = did_document_url(did, plc_url=plc_url, web_scheme=web_scheme)
    try:
        response = yield from expect(HttpGet(url, headers=_DID_HEADERS, max_bytes=max_bytes),
                                   HttpResponse)
    except TransportError as exc:
        msg = "could not fetch DID document"
        raise ResolutionError(msg, identifier=did, url=url, reason=exc.message) from exc
    return parse_did_response(did, response, max_bytes=max_bytes)


# -- handles -------------------------------------------------------------------------------


def normalize_handle(handle: str) -> str:
    """Return ``handle`` lowercased, without surrounding spaces or a leading ``@``.

    Raises:
        ResolutionError: invalid handle syntax, or a reserved TLD such as ``.local`` or
            ``.invalid`` that is never resolved (https://atproto.com/specs/handle).
    """
    if not isinstance(handle, str):
        raise ResolutionError("handle is not a string", identifier=_preview(handle))
    text = handle.strip().removeprefix("@").lower()
    if not is_handle(text):
        raise ResolutionError("invalid handle syntax", identifier=_preview(handle),
                              hint="a handle is a domain name such as 'alice.bsky.social'")
    if _tld(text) in _RESERVED_TLDS:
        raise ResolutionError("handle uses a reserved top-level domain", identifier=text,
                              hint="handles under " + ", ".join(sorted(_RESERVED_TLDS))
                              + " never resolve")
    return text


def resolve_handle(handle: str, *, xrpc_resolver: str | None = None,
                   web_scheme: str = "https") -> Flow[str]:
    """Resolve ``handle`` to a DID, without checking the DID document.

    Tries DNS TXT ``_atproto.{handle}``, then ``{web_scheme}://{handle}/.well-known/atproto-did``,
    then ``com.atproto.identity.resolveHandle`` on ``xrpc_resolver`` if set; each method's
    failure falls through to the next (https://atproto.com/specs/handle#handle-resolution).
    Only ``xrpc_resolver`` is asked when it is on loopback or the handle is under a testing
    TLD (see the module docstring).

    Args:
        handle: the handle (normalised with :func:`normalize_handle`).
        xrpc_resolver: base URL of an XRPC service to ask last, or None.
        web_scheme: scheme of the well-known lookup (``"http"`` only for local testing).

    Returns:
        A flow whose value is the DID.

    Raises:
        ResolutionError: invalid handle, a testing-TLD handle without ``xrpc_resolver``,
            or no method answered; the fields say why each method failed.
    """
    handle = normalize_handle(handle)
    attempts: list[tuple[str, Flow[str]]] = []
    if not _resolver_only(handle, xrpc_resolver):
        attempts += [("dns", _did_from_dns(handle)),
                     ("https", _did_from_well_known(handle, web_scheme))]
    elif not xrpc_resolver:
        raise ResolutionError("handle under a reserved top-level domain resolves only "
                              "through handle_resolver", identifier=handle,
                              hint="handles under ." + ", .".join(sorted(_TESTING_TLDS))
                              + " are for local testing: set handle_resolver to the "
                                "sandbox's PDS URL")
    if xrpc_resolver:
        attempts.append(("xrpc", _did_from_xrpc(handle, xrpc_resolver)))
    misses: dict[str, str] = {}
    for method, attempt in attempts:
        try:
            return (yield from attempt)
        except _Miss as miss:
            misses[method] = miss.reason
    if "dns" not in misses:
        hint = "only handle_resolver was asked (see the xrpc field): is the handle on it?"
    else:
        hint = "check the handle's _atproto TXT record and /.well-known/atproto-did"
        hint = hint if xrpc_resolver else hint + ", or set handle_resolver"
    raise ResolutionError("handle does not resolve", identifier=handle, **misses, hint=hint)


def _tld(handle: str) -> str:
    return handle.rsplit(".", 1)[-1]


def _resolver_only(handle: str, xrpc_resolver: str | None) -> bool:
    """Whether only the XRPC resolver may be asked (no DNS query, no HTTPS well-known)."""
    return _tld(handle) in _TESTING_TLDS or (xrpc_resolver is not None
                                             and _is_loopback(xrpc_resolver))


def _is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:  # a malformed URL (bad port, bad brackets) is nobody's loopback
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _did_from_dns(handle: str) -> Flow[str]:
    """Return the DID of the ``_atproto`` TXT records of ``handle``, or raise _Miss."""
    try:
        answer = yield from expect(DnsTxt(f"_atproto.{handle}"), DnsAnswer)
    except DnsFailure as exc:
        raise _Miss(exc.reason) from exc
    return _did_from_txt(answer.texts)


def _did_from_txt(texts: Iterable[str]) -> str:
    """Return the one DID named by ``did=`` TXT records, or raise _Miss.

    Records without the ``did=`` prefix or with an invalid DID are ignored; valid records
    naming different DIDs make the method fail (https://atproto.com/specs/handle#dns-txt-method).
    """
    dids = {text[len("did="):].strip() for text in texts if text.startswith("did=")}
    valid = {did for did in dids if is_did(did)}
    if len(valid) > 1:
        raise _Miss("TXT records name different DIDs")
    if not valid:
        raise _Miss("no did= TXT record")
    return valid.pop()


def _did_from_well_known(handle: str, scheme: str) -> Flow[str]:
    """Return the DID served at ``/.well-known/atproto-did`` of ``handle``, or raise _Miss."""
    url = f"{scheme}://{handle}/.well-known/atproto-did"
    try:
        response = yield from expect(HttpGet(url, max_bytes=_SMALL_BODY), HttpResponse)
    except TransportError as exc:
        raise _Miss(exc.message) from exc
    if not response.ok:
        raise _Miss(f"HTTP {response.status}")
    try:
        text = response.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Miss("body is not UTF-8") from exc
    did = _first_line(text.strip()).strip()
    if not is_did(did):
        raise _Miss("body is not a DID")
    return did


def _did_from_xrpc(handle: str, resolver: str) -> Flow[str]:
    """Return the DID ``com.atproto.identity.resolveHandle`` answers, or raise _Miss."""
    url = xrpc_url(resolver, "com.atproto.identity.resolveHandle", handle=handle)
    try:
        response = yield from expect(HttpGet(url, headers=JSON_HEADERS, max_bytes=_SMALL_BODY),
                                     HttpResponse)
    except TransportError as exc:
        raise _Miss(exc.message) from exc
    if not response.ok:
        raise _Miss(f"HTTP {response.status}")
    did = (_json_object(response.body) or {}).get("did")
    if not isinstance(did, str) or not is_did(did):
        raise _Miss("reply has no valid 'did'")
    return did


def verify_handle(handle: str, did: str, *, xrpc_resolver: str | None = None,
                  web_scheme: str = "https") -> Flow[bool]:
    """Return whether ``handle`` resolves forward to ``did``; never raises.

    Only the forward half of the check: the caller has already seen ``handle`` in the DID
    document's ``alsoKnownAs``.
    """
    try:
        resolved = yield from resolve_handle(handle, xrpc_resolver=xrpc_resolver,
                                             web_scheme=web_scheme)
    except ResolutionError:
        return False
    return resolved == did


# -- identities ----------------------------------------------------------------------------


def resolve(identifier: str, *, plc_url: str, xrpc_resolver: str | None = None,
            web_scheme: str = "https", verify: bool = True) -> Flow[Identity]:
    """Resolve a handle, DID or AT-URI to an :class:`Identity`.

    A handle is resolved to a DID, the DID to its document, and the handle is kept only if
    the document claims it. For a DID, the document's first claimed handle is resolved
    forward and kept only if it comes back to the same DID.

    Args:
        identifier: ``"alice.bsky.social"``, ``"@alice.bsky.social"``, ``"did:plc:..."``,
            ``"did:web:..."`` or ``"at://{handle or did}[/collection[/rkey]]"``.
        plc_url: the PLC directory.
        xrpc_resolver: an XRPC service asked last for handles, or None.
        web_scheme: scheme for ``did:web`` and well-known lookups (``"http"`` for tests).
        verify: when False, a DID's claimed handle is reported unchecked (with
            ``handle_verified=False``) instead of being resolved forward.

    Returns:
        A flow whose value is the :class:`Identity`.

    Raises:
        ResolutionError: the identifier is malformed, or the DID does not resolve.
    """
    authority = _authority(identifier)
    if authority.startswith("did:"):
        return (yield from _resolve_from_did(authority, plc_url=plc_url,
                                             xrpc_resolver=xrpc_resolver,
                                             web_scheme=web_scheme, verify=verify))
    handle = normalize_handle(authority)
    did = yield from resolve_handle(handle, xrpc_resolver=xrpc_resolver, web_scheme=web_scheme)
    doc = yield from resolve_did(did, plc_url=plc_url, web_scheme=web_scheme)
    claimed = handle in doc.handles()  # the reverse half of the bidirectional check
    return _identity(doc, handle if claimed else None, verified=claimed)


def _resolve_from_did(did: str, *, plc_url: str, xrpc_resolver: str | None, web_scheme: str,
                      verify: bool) -> Flow[Identity]:
    """Resolve ``did`` and check its first claimed handle forward."""
    doc = yield from resolve_did(did, plc_url=plc_url, web_scheme=web_scheme)
    handle = next(iter(doc.handles()), None)
    if handle is None or not verify:
        return _identity(doc, handle, verified=False)
    verified = yield from verify_handle(handle, did, xrpc_resolver=xrpc_resolver,
                                        web_scheme=web_scheme)
    return _identity(doc, handle if verified else None, verified=verified)


def _authority(identifier: str) -> str:
    """Return the DID or handle ``identifier`` names (the authority of an AT-URI).

    Raises:
        ResolutionError: not a string, an invalid AT-URI or an invalid DID.
    """
    if not isinstance(identifier, str):
        raise ResolutionError("identifier is not a string", identifier=_preview(identifier))
    text = identifier.strip()
    if text.startswith(_AT_URI_PREFIX):
        try:
            return parse_at_uri(text).authority
        except DecodeError as exc:
            raise ResolutionError("invalid AT-URI", identifier=_preview(text)) from exc
    if text.startswith("did:") and not is_did(text):
        raise ResolutionError("invalid DID syntax", identifier=_preview(text))
    return text


def _identity(doc: DidDocument, handle: str | None, *, verified: bool) -> Identity:
    return Identity(did=doc.id, handle=handle, handle_verified=verified,
                    pds=doc.pds_endpoint(), signing_key=doc.signing_key(), doc=doc)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
