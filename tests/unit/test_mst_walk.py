"""atrepo.mst._walk: the leaves in key order, and every invariant across nodes.

Hand-made trees that break one rule each (order, ranges, layers, cycles, depth, missing
nodes) must end in an MstError naming a node's CID; the reference implementation's trees
walk to its own listing.
"""

from __future__ import annotations

from typing import Any

import pytest

import atrepo
from atrepo import car, cbor, mst
from atrepo.cid import CID, cid_for
from atrepo.errors import CarError, MstError
from _hostile import (HEIGHT0, HEIGHT1, KEY, RECORD_CID, Layout, drop, expect_error,
                     expect_mst_error, node_block, read_all, reference_blocks, repo_car,
                     selected_blocks, work_limit)


def test_walk_equals_reference_listing(ref_small: Any) -> None:
    blocks = car.read_car(ref_small.car)
    got = [(key, str(cid)) for key, cid in mst.walk(blocks, ref_small.truth["data_cid"])]
    assert got == [(f"{c}/{r}", cid) for c, r, cid in ref_small.records]


def test_since_car_plus_old_blocks_is_complete(ref_small: Any) -> None:
    """getRepo?since= blocks over the previous snapshot's blocks give the new tree."""
    old = reference_blocks(ref_small.car)
    new = dict(old)
    new.update(reference_blocks(ref_small.since))
    keys = [k for k, _ in mst.walk(new, ref_small.truth2["data_cid"])]
    assert keys == [f"{c}/{r}" for c, r, _ in ref_small.records2]
    with pytest.raises(atrepo.MstError):
        list(mst.walk(reference_blocks(ref_small.since), ref_small.truth2["data_cid"]))


# --- hand-made trees ----------------------------------------------------------------------------

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


class Budget:
    """Blocks that may be asked for at most ``fetches`` times: a walk that loops fails here
    (a count, not a clock, so a busy machine changes nothing)."""

    def __init__(self, blocks: dict[CID, bytes], fetches: int) -> None:
        self.blocks = {bytes(cid): data for cid, data in blocks.items()}
        self.left = fetches

    def get_raw(self, raw: bytes) -> bytes | None:
        assert self.left > 0, "the walk kept fetching nodes: it loops"
        self.left -= 1
        return self.blocks.get(raw)


def test_node_linking_to_itself() -> None:
    # content addressing makes a real self-link impossible, so the block is filed under a
    # CID of our choosing and read without CID verification
    fake = cid_for(b"not the node's hash")
    data = cbor.encode({"e": [], "l": fake})
    expect_mst_error(repo_car(fake, [(fake, data)]), fake, verify_cids=False)
    with pytest.raises(MstError) as info:
        list(mst.walk(Budget({fake: data}, fetches=1), fake))
    assert info.value.cid == str(fake)


def test_two_node_cycle() -> None:
    a, b = cid_for(b"a"), cid_for(b"b")
    blocks = {a: cbor.encode({"e": [], "l": b}), b: cbor.encode({"e": [], "l": a})}
    with pytest.raises(MstError) as info:
        list(mst.walk(Budget(blocks, fetches=2), a))
    assert info.value.cid in {str(a), str(b)}
    expect_mst_error(repo_car(a, list(blocks.items())), {a, b}, verify_cids=False)


def test_subtree_linked_twice() -> None:
    leaf = node_block([HEIGHT0[0]])
    key = next(k for k in HEIGHT1 if k > HEIGHT0[0])
    root = node_block([(key, leaf[0])], left=leaf[0])
    expect_mst_error(repo_car(root[0], [root, leaf]), leaf[0])


def chain(wrappers: int) -> tuple[CID, list[tuple[CID, bytes]]]:
    """A leaf under ``wrappers`` entry-less nodes (only a root may lack entries: hostile)."""
    current = node_block([HEIGHT0[0]])
    nodes = [current]
    for _ in range(wrappers):
        current = node_block([], left=current[0])
        nodes.append(current)
    return current[0], nodes


def test_chain_deeper_than_max_depth() -> None:
    for wrappers in (mst.MAX_DEPTH + 1, 5000):
        root, nodes = chain(wrappers)
        expect_mst_error(repo_car(root, nodes), {cid for cid, _ in nodes})


@pytest.mark.parametrize("wrappers", [1, 2, 3])
def test_entry_less_nodes_at_the_root(wrappers: int) -> None:
    """Entry-less nodes stacked at the root: never a crash (an MstError, or read as is)."""
    root, nodes = chain(wrappers)
    with work_limit(10):
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


def test_empty_node_below_the_root() -> None:
    empty = node_block([])
    root = node_block([HEIGHT1[0]], left=empty[0])
    expect_mst_error(repo_car(root[0], [root, empty]), empty[0])


def test_empty_tree_reads_as_no_records() -> None:
    empty = node_block([])
    snap = read_all(repo_car(empty[0], [empty]))
    assert snap.records.height == 0 and snap.problems.height == 0


def test_missing_subtree_names_it() -> None:
    missing = cid_for(b"nowhere")
    root = node_block([HEIGHT1[0]], left=missing)
    expect_mst_error(repo_car(root[0], [root]), missing)


# links that are not CIDs: an MstError naming the node that holds them ------------------------

NOT_CIDS = {"one byte": b"\x99", "unknown hash": b"\x01\x71\xfb\x20" + b"\x11" * 32,
            "unknown codec": b"\x01\x7f\x12\x20" + b"\x11" * 32}


def _node_linking(where: str, link: bytes) -> tuple[CID, bytes]:
    entry = {"k": HEIGHT0[0].encode(), "p": 0, "t": None, "v": RECORD_CID}
    left = None
    if where == "left":
        left = cbor.Link(link)
    else:
        entry["v" if where == "value" else "t"] = cbor.Link(link)
    data = cbor.encode({"e": [entry], "l": left})
    return cid_for(data), data


@pytest.mark.parametrize("link", NOT_CIDS.values(), ids=NOT_CIDS.keys())
@pytest.mark.parametrize("where", ["value", "right", "left"])
def test_walk_names_the_node_holding_a_link_that_is_not_a_cid(where: str, link: bytes) -> None:
    # mst.walk hands out CID objects: such a link used to escape as a DecodeError naming
    # no node (the fuzzer's mst.walk target hit it in 1.4% of its inputs)
    cid, data = _node_linking(where, link)
    with pytest.raises(MstError) as info:
        list(mst.walk({cid: data}, cid))
    assert info.value.cid == str(cid) and info.value.message == "malformed link in MST node"
    assert info.value.fields["link"] == link.hex()


@pytest.mark.parametrize("link", NOT_CIDS.values(), ids=NOT_CIDS.keys())
def test_missing_subtree_whose_link_is_not_a_cid_is_named_by_its_bytes(link: bytes) -> None:
    # the snapshot's walk finds no block for it: an MstError, its bytes in hex as the name
    cid, data = _node_linking("left", link)
    err = expect_mst_error(repo_car(cid, [(cid, data)]))
    assert err.message == "missing MST node block" and err.cid == link.hex()


# --- blocks dropped from a reference CAR --------------------------------------------------------

@pytest.mark.parametrize("which", ["record", "mst-leaf", "mst-root"])
def test_dropped_block_is_an_mst_error_naming_it(ref: Layout, which: str) -> None:
    block = selected_blocks(ref)[which]
    err = expect_error(MstError, lambda: read_all(drop(ref, block)))
    assert err.cid == str(block.cid)


def test_dropped_records_are_found_wherever_they_are(ref: Layout) -> None:
    for block in [b for b in ref.blocks if b.kind == "record"][::250]:
        err = expect_error(MstError, lambda: read_all(drop(ref, block)))
        assert err.cid == str(block.cid)


def test_dropped_commit_is_a_car_error(ref: Layout) -> None:
    err = expect_error(CarError, lambda: read_all(drop(ref, ref.first("commit"))))
    assert err.cid == str(ref.commit)


def test_dropped_record_outside_filter_is_not_needed(ref: Layout, ref_small: Any) -> None:
    # a record of another collection is never read when collections= excludes it
    like = next(b for b in ref.blocks if b.kind == "record"
                and any(c == "app.bsky.feed.like" and cid == str(b.cid)
                        for c, _, cid in ref_small.records))
    snap = read_all(drop(ref, like), collections=["app.bsky.feed.post"])
    assert set(snap.records["collection"]) == {"app.bsky.feed.post"}
    expect_error(MstError, lambda: read_all(drop(ref, like), collections=["app.bsky.feed.like"]))
