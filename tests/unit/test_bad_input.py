"""Hostile and broken input: every failure must be the RIGHT AtrepoError subclass.

Truncated, bit-flipped, reshuffled and hand-made CARs and MSTs are fed to
:func:`atrepo.read_car` (and :func:`atrepo.car.read_car`); each must end in CarError or
MstError as documented, naming the offset or CID
concerned, never another exception, a hang or a memory blow-up, and never succeed silently
with ``verify_cids=True``.

Most cases start from ``ref_small`` (2,000 records written by the atproto reference
implementation, see tests/conftest.py); MST corruptions are built by hand with
:func:`atrepo.testing.encode_car`, :func:`atrepo.cbor.encode` and :func:`atrepo.cid.cid_for`.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest

import atrepo
from atrepo._varint import encode_varint
from atrepo import car as carmod
from atrepo import cbor, mst
from atrepo.cid import CID, cid_for
from atrepo.errors import AtrepoError, CarError, MstError
from atrepo.testing import SigningKey, encode_car

DID = "did:plc:testtesttesttesttesttest"


# --- helpers -------------------------------------------------------------------------------------

@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail the test (instead of hanging) when the block runs longer than ``seconds``."""

    def _expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def read_all(source: Any, **kwargs: Any) -> atrepo.RepoSnapshot:
    """Read a repository CAR completely: snapshot, records and problems."""
    snap = atrepo.read_car(source, **kwargs)
    assert snap.records.height == len(snap)
    snap.problems  # noqa: B018
    return snap


def expect_error(kind: type[AtrepoError], func: Callable[[], Any],
                 seconds: float = 20) -> AtrepoError:
    """Run ``func``; it must raise an AtrepoError of exactly the class ``kind`` in time."""
    with time_limit(seconds):
        try:
            func()
        except AtrepoError as exc:
            assert type(exc) is kind, f"expected {kind.__name__}, got {exc!r}"
            assert str(exc)
            return exc
    pytest.fail(f"expected {kind.__name__}, but it succeeded")


def expect_located(err: AtrepoError) -> None:
    """The error must say where: a CAR offset or a CID."""
    offset = getattr(err, "offset", None)
    cid = getattr(err, "cid", None)
    assert offset is not None or cid is not None, f"error names neither offset nor CID: {err!r}"


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


@dataclass(frozen=True)
class Block:
    start: int       # offset of the length varint
    cid_start: int   # offset of the binary CID
    data_start: int  # offset of the block data
    end: int         # offset just past the data
    cid: CID
    kind: str        # "commit", "node" or "record"


@dataclass(frozen=True)
class Layout:
    data: bytes
    header_end: int
    blocks: list[Block]
    commit: CID
    mst_root: CID

    def first(self, kind: str) -> Block:
        return next(b for b in self.blocks if b.kind == kind)

    def by_cid(self, cid: CID) -> Block:
        return next(b for b in self.blocks if b.cid == cid)

    def pairs(self) -> list[tuple[bytes, bytes]]:
        return [(self.data[b.cid_start:b.data_start], self.data[b.data_start:b.end])
                for b in self.blocks]


def _layout(data: bytes, record_cids: set[str]) -> Layout:
    """Frame a CAR by hand and check the framing against atrepo.car's own index."""
    header_len, pos = _read_varint(data, 0)
    header_end = pos + header_len
    carfile = carmod.read_car(data)
    commit = carfile.roots[0]
    commit_value = cbor.decode(carfile.get(commit))  # type: ignore[arg-type]
    mst_root = commit_value["data"]
    nodes = set()
    stack = [mst_root]
    while stack:  # every MST node reachable from the root
        cid = stack.pop()
        nodes.add(str(cid))
        node = mst.decode_node(bytes(cid), carfile.get(cid))  # type: ignore[arg-type]
        links = [node.left] + [right for _, _, right in node.entries]
        stack.extend(CID.from_raw(link) for link in links if link is not None)
    blocks = []
    pos = header_end
    while pos < len(data):
        length, cid_start = _read_varint(data, pos)
        cid = CID.decode(data[cid_start:cid_start + 36])
        end = cid_start + length
        kind = ("commit" if cid == commit else "node" if str(cid) in nodes
                else "record" if str(cid) in record_cids else "other")
        blocks.append(Block(pos, cid_start, cid_start + 36, end, cid, kind))
        assert carfile.locate(bytes(cid)) == (cid_start + 36, end - cid_start - 36)
        pos = end
    assert pos == len(data) and len(blocks) == len(carfile)
    assert {b.kind for b in blocks} == {"commit", "node", "record"}, "unreachable blocks in ref"
    return Layout(data, header_end, blocks, commit, mst_root)


@pytest.fixture(scope="module")
def ref(ref_small: Any) -> Layout:
    data = ref_small.car.read_bytes()
    layout = _layout(data, {cid for _, _, cid in ref_small.records})
    assert str(layout.commit) == ref_small.truth["commit_cid"]
    return layout


@pytest.fixture(scope="module")
def ref_records(ref_small: Any) -> Any:
    return read_all(ref_small.car).records


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def _leaf_node(layout: Layout) -> Block:
    """An MST node without subtrees (deepest layer)."""
    for block in layout.blocks:
        if block.kind == "node":
            node = mst.decode_node(bytes(block.cid), layout.data[block.data_start:block.end])
            if node.left is None and all(right is None for _, _, right in node.entries):
                return block
    raise AssertionError("no leaf node")


def _selected_blocks(layout: Layout) -> dict[str, Block]:
    return {"commit": layout.first("commit"), "mst-root": layout.by_cid(layout.mst_root),
            "mst-leaf": _leaf_node(layout), "record": layout.first("record"),
            "last-block": layout.blocks[-1]}


# --- truncation ----------------------------------------------------------------------------------

def _check_truncated(layout: Layout, n: int) -> None:
    data = layout.data[:n]
    starts = {b.start for b in layout.blocks}
    if n not in starts and n != layout.header_end:
        err = expect_error(CarError, lambda: read_all(data))
        assert err.offset is not None, f"truncation at {n}: {err!r} names no offset"
        assert 0 <= err.offset <= n
        return
    # cut exactly at a block boundary: the framing is fine but blocks are missing
    dropped = [b for b in layout.blocks if b.start >= n]
    if any(b.kind == "commit" for b in dropped):
        err = expect_error(CarError, lambda: read_all(data))
        assert err.cid == str(layout.commit)
    else:
        err = expect_error(MstError, lambda: read_all(data))
        assert err.cid in {str(b.cid) for b in dropped}


def test_truncate_every_offset_in_header_and_first_bytes(ref: Layout) -> None:
    assert ref.header_end < 400
    for n in range(0, 401):
        _check_truncated(ref, n)


def test_truncate_evenly_spaced_offsets(ref: Layout) -> None:
    size = len(ref.data)
    offsets = sorted({size * i // 300 for i in range(300)} | {size - 1, size - 2, size - 36})
    for n in offsets:
        _check_truncated(ref, n)


def test_truncate_at_block_boundaries(ref: Layout) -> None:
    boundaries = [b.start for b in ref.blocks[::37]] + [ref.blocks[-1].start]
    kinds = set()
    for n in boundaries:
        _check_truncated(ref, n)
        kinds.add(any(b.kind == "commit" for b in ref.blocks if b.start >= n))
    assert kinds == {True, False}, "boundaries should cover both commit-missing and MST cases"


def test_truncate_inside_every_part_of_the_commit_block(ref: Layout) -> None:
    block = ref.first("commit")
    for n in range(block.start + 1, block.end, 3):
        _check_truncated(ref, n)


# --- single byte flips ----------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["commit", "mst-root", "mst-leaf", "record", "last-block"])
def test_flip_in_block_data_is_a_cid_mismatch(ref: Layout, which: str) -> None:
    block = _selected_blocks(ref)[which]
    for offset in range(block.data_start, block.end):
        for mask in ((0x01, 0x80) if offset % 8 == 0 else (0x01,)):
            err = expect_error(CarError, lambda: read_all(_flip(ref.data, offset, mask)))
            assert err.cid == str(block.cid), f"flip at {offset}: {err!r}"


@pytest.mark.parametrize("which", ["commit", "mst-root", "mst-leaf", "record", "last-block"])
def test_flip_in_length_varint_breaks_framing(ref: Layout, which: str) -> None:
    block = _selected_blocks(ref)[which]
    for offset in range(block.start, block.cid_start):
        for bit in range(8):
            corrupt = _flip(ref.data, offset, 1 << bit)
            with time_limit(20):
                with pytest.raises((CarError, MstError)) as info:
                    read_all(corrupt)
            expect_located(info.value)


@pytest.mark.parametrize("which", ["commit", "mst-root", "mst-leaf", "record", "last-block"])
def test_flip_in_stored_cid_is_detected(ref: Layout, which: str) -> None:
    """A block whose stored CID no longer matches its bytes is a corrupt CAR.

    Whatever happens, reading with verify_cids=True must not succeed as if nothing was wrong.
    """
    block = _selected_blocks(ref)[which]
    silent = []
    for offset in range(block.cid_start, block.data_start):
        corrupt = _flip(ref.data, offset)
        try:
            with time_limit(20):
                read_all(corrupt)
        except (CarError, MstError) as exc:
            expect_located(exc)
        else:
            silent.append(offset - block.cid_start)
    assert not silent, (f"{which} block {block.cid}: flipping byte(s) {silent} of its stored "
                        f"CID went unnoticed")


def test_flip_sweep_across_the_file(ref: Layout) -> None:
    """Flips spread over the whole file (outside stored CIDs, tested above) all fail."""
    cid_bytes = set()
    for b in ref.blocks:
        cid_bytes.update(range(b.cid_start, b.data_start))
    step = len(ref.data) // 300
    offsets = [o for o in range(step // 2, len(ref.data), step) if o not in cid_bytes]
    assert len(offsets) > 250
    for offset in offsets:
        with time_limit(20):
            with pytest.raises((CarError, MstError)) as info:
                read_all(_flip(ref.data, offset, 0x04))
        expect_located(info.value)


def test_flip_in_header_root(ref: Layout) -> None:
    root_at = ref.data.index(bytes(ref.commit))
    assert root_at < ref.header_end
    for offset in range(root_at, root_at + 36):
        with time_limit(20):
            with pytest.raises(CarError) as info:
                read_all(_flip(ref.data, offset))
        expect_located(info.value)


def test_corrupt_block_in_car_iteration(ref: Layout) -> None:
    block = ref.first("record")
    carfile = carmod.read_car(_flip(ref.data, block.data_start + 3))
    assert carfile.get(ref.commit) is not None  # other blocks still readable
    err = expect_error(CarError, lambda: carfile.get(block.cid))
    assert err.cid == str(block.cid) and err.offset == block.data_start
    err = expect_error(CarError, lambda: list(carfile))
    assert err.cid == str(block.cid)
    # unverified access hands out the (corrupt) bytes as documented
    loose = carmod.read_car(_flip(ref.data, block.data_start + 3), verify_cids=False)
    assert loose.get(block.cid) == _flip(ref.data, block.data_start + 3)[
        block.data_start:block.end]


# --- swapped and dropped blocks -------------------------------------------------------------------

def _swap(layout: Layout, a: Block, b: Block) -> bytes:
    pairs = layout.pairs()
    i, j = layout.blocks.index(a), layout.blocks.index(b)
    (cid_a, data_a), (cid_b, data_b) = pairs[i], pairs[j]
    pairs[i], pairs[j] = (cid_a, data_b), (cid_b, data_a)
    return encode_car([layout.commit], pairs)


def _drop(layout: Layout, block: Block) -> bytes:
    pairs = [p for b, p in zip(layout.blocks, layout.pairs()) if b is not block]
    return encode_car([layout.commit], pairs)


def test_reencoded_ref_reads_identically(ref: Layout, ref_records: Any) -> None:
    # the rebuild helpers are faithful: re-encoding all blocks gives the same bytes and records
    assert encode_car([ref.commit], ref.pairs()) == ref.data
    assert read_all(encode_car([ref.commit], ref.pairs())).records.equals(ref_records)


@pytest.mark.parametrize("kinds", [("record", "record"), ("node", "node"), ("commit", "node"),
                                   ("record", "node"), ("commit", "record")])
def test_swapped_block_data_names_a_cid(ref: Layout, kinds: tuple[str, str]) -> None:
    candidates = [b for b in ref.blocks if b.kind == kinds[0]]
    a = candidates[0]
    b = next(x for x in ref.blocks if x.kind == kinds[1] and x is not a)
    err = expect_error(CarError, lambda: read_all(_swap(ref, a, b)))
    assert err.cid in {str(a.cid), str(b.cid)}


@pytest.mark.parametrize("which", ["record", "mst-leaf", "mst-root"])
def test_dropped_block_is_an_mst_error_naming_it(ref: Layout, which: str) -> None:
    block = _selected_blocks(ref)[which]
    err = expect_error(MstError, lambda: read_all(_drop(ref, block)))
    assert err.cid == str(block.cid)


def test_dropped_records_are_found_wherever_they_are(ref: Layout) -> None:
    for block in [b for b in ref.blocks if b.kind == "record"][::250]:
        err = expect_error(MstError, lambda: read_all(_drop(ref, block)))
        assert err.cid == str(block.cid)


def test_dropped_commit_is_a_car_error(ref: Layout) -> None:
    err = expect_error(CarError, lambda: read_all(_drop(ref, ref.first("commit"))))
    assert err.cid == str(ref.commit)


def test_dropped_record_outside_filter_is_not_needed(ref: Layout, ref_small: Any) -> None:
    # a record of another collection is never read when collections= excludes it
    like = next(b for b in ref.blocks if b.kind == "record"
                and any(c == "app.bsky.feed.like" and cid == str(b.cid)
                        for c, _, cid in ref_small.records))
    snap = read_all(_drop(ref, like), collections=["app.bsky.feed.post"])
    assert set(snap.records["collection"]) == {"app.bsky.feed.post"}
    expect_error(MstError, lambda: read_all(_drop(ref, like), collections=["app.bsky.feed.like"]))


# --- hand-made MSTs -------------------------------------------------------------------------------

RECORD = cbor.encode({"$type": "com.example.thing", "n": 1})
RECORD_CID = cid_for(RECORD)
KEY = SigningKey()
# keys of known heights, in a collection of our own
HEIGHT0 = [k for k in (f"com.ex.a/{i:05d}" for i in range(3000)) if mst.key_height(k) == 0]
HEIGHT1 = [k for k in (f"com.ex.a/{i:05d}" for i in range(3000)) if mst.key_height(k) == 1]


def node_block(entries: list[Any], left: CID | None = None) -> tuple[CID, bytes]:
    """An MST node; entries are keys, or (key, right subtree, explicit p) tuples."""
    prev = b""
    encoded = []
    for entry in entries:
        key, right, prefix = (entry + (None, None))[:3] if isinstance(entry, tuple) else (
            entry, None, None)
        raw = key.encode() if isinstance(key, str) else key
        if prefix is None:
            prefix = mst._common_prefix(prev, raw)
        encoded.append({"k": raw[max(prefix, 0):], "p": prefix, "t": right, "v": RECORD_CID})
        prev = raw
    data = cbor.encode({"e": encoded, "l": left})
    return cid_for(data), data


def repo_car(root: CID, nodes: list[tuple[CID, bytes]], *, did: str = DID,
             roots: list[CID] | None = None) -> bytes:
    """A signed repository CAR whose MST root is ``root``, holding ``nodes`` and RECORD."""
    unsigned = {"data": root, "did": did, "prev": None, "rev": "3kaaaaaaaaa22", "version": 3}
    commit = dict(unsigned, sig=KEY.sign(cbor.encode(unsigned)))
    commit_data = cbor.encode(commit)
    commit_cid = cid_for(commit_data)
    blocks = [(bytes(commit_cid), commit_data), (bytes(RECORD_CID), RECORD)]
    blocks += [(bytes(cid), data) for cid, data in nodes]
    return encode_car(roots if roots is not None else [commit_cid], blocks)


def expect_mst_error(car: bytes, cid: CID | set[CID] | None = None, **kwargs: Any) -> MstError:
    err = expect_error(MstError, lambda: read_all(car, **kwargs))
    assert isinstance(err, MstError)
    assert err.cid is not None, f"MstError without the node's CID: {err!r}"
    if isinstance(cid, set):
        assert err.cid in {str(c) for c in cid}
    elif cid is not None:
        assert err.cid == str(cid)
    return err


def test_hand_made_valid_tree_reads() -> None:
    # the construction helpers make valid repositories: the malformed cases below differ
    # from this only in the defect they test
    leaf = node_block([HEIGHT0[0]])
    root_key = next(k for k in HEIGHT1 if k > HEIGHT0[0])
    root = node_block([root_key], left=leaf[0])
    assert mst.build([(HEIGHT0[0], RECORD_CID), (root_key, RECORD_CID)])[0] == root[0]
    snap = read_all(repo_car(root[0], [root, leaf]), signing_key=KEY.did_key)
    assert snap.verified
    assert snap.records.height == 2
    assert list(snap.records["cid"]) == [str(RECORD_CID)] * 2
    two = node_block([HEIGHT0[0], HEIGHT0[1]])
    assert read_all(repo_car(two[0], [two])).records.height == 2
    assert mst.build([(HEIGHT0[0], RECORD_CID), (HEIGHT0[1], RECORD_CID)])[0] == two[0]


def test_keys_out_of_order_within_a_node() -> None:
    node = node_block([HEIGHT0[1], HEIGHT0[0]])
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_duplicate_keys_within_a_node() -> None:
    node = node_block([HEIGHT0[0], HEIGHT0[0]])
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_subtree_keys_outside_their_range() -> None:
    above = next(k for k in HEIGHT0 if k > HEIGHT1[0])
    leaf = node_block([above])  # left of HEIGHT1[0] but sorts after it
    root = node_block([HEIGHT1[0]], left=leaf[0])
    expect_mst_error(repo_car(root[0], [root, leaf]), {root[0], leaf[0]})


def test_key_heights_mixed_within_a_node() -> None:
    node = node_block(sorted([HEIGHT0[0], HEIGHT1[0]]))
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_subtree_not_one_layer_below() -> None:
    keys = sorted(HEIGHT0[:2])
    leaf = node_block([keys[0]])  # height 0 below a layer-0 node
    root = node_block([keys[1]], left=leaf[0])
    expect_mst_error(repo_car(root[0], [root, leaf]), leaf[0])


def test_subtree_two_layers_below() -> None:
    high = next(k for k in (f"com.ex.a/{i:05d}" for i in range(20000))
                if mst.key_height(k) == 2 and k > HEIGHT0[0])
    leaf = node_block([HEIGHT0[0]])
    root = node_block([high], left=leaf[0])
    expect_mst_error(repo_car(root[0], [root, leaf]), leaf[0])


def test_prefix_shorter_than_shared_prefix() -> None:
    keys = sorted(HEIGHT0[:2])
    node = node_block([keys[0], (keys[1], None, 0)])
    expect_mst_error(repo_car(node[0], [node]), node[0])
    node = node_block([keys[0], (keys[1], None, mst._common_prefix(
        keys[0].encode(), keys[1].encode()) - 1)])
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_prefix_longer_than_previous_key() -> None:
    keys = sorted(HEIGHT0[:2])
    node = node_block([keys[0], (keys[1], None, len(keys[0]) + 1)])
    expect_mst_error(repo_car(node[0], [node]), node[0])
    node = node_block([(keys[0], None, 3)])  # first entry must have p = 0
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_negative_prefix() -> None:
    node = node_block([(HEIGHT0[0], None, -1)])
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_node_linking_to_itself() -> None:
    # content addressing makes a real self-link impossible, so the block is filed under a
    # CID of our choosing and read without CID verification
    fake = cid_for(b"not the node's hash")
    data = cbor.encode({"e": [], "l": fake})
    expect_mst_error(repo_car(fake, [(fake, data)]), fake, verify_cids=False)
    with time_limit(5), pytest.raises(MstError) as info:
        list(mst.walk({fake: data}, fake))
    assert info.value.cid == str(fake)


def test_two_node_cycle() -> None:
    a, b = cid_for(b"a"), cid_for(b"b")
    blocks = {a: cbor.encode({"e": [], "l": b}), b: cbor.encode({"e": [], "l": a})}
    with time_limit(5), pytest.raises(MstError) as info:
        list(mst.walk(blocks, a))
    assert info.value.cid in {str(a), str(b)}
    expect_mst_error(repo_car(a, list(blocks.items())), {a, b}, verify_cids=False)


def test_subtree_linked_twice() -> None:
    leaf = node_block([HEIGHT0[0]])
    key = next(k for k in HEIGHT1 if k > HEIGHT0[0])
    root = node_block([(key, leaf[0])], left=leaf[0])
    expect_mst_error(repo_car(root[0], [root, leaf]), leaf[0])


def _chain(wrappers: int) -> tuple[CID, list[tuple[CID, bytes]]]:
    """A leaf under ``wrappers`` entry-less nodes (only a root may lack entries: hostile)."""
    current = node_block([HEIGHT0[0]])
    nodes = [current]
    for _ in range(wrappers):
        current = node_block([], left=current[0])
        nodes.append(current)
    return current[0], nodes


def test_chain_deeper_than_max_depth() -> None:
    for wrappers in (mst.MAX_DEPTH + 1, 5000):
        root, nodes = _chain(wrappers)
        expect_mst_error(repo_car(root, nodes), {cid for cid, _ in nodes})


@pytest.mark.parametrize("wrappers", [1, 2, 3])
def test_entry_less_nodes_at_the_root(wrappers: int) -> None:
    """Entry-less nodes stacked at the root: never a crash (an MstError, or read as is)."""
    root, nodes = _chain(wrappers)
    with time_limit(10):
        try:
            snap = read_all(repo_car(root, nodes))
        except MstError as exc:
            assert exc.cid is not None
        else:
            assert list(snap.records["rkey"]) == [HEIGHT0[0].split("/")[1]]


def test_entry_less_intermediate_node_is_canonical() -> None:
    # a layer-2 root whose left subtree has only a layer-0 key: the layer-1 node between
    # them has no entries, exactly as the reference implementation builds it
    high = next(k for k in (f"com.ex.a/{i:05d}" for i in range(20000))
                if mst.key_height(k) == 2 and k > HEIGHT0[0])
    leaf = node_block([HEIGHT0[0]])
    middle = node_block([], left=leaf[0])
    root = node_block([high], left=middle[0])
    built_root, built = mst.build([(HEIGHT0[0], RECORD_CID), (high, RECORD_CID)])
    assert built_root == root[0] and set(built) == {root[0], middle[0], leaf[0]}
    assert read_all(repo_car(root[0], [root, middle, leaf])).records.height == 2


def _same_height_keys(count: int) -> list[str]:
    keys = sorted(k for k in (f"com.ex.b/{i:05d}" for i in range(count * 2))
                  if mst.key_height(k) == 0)
    assert len(keys) >= count
    return keys[:count]


def test_node_with_too_many_entries() -> None:
    node = node_block(_same_height_keys(mst.MAX_ENTRIES + 1))
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_node_with_max_entries_is_accepted() -> None:
    node = node_block(_same_height_keys(mst.MAX_ENTRIES))
    assert read_all(repo_car(node[0], [node])).records.height == mst.MAX_ENTRIES


@pytest.mark.parametrize("key", ["com.ex/a b", "com.ex/é", "com.ex/a\x00", "com.ex/a*",
                                 "com.ex/a\n", "com.ex/a?b", "com.ex/#"],
                         ids=["space", "non-ascii", "nul", "star", "newline", "query", "hash"])
def test_invalid_key_characters(key: str) -> None:
    node = node_block([key])
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_invalid_key_bytes_not_utf8() -> None:
    node = node_block([b"com.ex/\xff"])
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_empty_key() -> None:
    node = node_block([""])
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_key_too_long() -> None:
    key = "com.ex/" + "a" * (mst.MAX_KEY_LENGTH - 6)
    node = node_block([key])
    expect_mst_error(repo_car(node[0], [node]), node[0])
    ok_key = "com.ex/" + "a" * (mst.MAX_KEY_LENGTH - 7)
    node = node_block([ok_key])
    assert read_all(repo_car(node[0], [node])).records.height == 1


@pytest.mark.parametrize("key", ["comexample", "/abc", "com.ex/", "com.ex/a/b"],
                         ids=["no-slash", "empty-collection", "empty-rkey", "two-slashes"])
def test_key_that_is_not_a_record_path(key: str) -> None:
    # repository spec: MST keys are "<collection NSID>/<record key>", exactly one slash
    node = node_block([key])
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_empty_node_below_the_root() -> None:
    empty = node_block([])
    root = node_block([HEIGHT1[0]], left=empty[0])
    expect_mst_error(repo_car(root[0], [root, empty]), empty[0])


def test_empty_tree_reads_as_no_records() -> None:
    empty = node_block([])
    snap = read_all(repo_car(empty[0], [empty]))
    assert snap.records.height == 0 and snap.problems.height == 0


def _raw_node(value: Any) -> tuple[CID, bytes]:
    data = cbor2.dumps(value, canonical=True)
    return cid_for(data), data


def _tag42(cid: CID) -> cbor2.CBORTag:
    return cbor2.CBORTag(42, b"\x00" + bytes(cid))


MALFORMED_NODES = {
    "not a map": [],
    "missing l": {"e": []},
    "missing e": {"l": None},
    "extra key": {"e": [], "l": None, "x": 1},
    "e not a list": {"e": {}, "l": None},
    "entry not a map": {"e": [1], "l": None},
    "entry missing v": {"e": [{"k": b"com.ex/a", "p": 0, "t": None}], "l": None},
    "entry extra key": {"e": [{"k": b"com.ex/a", "p": 0, "t": None, "v": _tag42(RECORD_CID),
                               "x": 1}], "l": None},
    "k is text": {"e": [{"k": "com.ex/a", "p": 0, "t": None, "v": _tag42(RECORD_CID)}],
                  "l": None},
    "p is text": {"e": [{"k": b"com.ex/a", "p": "0", "t": None, "v": _tag42(RECORD_CID)}],
                  "l": None},
    "p is a float": {"e": [{"k": b"com.ex/a", "p": 0.0, "t": None, "v": _tag42(RECORD_CID)}],
                     "l": None},
    "p is a bignum tag": {"e": [{"k": b"com.ex/a", "p": cbor2.CBORTag(2, b"\x00"), "t": None,
                                 "v": _tag42(RECORD_CID)}], "l": None},
    "v is bytes": {"e": [{"k": b"com.ex/a", "p": 0, "t": None, "v": bytes(RECORD_CID)}],
                   "l": None},
    "v is null": {"e": [{"k": b"com.ex/a", "p": 0, "t": None, "v": None}], "l": None},
    "t is text": {"e": [{"k": b"com.ex/a", "p": 0, "t": "x", "v": _tag42(RECORD_CID)}],
                  "l": None},
    "l is bytes": {"e": [], "l": bytes(RECORD_CID)},
    "link without 0x00 prefix": {"e": [], "l": cbor2.CBORTag(42, bytes(RECORD_CID))},
    "other tag as link": {"e": [], "l": cbor2.CBORTag(43, b"\x00" + bytes(RECORD_CID))},
}


@pytest.mark.parametrize("value", list(MALFORMED_NODES.values()), ids=list(MALFORMED_NODES))
def test_malformed_node(value: Any) -> None:
    node = _raw_node(value)
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_node_that_is_not_cbor() -> None:
    for data in (b"", b"\xff", b"\xa2\x61e", b"\x81" * 1000):
        cid = cid_for(data)
        expect_mst_error(repo_car(cid, [(cid, data)]), cid)


def test_missing_subtree_names_it() -> None:
    missing = cid_for(b"nowhere")
    root = node_block([HEIGHT1[0]], left=missing)
    expect_mst_error(repo_car(root[0], [root]), missing)


# --- malformed commits ----------------------------------------------------------------------------

def _commit_car(commit: Any) -> tuple[bytes, CID]:
    leaf = node_block([HEIGHT0[0]])
    data = cbor2.dumps(commit, canonical=True) if not isinstance(commit, bytes) else commit
    cid = cid_for(data)
    return encode_car([cid], [(bytes(cid), data), (bytes(RECORD_CID), RECORD),
                              (bytes(leaf[0]), leaf[1])]), cid


def _commit(**changes: Any) -> dict[str, Any]:
    leaf = node_block([HEIGHT0[0]])
    commit: dict[str, Any] = {"data": _tag42(leaf[0]), "did": DID, "prev": None,
                              "rev": "3kaaaaaaaaa22", "version": 3, "sig": b"\x00" * 64}
    for key, value in changes.items():
        if value is ...:
            del commit[key]
        else:
            commit[key] = value
    return commit


MALFORMED_COMMITS = {
    "not a map": [1, 2],
    "not cbor": b"\xff\x00",
    "float version": _commit(version=3.0),
    "version 4": _commit(version=4),
    "missing did": _commit(did=...),
    "missing data": _commit(data=...),
    "missing sig": _commit(sig=...),
    "extra field": _commit(extra=1),
    "data not a link": _commit(data="bafy"),
    "prev not a link": _commit(prev="bafy"),
    "did not text": _commit(did=1),
    "sig not bytes": _commit(sig="x"),
}


@pytest.mark.parametrize("commit", list(MALFORMED_COMMITS.values()), ids=list(MALFORMED_COMMITS))
def test_malformed_commit(commit: Any) -> None:
    car, cid = _commit_car(commit)
    err = expect_error(CarError, lambda: read_all(car))
    assert err.cid == str(cid)


def test_commit_shape_accepted_when_well_formed() -> None:
    car, _ = _commit_car(_commit())
    assert read_all(car).records.height == 1  # unsigned-checked: no signing_key given


# --- CAR framing and header ----------------------------------------------------------------------

def _header(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else cbor2.dumps(value, canonical=True)
    return encode_varint(len(data)) + data


def _both(car: bytes) -> list[Callable[[], Any]]:
    return [lambda: list(carmod.read_car(car)), lambda: read_all(car)]


def test_header_varint_too_long(ref: Layout) -> None:
    for car in (b"\x80" * 9 + b"\x01" + ref.data[1:], b"\xff" * 12, b"\x80" * 10):
        for func in _both(car):
            err = expect_error(CarError, func)
            assert err.offset == 0


def test_header_varint_not_minimal(ref: Layout) -> None:
    first = ref.data[0]
    assert first < 0x80
    car = bytes([first | 0x80, 0x00]) + ref.data[1:]
    for func in _both(car):
        err = expect_error(CarError, func)
        assert err.offset == 0


def test_header_length_out_of_range(ref: Layout) -> None:
    body = ref.data[ref.header_end:]
    for length in (carmod.MAX_HEADER_SIZE + 1, 1 << 40):
        for func in _both(encode_varint(length) + b"\xa0" * 64 + body):
            err = expect_error(CarError, func)
            assert err.offset == 0
    big = encode_varint(carmod.MAX_HEADER_SIZE + 1) + b"\x00" * (carmod.MAX_HEADER_SIZE + 1) + body
    for func in _both(big):
        expect_error(CarError, func)
    for func in _both(b"\x00" + body):  # a zero-length header
        expect_error(CarError, func)


def test_header_truncated(ref: Layout) -> None:
    for func in _both(encode_varint(100) + b"\xa2"):
        err = expect_error(CarError, func)
        assert err.offset is not None


HEADERS: dict[str, Any] = {
    "list": [1],
    "int": 1,
    "text": "roots",
    "null": None,
    "empty map": {},
    "version 2": {"roots": "ROOTS", "version": 2},
    "version missing": {"roots": "ROOTS"},
    "version text": {"roots": "ROOTS", "version": "1"},
    "version true": {"roots": "ROOTS", "version": True},
    "version float": {"roots": "ROOTS", "version": 1.0},
    "roots missing": {"version": 1},
    "roots null": {"roots": None, "version": 1},
    "roots a CID not in a list": {"roots": "ROOT", "version": 1},
    "roots text": {"roots": ["bafyreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lzegsiqe"],
                   "version": 1},
    "roots ints": {"roots": [1], "version": 1},
    "roots bytes": {"roots": ["RAWROOT"], "version": 1},
    "not canonical": b"ROOTS-BACKWARDS",
    "trailing bytes": b"HEADER+1",
}


def _make_header(layout: Layout, spec: Any) -> bytes:
    root = _tag42(layout.commit)
    if spec == b"ROOTS-BACKWARDS":  # keys in the wrong order
        return _header(b"\xa2" + cbor2.dumps("version") + b"\x01" + cbor2.dumps("roots")
                       + cbor2.dumps([root]))
    if spec == b"HEADER+1":
        return _header(cbor2.dumps({"roots": [root], "version": 1}, canonical=True) + b"\x01")

    def fill(value: Any) -> Any:
        if value == "ROOTS":
            return [root]
        if value == "ROOT":
            return root
        if value == "RAWROOT":
            return bytes(layout.commit)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return _header(fill(spec))


@pytest.mark.parametrize("spec", list(HEADERS.values()), ids=list(HEADERS))
def test_bad_header(ref: Layout, spec: Any) -> None:
    car = _make_header(ref, spec) + ref.data[ref.header_end:]
    for func in _both(car):
        err = expect_error(CarError, func)
        assert err.offset is not None


def test_good_header_rebuilt_reads(ref: Layout) -> None:
    car = _make_header(ref, {"roots": "ROOTS", "version": 1}) + ref.data[ref.header_end:]
    assert car == ref.data


@pytest.mark.parametrize("roots", [0, 2, 3])
def test_repository_needs_exactly_one_root(ref: Layout, roots: int) -> None:
    car = _header({"roots": [_tag42(ref.commit)] * roots, "version": 1})
    car += ref.data[ref.header_end:]
    assert len(carmod.read_car(car).roots) == roots  # a valid CARv1 ...
    expect_error(CarError, lambda: read_all(car))    # ... but not a repository


def test_block_length_varint_too_long(ref: Layout) -> None:
    head = ref.data[:ref.header_end]
    for car in (head + b"\xff" * 10 + b"\x01", head + b"\x80" * 9 + b"\x01" + b"\x00" * 64):
        for func in _both(car):
            err = expect_error(CarError, func)
            assert err.offset == ref.header_end


def test_block_length_varint_not_minimal(ref: Layout) -> None:
    head, first = ref.data[:ref.header_end], ref.blocks[0]
    length, _ = _read_varint(ref.data, first.start)
    padded = bytes([b | 0x80 for b in encode_varint(length)]) + b"\x00"
    car = head + padded + ref.data[first.cid_start:]
    for func in _both(car):
        err = expect_error(CarError, func)
        assert err.offset == ref.header_end


def test_block_length_zero(ref: Layout) -> None:
    car = ref.data[:ref.header_end] + b"\x00" + ref.data[ref.header_end:]
    for func in _both(car):
        err = expect_error(CarError, func)
        assert err.offset == ref.header_end


def test_block_shorter_than_its_cid(ref: Layout) -> None:
    head = ref.data[:ref.header_end]
    for body in (b"\x05\x01\x71\x12\x20\x00", b"\x02\x01\x71", b"\x20" + bytes(ref.commit)[:32]):
        for func in _both(head + body):
            err = expect_error(CarError, func)
            assert err.offset is not None


def test_unsupported_cid_version_in_block(ref: Layout) -> None:
    head = ref.data[:ref.header_end]
    for func in _both(head + b"\x05\x02\x71\x12\x00\x00"):
        expect_error(CarError, func)


def test_empty_and_header_only_inputs(ref: Layout) -> None:
    for func in _both(b""):
        err = expect_error(CarError, func)
        assert err.offset == 0
    head = ref.data[:ref.header_end]
    assert len(carmod.read_car(head)) == 0
    err = expect_error(CarError, lambda: read_all(head))
    assert err.cid == str(ref.commit)


def test_file_backed_iteration_with_short_cids(tmp_path: Path) -> None:
    """A block whose data starts in the first 36 bytes of a file must not crash iteration."""
    header = cbor.encode({"roots": [], "version": 1})
    block = b"\x01\x71\x12\x00" + b"x"  # CIDv1, sha2-256 code, 0-byte digest
    car = encode_varint(len(header)) + header + encode_varint(len(block)) + block
    path = tmp_path / "tiny.car"
    path.write_bytes(car)
    expect_error(CarError, lambda: list(carmod.read_car(car)))
    for verify in (True, False):
        carfile = carmod.read_car(path, mem_limit_mb=0, verify_cids=verify)
        assert not carfile.in_memory
        try:
            expect_error(CarError, lambda: list(carfile))
        finally:
            carfile.close()


def test_missing_file_is_a_car_error(tmp_path: Path) -> None:
    err = expect_error(CarError, lambda: carmod.read_car(tmp_path / "nope.car"))
    assert "nope.car" in str(err)
    expect_error(CarError, lambda: atrepo.read_car(tmp_path / "nope.car"))


# --- streams and spilling -------------------------------------------------------------------------

def test_stream_spills_to_a_temporary_file(ref_small: Any, ref_records: Any) -> None:
    data = ref_small.car.read_bytes()
    snap = read_all(io.BytesIO(data), mem_limit_mb=0.01)
    assert snap.records.equals(ref_records)
    assert snap.records.equals(read_all(data).records)
    assert snap.problems.height == 0
    carfile = carmod.read_car(io.BytesIO(data), mem_limit_mb=0.01)
    try:
        assert not carfile.in_memory
        assert carfile.path is not None and os.path.exists(carfile.path)
        spill = carfile.path
        assert len(carfile) == len(carmod.read_car(data))
        assert carfile.roots == carmod.read_car(data).roots
    finally:
        carfile.close()
    assert not os.path.exists(spill), "spill file left behind after close()"


def test_small_stream_stays_in_memory(ref_small: Any) -> None:
    carfile = carmod.read_car(io.BytesIO(ref_small.car.read_bytes()), mem_limit_mb=64)
    assert carfile.in_memory


def test_truncated_stream_is_a_car_error(ref_small: Any) -> None:
    data = ref_small.car.read_bytes()
    for n in (len(data) // 2 + 7, len(data) - 1):
        err = expect_error(CarError, lambda: read_all(io.BytesIO(data[:n]), mem_limit_mb=0.01))
        assert err.offset is not None  # type: ignore[attr-defined]


def test_corrupt_stream_spilled_is_still_verified(ref: Layout) -> None:
    block = ref.first("record")
    corrupt = _flip(ref.data, block.data_start + 1)
    err = expect_error(CarError, lambda: read_all(io.BytesIO(corrupt), mem_limit_mb=0.01))
    assert err.cid == str(block.cid)


def test_path_with_zero_memory_limit(ref_small: Any, ref_records: Any) -> None:
    tracemalloc.start()
    try:
        carfile = carmod.read_car(ref_small.car, mem_limit_mb=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    try:
        assert not carfile.in_memory
        assert carfile.path == str(ref_small.car)
        assert len(carfile) == ref_small.truth["block_count"]
    finally:
        carfile.close()
    assert peak < 16 << 20, f"indexing a {ref_small.car.stat().st_size} byte CAR took {peak} B"
    snap = read_all(ref_small.car, mem_limit_mb=0)
    assert snap.records.equals(ref_records)
    assert snap.records.height == ref_small.truth["record_count"]


def test_path_with_zero_memory_limit_detects_corruption(ref: Layout, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.car"
    for which, block in _selected_blocks(ref).items():
        path.write_bytes(_flip(ref.data, block.data_start + 2))
        err = expect_error(CarError, lambda: read_all(path, mem_limit_mb=0))
        assert err.cid == str(block.cid), which
        # flipped stored CIDs are caught on this path (the CID bytes are compared)
        path.write_bytes(_flip(ref.data, block.cid_start + 10))
        with time_limit(20), pytest.raises((CarError, MstError)):
            read_all(path, mem_limit_mb=0)


# --- big repository read from a path (walked with worker processes) -------------------------------

@pytest.fixture(scope="module")
def medium(ref_medium: Any) -> Layout:
    data = ref_medium.car.read_bytes()
    assert len(data) >= 8 << 20, "ref_medium should be big enough for the parallel walk"
    return _layout(data, {cid for _, _, cid in ref_medium.records})


@pytest.fixture(scope="module")
def medium_records(ref_medium: Any) -> Any:
    return read_all(ref_medium.car.read_bytes()).records


def test_medium_from_path_equals_from_bytes(ref_medium: Any, medium_records: Any) -> None:
    with time_limit(120):
        snap = read_all(ref_medium.car, signing_key=ref_medium.truth["signing_key"])
    assert snap.verified
    assert snap.records.equals(medium_records)
    assert medium_records.height == ref_medium.truth["record_count"]


def _middle_node(layout: Layout) -> Block:
    nodes = [b for b in layout.blocks if b.kind == "node" and b.cid != layout.mst_root]
    return nodes[len(nodes) // 2]


def test_medium_path_corrupt_node(medium: Layout, tmp_path: Path) -> None:
    block = _middle_node(medium)
    path = tmp_path / "corrupt.car"
    path.write_bytes(_flip(medium.data, block.data_start + 5))
    err = expect_error(CarError, lambda: read_all(path), seconds=120)
    assert err.cid == str(block.cid)
    assert err.offset == block.data_start  # type: ignore[attr-defined]


def test_medium_path_dropped_node(medium: Layout, tmp_path: Path) -> None:
    block = _middle_node(medium)
    path = tmp_path / "dropped.car"
    path.write_bytes(_drop(medium, block))
    err = expect_error(MstError, lambda: read_all(path), seconds=120)
    assert err.cid == str(block.cid)


def test_medium_path_swapped_nodes(medium: Layout, tmp_path: Path) -> None:
    nodes = [b for b in medium.blocks if b.kind == "node" and b.cid != medium.mst_root]
    a, b = nodes[len(nodes) // 3], nodes[2 * len(nodes) // 3]
    path = tmp_path / "swapped.car"
    path.write_bytes(_swap(medium, a, b))
    err = expect_error(CarError, lambda: read_all(path), seconds=120)
    assert err.cid in {str(a.cid), str(b.cid)}


def test_medium_path_corrupt_and_dropped_records(medium: Layout, tmp_path: Path) -> None:
    records = [b for b in medium.blocks if b.kind == "record"]
    block = records[len(records) // 2]
    path = tmp_path / "record.car"
    path.write_bytes(_flip(medium.data, block.data_start + 5))
    err = expect_error(CarError, lambda: read_all(path), seconds=120)
    assert err.cid == str(block.cid)
    path.write_bytes(_drop(medium, records[-1]))
    err = expect_error(MstError, lambda: read_all(path), seconds=120)
    assert err.cid == str(records[-1].cid)


def test_medium_path_truncated(medium: Layout, tmp_path: Path) -> None:
    path = tmp_path / "truncated.car"
    for n in (len(medium.data) // 2 + 3, len(medium.data) - 1):
        path.write_bytes(medium.data[:n])
        err = expect_error(CarError, lambda: read_all(path), seconds=120)
        assert err.offset is not None  # type: ignore[attr-defined]


# --- big malformed files read from a path, and the worker processes they involve ----------

def test_block_larger_than_max_block_size(ref: Layout, tmp_path: Path) -> None:
    size = carmod.MAX_BLOCK_SIZE + 1
    head = ref.data[:ref.header_end]
    car = head + encode_varint(size) + bytes(ref.commit) + b"\x00" * (size - 36)
    for func in _both(car):
        err = expect_error(CarError, func)
        assert err.offset == ref.header_end
    path = tmp_path / "big.car"
    path.write_bytes(car)
    err = expect_error(CarError, lambda: list(carmod.read_car(path, mem_limit_mb=1)))
    assert err.offset is not None
    err = expect_error(CarError, lambda: read_all(path, mem_limit_mb=1))
    # only the claim, without the bytes: must not allocate or wait for them
    tracemalloc.start()
    try:
        claim = head + encode_varint(1 << 40) + bytes(ref.commit)
        for func in _both(claim):
            expect_error(CarError, func, seconds=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"a length claim made atrepo allocate {peak >> 20} MiB"


def _big_bad_car(kind: str, small: Layout, big: Layout) -> bytes:
    if kind == "oversized block":
        size = carmod.MAX_BLOCK_SIZE + 1
        return (small.data[:small.header_end] + encode_varint(size) + bytes(small.commit)
                + b"\x00" * (size - 36))
    if kind == "truncated by one byte":
        return big.data[:-1]
    if kind == "header version 2":
        header = big.data[:big.header_end]
        assert header.count(b"gversion\x01") == 1
        return header.replace(b"gversion\x01", b"gversion\x02") + big.data[big.header_end:]
    return big.data + b"\xff" * 20  # garbage after the last block


@pytest.mark.parametrize("kind", ["oversized block", "truncated by one byte",
                                  "header version 2", "garbage tail"])
def test_failed_big_read_does_not_poison_the_next(kind: str, ref: Layout, medium: Layout,
                                                  ref_medium: Any, medium_records: Any,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that fails must not leave its error behind for the next read to raise.

    A path of 8 MiB or more is indexed by worker processes too; when the caller's own
    indexing fails first, the workers' replies must not be delivered to a later read.
    """
    monkeypatch.setenv("ATREPO_WORKERS", "1")
    path = tmp_path / "bad.car"
    path.write_bytes(_big_bad_car(kind, ref, medium))
    assert path.stat().st_size >= 8 << 20
    expect_error(CarError, lambda: read_all(path), seconds=60)
    with time_limit(120):
        snap = read_all(ref_medium.car)  # a different, valid file
    assert snap.records.equals(medium_records)


@pytest.fixture(scope="module", autouse=True)
def _leave_workers_clean(ref_medium: Any) -> Iterator[None]:
    """Do not hand stale worker replies to other test modules (see the test above)."""
    yield
    for _ in range(8):
        try:
            atrepo.read_car(ref_medium.car).records  # noqa: B018
            break
        except AtrepoError:
            continue
