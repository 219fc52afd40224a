"""The identity boundary models: DidDocument and Identity (values, reprs, round trips)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from atrepo.identity import DidDocument, Identity

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
OTHER_DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
PDS = "https://pds.test"
DID_KEY = "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo"  # P-256, did:key spec


def make_doc() -> dict[str, Any]:
    return {"id": DID, "alsoKnownAs": ["at://alice.test"],
            "verificationMethod": [{"id": f"{DID}#atproto", "type": "Multikey",
                                    "controller": DID,
                                    "publicKeyMultibase": DID_KEY.removeprefix("did:key:")}],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": PDS}]}


def test_did_document_reads_the_atproto_conventions():
    doc = DidDocument.model_validate(make_doc())
    assert (doc.handles(), doc.pds_endpoint(), doc.signing_key()) == (["alice.test"], PDS,
                                                                      DID_KEY)


def test_identity_repr_is_one_line_and_html_is_escaped():
    doc = DidDocument.model_validate(make_doc())
    ident = Identity(did=DID, handle="<b>&", handle_verified=True, pds=PDS,
                     signing_key=DID_KEY, doc=doc)
    assert "\n" not in repr(ident)
    assert repr(ident).startswith(f"Identity(did='{DID}', handle='<b>&'")
    html = ident._repr_html_()
    assert "&lt;b&gt;&amp;" in html and "<b>&" not in html
    assert "\n" not in repr(doc) and DID in repr(doc)


def test_identity_is_frozen_and_round_trips():
    doc = DidDocument.model_validate(make_doc())
    ident = Identity(did=DID, doc=doc)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        ident.did = OTHER_DID  # type: ignore[misc]
    assert Identity.model_validate_json(ident.model_dump_json(by_alias=True)) == ident
