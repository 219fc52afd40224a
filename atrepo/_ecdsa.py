"""ECDSA over P-256 and K-256 through ``cryptography``: the only module of atrepo that needs it.

:mod:`atrepo.crypto` parses keys and checks signatures in pure Python (did:key, multibase,
multicodec, the range and low-S rules) and imports this module the first time a point is
loaded, so reading a repository without a signing key never loads ``cryptography`` (about
50 ms of imports). https://atproto.com/specs/cryptography
"""

from __future__ import annotations

from typing import Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["PublicPoint", "load_point", "verifies"]

PublicPoint = ec.EllipticCurvePublicKey

_CURVES: Final[dict[str, ec.EllipticCurve]] = {"p256": ec.SECP256R1(), "k256": ec.SECP256K1()}
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())


def load_point(curve: Literal["p256", "k256"], point: bytes) -> tuple[PublicPoint, bytes]:
    """Return the public key of a SEC1 point on ``curve``, and its compressed form.

    Raises:
        ValueError: the point is not on the curve.
    """
    public = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[curve], point)
    return public, public.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def verifies(public: PublicPoint, r: int, s: int, message: bytes) -> bool:
    """Return whether (r, s) is an ECDSA signature over SHA-256 of ``message`` by ``public``."""
    try:
        public.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True
