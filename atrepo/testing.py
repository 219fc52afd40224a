"""Helpers for tests, atrepo's and yours: small signed repository CARs, and a flow driver.

The reference implementation (``@atproto/repo``) is the ground truth for atrepo's own
tests; these helpers exist for what it cannot produce: repositories with undecodable
record blocks, hand-made corruptions, and quick fixtures that need no Node.js.
:func:`drive` runs a protocol flow by hand against scripted answers, with no transport and
no clock, as h11's tests drive a connection.

Example:
    >>> from atrepo.testing import make_repo_car
    >>> car, key = make_repo_car({"app.bsky.feed.post/3k2a": {"$type": "app.bsky.feed.post",
    ...                                                       "text": "hi"}})
    >>> import atrepo
    >>> atrepo.read_car(car, signing_key=key).records.height
    1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from . import cbor, mst
from ._flows.effects import Effect, Flow, HttpDownload, HttpGet, Result, Sleep
from ._varint import encode_varint
from .cid import CID, cid_for
from .crypto import format_did_key

__all__ = ["FlowDriver", "SigningKey", "drive", "encode_car", "make_repo_car"]

T = TypeVar("T")
Answer = Result | BaseException

_ORDERS = {
    "k256": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}
_CURVES = {"k256": ec.SECP256K1, "p256": ec.SECP256R1}


@dataclass
class SigningKey:
    """A private key that signs like an atproto PDS: SHA-256, compact r||s, low-S."""

    curve: str = "k256"
    private: ec.EllipticCurvePrivateKey = field(init=False)

    def __post_init__(self) -> None:
        self.private = ec.generate_private_key(_CURVES[self.curve]())

    @property
    def did_key(self) -> str:
        """The public key as ``did:key:z...``."""
        point = self.private.public_key().public_bytes(
            encoding=_serialization().Encoding.X962,
            format=_serialization().PublicFormat.CompressedPoint)
        return format_did_key(self.curve, point)  # type: ignore[arg-type]

    def sign(self, message: bytes, *, high_s: bool = False) -> bytes:
        """Return the 64-byte signature; ``high_s=True`` makes the (invalid) high-S twin."""
        r, s = decode_dss_signature(self.private.sign(message, ec.ECDSA(hashes.SHA256())))
        order = _ORDERS[self.curve]
        if (s > order // 2) != high_s:
            s = order - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _serialization() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization


def encode_car(roots: list[CID], blocks: list[tuple[bytes, bytes]]) -> bytes:
    """Return a CARv1 with ``roots`` and (binary CID, data) ``blocks`` in the given order."""
    header = cbor.encode({"roots": roots, "version": 1})
    parts = [encode_varint(len(header)), header]
    for raw, data in blocks:
        parts.append(encode_varint(len(raw) + len(data)))
        parts.append(raw)
        parts.append(data)
    return b"".join(parts)


def make_repo_car(records: Mapping[str, Any], *, did: str = "did:plc:testtesttesttesttesttest",
                  key: SigningKey | None = None, rev: str = "3kaaaaaaaaa22",
                  high_s: bool = False, version: int = 3) -> tuple[bytes, str]:
    """Return (CAR bytes, signing did:key) of a signed repo holding ``records``.

    Args:
        records: MST key (``collection/rkey``) -> record. A ``bytes`` value is stored as the
            record block verbatim (to make undecodable records); anything else is encoded
            as DAG-CBOR.
        did: the repository DID written into the commit.
        key: the signing key (a fresh K-256 key by default).
        rev: the commit rev.
        high_s: sign with the high-S form of the signature (which verifiers must reject).
        version: the commit version (3, or 2 for the older format).
    """
    key = key or SigningKey()
    blocks: dict[bytes, bytes] = {}
    items = []
    for path, record in records.items():
        data = record if isinstance(record, bytes) else cbor.encode(record)
        cid = cid_for(data)
        blocks[bytes(cid)] = data
        items.append((path, cid))
    root, nodes = mst.build(items)
    blocks.update((bytes(cid), data) for cid, data in nodes.items())
    unsigned = {"data": root, "did": did, "prev": None, "rev": rev, "version": version}
    commit = dict(unsigned, sig=key.sign(cbor.encode(unsigned), high_s=high_s))
    commit_data = cbor.encode(commit)
    commit_cid = cid_for(commit_data)
    ordered = [(bytes(commit_cid), commit_data), *sorted(blocks.items())]
    return encode_car([commit_cid], ordered), key.did_key


class FlowDriver:
    """Drives a flow by hand from a script of answers, recording every effect it yields.

    Each effect other than a :class:`~atrepo._flows.effects.Sleep` takes the next answer:
    a result is sent into the flow, an exception is thrown into it (as a driver throws a
    failed request). A ``Sleep`` is answered at once with None and only recorded, so retry
    delays are read, never waited for.
    """

    def __init__(self) -> None:
        self.effects: list[Effect] = []

    @property
    def sleeps(self) -> list[float]:
        """The seconds of every ``Sleep`` the flow yielded, in order."""
        return [effect.seconds for effect in self.effects if isinstance(effect, Sleep)]

    @property
    def requests(self) -> list[HttpGet | HttpDownload]:
        """Every HTTP effect the flow yielded, in order."""
        return [effect for effect in self.effects if isinstance(effect, HttpGet | HttpDownload)]

    def run(self, flow: Flow[T], answers: Iterable[Answer]) -> T:
        """Run ``flow`` to its end against ``answers``; return its value.

        Raises:
            AssertionError: the flow asked for more answers than given, or ended before
                using them all.
            Exception: whatever the flow raises.
        """
        pending = list(answers)
        try:
            effect = next(flow)
            while True:
                self.effects.append(effect)
                if isinstance(effect, Sleep):
                    effect = flow.send(None)
                    continue
                if not pending:
                    raise AssertionError(f"the flow asked for more than the script: {effect!r}")
                answer = pending.pop(0)
                effect = (flow.throw(answer) if isinstance(answer, BaseException)
                          else flow.send(answer))
        except StopIteration as done:
            if pending:
                raise AssertionError(f"the flow ended with {len(pending)} answers unused")
            return done.value  # type: ignore[no-any-return]


def drive(flow: Flow[T], answers: Iterable[Answer]) -> tuple[T, FlowDriver]:
    """Run ``flow`` against ``answers`` with a new :class:`FlowDriver`; return both.

    Example:
        >>> from atrepo._flows.effects import DnsAnswer
        >>> from atrepo._flows.identity import resolve_handle
        >>> did, driver = drive(resolve_handle("alice.example.com"),
        ...                     [DnsAnswer(("did=did:plc:ewvi7nxzyoun6zhxrhs64oiz",))])
        >>> did, driver.effects
        ('did:plc:ewvi7nxzyoun6zhxrhs64oiz', [DnsTxt(name='_atproto.alice.example.com')])
    """
    driver = FlowDriver()
    return driver.run(flow, answers), driver
