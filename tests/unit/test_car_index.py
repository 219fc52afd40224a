"""atrepo.car._index: blocks found by CID, even when two CIDs share an index key."""

from __future__ import annotations

from atrepo import car
from atrepo.cid import cid_for
from atrepo.testing import encode_car


def test_colliding_index_keys_are_told_apart() -> None:
    """Two CIDs with the same last 7 bytes (forced) still resolve to their own blocks."""
    a, b = b"\xa1\x61\x61\x01", b"\xa1\x61\x61\x02"
    cid_a = cid_for(a)
    raw_b = bytes(cid_for(b))
    fake_b = raw_b[:-7] + bytes(cid_a)[-7:]   # same index key as a, different CID
    carfile = car.read_car(encode_car([cid_a], [(bytes(cid_a), a), (fake_b, b)]),
                           verify_cids=False)
    assert carfile.get(cid_a) == a
    assert carfile.get(fake_b) == b
    assert len(carfile) == 2
