"""atrepo.mst._node: the node codec, and every defect one node can show on its own.

Each malformed node is read as the MST of a signed repository (:func:`repo_car`) and must
end in an MstError naming that node's CID.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from atrepo import mst
from atrepo.cid import cid_for
from atrepo.mst._node import common_prefix, decode_checked, decode_node, encode_node
from _hostile import (HEIGHT0, HEIGHT1, RECORD_CID, expect_mst_error, node_block, raw_node,
                     read_all, repo_car, tag42)


def test_encode_then_decode_is_the_node() -> None:
    right = bytes(cid_for(b"right"))
    entries = [(HEIGHT0[0].encode(), bytes(RECORD_CID), None),
               (HEIGHT0[1].encode(), bytes(RECORD_CID), right)]
    entries.sort()
    data = encode_node(None, entries)
    node = decode_node(bytes(cid_for(data)), data)
    assert node == mst.Node(0, None, entries)
    assert decode_checked(data) == (None, entries)
    prefix = common_prefix(entries[0][0], entries[1][0])
    assert cbor2.loads(data)["e"][1]["p"] == prefix > 0


def test_an_empty_node_has_no_layer() -> None:
    data = encode_node(None, [])
    assert decode_node(bytes(cid_for(data)), data) == mst.Node(None, None, [])


def test_key_height_takes_text_or_bytes() -> None:
    assert [mst.key_height(k) for k in HEIGHT1[:3]] == [1, 1, 1]
    assert mst.key_height(HEIGHT0[0].encode()) == 0


# --- prefix compression ------------------------------------------------------------------------

def test_prefix_shorter_than_shared_prefix() -> None:
    keys = sorted(HEIGHT0[:2])
    node = node_block([keys[0], (keys[1], None, 0)])
    expect_mst_error(repo_car(node[0], [node]), node[0])
    node = node_block([keys[0], (keys[1], None, common_prefix(
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


# --- keys and layers ---------------------------------------------------------------------------

def test_key_heights_mixed_within_a_node() -> None:
    node = node_block(sorted([HEIGHT0[0], HEIGHT1[0]]))
    expect_mst_error(repo_car(node[0], [node]), node[0])


def same_height_keys(count: int) -> list[str]:
    keys = sorted(k for k in (f"com.ex.b/{i:05d}" for i in range(count * 2))
                  if mst.key_height(k) == 0)
    assert len(keys) >= count
    return keys[:count]


def test_node_with_too_many_entries() -> None:
    node = node_block(same_height_keys(mst.MAX_ENTRIES + 1))
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_node_with_max_entries_is_accepted() -> None:
    node = node_block(same_height_keys(mst.MAX_ENTRIES))
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


# --- shape -------------------------------------------------------------------------------------

MALFORMED_NODES = {
    "not a map": [],
    "missing l": {"e": []},
    "missing e": {"l": None},
    "extra key": {"e": [], "l": None, "x": 1},
    "e not a list": {"e": {}, "l": None},
    "entry not a map": {"e": [1], "l": None},
    "entry missing v": {"e": [{"k": b"com.ex/a", "p": 0, "t": None}], "l": None},
    "entry extra key": {"e": [{"k": b"com.ex/a", "p": 0, "t": None, "v": tag42(RECORD_CID),
                               "x": 1}], "l": None},
    "k is text": {"e": [{"k": "com.ex/a", "p": 0, "t": None, "v": tag42(RECORD_CID)}],
                  "l": None},
    "p is text": {"e": [{"k": b"com.ex/a", "p": "0", "t": None, "v": tag42(RECORD_CID)}],
                  "l": None},
    "p is a float": {"e": [{"k": b"com.ex/a", "p": 0.0, "t": None, "v": tag42(RECORD_CID)}],
                     "l": None},
    "p is a bignum tag": {"e": [{"k": b"com.ex/a", "p": cbor2.CBORTag(2, b"\x00"), "t": None,
                                 "v": tag42(RECORD_CID)}], "l": None},
    "v is bytes": {"e": [{"k": b"com.ex/a", "p": 0, "t": None, "v": bytes(RECORD_CID)}],
                   "l": None},
    "v is null": {"e": [{"k": b"com.ex/a", "p": 0, "t": None, "v": None}], "l": None},
    "t is text": {"e": [{"k": b"com.ex/a", "p": 0, "t": "x", "v": tag42(RECORD_CID)}],
                  "l": None},
    "l is bytes": {"e": [], "l": bytes(RECORD_CID)},
    "link without 0x00 prefix": {"e": [], "l": cbor2.CBORTag(42, bytes(RECORD_CID))},
    "other tag as link": {"e": [], "l": cbor2.CBORTag(43, b"\x00" + bytes(RECORD_CID))},
}


@pytest.mark.parametrize("value", list(MALFORMED_NODES.values()), ids=list(MALFORMED_NODES))
def test_malformed_node(value: Any) -> None:
    node = raw_node(value)
    expect_mst_error(repo_car(node[0], [node]), node[0])


def test_node_that_is_not_cbor() -> None:
    for data in (b"", b"\xff", b"\xa2\x61e", b"\x81" * 1000):
        cid = cid_for(data)
        expect_mst_error(repo_car(cid, [(cid, data)]), cid)
