"""atrepo.mst._source: every kind of block source reads the same tree."""

from __future__ import annotations

from atrepo import car, mst
from atrepo.cid import CID, cid_for
from atrepo.mst import BlockSource, RawBlockSource
from atrepo.mst._source import fetcher
from atrepo.testing import encode_car

ROOT, BLOCKS = mst.build([(f"app.x/{i:03d}", cid_for(b"%d" % i)) for i in range(50)])
KEYS = [f"app.x/{i:03d}" for i in range(50)]


class OnlyRaw:
    """A source with nothing but ``get_raw``."""

    def __init__(self) -> None:
        self.asked: list[bytes] = []

    def get_raw(self, raw: bytes) -> bytes | None:
        self.asked.append(raw)
        return BLOCKS.get(CID.from_raw(raw))


def test_every_kind_of_source_walks_the_same_tree() -> None:
    carfile = car.read_car(encode_car([ROOT], [(bytes(c), d) for c, d in BLOCKS.items()]))
    by_raw = {bytes(c): d for c, d in BLOCKS.items()}
    only_raw = OnlyRaw()
    sources: list[BlockSource | RawBlockSource] = [BLOCKS, carfile, only_raw]
    for source in sources:
        assert [key for key, _ in mst.walk(source, ROOT)] == KEYS
    assert [key for key, _ in mst.walk(by_raw, ROOT)] == KEYS  # type: ignore[arg-type]
    assert only_raw.asked and all(isinstance(raw, bytes) for raw in only_raw.asked)


def test_a_car_file_is_read_by_binary_cid() -> None:
    carfile = car.read_car(encode_car([ROOT], [(bytes(c), d) for c, d in BLOCKS.items()]))
    assert isinstance(carfile, RawBlockSource) and not isinstance(BLOCKS, RawBlockSource)
    assert fetcher(carfile) == carfile.get_raw
    assert fetcher(BLOCKS)(bytes(ROOT)) == BLOCKS[ROOT]
    assert fetcher(BLOCKS)(bytes(cid_for(b"absent"))) is None
