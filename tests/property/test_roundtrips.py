"""Property tests: DAG-CBOR and JSON data-model round trips; MST build, walk and diff.

Each test is bounded by ``max_examples`` to run in a few seconds (``deadline=None``: the
first example pays for imports and caches).
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from atrepo import cbor, datamodel, mst
from atrepo.cbor import INT_MAX, INT_MIN, Link
from atrepo.cid import CID, cid_for

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MST_SETTINGS = settings(max_examples=100, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- data-model values ---------------------------------------------------------------------

cids = st.builds(cid_for, st.binary(max_size=8), st.sampled_from(["dag-cbor", "raw"]))
ints = st.one_of(st.integers(INT_MIN, INT_MAX),
                 st.sampled_from([INT_MIN, INT_MAX, 0, -1, 23, 24, 255, 256, 65535, 65536,
                                  2**32 - 1, 2**32, -24, -25, -(2**32) - 1]))
texts = st.text(max_size=20)
scalars = st.one_of(st.none(), st.booleans(), ints, texts, st.binary(max_size=20), cids)
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(texts, children, max_size=5)),
    max_leaves=25,
)
# JSON round trips: keys starting with "$" carry meaning ($link, $bytes, $type)
plain_keys = st.text(max_size=10).filter(lambda k: not k.startswith("$"))
json_safe = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(plain_keys, children, max_size=5)),
    max_leaves=25,
)


@FAST
@given(values)
def test_encode_decode_round_trip(value: Any) -> None:
    data = cbor.encode(value)
    assert cbor.decode(data) == value
    assert cbor.encode(cbor.decode(data)) == data  # canonical: a fixed point


@FAST
@given(values)
def test_encode_ignores_dict_insertion_order(value: Any) -> None:
    def reorder(v: Any) -> Any:
        if type(v) is dict:
            return {k: reorder(v[k]) for k in reversed(list(v))}
        if type(v) is list:
            return [reorder(x) for x in v]
        return v

    assert cbor.encode(reorder(value)) == cbor.encode(value)


@FAST
@given(values)
def test_decode_fast_agrees_with_decode(value: Any) -> None:
    data = cbor.encode(value)

    def links_to_cids(v: Any) -> Any:
        if type(v) is Link:
            return CID.from_raw(bytes(v))
        if type(v) is dict:
            return {k: links_to_cids(x) for k, x in v.items()}
        if type(v) is list:
            return [links_to_cids(x) for x in v]
        return v

    assert links_to_cids(cbor.decode_fast(data)) == value


@FAST
@given(json_safe)
def test_json_data_model_round_trip(value: Any) -> None:
    obj = datamodel.to_json(value)
    assert datamodel.from_json(json.loads(json.dumps(obj))) == value


@FAST
@given(st.dictionaries(plain_keys, json_safe, max_size=6))
def test_record_json_matches_to_json(record: dict[str, Any]) -> None:
    data = cbor.encode(record)
    text = datamodel.record_json(data)
    assert json.loads(text) == datamodel.to_json(record)
    # and what record_json writes is valid JSON data model that encodes back to the block
    assert cbor.encode(datamodel.from_json(json.loads(text))) == data


@FAST
@given(values)
def test_cid_string_round_trip(value: Any) -> None:
    data = cbor.encode(value)
    cid = cid_for(data)
    text = str(cid)
    assert text.startswith("bafyrei") and len(text) == 59
    assert CID.decode(text) == cid and CID.decode(bytes(cid)) == cid


# --- MST -----------------------------------------------------------------------------------------

NSIDS = ["app.bsky.feed.post", "app.bsky.feed.like", "com.x.y", "a.b.c"]
rkeys = st.text(alphabet="ab23", min_size=1, max_size=12)
long_prefix = "3k" + "a" * 60
keys = st.one_of(
    st.builds(lambda n, r: f"{n}/{r}", st.sampled_from(NSIDS), rkeys),
    st.builds(lambda n, r: f"{n}/{long_prefix}{r}", st.sampled_from(NSIDS[:2]), rkeys),
)


def _seeded_keys(seed: int, count: int) -> set[str]:
    """Many keys cheaply (hypothesis draws big sets slowly): same alphabets as ``keys``."""
    rnd = random.Random(seed)
    out = set()
    for _ in range(count):
        rkey = "".join(rnd.choice("ab23") for _ in range(rnd.randint(1, 12)))
        nsid = rnd.choice(NSIDS)
        out.add(f"{nsid}/{long_prefix}{rkey}" if rnd.random() < 0.3 else f"{nsid}/{rkey}")
    return out


# small sets drawn key by key, and big ones (trees of 3-5 layers) from a seed
key_sets = st.one_of(st.sets(keys, max_size=40),
                     st.builds(_seeded_keys, st.integers(0, 2**32), st.integers(100, 1500)))


def _value(key: str, salt: int = 0) -> CID:
    return cid_for(f"{salt}:{key}".encode())


def _tree(items: dict[str, CID]) -> tuple[CID, dict[CID, bytes]]:
    return mst.build(items.items())


def _layers_ok(root: CID, blocks: dict[CID, bytes]) -> int:
    """Walk nodes by hand; every key sits at its height, one layer per level. Returns count."""
    count = 0
    top = None
    stack = [(root, 0)]
    while stack:
        cid, depth = stack.pop()
        node = mst.decode_node(bytes(cid), blocks[cid])
        if top is None:
            top = node.layer if node.layer is not None else 0
        for key, _, right in node.entries:
            assert mst.key_height(key) == node.layer == top - depth
            count += 1
        children = [node.left] + [r for _, _, r in node.entries]
        stack.extend((CID.from_raw(c), depth + 1) for c in children if c is not None)
    return count


@MST_SETTINGS
@given(key_sets)
@example(set())
@example({"a.b.c/a"})
def test_build_then_walk(key_set: set[str]) -> None:
    items = {k: _value(k) for k in key_set}
    root, blocks = _tree(items)
    assert list(mst.walk(blocks, root)) == sorted(items.items())
    assert _layers_ok(root, blocks) == len(items)
    # every written block is reachable and content-addressed
    assert all(cid_for(data) == cid for cid, data in blocks.items())


@MST_SETTINGS
@given(key_sets, st.randoms(use_true_random=False))
def test_build_is_canonical(key_set: set[str], rnd: Any) -> None:
    items = [(k, _value(k)) for k in key_set]
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert mst.build(items) == mst.build(shuffled)


def _naive_ops(old: dict[str, CID], new: dict[str, CID]) -> list[tuple[str, Any, Any]]:
    return [(k, old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)]


@st.composite
def tree_pairs(draw: Any) -> tuple[dict[str, CID], dict[str, CID]]:
    base = draw(key_sets)
    old = {k: _value(k) for k in base}
    new = dict(old)
    for key in sorted(base):
        action = draw(st.sampled_from(["keep", "keep", "keep", "delete", "update"]))
        if action == "delete":
            del new[key]
        elif action == "update":
            new[key] = _value(key, salt=1)
    for key in draw(st.sets(keys, max_size=20)):
        new[key] = _value(key, salt=2)
    if draw(st.booleans()):
        return old, new
    return new, old


@MST_SETTINGS
@given(tree_pairs())
@example(({}, {}))
@example(({}, {"a.b.c/a": cid_for(b"1")}))
@example(({"a.b.c/a": cid_for(b"1")}, {}))
def test_diff_matches_naive_diff(pair: tuple[dict[str, CID], dict[str, CID]]) -> None:
    old, new = pair
    old_root, old_blocks = _tree(old)
    new_root, new_blocks = _tree(new)
    blocks = {**old_blocks, **new_blocks}
    result = mst.diff(blocks, old_root, new_root)
    assert result.record_ops == _naive_ops(old, new)
    assert result.created_nodes == set(new_blocks) - set(old_blocks)
    assert result.deleted_nodes == set(old_blocks) - set(new_blocks)
    # the path for trees checked before (atrepo.diff of opened snapshots) agrees
    fetch = lambda raw: blocks.get(CID.from_raw(raw))  # noqa: E731
    assert mst.diff_raw(fetch, bytes(old_root), bytes(new_root), checked=True) == \
        mst.diff_raw(fetch, bytes(old_root), bytes(new_root))


@MST_SETTINGS
@given(key_sets)
def test_diff_with_itself_is_empty(key_set: set[str]) -> None:
    items = {k: _value(k) for k in key_set}
    root, blocks = _tree(items)
    fetched: list[bytes] = []

    def fetch(raw: bytes) -> bytes | None:
        fetched.append(raw)
        return blocks.get(CID.from_raw(raw))

    class Store:
        get_raw = staticmethod(fetch)

    result = mst.diff(Store(), root, root)
    assert result.record_ops == []
    assert result.created_nodes == set() and result.deleted_nodes == set()
    # identical roots: nothing below the root needs to be fetched
    assert set(fetched) <= {bytes(root)} | {bytes(c) for c in blocks} and len(set(fetched)) <= 2


key_bounds = st.one_of(keys, st.sampled_from(["", "a", "app.bsky.feed.", "app.bsky.feed.post/",
                                              "app.bsky.feed.post0", "com", "z", "~"]))


@MST_SETTINGS
@given(key_sets, st.lists(st.tuples(key_bounds, key_bounds), max_size=3))
def test_walk_with_key_ranges_equals_filtering(key_set: set[str],
                                               bounds: list[tuple[str, str]]) -> None:
    items = {k: _value(k) for k in key_set}
    root, blocks = _tree(items)
    ranges = [(min(a, b), max(a, b)) for a, b in bounds]
    expected = [(k, v) for k, v in sorted(items.items())
                if any(lo <= k < hi for lo, hi in ranges)]
    fetched: list[CID] = []

    class Store:
        @staticmethod
        def get(cid: CID) -> bytes | None:
            fetched.append(cid)
            return blocks.get(cid)

    assert list(mst.walk(Store(), root, key_ranges=ranges)) == expected
    assert len(fetched) <= len(blocks)
    if not ranges:
        assert len(fetched) <= 1  # only the root: every subtree is outside every range
