"""atrepo.mst._plan: a walk split into subtrees gives, joined in order, the whole walk."""

from __future__ import annotations

import pytest

from atrepo import mst
from atrepo.cid import CID, cid_for
from atrepo.errors import MstError

ITEMS = [(f"app.x/{i:04d}", cid_for(b"%d" % i)) for i in range(3000)]
ROOT, BLOCKS = mst.build(ITEMS)


def _get(raw: bytes) -> bytes | None:
    return BLOCKS.get(CID.from_raw(raw))


def _joined(pieces: list[mst.Subtree | tuple[bytes, bytes]]) -> list[bytes]:
    keys: list[bytes] = []
    for piece in pieces:
        if isinstance(piece, mst.Subtree):
            keys.extend(mst.collect_subtree(_get, piece)[0])
        else:
            keys.append(piece[0])
    return keys


@pytest.mark.parametrize("pieces", [1, 4, 64, 10_000])
def test_pieces_joined_are_the_walk(pieces: int) -> None:
    plan = mst.plan(_get, bytes(ROOT), pieces)
    subtrees = [p for p in plan if isinstance(p, mst.Subtree)]
    if pieces < 1000:  # the tree has fewer nodes than 1000: then every node gets opened
        assert len(subtrees) >= pieces
    else:
        assert subtrees == [] and len(plan) == len(ITEMS)
    assert _joined(plan) == mst.collect(_get, bytes(ROOT))[0]
    assert [k.decode() for k in _joined(plan)] == [k for k, _ in ITEMS]


def test_a_subtree_is_checked_against_its_interval() -> None:
    piece = next(p for p in mst.plan(_get, bytes(ROOT), 8) if isinstance(p, mst.Subtree))
    assert piece.hi is not None
    narrowed = piece._replace(hi=piece.lo + b"\x00" if piece.lo else b"app.x/0000")
    with pytest.raises(MstError, match="outside its range"):
        mst.collect_subtree(_get, narrowed)
