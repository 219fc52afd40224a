"""Shared tools for the hostile-input tests of the CAR and MST modules.

Most cases start from ``ref_small`` (2,000 records written by the atproto reference
implementation, see tests/conftest.py), framed by hand into a :class:`Layout`, then cut,
bit-flipped or reshuffled; MST corruptions are built by hand with :func:`node_block` and
:func:`repo_car`. Every failure must be the RIGHT :class:`~atrepo.AtrepoError` subclass,
naming the offset or CID concerned, never another exception, a hang or a memory blow-up.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cbor2
import pytest

import atrepo
from atrepo import car as carmod
from atrepo import cbor, mst
from atrepo.cid import CID, cid_for
from atrepo.errors import AtrepoError, MstError
from atrepo.mst._node import common_prefix
from atrepo.testing import SigningKey, encode_car

__all__ = ["DID", "HEIGHT0", "HEIGHT1", "KEY", "RECORD", "RECORD_CID", "Block", "Layout", "both",
           "drop", "expect_error", "expect_located", "expect_mst_error", "flip", "frame_layout",
           "leaf_node", "node_block", "raw_node", "read_all", "read_varint", "reference_blocks",
           "repo_car", "selected_blocks", "swap", "tag42", "time_limit", "work_limit"]


DID = "did:plc:testtesttesttesttesttest"
E = TypeVar("E", bound=AtrepoError)


# --- reading and expecting errors --------------------------------------------------------------

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


@contextlib.contextmanager
def work_limit(cpu_seconds: float) -> Iterator[None]:
    """Fail the test (instead of looping for ever) when the block spends more than
    ``cpu_seconds`` of this process's CPU time.

    CPU time, not wall-clock time: a decoder that loops burns it at once, while a machine
    busy with other work does not make an honest run use more of it, so the bound never
    flakes. (A wait without CPU, for a worker process say, is not bounded by it: that is
    :func:`time_limit`.)
    """

    def _spent(signum: int, frame: Any) -> None:
        raise TimeoutError(f"spent more than {cpu_seconds} s of CPU time")

    old = signal.signal(signal.SIGPROF, _spent)
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def read_all(source: Any, **kwargs: Any) -> atrepo.RepoSnapshot:
    """Read a repository CAR completely: snapshot, records and problems."""
    snap = atrepo.read_car(source, **kwargs)
    assert snap.records.height == len(snap)
    snap.problems  # noqa: B018
    return snap


def expect_error(kind: type[E], func: Callable[[], Any], seconds: float | None = None) -> E:
    """Run ``func``; it must raise an AtrepoError of exactly the class ``kind``.

    ``func`` gets 20 s of CPU time (:func:`work_limit`), or ``seconds`` of wall-clock time
    when given: for a read that waits on worker processes, which spend no CPU time here.
    """
    with work_limit(20) if seconds is None else time_limit(seconds):
        try:
            func()
        except AtrepoError as exc:
            assert isinstance(exc, kind) and type(exc) is kind, \
                f"expected {kind.__name__}, got {exc!r}"
            assert str(exc)
            return exc
    pytest.fail(f"expected {kind.__name__}, but it succeeded")


def expect_located(err: AtrepoError) -> None:
    """The error must say where: a CAR offset or a CID."""
    offset = getattr(err, "offset", None)
    cid = getattr(err, "cid", None)
    assert offset is not None or cid is not None, f"error names neither offset nor CID: {err!r}"


def both(car: bytes) -> list[Callable[[], Any]]:
    """Both ways in: the blocks through atrepo.car, and the whole repository."""
    return [lambda: list(carmod.read_car(car)), lambda: read_all(car)]


def reference_blocks(*paths: Path) -> dict[CID, bytes]:
    """The blocks of the reference CARs at ``paths``, merged."""
    merged: dict[CID, bytes] = {}
    for path in paths:
        for cid, data in carmod.read_car(path):
            merged[cid] = data
    return merged


# --- a reference CAR framed by hand ------------------------------------------------------------

def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at ``pos``, trusting it (the input is ours)."""
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


def frame_layout(data: bytes, record_cids: set[str]) -> Layout:
    """Frame a CAR by hand and check the framing against atrepo.car's own index."""
    header_len, pos = read_varint(data, 0)
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
        length, cid_start = read_varint(data, pos)
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


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def leaf_node(layout: Layout) -> Block:
    """An MST node without subtrees (deepest layer)."""
    for block in layout.blocks:
        if block.kind == "node":
            node = mst.decode_node(bytes(block.cid), layout.data[block.data_start:block.end])
            if node.left is None and all(right is None for _, _, right in node.entries):
                return block
    raise AssertionError("no leaf node")


def selected_blocks(layout: Layout) -> dict[str, Block]:
    return {"commit": layout.first("commit"), "mst-root": layout.by_cid(layout.mst_root),
            "mst-leaf": leaf_node(layout), "record": layout.first("record"),
            "last-block": layout.blocks[-1]}


def swap(layout: Layout, a: Block, b: Block) -> bytes:
    pairs = layout.pairs()
    i, j = layout.blocks.index(a), layout.blocks.index(b)
    (cid_a, data_a), (cid_b, data_b) = pairs[i], pairs[j]
    pairs[i], pairs[j] = (cid_a, data_b), (cid_b, data_a)
    return encode_car([layout.commit], pairs)


def drop(layout: Layout, block: Block) -> bytes:
    pairs = [p for b, p in zip(layout.blocks, layout.pairs()) if b is not block]
    return encode_car([layout.commit], pairs)


# --- hand-made MSTs ----------------------------------------------------------------------------

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
            prefix = common_prefix(prev, raw)
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


def raw_node(value: Any) -> tuple[CID, bytes]:
    data = cbor2.dumps(value, canonical=True)
    return cid_for(data), data


def tag42(cid: CID) -> cbor2.CBORTag:
    return cbor2.CBORTag(42, b"\x00" + bytes(cid))
