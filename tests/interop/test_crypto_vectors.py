"""atproto interop test vectors for key parsing and signature verification.

Every entry of ``crypto/signature-fixtures.json``, ``crypto/w3c_didkey_K256.json`` and
``crypto/w3c_didkey_P256.json`` of the public atproto interop tests
(bluesky-social/atproto-interop-tests) is a test case; none is skipped. They are read from
:data:`INTEROP_DIR` (``tests/_interop.py``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from multiformats import multibase

from atrepo.crypto import (
    PublicKey,
    format_did_key,
    parse_did_key,
    parse_legacy_key,
    parse_multikey,
    verify_signature,
)
from _interop import INTEROP_DIR

CRYPTO_DIR = INTEROP_DIR / "crypto"

ORDER = {
    "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "k256": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}
CURVE_BY_ALG = {"ES256": "p256", "ES256K": "k256"}
LEGACY_SUITES = {"EcdsaSecp256r1VerificationKey2019", "EcdsaSecp256k1VerificationKey2019"}


def _load(name: str) -> list[dict[str, Any]]:
    """Returns the entries of one vector file; a missing or empty file fails collection."""
    path = CRYPTO_DIR / name
    with path.open(encoding="utf-8") as fh:
        entries = json.load(fh)
    assert isinstance(entries, list) and entries, f"no vectors in {path}"
    return entries


def _b64(text: str) -> bytes:
    """Returns the bytes of (possibly unpadded) standard base64."""
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


SIGNATURE_FIXTURES = _load("signature-fixtures.json")
W3C_K256 = _load("w3c_didkey_K256.json")
W3C_P256 = _load("w3c_didkey_P256.json")


def _multibase_key(fixture: dict[str, Any]) -> PublicKey:
    suite = fixture["didDocSuite"]
    if suite == "Multikey":
        return parse_multikey(fixture["publicKeyMultibase"])
    assert suite in LEGACY_SUITES, f"unknown didDocSuite {suite!r}"
    return parse_legacy_key(suite, fixture["publicKeyMultibase"])


@pytest.mark.parametrize("fixture", SIGNATURE_FIXTURES,
                         ids=[f["comment"] for f in SIGNATURE_FIXTURES])
def test_signature_fixture(fixture: dict[str, Any]) -> None:
    message = _b64(fixture["messageBase64"])
    signature = _b64(fixture["signatureBase64"])
    expected = fixture["validSignature"]
    assert isinstance(expected, bool)

    did_key = parse_did_key(fixture["publicKeyDid"])
    doc_key = _multibase_key(fixture)
    assert did_key.curve == CURVE_BY_ALG[fixture["algorithm"]]
    assert doc_key == did_key
    assert did_key.did_key == fixture["publicKeyDid"]

    assert verify_signature(fixture["publicKeyDid"], message, signature) is expected
    assert verify_signature(did_key, message, signature) is expected
    assert verify_signature(doc_key, message, signature) is expected


@pytest.mark.parametrize("fixture", SIGNATURE_FIXTURES,
                         ids=[f["comment"] for f in SIGNATURE_FIXTURES])
def test_signature_fixture_tags(fixture: dict[str, Any]) -> None:
    """The invalid vectors are invalid for the reason their tags give, not by accident."""
    tags = set(fixture["tags"])
    message = _b64(fixture["messageBase64"])
    signature = _b64(fixture["signatureBase64"])
    key = parse_did_key(fixture["publicKeyDid"])
    n = ORDER[key.curve]
    if not tags:
        assert fixture["validSignature"] is True
        assert len(signature) == 64
    if "high-s" in tags:
        assert len(signature) == 64
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        assert s > n // 2
        low_s = signature[:32] + (n - s).to_bytes(32, "big")
        assert verify_signature(key, message, low_s) is True
    if "der-encoded" in tags:
        assert signature[0] == 0x30 and len(signature) != 64
        r, s = decode_dss_signature(signature)
        compact = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert verify_signature(key, message, compact) is True


def _check_w3c(private_bytes: bytes, curve: ec.EllipticCurve, did_key: str) -> None:
    parsed = parse_did_key(did_key)
    private = ec.derive_private_key(int.from_bytes(private_bytes, "big"), curve)
    public = private.public_key()
    assert parsed.key.public_numbers() == public.public_numbers()
    assert parsed.did_key == did_key
    compressed = public.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    assert format_did_key(parsed.curve, compressed) == did_key
    # the uncompressed encoding of the same point normalises to the same did:key
    uncompressed = public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    legacy_type = ("EcdsaSecp256r1VerificationKey2019" if parsed.curve == "p256"
                   else "EcdsaSecp256k1VerificationKey2019")
    legacy = parse_legacy_key(legacy_type, multibase.encode(uncompressed, "base58btc"))
    assert legacy == parsed and legacy.did_key == did_key
    # and a signature made with the private key verifies against the did:key
    message = b"atrepo interop"
    r, s = decode_dss_signature(private.sign(message, ec.ECDSA(hashes.SHA256())))
    n = ORDER[parsed.curve]
    s = min(s, n - s)
    assert verify_signature(did_key, message, r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@pytest.mark.parametrize("vector", W3C_K256, ids=[v["publicDidKey"] for v in W3C_K256])
def test_w3c_didkey_k256(vector: dict[str, str]) -> None:
    assert parse_did_key(vector["publicDidKey"]).curve == "k256"
    _check_w3c(bytes.fromhex(vector["privateKeyBytesHex"]), ec.SECP256K1(),
               vector["publicDidKey"])


@pytest.mark.parametrize("vector", W3C_P256, ids=[v["publicDidKey"] for v in W3C_P256])
def test_w3c_didkey_p256(vector: dict[str, str]) -> None:
    assert parse_did_key(vector["publicDidKey"]).curve == "p256"
    private_bytes = multibase.decode("z" + vector["privateKeyBytesBase58"])
    assert len(private_bytes) == 32
    _check_w3c(private_bytes, ec.SECP256R1(), vector["publicDidKey"])
