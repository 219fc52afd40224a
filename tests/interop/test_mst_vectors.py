"""Run the atproto MST interop vectors against :mod:`atrepo.mst`.

Vectors live in ``<interop>/mst/`` (``<interop>`` is
:data:`INTEROP_DIR` of ``tests/_interop.py``):

* ``key_heights.json``: ``[{"key", "height"}]`` for :func:`atrepo.mst.key_height`;
* ``common_prefix.json``: ``[{"left", "right", "len"}]`` for the prefix-compression helper;
* ``example_keys.txt``: one key per line; an MST of them (value = CID of the key's bytes) is
  built, walked back, checked node by node, and its root compared with the reference
  implementation (``@atproto/repo`` in atrepo/_reference, run with node).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from atrepo import cbor, mst
from atrepo.cid import CID, cid_for
from atrepo.mst._node import common_prefix
from _interop import INTEROP_DIR

MST_DIR = INTEROP_DIR / "mst"
REFERENCE = Path(__file__).resolve().parents[2] / "atrepo" / "_reference"


def _json(name: str) -> list[dict[str, Any]]:
    path = MST_DIR / name
    if not path.is_file():
        return []
    data: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _example_keys() -> list[str]:
    path = MST_DIR / "example_keys.txt"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    return [line.removesuffix("\r") for line in lines if line.strip()]


HEIGHTS = _json("key_heights.json")
PREFIXES = _json("common_prefix.json")
KEYS = _example_keys()


def test_vector_files_present() -> None:
    for name in ("key_heights.json", "common_prefix.json", "example_keys.txt"):
        assert (MST_DIR / name).is_file(), f"MST vector {name} not found in {MST_DIR}"
    assert HEIGHTS and PREFIXES and len(KEYS) > 100


# --- key heights ---------------------------------------------------------------------------

@pytest.mark.parametrize("vector", HEIGHTS, ids=lambda v: repr(v["key"])[:40])
def test_key_height(vector: dict[str, Any]) -> None:
    assert mst.key_height(vector["key"]) == vector["height"]
    assert mst.key_height(vector["key"].encode()) == vector["height"]


def test_key_heights_cover_several_layers() -> None:
    # the vector set is only useful if it exercises heights above 0
    assert len({v["height"] for v in HEIGHTS}) >= 4


# --- common prefix -------------------------------------------------------------------------

@pytest.mark.parametrize("vector", PREFIXES,
                         ids=lambda v: f"{v['left']!r}-{v['right']!r}")
def test_common_prefix(vector: dict[str, Any]) -> None:
    left, right = vector["left"].encode(), vector["right"].encode()
    assert common_prefix(left, right) == vector["len"]
    assert common_prefix(right, left) == vector["len"]


# --- example keys --------------------------------------------------------------------------

def _items() -> list[tuple[str, CID]]:
    return [(key, cid_for(key.encode())) for key in KEYS]


def test_example_keys_are_distinct() -> None:
    assert len(set(KEYS)) == len(KEYS)


def test_build_then_walk_returns_every_key_in_order() -> None:
    items = _items()
    root, blocks = mst.build(items)
    walked = list(mst.walk(blocks, root))
    assert walked == sorted(items)
    assert [k for k, _ in walked] == sorted(KEYS)


def test_build_is_independent_of_input_order() -> None:
    items = _items()
    root1, blocks1 = mst.build(items)
    root2, blocks2 = mst.build(list(reversed(items)))
    assert root1 == root2
    assert blocks1 == blocks2


def _nodes(blocks: dict[CID, bytes], root: CID) -> list[tuple[CID, mst.Node, int]]:
    """Every node below ``root`` with its depth (0 = root), by following links."""
    out = []
    stack = [(root, 0)]
    while stack:
        cid, depth = stack.pop()
        node = mst.decode_node(bytes(cid), blocks[cid])
        out.append((cid, node, depth))
        children = [node.left] + [right for _, _, right in node.entries]
        stack.extend((CID.from_raw(c), depth + 1) for c in children if c is not None)
    return out


def test_placed_keys_sit_at_their_height() -> None:
    items = _items()
    root, blocks = mst.build(items)
    nodes = _nodes(blocks, root)
    assert {cid for cid, _, _ in nodes} == set(blocks), "build wrote unreachable blocks"
    top = max(mst.key_height(k) for k in KEYS)
    placed = []
    for cid, node, depth in nodes:
        for key, value, _ in node.entries:
            text = key.decode()
            placed.append(text)
            assert mst.key_height(text) == node.layer, f"{text} placed at layer {node.layer}"
            assert node.layer == top - depth, f"node {cid} at depth {depth} has layer {node.layer}"
            assert CID.from_raw(value) == cid_for(key)
    assert sorted(placed) == sorted(KEYS)
    # the tree really has several layers (otherwise this test would prove little)
    assert top >= 2
    assert len({node.layer for _, node, _ in nodes}) >= 2


def test_nodes_are_canonical_dag_cbor() -> None:
    root, blocks = mst.build(_items())
    for cid, data in blocks.items():
        assert cid_for(data) == cid
        value = cbor.decode(data)  # strict: canonical form, no floats, only tag 42
        assert set(value) == {"e", "l"}
        prev = b""
        for entry in value["e"]:
            assert set(entry) == {"k", "p", "t", "v"}
            key = prev[:entry["p"]] + entry["k"]
            assert entry["p"] == common_prefix(prev, key)
            prev = key


_NODE_SCRIPT = r"""
import { MST, MemoryBlockstore } from '@atproto/repo'
import { createCid } from '@atproto/lex-data'
import crypto from 'node:crypto'
let text = ''
for await (const chunk of process.stdin) text += chunk
const storage = new MemoryBlockstore()
let tree = await MST.create(storage, [])
for (const key of JSON.parse(text)) {
  const digest = crypto.createHash('sha256').update(Buffer.from(key, 'utf8')).digest()
  tree = await tree.add(key, createCid(0x71, 0x12, new Uint8Array(digest)))
}
process.stdout.write((await tree.getPointer()).toString())
"""


def test_root_matches_reference_implementation() -> None:
    node = shutil.which("node")
    if node is None or not (REFERENCE / "node_modules" / "@atproto" / "repo").exists():
        pytest.fail("the reference implementation is not installed: run `make test` "
                    "(it runs `npm ci` in atrepo/_reference)")
    result = subprocess.run([node, "--input-type=module", "-e", _NODE_SCRIPT],
                            input=json.dumps(KEYS), cwd=REFERENCE, capture_output=True,
                            text=True, timeout=120, check=True)
    root, _ = mst.build(_items())
    assert str(root) == result.stdout.strip()
