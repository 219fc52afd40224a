"""The compiled core against the pure Python reference, on good and bad input.

Every input goes through both paths (``_core_diff``) and the outcomes must be equal: the same
blocks, keys, record CIDs, record JSON and problems in the same order, or an error of the
same class with the same message, ``cid`` and ``offset``. Inputs: the shipped and generated
reference repositories, the interop data-model vectors, every truncation of a small CAR's
first bytes and evenly spaced ones after, byte flips across a file, swapped, dropped and
duplicated blocks, and hand-made trees and records that break one rule each.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from atrepo import _accel, mst
from atrepo.cbor import Link
from atrepo.cid import CID, cid_for
from atrepo.testing import encode_car

from _core_diff import car_outcome, encode, record_outcome, records_outcome, walk_outcome
from _interop import INTEROP_DIR

pytestmark = pytest.mark.skipif(not _accel.accelerated, reason="the compiled core is not built")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "sample.car"
INTEROP = INTEROP_DIR / "data-model" / "data-model-fixtures.json"
DID = "did:plc:testtesttesttesttesttest"


@pytest.fixture(params=["sample", "ref_small", "ref_p256", "ref_medium"])
def fixture_car(request: pytest.FixtureRequest) -> Path:
    """The shipped sample and the reference-generated repositories (made on first use)."""
    if request.param == "sample":
        return SAMPLE
    car: Path = request.getfixturevalue(request.param).car
    return car


def _blocks(data: bytes) -> list[tuple[int, int, int]]:
    """(block start, data start, end) of every block after the header of a CAR."""
    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7
    size, pos = varint(0)
    pos += size
    out = []
    while pos < len(data):
        size, body = varint(pos)
        out.append((pos, body + 36, body + size))
        pos = body + size
    return out


def _agree(outcomes: tuple[Any, Any]) -> None:
    reference, core = outcomes
    assert core == reference


# --- the fixtures -------------------------------------------------------------------------

def test_fixture_records_agree(fixture_car: Path) -> None:
    data = fixture_car.read_bytes()
    reference, core = records_outcome(data)
    assert reference[0] == "ok" and len(reference[1]) > 0
    assert core == reference


def test_fixture_blocks_agree(fixture_car: Path) -> None:
    data = fixture_car.read_bytes()
    absent = [bytes(cid_for(b"not in any CAR")), b"\x01\x71\x12\x20" + b"\x00" * 32, b"\x99"]
    _agree(car_outcome(data, probe=absent))


@pytest.mark.parametrize("collections", [["app.bsky.actor.profile"], ["app.bsky.feed.*"],
                                         ["app.bsky.feed.like", "app.bsky.graph.follow"],
                                         ["com.example.none"]])
def test_pruned_walks_agree(collections: list[str], ref_small: Any) -> None:
    data = ref_small.car.read_bytes()
    _agree(walk_outcome(data, collections))
    _agree(records_outcome(data, collections))


def test_unverified_blocks_agree() -> None:
    data = bytearray(SAMPLE.read_bytes())
    start, body, end = _blocks(bytes(data))[3]
    data[end - 1] ^= 1
    assert car_outcome(bytes(data))[0][0] == "ok"
    _agree(car_outcome(bytes(data)))


# --- interop vectors ------------------------------------------------------------------------

def _vectors() -> list[bytes]:
    entries = json.loads(INTEROP.read_text()) if INTEROP.is_file() else []
    return [base64.b64decode(e["cbor_base64"] + "=" * (-len(e["cbor_base64"]) % 4))
            for e in entries]


def test_interop_vectors_present() -> None:
    assert len(_vectors()) >= 3


@pytest.mark.parametrize("data", _vectors(), ids=lambda d: d[:6].hex())
def test_interop_vector_records_agree(data: bytes) -> None:
    reference, core = record_outcome(data)
    assert core == reference


# --- bad CARs -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small() -> bytes:
    return SAMPLE.read_bytes()


def test_every_early_truncation_agrees(small: bytes) -> None:
    for n in range(0, 400):
        _agree(records_outcome(small[:n]))


def test_spaced_truncations_agree(small: bytes) -> None:
    for n in range(400, len(small), max(1, len(small) // 300)):
        _agree(car_outcome(small[:n]))
        _agree(records_outcome(small[:n]))


def test_flip_sweep_agrees(small: bytes) -> None:
    for pos in range(0, len(small), max(1, len(small) // 400)):
        for mask in (0x01, 0x80):
            data = bytearray(small)
            data[pos] ^= mask
            _agree(records_outcome(bytes(data)))


def test_flip_in_every_block_kind_agrees(small: bytes) -> None:
    for start, body, end in _blocks(small):
        for pos in (start, body - 1, body, end - 1):
            data = bytearray(small)
            data[pos] ^= 0x04
            _agree(records_outcome(bytes(data)))


def test_swapped_dropped_and_duplicated_blocks_agree(small: bytes) -> None:
    blocks = _blocks(small)
    head = small[:blocks[0][0]]
    pieces = [small[s:e] for s, _b, e in blocks]
    rng = random.Random(12)
    for _ in range(60):
        shuffled = list(pieces)
        i, j = rng.randrange(len(pieces)), rng.randrange(len(pieces))
        choice = rng.randrange(3)
        if choice == 0:
            shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
        elif choice == 1:
            del shuffled[i]
        else:
            shuffled.insert(j, shuffled[i])
        _agree(records_outcome(head + b"".join(shuffled)))


def test_swapped_block_data_agrees(small: bytes) -> None:
    blocks = _blocks(small)
    rng = random.Random(7)
    for _ in range(40):
        (s1, b1, e1), (s2, b2, e2) = sorted(rng.sample(blocks, 2))
        data = small[:b1] + small[b2:e2] + small[e1:b2] + small[b1:e1] + small[e2:]
        _agree(records_outcome(data))


# --- hand-made trees and records ------------------------------------------------------------

RECORD = encode({"$type": "com.example.thing", "n": 1})
RECORD_CID = cid_for(RECORD)
HEIGHT0 = [k for k in (f"com.ex.a/{i:05d}" for i in range(400)) if mst.key_height(k) == 0]
HEIGHT1 = [k for k in (f"com.ex.a/{i:05d}" for i in range(400)) if mst.key_height(k) == 1]


def node(entries: list[Any], left: Any = None, **extra: Any) -> tuple[CID, bytes]:
    """An MST node; an entry is a key, or a dict overriding fields of the computed entry."""
    prev = b""
    encoded = []
    for entry in entries:
        fields = dict(entry) if isinstance(entry, dict) else {"key": entry}
        raw = fields.pop("key")
        raw = raw.encode() if isinstance(raw, str) else raw
        prefix = mst._node.common_prefix(prev, raw)
        item = {"k": raw[prefix:], "p": prefix, "t": None, "v": RECORD_CID}
        item.update(fields)
        encoded.append({k: v for k, v in item.items() if v is not _DROP})
        prev = raw
    data = encode({"e": encoded, "l": left, **extra})
    return cid_for(data), data


_DROP = object()


def repo(root: Any, blocks: list[tuple[Any, bytes]], records: list[tuple[Any, bytes]] = ()
         ) -> bytes:
    commit = {"data": root, "did": DID, "prev": None, "rev": "3kaaaaaaaaa22", "sig": b"s" * 64,
              "version": 3}
    commit_data = encode(commit)
    commit_cid = cid_for(commit_data)
    pairs = [(bytes(commit_cid), commit_data), (bytes(RECORD_CID), RECORD)]
    pairs += [(bytes(c), d) for c, d in (*blocks, *records)]
    return encode_car([commit_cid], pairs)


def _trees() -> list[bytes]:
    k0, k1 = HEIGHT0, HEIGHT1
    leaf = node([k0[0]])
    above = next(k for k in k0 if k > k1[0])
    wrong_leaf = node([above])
    missing = cid_for(b"missing node")
    cases = []
    cases.append(repo(node([k0[0], k0[1]])[0], [node([k0[0], k0[1]])]))          # valid
    cases.append(repo(node([k0[1], k0[0]])[0], [node([k0[1], k0[0]])]))          # order
    cases.append(repo(node([k0[0], k0[0]])[0], [node([k0[0], k0[0]])]))          # duplicate
    root = node([k1[0]], left=wrong_leaf[0])
    cases.append(repo(root[0], [root, wrong_leaf]))                                # range
    root = node([k1[0]], left=leaf[0])
    cases.append(repo(root[0], [root, leaf]))                                      # valid, 2
    cases.append(repo(root[0], [root]))                                            # missing
    mixed = node([k0[0], next(k for k in k1 if k > k0[0])])
    cases.append(repo(mixed[0], [mixed]))                                          # heights
    skip = node([k0[0]], left=None)
    top = node([next(k for k in k1 if k > k0[0])], left=skip[0])
    cases.append(repo(top[0], [top, skip]))
    loop = node([k0[0]], left=missing)
    cases.append(repo(loop[0], [loop]))
    for bad in ({"key": k0[0], "p": -1}, {"key": k0[0], "p": 3}, {"key": k0[0], "v": b"x"},
                {"key": k0[0], "t": "x"}, {"key": k0[0], "k": "text"}, {"key": k0[0], "p": True},
                {"key": k0[0], "extra": 1}, {"key": k0[0], "t": _DROP}, {"key": "no-slash"},
                {"key": "a/" + "x" * 1100}, {"key": "bad char/x"}, {"key": k0[0], "p": 2**40},
                {"key": k0[0], "v": CID.decode(str(RECORD_CID))}):
        bad_node = node([bad])
        cases.append(repo(bad_node[0], [bad_node]))
    for extra in ({"x": 1}, {}):
        odd = node([k0[0]], **extra)
        cases.append(repo(odd[0], [odd]))
    for data in (encode([1, 2]), encode({"e": 1, "l": None}), encode({"e": [], "l": None}),
                 encode({"e": [1], "l": None}), encode({"l": None}), b"\xa2\x61e\x80",
                 encode({"e": [], "l": None})[:-1], b"\xa2\x61e\x80\x61l\xc6\xf6",
                 b"\xa2\x61e\x80\x61l\xd8\x2a\x41\x00", encode({"e": [], "l": None}) + b"\xff"):
        cid = cid_for(data)
        cases.append(repo(cid, [(cid, data)]))
    for not_a_cid in (b"\x99", b"\x01\x71\xfb\x20" + b"\x11" * 32):  # links any bytes
        link = Link(not_a_cid)
        for holder in (node([k0[0]], left=link), node([{"key": k0[0], "v": link}]),
                       node([{"key": k0[0], "t": link}])):
            cases.append(repo(holder[0], [holder]))
    self_loop_data = encode({"e": [], "l": None})
    cid = cid_for(self_loop_data)
    cycle = node([k0[0]], left=cid)
    cases.append(repo(cycle[0], [cycle, (cid, self_loop_data)]))
    return cases


@pytest.mark.parametrize("data", _trees(), ids=range(len(_trees())))
def test_hand_made_trees_agree(data: bytes) -> None:
    _agree(walk_outcome(data))
    _agree(records_outcome(data))


RECORDS = [
    {"$type": "x", "a": [1, -1, 2**63 - 1, -(2**63)], "b": b"\x00\x01", "c": None, "d": True},
    {"text": "quote \" backslash \\ control \x01\x1f\x7f line \u2028 é 😀", "": ""},
    {"link": CID.decode(str(RECORD_CID)), "nested": {"deeper": [{"x": [[]]}]}},
]
RAW_RECORDS = [
    "a0", "a0ff", "80", "f6", "d82a4500aabbccdd", "d9002a4500aabbccdd", "a16161fb3ff8000000000000",
    "a16161f93c00", "a161611bffffffffffffffff", "a161613b8000000000000000", "a140f6",
    "a2616101616101", "a1016161", "a16161c6f6", "a16161c001", "a16161d82a4100", "a16161f7",
    "a16161f820", "a16161e0", "a16161f800", "a161617f6161ff", "a1616162eda080", "a1616141ff",
    "a16161d82a4200aa", "a2616140f661621bffffffffffffffff", "a1c6f6f6", "a26161016161c6f6",
    "a161615bffffffffffffffff", "a161619bffffffffffffffff00", "a1", "a16161fc", "a16161f97e00",
    "a16161fb4341c37937e08000", "a16161fb3eb0c6f7a0b5ed8d", "a16161fb8000000000000000",
    "a1616118", "a161611c", "a16161df", "a16161ff", "a2616140f661623b8000000000000000",
    "a1401bffffffffffffffff", "a16161" + "81" * 126 + "f6", "a16161" + "81" * 127 + "f6",
    "a16161" + "81" * 126 + "d82a4200aa", "a16161" + "81" * 127 + "a0",
]


@pytest.mark.parametrize("value", RECORDS, ids=range(len(RECORDS)))
def test_records_agree(value: Any) -> None:
    _agree(record_outcome(encode(value)))


@pytest.mark.parametrize("hex_data", RAW_RECORDS)
def test_raw_records_agree(hex_data: str) -> None:
    _agree(record_outcome(bytes.fromhex(hex_data)))


def test_bad_records_in_a_repo_are_the_same_problems() -> None:
    keys = HEIGHT0[:len(RAW_RECORDS)]
    items = [(k, cid_for(bytes.fromhex(h))) for k, h in zip(keys, RAW_RECORDS)]
    root, blocks = mst.build(items)
    nodes = list(blocks.items())
    records = [(cid, bytes.fromhex(h)) for (_k, cid), h in zip(items, RAW_RECORDS)]
    data = repo(root, nodes, records)
    reference, core = records_outcome(data)
    assert reference[0] == "ok" and reference[3], "expected some problems"
    assert core == reference


# --- a tree big enough to be walked on two threads -------------------------------------------

def test_big_tree_agrees_and_its_defects_are_the_reference_errors(ref_medium: Any) -> None:
    # the core walks trees of 20,000+ blocks in pieces on two threads, and walks again on
    # one when a piece fails, so that the error is the reference's first one
    data = ref_medium.car.read_bytes()
    assert len(_blocks(data)) > 20_000
    _agree(walk_outcome(data))
    blocks = _blocks(data)
    nodes = [b for b in blocks if data[b[1]:b[1] + 3] == b"\xa2\x61e"]  # {"e": ...}
    assert len(nodes) > 1000
    rng = random.Random(3)
    for start, body, end in rng.sample(nodes, 3):
        flipped = bytearray(data)
        flipped[rng.randrange(body, end)] ^= 0x10
        _agree(walk_outcome(bytes(flipped)))
    start, body, end = rng.choice(nodes)
    _agree(walk_outcome(data[:start] + data[end:]))
