"""``atrepo.diff`` on the compiled core against the pure Python reference.

Every case runs both paths and requires equal outcomes: the same frame (rows in the same
order, record JSON included), or an error of the same class with the same message, ``cid``
and ``offset`` (``_core_diff.failure``). Inputs: the reference-generated repositories (two
commits each, as files and as one store pack, filtered by collections or not, verified or
not), trees of the interop vectors' keys, hypothesis-generated pairs of trees, and the same
trees made hostile one node at a time (bad keys, prefixes, shapes and links, missing,
shared, tampered and undecodable nodes, trees too deep).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atrepo
from atrepo import _accel, _diff, car, cbor, mst
from atrepo._snapshot_store import SnapshotStore
from atrepo._varint import encode_varint
from atrepo.cbor import Link
from atrepo.cid import CID, cid_for
from atrepo.snapshot import open_snapshot
from atrepo.testing import encode_car

from _core_diff import Failed, pure, run
from _interop import INTEROP_DIR

pytestmark = pytest.mark.skipif(not _accel.accelerated, reason="the compiled core is not built")

DID = "did:plc:testtesttesttesttesttest"
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "sample.car"


@contextmanager
def core_only() -> Iterator[None]:
    """Run the block on the core, failing if the diff falls back to the pure path."""
    def refuse(*_args: Any) -> Any:
        raise AssertionError("the diff fell back to the pure Python path")
    saved, _diff._rows = _diff._rows, refuse
    try:
        yield
    finally:
        _diff._rows = saved


def agree(compute: Callable[[], Any]) -> Any:
    """``compute()`` on both paths (reference first); their outcomes must be equal."""
    with pure():
        reference = run(compute)
    with core_only():
        core = run(compute)
    assert core == reference
    return reference


def frame_rows(open_old: Callable[[], Any], open_new: Callable[[], Any]) -> Callable[[], Any]:
    """A computation: open both snapshots, diff them, return the frame's rows and schema."""
    def compute() -> Any:
        frame = atrepo.diff(open_old(), open_new())
        return frame.schema, frame.rows()
    return compute


# --- the reference-generated repositories -----------------------------------------------------

@pytest.fixture(params=["ref_small", "ref_medium"])
def ref_pair(request: pytest.FixtureRequest) -> Any:
    """A generated repository with a second commit (made on first use)."""
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("verify_cids", [True, False])
def test_generated_pairs_agree(ref_pair: Any, verify_cids: bool) -> None:
    def read(path: Path) -> Callable[[], Any]:
        return lambda: atrepo.read_car(path, verify_cids=verify_cids)
    _schema, rows = agree(frame_rows(read(ref_pair.car), read(ref_pair.car2)))
    assert len(rows) == len(ref_pair.diff["ops"]) and all(row[6] or row[7] for row in rows)
    assert sorted((f"{c}/{r}", o, n) for c, r, _u, _a, o, n, _j, _k in rows) == \
        sorted(tuple(op) for op in ref_pair.diff["ops"])


@pytest.mark.parametrize("collections", [["app.bsky.feed.like"],
                                         ["app.bsky.feed.post", "app.bsky.graph.*"]])
def test_filtered_pairs_agree(ref_small: Any, collections: list[str]) -> None:
    _schema, rows = agree(frame_rows(
        lambda: atrepo.read_car(ref_small.car, collections=collections),
        lambda: atrepo.read_car(ref_small.car2)))
    assert rows and all(row[0] in collections or row[0].startswith("app.bsky.graph.")
                        for row in rows)


def test_diffs_from_nothing_and_of_one_snapshot_agree(ref_small: Any) -> None:
    _schema, created = agree(frame_rows(lambda: None, lambda: atrepo.read_car(SAMPLE)))
    assert created and {row[3] for row in created} == {"create"}
    _schema, none = agree(frame_rows(lambda: atrepo.read_car(ref_small.car),
                                     lambda: atrepo.read_car(ref_small.car)))
    assert none == []


def test_stored_snapshots_in_one_pack_agree(ref_small: Any, tmp_path: Path) -> None:
    """As ``client.snapshot`` reopens them: both commits in one store pack, walk deferred."""
    truth, truth2 = ref_small.truth, ref_small.truth2
    store = SnapshotStore(tmp_path / "repos", max_bytes=1 << 40)
    for path, commit, source in ((ref_small.car, truth, "full"),
                                 (ref_small.since, truth2, "incremental")):
        download = tmp_path / path.name
        shutil.copyfile(path, download)
        store.add(car.read_car(download, 64), did=truth["did"], commit_cid=commit["commit_cid"],
                  signing_key=truth["signing_key"], handle=None, mem_limit_mb=64, source=source)

    def compute() -> Any:
        pack = store.open_pack(truth["did"], 64)
        old, new = (open_snapshot(pack, root=commit["commit_cid"], walk_now=False)
                    for commit in (truth, truth2))
        assert old.blocks is new.blocks
        return atrepo.diff(old, new).rows()
    assert len(agree(compute)) == len(ref_small.diff["ops"])


def test_a_forged_node_in_unchecked_blocks_fails_alike(ref_small: Any) -> None:
    """A deleted node of the old tree forged in the new CAR (read unchecked), as in
    test_diff.py: both paths hash it and name it, with no offset."""
    gone = sorted(set(ref_small.diff["deleted_nodes"]) - {ref_small.truth["data_cid"]})[0]
    raw, forged = bytes(CID.decode(gone)), cbor.encode({"e": [], "l": None})
    data = ref_small.car2.read_bytes() + encode_varint(len(raw) + len(forged)) + raw + forged
    outcome = agree(frame_rows(lambda: atrepo.read_car(ref_small.car),
                               lambda: atrepo.read_car(data, verify_cids=False)))
    assert isinstance(outcome, Failed) and outcome.kind == "CarError"
    assert outcome.cid == gone and outcome.offset is None


# --- the interop vectors' keys ------------------------------------------------------------------

def _example_keys() -> list[str]:
    path = INTEROP_DIR / "mst" / "example_keys.txt"
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def test_trees_of_the_interop_keys_agree() -> None:
    keys = _example_keys()
    assert len(keys) > 100
    old = {key: cid_for(key.encode()) for key in keys}
    new = {key: value for i, (key, value) in enumerate(old.items()) if i % 7}
    new.update({key: cid_for(b"changed") for key in keys[::11]})
    new.update({f"{key}x": cid_for(b"added") for key in keys[3::13]})
    pair = TreePair(old, new)
    rows = agree(pair.rows(verify_cids=True, checked=False))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    assert [f"{row[0]}/{row[1]}" for row in rows] == changed
    agree(pair.rows(verify_cids=True, checked=True))
    assert pair.nodes_agree()


# --- trees built here: pairs and hostile variants ----------------------------------------------

Tree = dict[str, Any]  # a node with its children nested in place of their links


def record_block(value: int) -> bytes:
    """A record for value ``value``; negative values are blocks that are not records."""
    return b"\xff\x00" if value < 0 else cbor.encode({"$type": "app.x", "n": value})


def nest(blocks: dict[CID, bytes], cid: CID) -> Tree:
    """The tree at ``cid`` with every child link replaced by the child itself."""
    node: Tree = cbor.decode(blocks[cid])
    if node["l"] is not None:
        node["l"] = nest(blocks, node["l"])
    for entry in node["e"]:
        if entry["t"] is not None:
            entry["t"] = nest(blocks, entry["t"])
    return node


def encode_tree(node: Any, blocks: list[tuple[bytes, bytes]]) -> Any:
    """Write ``node`` and its children as blocks (children first); return its link."""
    if not isinstance(node, dict):
        return node  # a link, None, or whatever a mutation put there
    if "raw" in node:  # a block of given bytes (and maybe another CID: a tampered block)
        raw = node.get("cid") or bytes(cid_for(node["raw"]))
        blocks.append((raw, node["raw"]))
        return Link(raw)
    out = dict(node)
    if "l" in out:
        out["l"] = encode_tree(out["l"], blocks)
    if isinstance(out.get("e"), list):
        out["e"] = [{**entry, "t": encode_tree(entry["t"], blocks)}
                    if isinstance(entry, dict) and "t" in entry else entry
                    for entry in out["e"]]
    data = cbor.encode(out)
    raw = bytes(cid_for(data))
    blocks.append((raw, data))
    return Link(raw)


def nodes(tree: Tree) -> list[Tree]:
    """Every node of ``tree``, in pre-order."""
    found = [tree]
    children = [tree.get("l")] + [e.get("t") for e in tree.get("e", []) if isinstance(e, dict)]
    for child in children:
        if isinstance(child, dict) and "e" in child:
            found += nodes(child)
    return found


class TreePair:
    """Two trees of records (key -> value), as CAR bytes the diff can read."""

    def __init__(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.blocks: list[tuple[bytes, bytes]] = []
        self.roots = [self._add(items) for items in (old, new)]

    def _add(self, items: dict[str, Any]) -> bytes:
        values = {}
        for key, value in items.items():
            if isinstance(value, int):
                data = record_block(value)
                values[key] = cid_for(data)
                if value % 5 != 4:  # every fifth record block is missing
                    self.blocks.append((bytes(values[key]), data))
            else:
                values[key] = value
        root, blocks = mst.build(values.items())
        self.blocks += [(bytes(cid), data) for cid, data in blocks.items()]
        self.new_tree = nest(blocks, root)  # the last tree added is the new one
        return bytes(root)

    def replace_new(self, tree: Tree) -> None:
        """Make ``tree`` (a changed copy of the new tree) the new tree."""
        self.roots[1] = bytes(encode_tree(tree, self.blocks))

    def car(self, verify_cids: bool) -> car.CarFile:
        data = encode_car([CID.from_raw(self.roots[1])], self.blocks)
        return car.read_car(data, verify_cids=verify_cids)

    def rows(self, *, verify_cids: bool, checked: bool,
             ranges: list[tuple[str, str]] | None = None) -> Callable[[], Any]:
        """A computation: the diff's rows from the path in use."""
        def compute() -> Any:
            sources = [self.car(verify_cids)]
            core_rows = _diff._core_rows(sources, *self.roots, ranges, checked, DID)
            return _diff._rows(sources, *self.roots, ranges, checked, DID) \
                if core_rows is None else core_rows
        return compute

    def nodes_agree(self) -> bool:
        """The core's ops and created/deleted nodes are the reference's."""
        with pure():
            ops, created, deleted = mst.diff_raw(self.car(True).get_raw, *self.roots)
        assert _accel.core is not None
        found = _accel.call(_accel.core.diff, [self.car(True).core_car()], *self.roots)
        assert found.ops() == ops
        assert (set(found.created()), set(found.deleted())) == (created, deleted)
        return True


COLLECTIONS = ["app.x", "app.x.y", "app.bsky.feed.like"]  # "app.x.y" sorts before "app.x/"
KEYS = st.builds(lambda c, r: f"{c}/{r}", st.sampled_from(COLLECTIONS),
                 st.text("abcdefgh2345~:._-", min_size=1, max_size=6))
RECORDS = st.dictionaries(KEYS, st.integers(-1, 40), max_size=60)


@st.composite
def tree_pairs(draw: st.DrawFn) -> TreePair:
    old = draw(RECORDS)
    new = dict(old)
    for key in draw(st.lists(st.sampled_from(sorted(old)), max_size=10)) if old else []:
        new.pop(key, None)
    new.update(draw(st.dictionaries(KEYS, st.integers(-1, 40), max_size=10)))
    return TreePair(old, new)


SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(tree_pairs(), st.booleans(),
       st.sampled_from([None, [("app.x.", "app.x/"), ("app.x/", "app.x0")]]))
def test_generated_tree_pairs_agree(pair: TreePair, verify_cids: bool,
                                    ranges: list[tuple[str, str]] | None) -> None:
    for checked in (False, True):
        agree(pair.rows(verify_cids=verify_cids, checked=checked, ranges=ranges))
    assert pair.nodes_agree()


def _mutate(tree: Tree, kind: str, pick: int, payload: bytes) -> None:
    """Change one node of ``tree`` (the ``pick``-th, pre-order) in the way ``kind`` says."""
    node = nodes(tree)[pick % len(nodes(tree))]
    entries = node["e"]
    entry = entries[pick % len(entries)] if entries else None
    missing = Link(bytes(cid_for(b"no such node" + payload)))
    if kind == "key" and entry:
        entry["k"] = payload
    elif kind == "prefix" and entry:
        entry["p"] = pick % 13 - 2
    elif kind == "drop-entry" and entry:
        entries.remove(entry)
    elif kind == "swap-entries" and len(entries) > 1:
        entries.reverse()
    elif kind == "extra-field":
        node["x"] = 1
    elif kind == "no-left":
        del node["l"]
    elif kind == "value":
        if entry:
            entry["v"] = payload if pick % 2 else 7
    elif kind == "missing-child":
        if entry:
            entry["t"] = missing
        else:
            node["l"] = missing
    elif kind == "shared-child" and entry:
        entry["t"] = node["l"]
    elif kind == "empty-child" and entry:
        entry["t"] = {"e": [], "l": None}
    elif kind == "garbage":
        node.clear()
        node.update({"raw": payload or b"\xa1", "e": []})
    elif kind == "tampered":
        data = cbor.encode({"e": [], "l": None})
        node.clear()
        node.update({"raw": payload + data, "cid": bytes(cid_for(data)), "e": []})
    elif kind == "deep":
        inner = dict(node)
        chain: Tree = inner
        for _ in range(pick % 70):
            chain = {"e": [], "l": chain}
        node.clear()
        node.update(chain)


MUTATIONS = ["key", "prefix", "drop-entry", "swap-entries", "extra-field", "no-left", "value",
             "missing-child", "shared-child", "empty-child", "garbage", "tampered", "deep"]


@SETTINGS
@given(tree_pairs(), st.sampled_from(MUTATIONS), st.integers(0, 10**6), st.binary(max_size=12),
       st.booleans())
def test_hostile_trees_fail_alike(pair: TreePair, kind: str, pick: int, payload: bytes,
                                  verify_cids: bool) -> None:
    """A tree not walked before (checked=False): every check of the walk, on both paths."""
    tree = pair.new_tree
    _mutate(tree, kind, pick, payload)
    pair.replace_new(tree)
    agree(pair.rows(verify_cids=verify_cids, checked=False))


@pytest.mark.parametrize("checked", [False, True])
@pytest.mark.parametrize("where", ["root", "child"])
def test_a_missing_node_fails_alike(checked: bool, where: str) -> None:
    old = {f"app.x/{i:03d}": i for i in range(60)}
    pair = TreePair(old, {**old, "app.x/new": 1})
    missing = bytes(cid_for(b"absent"))
    if where == "root":
        pair.roots[1] = missing
    else:
        tree = pair.new_tree
        tree["l"] = Link(missing)
        pair.replace_new(tree)
    outcome = agree(pair.rows(verify_cids=True, checked=checked))
    assert isinstance(outcome, Failed) and outcome.kind == "MstError"
    assert outcome.cid == str(CID.from_raw(missing))
    assert "missing MST node block" in outcome.text


def _pair_with_new_tree(tree: Tree) -> TreePair:
    old = {f"app.x/{i:03d}": i for i in range(30)}
    pair = TreePair(old, old)
    pair.replace_new(tree)
    return pair


def test_a_root_above_too_many_empty_nodes_fails_alike() -> None:
    pair = TreePair({"app.x/a": 1}, {"app.x/b": 2})
    chain = pair.new_tree
    for _ in range(mst.MAX_DEPTH + 1):
        chain = {"e": [], "l": chain}
    pair.replace_new(chain)
    outcome = agree(pair.rows(verify_cids=True, checked=False))
    assert isinstance(outcome, Failed) and outcome.message == "MST deeper than allowed"


def test_a_node_met_at_two_layers_fails_alike() -> None:
    """A node linked from a layer-1 root and from an empty node below it: the diff meets it
    at layers 0 and -1, and the second time is one time too many."""
    low = next(f"app.x/{i}" for i in range(1000) if mst.key_height(f"app.x/{i}") == 0)
    high = next(f"app.x/{i}" for i in range(1000) if mst.key_height(f"app.x/{i}") == 1)
    leaf = {"e": [{"k": low.encode(), "p": 0, "t": None, "v": cid_for(b"1")}], "l": None}
    root = {"e": [{"k": high.encode(), "p": 0, "t": leaf, "v": cid_for(b"2")}],
            "l": {"e": [], "l": leaf}}
    outcome = agree(_pair_with_new_tree(root).rows(verify_cids=True, checked=False))
    assert isinstance(outcome, Failed)
    assert outcome.message == "MST node reached twice (cycle or shared subtree)"
