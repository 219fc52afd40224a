"""Fuzzing with hypothesis: arbitrary and mutated bytes into every decoder atrepo has.

Whatever the input, atrepo may return a value or raise an AtrepoError subclass, and nothing
else: no cbor2 error, KeyError, TypeError, RecursionError, OSError, ... When a decoder does
accept input, the result must be consistent (a strictly decoded value re-encodes to the
same bytes; a mutated CAR that still reads gives the original records).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import atrepo
from atrepo import car as carmod
from atrepo import cbor, datamodel, mst
from atrepo.cid import cid_for
from atrepo.errors import AtrepoError, DecodeError, MstError
from atrepo.testing import SigningKey, encode_car, make_repo_car

FUZZ = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW_FUZZ = settings(max_examples=400, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# A small valid repository CAR (fixed key and records, so examples replay identically).
_KEY = SigningKey()
_RECORDS: dict[str, Any] = {
    f"app.bsky.feed.post/3k{i:03d}": {"$type": "app.bsky.feed.post", "text": f"post {i}",
                                       "n": i, "ref": cid_for(b"%d" % i), "b": b"\x00\x01"}
    for i in range(12)
}
_RECORDS["app.bsky.actor.profile/self"] = {"$type": "app.bsky.actor.profile", "x": None}
VALID_CAR, VALID_KEY = make_repo_car(_RECORDS, key=_KEY)
VALID_RECORDS = atrepo.read_car(VALID_CAR, signing_key=VALID_KEY).records

_ONE = cbor.encode({"a": 1})
_NODE = mst.build([("app.x.y/a", cid_for(b"a"))])
_TINY_HEADER = cbor.encode({"roots": [], "version": 1})

# prefixes that get random tails past the first checks of each decoder
CBOR_PREFIXES = [b"", b"\xa1", b"\xa2", b"\xa1\x61e", b"\x82", b"\xd8\x2a", b"\xd8\x2a\x58\x25\x00",
                 b"\xa2\x61e\x81\xa4", b"\x1b", b"\x3b", b"\xfb", b"\xbf", b"\x9f", b"\x7f"]
CAR_PREFIXES = [b"", VALID_CAR[:1], VALID_CAR[:30], VALID_CAR[:60], VALID_CAR[:100],
                bytes([len(_TINY_HEADER)]) + _TINY_HEADER]

cbor_like = st.one_of(
    st.binary(max_size=120),
    st.builds(lambda p, t: p + t, st.sampled_from(CBOR_PREFIXES), st.binary(max_size=80)),
    st.builds(lambda v, t: cbor.encode(v) + t,
              st.recursive(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(),
                                     st.binary(max_size=8)),
                           lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=8),
              st.binary(max_size=3)),
)
car_like = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda p, t: p + t, st.sampled_from(CAR_PREFIXES), st.binary(max_size=200)),
)


def _only_atrepo_errors(func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except AtrepoError:
        return None


# --- decoders on arbitrary bytes ---------------------------------------------------------------

@FUZZ
@given(cbor_like)
@example(b"\x81" * 10_000)
@example(b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff")
def test_cbor_decode_any_bytes(data: bytes) -> None:
    try:
        value = cbor.decode(data)
    except DecodeError:
        return
    assert cbor.encode(value) == data  # strict decode only accepts canonical DAG-CBOR


@FUZZ
@given(cbor_like)
def test_cbor_decode_fast_any_bytes(data: bytes) -> None:
    try:
        fast = cbor.decode_fast(data)
    except DecodeError:
        fast = DecodeError
    try:
        strict = cbor.decode(data)
    except DecodeError:
        return
    # whatever the strict decoder accepts, the fast one reads the same way
    assert fast is not DecodeError
    assert datamodel.to_json(fast) == datamodel.to_json(strict)


@FUZZ
@given(cbor_like)
@example(_ONE)
@example(b"\xa1\x61a" + b"\x81" * 10_000 + b"\x01")
def test_record_json_any_bytes(data: bytes) -> None:
    try:
        text = datamodel.record_json(data)
    except DecodeError:
        text = None
    if text is not None:
        assert type(json.loads(text)) is dict
    try:
        strict = cbor.decode(data)
    except DecodeError:
        return
    if type(strict) is dict:  # valid canonical records are always readable, and agree
        assert text is not None
        assert json.loads(text) == datamodel.to_json(strict)


@FUZZ
@given(cbor_like)
@example(_NODE[1][_NODE[0]])
def test_decode_node_any_bytes(data: bytes) -> None:
    try:
        node = mst.decode_node(b"", data)
    except MstError:
        return
    assert isinstance(node, mst.Node)
    for key, value, right in node.entries:
        assert mst.key_height(key) == node.layer
        assert isinstance(value, bytes) and (right is None or isinstance(right, bytes))


@FUZZ
@given(car_like)
def test_car_read_and_iterate_any_bytes(data: bytes) -> None:
    carfile = _only_atrepo_errors(carmod.read_car, data)
    if carfile is None:
        return
    _only_atrepo_errors(lambda: [len(block) for _, block in carfile])
    for root in carfile.roots:
        _only_atrepo_errors(carfile.get, root)
        assert type(root in carfile) is bool


@FUZZ
@given(car_like)
def test_repository_read_any_bytes(data: bytes) -> None:
    def read() -> Any:
        snap = atrepo.read_car(data)
        return snap.records, snap.problems

    _only_atrepo_errors(read)


@SLOW_FUZZ
@given(car_like)
@example(bytes([len(_TINY_HEADER)]) + _TINY_HEADER + b"\x05\x01\x71\x12\x00x")
def test_file_backed_read_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fuzz.car")
        with open(path, "wb") as f:
            f.write(data)
        carfile = _only_atrepo_errors(carmod.read_car, path, 0)
        if carfile is not None:
            try:
                _only_atrepo_errors(lambda: [len(block) for _, block in carfile])
            finally:
                carfile.close()
        _only_atrepo_errors(lambda: atrepo.read_car(path, mem_limit_mb=0).records)
        _only_atrepo_errors(lambda: atrepo.read_car(io.BytesIO(data), mem_limit_mb=0).records)


# --- mutations of a valid repository ----------------------------------------------------------

mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "swap"]),
                     st.floats(0, 1, exclude_max=True), st.integers(0, 255))


def _mutate(data: bytes, ops: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, byte in ops:
        if not out:
            out.append(byte)
            continue
        pos = int(where * len(out))
        if kind == "flip":
            out[pos] ^= 1 << (byte % 8)
        elif kind == "set":
            out[pos] = byte
        elif kind == "insert":
            out.insert(pos, byte)
        elif kind == "delete":
            del out[pos]
        else:  # swap two bytes
            other = byte * len(out) // 256
            out[pos], out[other] = out[other], out[pos]
    return bytes(out)


@SLOW_FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_repository(ops: list[tuple[str, float, int]]) -> None:
    data = _mutate(VALID_CAR, ops)
    try:
        snap = atrepo.read_car(data, signing_key=VALID_KEY)
        records = snap.records
    except AtrepoError:
        return
    # every block used was checked against its CID and the commit against the key, so a
    # mutated CAR that still reads must hold exactly the original repository
    assert snap.verified
    assert records.equals(VALID_RECORDS)
    assert snap.problems.height == 0


@SLOW_FUZZ
@given(st.lists(mutation, min_size=1, max_size=3))
def test_mutated_repository_unverified(ops: list[tuple[str, float, int]]) -> None:
    data = _mutate(VALID_CAR, ops)
    try:
        snap = atrepo.read_car(data, verify_cids=False)
        snap.records, snap.problems  # noqa: B018
    except AtrepoError:
        pass


@SLOW_FUZZ
@given(st.lists(mutation, min_size=1, max_size=3), st.integers(0, 2))
def test_mutated_block_inside_valid_framing(ops: list[tuple[str, float, int]],
                                            which: int) -> None:
    """Mutate one block's bytes but keep the CAR framed correctly (length fixed up)."""
    blocks = list(carmod.read_car(VALID_CAR))
    cid, block = blocks[which * (len(blocks) - 1) // 2]
    new_block = _mutate(block, ops)
    if not new_block:
        return
    pairs = [(bytes(c), new_block if c == cid else b) for c, b in blocks]
    data = encode_car(carmod.read_car(VALID_CAR).roots, pairs)
    for verify in (True, False):
        try:
            snap = atrepo.read_car(data, verify_cids=verify)
            records = snap.records
            snap.problems  # noqa: B018
        except AtrepoError:
            continue
        if verify:
            assert new_block == block and records.equals(VALID_RECORDS)
