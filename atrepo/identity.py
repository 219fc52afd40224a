"""Boundary models of atproto identity: the DID document and the resolved :class:`Identity`.

DID documents arrive from PLC directories and ``did:web`` hosts, so they are validated with
pydantic (strict types, frozen, unknown fields kept) and read through small helpers that
know the atproto conventions (https://atproto.com/specs/did#did-documents):

* the signing key is the verification method ``#atproto`` (or ``{did}#atproto``), either a
  ``Multikey`` or one of the legacy ``EcdsaSecp256{k,r}1VerificationKey2019`` types;
* the PDS is the service ``#atproto_pds`` (or ``{did}#atproto_pds``) of type
  ``AtprotoPersonalDataServer``;
* the handle is claimed by an ``at://{handle}`` entry of ``alsoKnownAs``; the first valid
  one is the account's handle.

A claimed handle is only trusted once it also resolves back to the DID
(https://atproto.com/specs/handle), which is the flows' job, not the document's.
"""

from __future__ import annotations

import html
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from ._text import preview as _preview
from .crypto import parse_legacy_key, parse_multikey
from .errors import ResolutionError, SignatureError
from .syntax import is_handle

__all__ = ["DidDocument", "Identity", "Service", "VerificationMethod"]

_ATPROTO_KEY_FRAGMENT: Final = "#atproto"
_ATPROTO_PDS_FRAGMENT: Final = "#atproto_pds"
_ATPROTO_PDS_TYPE: Final = "AtprotoPersonalDataServer"
_MULTIKEY_TYPE: Final = "Multikey"
_AT_PREFIX: Final = "at://"
_REMOTE: Final = ConfigDict(frozen=True, extra="allow", strict=True)


class VerificationMethod(BaseModel):
    """One entry of a DID document's ``verificationMethod`` list."""

    model_config = _REMOTE

    id: str
    type: str
    controller: str | None = None
    publicKeyMultibase: str | None = None


class Service(BaseModel):
    """One entry of a DID document's ``service`` list."""

    model_config = _REMOTE

    id: str
    type: str | list[str]
    serviceEndpoint: str | dict[str, Any] | list[Any]


class DidDocument(BaseModel):
    """A DID document, as resolved (https://atproto.com/specs/did).

    Parse one with ``DidDocument.model_validate(obj)``; fields atproto does not use (such as
    ``@context``) are kept as extra attributes.

    Example:
        >>> doc = DidDocument.model_validate({
        ...     "id": "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        ...     "alsoKnownAs": ["at://atproto.com"],
        ...     "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
        ...                  "serviceEndpoint": "https://pds.example.com"}]})
        >>> doc.handles(), doc.pds_endpoint(), doc.signing_key()
        (['atproto.com'], 'https://pds.example.com', None)
    """

    model_config = _REMOTE

    id: str
    alsoKnownAs: list[str] = []
    verificationMethod: list[VerificationMethod] = []
    service: list[Service] = []

    def __repr__(self) -> str:
        return (f"DidDocument(id={self.id!r}, handles={self.handles()!r}, "
                f"pds={self.pds_endpoint()!r})")

    def handles(self) -> list[str]:
        """Return the handles the document claims, lowercased, in ``alsoKnownAs`` order.

        Only ``at://`` entries whose remainder is valid handle syntax count; the first one
        is the account's handle.
        """
        claimed = (aka[len(_AT_PREFIX):] for aka in self.alsoKnownAs if aka.startswith(_AT_PREFIX))
        return [handle.lower() for handle in claimed if is_handle(handle)]

    def pds_endpoint(self) -> str | None:
        """Return the ``#atproto_pds`` service URL, or None if it is absent or invalid."""
        try:
            return self.parse_pds_endpoint()
        except ResolutionError:
            return None

    def signing_key(self) -> str | None:
        """Return the ``#atproto`` signing key as a ``did:key``, or None if absent/invalid."""
        try:
            return self.parse_signing_key()
        except ResolutionError:
            return None

    def parse_pds_endpoint(self) -> str:
        """Return the ``#atproto_pds`` service URL, without a trailing slash.

        Raises:
            ResolutionError: no such service, a wrong ``type``, or an endpoint that is not an
                ``http(s)`` URL with a host and no query, fragment or credentials.
        """
        service = next((s for s in self.service if self._is_local_id(s.id, _ATPROTO_PDS_FRAGMENT)),
                       None)
        if service is None or service.type != _ATPROTO_PDS_TYPE:
            raise ResolutionError("DID document has no atproto PDS service", identifier=self.id,
                                  hint=f"expected a service '{_ATPROTO_PDS_FRAGMENT}' of type "
                                  f"{_ATPROTO_PDS_TYPE}")
        endpoint = service.serviceEndpoint
        if not isinstance(endpoint, str) or not _is_service_url(endpoint):
            raise ResolutionError("DID document's PDS endpoint is not an http(s) URL",
                                  identifier=self.id, endpoint=_preview(endpoint))
        return endpoint.rstrip("/")

    def parse_signing_key(self) -> str:
        """Return the ``#atproto`` verification method's key as a ``did:key``.

        ``Multikey`` methods carry a multicodec-prefixed key; the legacy
        ``EcdsaSecp256k1VerificationKey2019`` / ``EcdsaSecp256r1VerificationKey2019`` types
        carry the raw point. Both come back as the compressed-point ``did:key``.

        Raises:
            ResolutionError: no such method, no ``publicKeyMultibase``, or a key that does
                not parse (the crypto error is chained).
        """
        method = next((m for m in self.verificationMethod
                       if self._is_local_id(m.id, _ATPROTO_KEY_FRAGMENT)), None)
        if method is None or method.publicKeyMultibase is None:
            raise ResolutionError("DID document has no atproto signing key", identifier=self.id,
                                  hint=f"expected a verificationMethod '{_ATPROTO_KEY_FRAGMENT}' "
                                  "with publicKeyMultibase")
        try:
            if method.type == _MULTIKEY_TYPE:
                return parse_multikey(method.publicKeyMultibase).did_key
            return parse_legacy_key(method.type, method.publicKeyMultibase).did_key
        except SignatureError as exc:
            msg = "DID document's atproto signing key is invalid"
            raise ResolutionError(msg, identifier=self.id, type=method.type,
                                  reason=exc.message) from exc

    def _is_local_id(self, value: str, fragment: str) -> bool:
        """Return True if ``value`` is ``fragment`` relative to this document or absolute."""
        return value == fragment or value == self.id + fragment


def _is_service_url(url: str) -> bool:
    """Return True for an ``http(s)`` URL with a host and no query, fragment or user info."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return (parts.scheme in ("https", "http") and bool(host) and not parts.query
            and not parts.fragment and "@" not in parts.netloc)


class Identity(BaseModel):
    """A resolved atproto account: DID, verified handle, PDS and signing key.

    Attributes:
        did: the account's DID.
        handle: the handle, or None when it does not verify both ways (the DID document
            claims it and it resolves back to the DID).
        handle_verified: True when ``handle`` was checked both ways.
        pds: the ``#atproto_pds`` service endpoint.
        signing_key: the ``#atproto`` key as a ``did:key``.
        doc: the DID document as resolved.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    did: str
    handle: str | None = None
    handle_verified: bool = False
    pds: str | None = None
    signing_key: str | None = None
    doc: DidDocument

    def __repr__(self) -> str:
        return (f"Identity(did={self.did!r}, handle={self.handle!r}, "
                f"handle_verified={self.handle_verified!r}, pds={self.pds!r})")

    def _repr_html_(self) -> str:
        rows = [("did", self.did), ("handle", self.handle),
                ("handle_verified", self.handle_verified), ("pds", self.pds),
                ("signing_key", self.signing_key)]
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
                        f"<td>{html.escape(str(value))}</td></tr>" for name, value in rows)
        return f"<table><caption>atrepo.Identity</caption>{cells}</table>"
