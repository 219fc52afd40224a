"""Unit tests for atrepo.crypto: key parsing, signature verification, commit verification,
and the signatures of whole repositories read with :func:`atrepo.read_car`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from multiformats import multibase

import atrepo
import atrepo.crypto as crypto
from atrepo import car as carmod
from atrepo import cbor
from atrepo.cid import cid_for
from atrepo.crypto import (
    PublicKey,
    format_did_key,
    parse_did_key,
    parse_legacy_key,
    parse_multikey,
    verify_commit,
    verify_signature,
)
from atrepo.errors import AtrepoError, SignatureError
from atrepo.testing import SigningKey, encode_car, make_repo_car

CURVES: dict[str, ec.EllipticCurve] = {"p256": ec.SECP256R1(), "k256": ec.SECP256K1()}
ORDER = {
    "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "k256": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}
# Field primes and curve coefficients (y^2 = x^3 + a x + b), to build off-curve points.
FIELD = {
    "p256": (0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
             -3,
             0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B),
    "k256": (2**256 - 2**32 - 977, 0, 7),
}
MULTICODEC = {"p256": b"\x80\x24", "k256": b"\xe7\x01"}
LEGACY_TYPE = {"p256": "EcdsaSecp256r1VerificationKey2019",
               "k256": "EcdsaSecp256k1VerificationKey2019"}
MESSAGE = b"\xa1ehelloeworld and then some commit bytes"


def b58(data: bytes) -> str:
    """Returns base58btc multibase text, by the multiformats package (an independent encoder)."""
    return str(multibase.encode(data, "base58btc"))


def sign(private: ec.EllipticCurvePrivateKey, curve: str, message: bytes) -> bytes:
    """Returns a compact, low-S r||s signature of ``message``."""
    r, s = decode_dss_signature(private.sign(message, ec.ECDSA(hashes.SHA256())))
    s = min(s, ORDER[curve] - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def point(private: ec.EllipticCurvePrivateKey, fmt: PublicFormat) -> bytes:
    return private.public_key().public_bytes(Encoding.X962, fmt)


@pytest.fixture(params=["p256", "k256"])
def curve(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def private(curve: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVES[curve])


@pytest.fixture
def did_key(private: ec.EllipticCurvePrivateKey, curve: str) -> str:
    return format_did_key(curve, point(private, PublicFormat.CompressedPoint))  # type: ignore[arg-type]


def off_curve_x(curve: str) -> int:
    """Returns the smallest x for which no curve point exists (x^3 + ax + b is a non-residue)."""
    p, a, b = FIELD[curve]
    for x in range(1, 1000):
        if pow((x**3 + a * x + b) % p, (p - 1) // 2, p) == p - 1:
            return x
    raise AssertionError("no off-curve x found")  # pragma: no cover


# -- module shape ---------------------------------------------------------------------------


def test_all_is_sorted_and_exported() -> None:
    assert crypto.__all__ == sorted(crypto.__all__)
    for name in crypto.__all__:
        assert hasattr(crypto, name)


def test_base58_matches_multiformats() -> None:
    for data in [b"", b"\x00", b"\x00\x00\x01", b"\xff" * 40, os.urandom(35),
                 b"\x00" + os.urandom(64)]:
        text = b58(data)
        assert "z" + crypto._b58encode(data) == text
        assert crypto._b58decode(text[1:]) == data


# -- signing round trip ---------------------------------------------------------------------


def test_valid_signature_verifies(private: ec.EllipticCurvePrivateKey, curve: str,
                                  did_key: str) -> None:
    sig = sign(private, curve, MESSAGE)
    assert verify_signature(did_key, MESSAGE, sig) is True
    assert verify_signature(parse_did_key(did_key), MESSAGE, sig) is True
    assert verify_signature(did_key, bytearray(MESSAGE), bytearray(sig)) is True
    assert verify_signature(did_key, memoryview(MESSAGE), memoryview(sig)) is True
    verify_commit(MESSAGE, sig, did_key, did="did:plc:abc")  # returns, does not raise


def test_empty_message_verifies(private: ec.EllipticCurvePrivateKey, curve: str,
                                did_key: str) -> None:
    assert verify_signature(did_key, b"", sign(private, curve, b"")) is True


@pytest.mark.parametrize("bit", [0, 7, 255, 256, 300, 511])
def test_flipped_signature_bit_fails(private: ec.EllipticCurvePrivateKey, curve: str,
                                     did_key: str, bit: int) -> None:
    sig = bytearray(sign(private, curve, MESSAGE))
    sig[bit // 8] ^= 0x80 >> (bit % 8)
    assert verify_signature(did_key, MESSAGE, bytes(sig)) is False


def test_flipped_message_bit_fails(private: ec.EllipticCurvePrivateKey, curve: str,
                                   did_key: str) -> None:
    sig = sign(private, curve, MESSAGE)
    tampered = bytes([MESSAGE[0] ^ 1]) + MESSAGE[1:]
    assert verify_signature(did_key, tampered, sig) is False


def test_high_s_fails(private: ec.EllipticCurvePrivateKey, curve: str, did_key: str) -> None:
    sig = sign(private, curve, MESSAGE)
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    high = sig[:32] + (ORDER[curve] - s).to_bytes(32, "big")
    # plain ECDSA accepts the high-S twin: the rejection is atproto's low-S rule
    private.public_key().verify(encode_dss_signature(r, ORDER[curve] - s), MESSAGE,
                                ec.ECDSA(hashes.SHA256()))
    assert verify_signature(did_key, MESSAGE, high) is False
    with pytest.raises(SignatureError, match="high-S"):
        verify_commit(MESSAGE, high, did_key)


def test_der_signature_fails(private: ec.EllipticCurvePrivateKey, curve: str,
                             did_key: str) -> None:
    der = private.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    der = encode_dss_signature(r, min(s, ORDER[curve] - s))
    assert verify_signature(did_key, MESSAGE, der) is False


@pytest.mark.parametrize("length", [0, 1, 32, 63, 65, 70, 72, 128])
def test_wrong_length_fails(private: ec.EllipticCurvePrivateKey, curve: str, did_key: str,
                            length: int) -> None:
    sig = sign(private, curve, MESSAGE)
    wrong = (sig * 2)[:length]
    assert verify_signature(did_key, MESSAGE, wrong) is False
    with pytest.raises(SignatureError, match="64-byte"):
        verify_commit(MESSAGE, wrong, did_key)


@pytest.mark.parametrize("which", ["r=0", "s=0", "r=n", "s=n", "r=max", "s=max"])
def test_out_of_range_fails(private: ec.EllipticCurvePrivateKey, curve: str, did_key: str,
                            which: str) -> None:
    sig = sign(private, curve, MESSAGE)
    r, s = sig[:32], sig[32:]
    n = ORDER[curve].to_bytes(32, "big")
    value = {"0": bytes(32), "n": n, "max": b"\xff" * 32}[which[2:]]
    bad = value + s if which[0] == "r" else r + value
    assert verify_signature(did_key, MESSAGE, bad) is False


def test_other_key_fails(private: ec.EllipticCurvePrivateKey, curve: str) -> None:
    sig = sign(private, curve, MESSAGE)
    for other_curve, ec_curve in CURVES.items():
        other = ec.generate_private_key(ec_curve)
        other_key = format_did_key(other_curve,  # type: ignore[arg-type]
                                   point(other, PublicFormat.CompressedPoint))
        assert verify_signature(other_key, MESSAGE, sig) is False


# -- key parsing ----------------------------------------------------------------------------


def test_parse_did_key(private: ec.EllipticCurvePrivateKey, curve: str, did_key: str) -> None:
    key = parse_did_key(did_key)
    assert isinstance(key, PublicKey)
    assert key.curve == curve
    assert key.did_key == did_key
    assert key.key.public_numbers() == private.public_key().public_numbers()
    assert did_key.startswith("did:key:zDn" if curve == "p256" else "did:key:zQ3s")
    assert parse_did_key(did_key) is key  # cached
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.did_key = "x"  # type: ignore[misc]


def test_uncompressed_did_key_normalises(private: ec.EllipticCurvePrivateKey, curve: str,
                                         did_key: str) -> None:
    raw = point(private, PublicFormat.UncompressedPoint)
    long_form = "did:key:" + b58(MULTICODEC[curve] + raw)
    key = parse_did_key(long_form)
    assert key.did_key == did_key
    assert key == parse_did_key(did_key)
    assert verify_signature(long_form, MESSAGE, sign(private, curve, MESSAGE)) is True


def test_parse_multikey(private: ec.EllipticCurvePrivateKey, did_key: str) -> None:
    key = parse_multikey(did_key.removeprefix("did:key:"))
    assert key == parse_did_key(did_key)
    assert key.did_key == did_key
    with pytest.raises(SignatureError) as info:
        parse_multikey(did_key)
    assert info.value.key == did_key


@pytest.mark.parametrize("fmt", [PublicFormat.CompressedPoint, PublicFormat.UncompressedPoint])
def test_parse_legacy_key(private: ec.EllipticCurvePrivateKey, curve: str, did_key: str,
                          fmt: PublicFormat) -> None:
    key = parse_legacy_key(LEGACY_TYPE[curve], b58(point(private, fmt)))
    assert key == parse_did_key(did_key)
    assert key.curve == curve
    assert parse_legacy_key("Multikey", did_key.removeprefix("did:key:")) == key


def test_parse_legacy_key_errors(private: ec.EllipticCurvePrivateKey, curve: str,
                                 did_key: str) -> None:
    raw = b58(point(private, PublicFormat.CompressedPoint))
    with pytest.raises(SignatureError, match="unsupported verification method type") as info:
        parse_legacy_key("Ed25519VerificationKey2020", raw)
    assert info.value.key == raw
    prefixed = did_key.removeprefix("did:key:")  # a multicodec prefix is not legacy
    with pytest.raises(SignatureError) as info:
        parse_legacy_key(LEGACY_TYPE[curve], prefixed)
    assert info.value.key == prefixed
    other = "k256" if curve == "p256" else "p256"
    # an x with no point on the curve
    x = off_curve_x(other).to_bytes(32, "big")
    with pytest.raises(SignatureError, match="not on the curve"):
        parse_legacy_key(LEGACY_TYPE[other], b58(b"\x02" + x))


def _malformed_did_keys() -> list[tuple[str, str, str]]:
    """Returns ``(id, did_key, message fragment)`` for did:keys that must not parse."""
    cases: list[tuple[str, str, str]] = []
    good_x = ec.generate_private_key(ec.SECP256K1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.CompressedPoint)
    cases += [
        ("empty", "", "not a did:key"),
        ("did-plc", "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "not a did:key"),
        ("no-method", "zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc", "not a did:key"),
        ("upper-prefix", "DID:KEY:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc",
         "not a did:key"),
        ("empty-body", "did:key:", "not base58btc"),
        ("no-z", "did:key:Q3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc", "not base58btc"),
        ("base64-multibase", "did:key:m5wEC", "not base58btc"),
        ("bad-base58-char", "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJw0",
         "does not decode"),
        ("bad-base58-l", "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwl",
         "does not decode"),
        ("just-z", "did:key:z", "empty"),
        ("ed25519", "did:key:" + b58(b"\xed\x01" + bytes(range(32))),
         "unsupported did:key multicodec"),
        ("x25519", "did:key:" + b58(b"\xec\x01" + bytes(range(32))),
         "unsupported did:key multicodec"),
        ("p384", "did:key:" + b58(b"\x81\x24" + good_x + bytes(16)),
         "unsupported did:key multicodec"),
        ("non-minimal-varint", "did:key:" + b58(b"\xe7\x81\x00" + good_x),
         "prefix is malformed"),
        ("truncated-varint", "did:key:" + b58(b"\xe7"), "prefix is malformed"),
        ("overlong-varint", "did:key:" + b58(b"\xff" * 10 + good_x), "prefix is malformed"),
        ("prefix-only", "did:key:" + b58(b"\xe7\x01"), "33-byte compressed"),
        ("short-point", "did:key:" + b58(b"\xe7\x01" + good_x[:32]), "33-byte compressed"),
        ("long-point", "did:key:" + b58(b"\xe7\x01" + good_x + b"\x00"), "33-byte compressed"),
        ("bad-tag", "did:key:" + b58(b"\xe7\x01\x05" + good_x[1:]), "33-byte compressed"),
        ("uncompressed-tag-33", "did:key:" + b58(b"\xe7\x01\x04" + good_x[1:]),
         "33-byte compressed"),
        ("compressed-tag-65", "did:key:" + b58(b"\xe7\x01\x02" + bytes(64)),
         "33-byte compressed"),
        ("hybrid-tag-65", "did:key:" + b58(b"\xe7\x01\x06" + bytes(64)), "33-byte compressed"),
    ]
    for name, curve in (("p256", ec.SECP256R1()), ("k256", ec.SECP256K1())):
        prefix = MULTICODEC[name]
        p = FIELD[name][0]
        x = off_curve_x(name).to_bytes(32, "big")
        cases.append((f"{name}-x-not-on-curve", "did:key:" + b58(prefix + b"\x02" + x),
                      "not on the curve"))
        cases.append((f"{name}-x-ge-p", "did:key:" + b58(prefix + b"\x03" + p.to_bytes(32, "big")),
                      "not on the curve"))
        raw = ec.generate_private_key(curve).public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint)
        bent = raw[:-1] + bytes([raw[-1] ^ 1])
        cases.append((f"{name}-uncompressed-y-off-curve", "did:key:" + b58(prefix + bent),
                      "not on the curve"))
        cases.append((f"{name}-infinity", "did:key:" + b58(prefix + b"\x04" + bytes(64)),
                      "not on the curve"))
    return cases


MALFORMED = _malformed_did_keys()


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xe7\x81\x00" + bytes(33), "non-minimal varint"),
    (b"\xe7", "truncated varint"),
    (b"\xff" * 10 + bytes(33), "varint longer than 9 bytes"),
])
def test_malformed_multicodec_prefix_says_why(data: bytes, reason: str) -> None:
    # the prefix is read by atrepo's one varint reader, as strict as the CAR framing's
    with pytest.raises(SignatureError) as info:
        parse_did_key("did:key:" + b58(data))
    assert info.value.fields["reason"] == reason


@pytest.mark.parametrize(("bad", "fragment"), [(k, f) for _, k, f in MALFORMED],
                         ids=[i for i, _, _ in MALFORMED])
def test_malformed_did_key(bad: str, fragment: str) -> None:
    with pytest.raises(SignatureError) as info:
        parse_did_key(bad)
    err = info.value
    assert fragment in err.message
    assert err.key == bad
    assert f"key={bad}" in str(err)
    assert isinstance(err, AtrepoError)
    # verify_signature raises only for a malformed key, and with the same error
    with pytest.raises(SignatureError) as info2:
        verify_signature(bad, MESSAGE, bytes(64))
    assert info2.value.key == bad


def test_unknown_codec_names_the_codec() -> None:
    bad = "did:key:" + b58(b"\xed\x01" + bytes(32))
    with pytest.raises(SignatureError) as info:
        parse_did_key(bad)
    assert info.value.fields["codec"] == "0xed"
    assert "codec=0xed" in str(info.value)


def test_non_string_key_raises_signature_error() -> None:
    with pytest.raises(SignatureError, match="not a string"):
        parse_did_key(b"did:key:z")  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="not a string"):
        parse_multikey(None)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="not a string"):
        parse_legacy_key(["Multikey"], "z")  # type: ignore[arg-type]



@pytest.mark.parametrize("parse", [parse_did_key, parse_multikey,
                                   lambda text: parse_legacy_key("Multikey", text)])
def test_overlong_key_is_refused_before_decoding(parse: object) -> None:
    # base58 decoding is quadratic: a 300,000-character did:key took 23 s before the cap
    text = "did:key:z" + "2" * 300_000
    with pytest.raises(SignatureError, match="too long") as info:
        parse(text)  # type: ignore[operator]
    assert info.value.fields["length"] == len(text)
    assert info.value.fields["max_chars"] == crypto.MAX_KEY_CHARS
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(("signature", "message", "what", "got"), [
    ("x" * 64, b"", "signature", "str"), (None, b"", "signature", "NoneType"),
    (64, b"", "signature", "int"), (b"\x00" * 64, "x", "signed message", "str"),
    (b"\x00" * 64, None, "signed message", "NoneType")])
def test_verify_signature_refuses_non_bytes(did_key: str, signature: object, message: object,
                                            what: str, got: str) -> None:
    # these raised TypeError from len() or from cryptography
    with pytest.raises(SignatureError, match=f"^{what} is not bytes") as info:
        verify_signature(did_key, message, signature)  # type: ignore[arg-type]
    assert info.value.fields["got"] == got
    with pytest.raises(SignatureError, match=f"^{what} is not bytes"):
        verify_commit(message, signature, did_key, did="did:plc:x")  # type: ignore[arg-type]


def test_format_did_key_errors(private: ec.EllipticCurvePrivateKey) -> None:
    compressed = point(private, PublicFormat.CompressedPoint)
    with pytest.raises(SignatureError, match="unsupported curve"):
        format_did_key("ed25519", compressed)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="not a compressed"):
        format_did_key("k256", point(private, PublicFormat.UncompressedPoint))
    with pytest.raises(SignatureError, match="not a compressed"):
        format_did_key("k256", b"\x04" + compressed[1:])
    with pytest.raises(SignatureError, match="public key point is not bytes"):
        format_did_key("k256", None)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="unsupported curve"):
        format_did_key(["k256"], compressed)  # type: ignore[arg-type]


def test_known_did_key_vectors() -> None:
    """Keys and signature copied from the atproto interop fixtures, as a self-contained check."""
    key = parse_did_key("did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc")
    assert key.curve == "k256"
    assert parse_legacy_key("EcdsaSecp256k1VerificationKey2019",
                            "z25z9DTpsiYYJKGsWmSPJK2NFN8PcJtZig12K59UgW7q5t") == key
    p256 = parse_did_key("did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo")
    assert p256.curve == "p256"


# -- commits --------------------------------------------------------------------------------


def test_verify_commit_bad_signature(private: ec.EllipticCurvePrivateKey, curve: str,
                                     did_key: str) -> None:
    sig = sign(private, curve, MESSAGE)
    with pytest.raises(SignatureError) as info:
        verify_commit(MESSAGE + b"x", sig, did_key, did="did:plc:ewvi7nxzyoun6zhxrhs64oiz")
    err = info.value
    assert err.did == "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    assert err.key == did_key
    assert err.message == "commit signature does not verify"
    assert "did=did:plc:ewvi7nxzyoun6zhxrhs64oiz" in str(err)
    assert f"key={did_key}" in str(err)
    assert err.hint


def test_verify_commit_without_did(private: ec.EllipticCurvePrivateKey, curve: str,
                                   did_key: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify_commit(MESSAGE, bytes(64), did_key)
    assert info.value.did is None
    assert info.value.key == did_key


def test_verify_commit_malformed_key_carries_did() -> None:
    bad = "did:key:" + b58(b"\xed\x01" + bytes(32))
    with pytest.raises(SignatureError) as info:
        verify_commit(MESSAGE, bytes(64), bad, did="did:web:example.com")
    err = info.value
    assert err.did == "did:web:example.com"
    assert err.key == bad
    assert err.fields["codec"] == "0xed"
    assert err.message == "unsupported did:key multicodec"


# --- commit signatures of whole repositories (atrepo.read_car) --------------------------------
# ``ref_small`` (k256) and ``ref_p256`` are written and signed by the reference implementation;
# the hand-made repositories use atrepo.testing. A bad key or signature must end in a
# SignatureError naming the repository's DID and the key tried, never in ``verified=False``.

REPO_RECORDS = {"com.ex.t/a1": {"$type": "com.ex.t", "text": "fine"},
                "com.ex.u/self": {"$type": "com.ex.u", "b": b"\x01"}}
REPO_DID = "did:plc:testtesttesttesttesttest"  # make_repo_car's default


def _read(source: object, **options: Any) -> atrepo.RepoSnapshot:
    """Read a repository completely: the commit, every record and the problems frame."""
    snap = atrepo.read_car(source, **options)  # type: ignore[arg-type]
    assert snap.records.height == len(snap)
    assert snap.problems.height == 0
    return snap


def _signature_error(source: object, **options: Any) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        _read(source, **options)
    assert type(info.value) is SignatureError and str(info.value)
    return info.value


def test_repository_wrong_signing_key(ref_small: Any) -> None:
    err = _signature_error(ref_small.car, signing_key=ref_small.truth["other_key"])
    assert err.did == ref_small.truth["did"]
    assert err.key == ref_small.truth["other_key"]


def test_repository_right_signing_key_verifies(ref_small: Any) -> None:
    snap = _read(ref_small.car, did=ref_small.truth["did"],
                 signing_key=ref_small.truth["signing_key"])
    assert snap.verified is True
    assert snap.did == ref_small.truth["did"]


def test_repository_unverified_without_signing_key(ref_small: Any) -> None:
    assert _read(ref_small.car).verified is False


def test_repository_p256_wrong_key(ref_p256: Any) -> None:
    assert _read(ref_p256.car, signing_key=ref_p256.truth["signing_key"]).verified
    err = _signature_error(ref_p256.car, signing_key=ref_p256.truth["other_key"])
    assert err.key == ref_p256.truth["other_key"]


def test_repository_key_of_the_other_curve(ref_small: Any, ref_p256: Any) -> None:
    err = _signature_error(ref_small.car, signing_key=ref_p256.truth["signing_key"])
    assert err.did == ref_small.truth["did"]


@pytest.mark.parametrize("curve", ["k256", "p256"])
def test_repository_high_s_signature(curve: str) -> None:
    key = SigningKey(curve)
    car, did_key = make_repo_car(REPO_RECORDS, key=key, high_s=True)
    err = _signature_error(car, signing_key=did_key)
    assert err.did == REPO_DID and err.key == did_key
    low, did_key2 = make_repo_car(REPO_RECORDS, key=key)
    assert did_key2 == did_key
    assert _read(low, signing_key=did_key).verified


def test_repository_did_mismatch(ref_small: Any) -> None:
    other = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
    assert _signature_error(ref_small.car, did=other).did == other
    err = _signature_error(ref_small.car, did=other, signing_key=ref_small.truth["signing_key"])
    assert err.did == other


@pytest.mark.parametrize("key", ["did:key:zzz", "not a key", "did:key:", "",
                                 "did:key:z" + "2" * 300_000])
def test_repository_malformed_signing_key(ref_small: Any, key: str) -> None:
    err = _signature_error(ref_small.car, signing_key=key)
    assert err.did == ref_small.truth["did"]


def test_repository_tampered_signature_bytes() -> None:
    car, key = make_repo_car(REPO_RECORDS, key=SigningKey())
    carfile = carmod.read_car(car)
    commit_cid = carfile.roots[0]
    commit = cbor.decode(carfile.get(commit_cid))  # type: ignore[arg-type]
    sig = bytearray(commit["sig"])
    sig[5] ^= 1
    forged = cbor.encode(dict(commit, sig=bytes(sig)))
    forged_cid = cid_for(forged)
    blocks = [(bytes(forged_cid), forged) if cid == commit_cid else (bytes(cid), block)
              for cid, block in carfile]
    forged_car = encode_car([forged_cid], blocks)
    assert _read(forged_car).records.height == len(REPO_RECORDS)  # reads unverified
    err = _signature_error(forged_car, signing_key=key)
    assert err.did == REPO_DID and err.key == key
