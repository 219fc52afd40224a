"""atrepo.mst._build: the canonical tree, node for node the reference implementation's."""

from __future__ import annotations

from typing import Any

import pytest

import atrepo
from atrepo import mst
from atrepo.cid import CID, cid_for
from _hostile import reference_blocks


def test_build_gives_reference_root(ref_small: Any, ref_p256: Any) -> None:
    for ref, records, truth in ((ref_small, ref_small.records, ref_small.truth),
                                (ref_small, ref_small.records2, ref_small.truth2),
                                (ref_p256, ref_p256.records, ref_p256.truth)):
        root, blocks = mst.build((f"{c}/{r}", CID.decode(cid)) for c, r, cid in records)
        assert str(root) == truth["data_cid"]
        theirs = reference_blocks(ref.car, ref.car2) if ref is ref_small else \
            reference_blocks(ref.car)
        for cid, data in blocks.items():   # every node we build is byte-identical to theirs
            assert theirs[cid] == data


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(atrepo.MstError, match="duplicate key") as info:
        mst.build([("app.x/1", cid_for(b"1")), ("app.x/1", cid_for(b"2"))])
    assert info.value.fields["key"] == "app.x/1"


def test_order_of_items_does_not_matter() -> None:
    items = [(f"app.x/{i:04d}", cid_for(b"%d" % i)) for i in range(200)]
    assert mst.build(items) == mst.build(reversed(items))
    root, blocks = mst.build(items)
    assert [key for key, _ in mst.walk(blocks, root)] == [key for key, _ in items]
    assert isinstance(root, CID) and root in blocks
