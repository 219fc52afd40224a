"""atproto cryptography: parse public keys and verify ECDSA signatures.

atproto signs with ECDSA over two curves, ``p256`` (NIST P-256, secp256r1) and ``k256``
(secp256k1). Public keys travel as ``did:key`` strings or as the ``publicKeyMultibase`` of a
DID-document verification method; signatures are the 64-byte compact ``r || s`` form over the
SHA-256 of the signed bytes, and only the "low-S" variant is valid (DER and high-S signatures
are rejected). See https://atproto.com/specs/cryptography.

This module is pure: no I/O, no network. Parsed keys are cached, since one key verifies every
commit of a repository. The curve arithmetic is ``cryptography``'s, in :mod:`atrepo._ecdsa`,
imported when the first key is parsed (:func:`_ecdsa`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from ._varint import VarintError, encode_varint, read_varint
from ._text import preview
from .errors import SignatureError

if TYPE_CHECKING:
    from ._ecdsa import PublicPoint

__all__ = [
    "BytesLike",
    "Curve",
    "MAX_KEY_CHARS",
    "PublicKey",
    "format_did_key",
    "parse_did_key",
    "parse_legacy_key",
    "parse_multikey",
    "verify_commit",
    "verify_signature",
]

Curve: TypeAlias = Literal["p256", "k256"]
BytesLike: TypeAlias = bytes | bytearray | memoryview

DID_KEY_PREFIX: Final = "did:key:"
BASE58BTC_PREFIX: Final = "z"

# Multicodec codes (https://github.com/multiformats/multicodec), written as unsigned varints.
_CODEC_P256_PUB: Final = 0x1200  # p256-pub, varint 0x80 0x24
_CODEC_K256_PUB: Final = 0xE7  # secp256k1-pub, varint 0xe7 0x01
_CODEC_BY_CURVE: Final[dict[Curve, int]] = {"p256": _CODEC_P256_PUB, "k256": _CODEC_K256_PUB}
_CURVE_BY_CODEC: Final[dict[int, Curve]] = {code: curve for curve, code in _CODEC_BY_CURVE.items()}

# Legacy DID-document verification method types: raw point, no multicodec prefix.
_LEGACY_TYPES: Final[dict[str, Curve]] = {
    "EcdsaSecp256r1VerificationKey2019": "p256",
    "EcdsaSecp256k1VerificationKey2019": "k256",
}
_MULTIKEY_TYPE: Final = "Multikey"

# Group orders, for the range and low-S checks on signatures.
_ORDER: Final[dict[Curve, int]] = {
    "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "k256": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}
_HALF_ORDER: Final[dict[Curve, int]] = {curve: n // 2 for curve, n in _ORDER.items()}

_COMPRESSED_LEN: Final = 33
_UNCOMPRESSED_LEN: Final = 65
_SIGNATURE_LEN: Final = 64
_CACHE_SIZE: Final = 256  # keys per cache: a notebook's working set; ~2 KB each, so a host
                          # export, one new key per repository, holds ~1 MB at most

# Longest key text parsed: base58 decoding is quadratic in the length (300,000 characters
# took 23 s), and the longest atproto key, an uncompressed point with its multicodec
# prefix, is under 100 characters.
MAX_KEY_CHARS: Final = 200

_B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final[dict[str, int]] = {char: i for i, char in enumerate(_B58_ALPHABET)}


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A parsed atproto public key.

    Equality and hashing use ``curve`` and ``did_key`` only; ``did_key`` is normalised, so two
    encodings of the same point compare equal.

    Attributes:
        curve: ``"p256"`` or ``"k256"``.
        key: the key as a ``cryptography`` public key object, ready to verify with.
        did_key: the key as a ``did:key`` string, always of the compressed point.
    """

    curve: Curve
    key: PublicPoint = field(compare=False, repr=False)
    did_key: str


def _b58decode(text: str) -> bytes:
    """Returns the bytes a base58btc string (no multibase prefix) encodes.

    Raises:
        ValueError: a character is outside the base58btc alphabet.
    """
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise ValueError(f"invalid base58btc character {char!r}")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def _b58encode(data: bytes) -> str:
    """Returns the base58btc text (no multibase prefix) of ``data``."""
    number = int.from_bytes(data, "big")
    chars: list[str] = []
    while number:
        number, digit = divmod(number, 58)
        chars.append(_B58_ALPHABET[digit])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(chars))


_PREFIX_BY_CURVE: Final[dict[Curve, bytes]] = {
    curve: encode_varint(code) for curve, code in _CODEC_BY_CURVE.items()
}


def _ecdsa() -> ModuleType:
    """:mod:`atrepo._ecdsa`, imported on first use: it loads ``cryptography``, which only a
    key parsed (to check a signature) needs."""
    from . import _ecdsa

    return _ecdsa


def format_did_key(curve: Curve, compressed_point: bytes) -> str:
    """Returns the ``did:key`` string of a compressed public key point.

    The point is not checked to lie on the curve; only its shape is.

    Args:
        curve: ``"p256"`` or ``"k256"``.
        compressed_point: the 33-byte SEC1 compressed point (``0x02``/``0x03`` then ``x``).

    Returns:
        ``"did:key:z"`` followed by base58btc of the multicodec prefix and the point.

    Raises:
        SignatureError: unknown curve, or the point is not 33 bytes starting 0x02/0x03.
    """
    prefix = _PREFIX_BY_CURVE.get(curve) if isinstance(curve, str) else None
    if prefix is None:
        raise SignatureError("unsupported curve", curve=preview(curve),
                             hint="atproto uses 'p256' or 'k256'")
    point = bytes(_require_bytes(compressed_point, "public key point"))
    if len(point) != _COMPRESSED_LEN or point[0] not in (2, 3):
        raise SignatureError("not a compressed public key point", curve=curve,
                             length=len(point))
    return DID_KEY_PREFIX + BASE58BTC_PREFIX + _b58encode(prefix + point)


def _load_point(curve: Curve, point: bytes, key: str) -> PublicKey:
    """Returns the PublicKey of a raw SEC1 point (compressed or uncompressed).

    Raises:
        SignatureError: wrong length or tag byte, or the point is not on the curve.
    """
    tag = point[0] if point else None
    if not ((len(point) == _COMPRESSED_LEN and tag in (2, 3))
            or (len(point) == _UNCOMPRESSED_LEN and tag == 4)):
        raise SignatureError("public key is not a 33-byte compressed or 65-byte uncompressed "
                             "point", key=key, curve=curve, length=len(point),
                             tag=None if tag is None else hex(tag))
    try:
        public, compressed = _ecdsa().load_point(curve, point)
    except ValueError as exc:
        raise SignatureError("public key point is not on the curve", key=key,
                             curve=curve) from exc
    return PublicKey(curve=curve, key=public, did_key=format_did_key(curve, compressed))


def _decode_multibase(multibase: str, key: str) -> bytes:
    """Returns the bytes of a base58btc multibase string (``z...``).

    Raises:
        SignatureError: not base58btc multibase, or not decodable.
    """
    if not multibase.startswith(BASE58BTC_PREFIX):
        raise SignatureError("public key is not base58btc multibase", key=key,
                             hint="expected a 'z' prefix")
    try:
        data = _b58decode(multibase[1:])
    except ValueError as exc:
        raise SignatureError("public key multibase does not decode", key=key,
                             reason=str(exc)) from exc
    if not data:
        raise SignatureError("public key multibase is empty", key=key)
    return data


def _parse_prefixed(multibase: str, key: str) -> PublicKey:
    """Returns the PublicKey of a multicodec-prefixed base58btc key (a did:key body).

    Raises:
        SignatureError: malformed multibase, unknown multicodec, or a bad point.
    """
    data = _decode_multibase(multibase, key)
    try:
        code, used = read_varint(data, 0, len(data))
    except VarintError as exc:
        raise SignatureError("did:key multicodec prefix is malformed", key=key,
                             reason=exc.message) from exc
    curve = _CURVE_BY_CODEC.get(code)
    if curve is None or data[:used] != _PREFIX_BY_CURVE[curve]:
        raise SignatureError("unsupported did:key multicodec", key=key, codec=hex(code),
                             hint="atproto keys are p256-pub (0x1200) or secp256k1-pub (0xe7)")
    return _load_point(curve, data[used:], key)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_did_key_cached(did_key: str) -> PublicKey:
    if not did_key.startswith(DID_KEY_PREFIX):
        raise SignatureError("not a did:key", key=preview(did_key),
                             hint="expected 'did:key:z...'")
    return _parse_prefixed(did_key[len(DID_KEY_PREFIX):], preview(did_key, MAX_KEY_CHARS))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_multikey_cached(multibase: str) -> PublicKey:
    return _parse_prefixed(multibase, preview(multibase, MAX_KEY_CHARS))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_legacy_cached(type_: str, multibase: str) -> PublicKey:
    if type_ == _MULTIKEY_TYPE:
        return _parse_multikey_cached(multibase)
    curve = _LEGACY_TYPES.get(type_)
    key = preview(multibase, MAX_KEY_CHARS)
    if curve is None:
        raise SignatureError("unsupported verification method type", key=key,
                             type=preview(type_), hint="expected Multikey, "
                             + " or ".join(sorted(_LEGACY_TYPES)))
    return _load_point(curve, _decode_multibase(multibase, key), key)


def _require_str(value: object, what: str) -> str:
    """Return ``value`` if it is a string of at most :data:`MAX_KEY_CHARS`, else raise."""
    if not isinstance(value, str):
        raise SignatureError(f"{what} is not a string", key=preview(value),
                             got=type(value).__name__)
    if len(value) > MAX_KEY_CHARS:
        raise SignatureError(f"{what} is too long", key=preview(value), length=len(value),
                             max_chars=MAX_KEY_CHARS)
    return value


def _require_bytes(value: object, what: str) -> BytesLike:
    """Return ``value`` if it is bytes-like, else raise SignatureError naming ``what``."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise SignatureError(f"{what} is not bytes", got=type(value).__name__)
    return value


def parse_did_key(did_key: str) -> PublicKey:
    """Returns the public key a ``did:key`` string encodes.

    Accepts ``did:key:z...`` with the multicodec ``p256-pub`` (``0x80 0x24``) or
    ``secp256k1-pub`` (``0xe7 0x01``) followed by a 33-byte compressed or 65-byte uncompressed
    point. Results are cached.

    Args:
        did_key: the ``did:key`` string.

    Returns:
        The key, with ``did_key`` normalised to the compressed-point form.

    Raises:
        SignatureError: the string is not a did:key, the multibase or multicodec is wrong, or
            the point is malformed or not on the curve. ``key`` is set to ``did_key``.
    """
    return _parse_did_key_cached(_require_str(did_key, "did:key"))


def parse_multikey(multibase: str) -> PublicKey:
    """Returns the public key of a DID-document ``Multikey`` ``publicKeyMultibase`` value.

    The encoding is that of a did:key without the ``did:key:`` prefix. Results are cached.

    Args:
        multibase: the ``publicKeyMultibase`` value (``z...``).

    Returns:
        The key, with ``did_key`` in the compressed-point form.

    Raises:
        SignatureError: the multibase or multicodec is wrong, or the point is malformed or not
            on the curve. ``key`` is set to ``multibase``.
    """
    return _parse_multikey_cached(_require_str(multibase, "publicKeyMultibase"))


def parse_legacy_key(type: str, multibase: str) -> PublicKey:  # noqa: A002 - DID-doc field
    """Returns the public key of a legacy DID-document verification method.

    ``EcdsaSecp256r1VerificationKey2019`` and ``EcdsaSecp256k1VerificationKey2019`` methods
    carry base58btc of the raw point (compressed or uncompressed) with no multicodec prefix;
    the curve comes from ``type``. For convenience, ``type="Multikey"`` is passed on to
    :func:`parse_multikey`. Results are cached.

    Args:
        type: the verification method's ``type``.
        multibase: its ``publicKeyMultibase`` value (``z...``).

    Returns:
        The key, with ``did_key`` in the compressed-point form.

    Raises:
        SignatureError: unknown type, bad multibase, or a malformed or off-curve point.
            ``key`` is set to ``multibase``.
    """
    return _parse_legacy_cached(_require_str(type, "verification method type"),
                                _require_str(multibase, "publicKeyMultibase"))


def _signature_problem(key: PublicKey, message: BytesLike, signature: BytesLike) -> str | None:
    """Returns why ``signature`` does not verify ``message`` under ``key``, or None if it does.

    Raises:
        SignatureError: ``message`` or ``signature`` is not bytes-like.
    """
    data = bytes(_require_bytes(message, "signed message"))
    sig = bytes(_require_bytes(signature, "signature"))
    if len(sig) != _SIGNATURE_LEN:
        return "signature is not a 64-byte compact r||s signature"
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if not 0 < r < _ORDER[key.curve] or not 0 < s < _ORDER[key.curve]:
        return "signature r or s is out of range"
    if s > _HALF_ORDER[key.curve]:
        return "signature is high-S"
    if not _ecdsa().verifies(key.key, r, s, data):
        return "signature does not verify"
    return None


def _as_key(did_key: str | PublicKey) -> PublicKey:
    return did_key if isinstance(did_key, PublicKey) else parse_did_key(did_key)


def verify_signature(did_key: str | PublicKey, message: BytesLike, signature: BytesLike) -> bool:
    """Returns whether ``signature`` is a valid atproto signature of ``message``.

    The signature must be ECDSA over SHA-256 of ``message``, in the 64-byte compact
    ``r || s`` form, with low S (``s <= n/2``). DER-encoded, high-S, out-of-range and
    wrong-length signatures are invalid.

    Args:
        did_key: the signer's key, as a ``did:key`` string or a parsed :class:`PublicKey`.
        message: the signed bytes (not their hash).
        signature: the signature bytes.

    Returns:
        True if the signature verifies, False otherwise.

    Raises:
        SignatureError: only when ``did_key`` is a malformed did:key, or ``message`` or
            ``signature`` is not bytes.
    """
    return _signature_problem(_as_key(did_key), message, signature) is None


def verify_commit(commit_unsigned_bytes: BytesLike, sig: BytesLike, did_key: str, *,
                  did: str | None = None) -> None:
    """Returns None if a repository commit's signature verifies, and raises otherwise.

    Args:
        commit_unsigned_bytes: the DAG-CBOR bytes of the commit without its ``sig`` field.
        sig: the commit's ``sig`` bytes.
        did_key: the repository's signing key, as a ``did:key`` string.
        did: the repository's DID, for the error.

    Returns:
        None.

    Raises:
        SignatureError: the signature does not verify (or ``did_key`` is malformed); ``did``
            and ``key`` are set.
    """
    try:
        key = parse_did_key(did_key)
    except SignatureError as exc:
        if did is None:
            raise
        extra = {name: value for name, value in exc.fields.items()
                 if name not in ("did", "key")}
        raise SignatureError(exc.message, did=did, key=exc.key, hint=exc.hint,
                             **extra) from exc
    problem = _signature_problem(key, commit_unsigned_bytes, sig)
    if problem is not None:
        raise SignatureError(f"commit {problem}", did=did, key=did_key,
                             hint="the account may have rotated its signing key; "
                                  "re-resolve the DID document and retry")
