"""atrepo.car._pack: a pack file that grows is indexed by its tail, and refused when replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

import atrepo
from atrepo import car
from atrepo.cid import cid_for
from atrepo.testing import encode_car


@pytest.mark.parametrize("mem_limit_mb", [64, 0])  # held in memory / mapped from the file
def test_extend_indexes_what_was_appended(tmp_path: Path, mem_limit_mb: float) -> None:
    first, second = b"\xa1ab\x01", b"\xa1ab\x02"
    path = tmp_path / "grows.car"
    path.write_bytes(encode_car([cid_for(first)], [(bytes(cid_for(first)), first)]))
    carfile = car.read_car(path, mem_limit_mb)
    assert cid_for(second) not in carfile and carfile.in_memory == bool(mem_limit_mb)
    tail = encode_car([cid_for(first)], [(bytes(cid_for(second)), second)])
    header_end = len(encode_car([cid_for(first)], []))
    with path.open("ab") as out:
        out.write(tail[header_end:] + b"\x99\x01 an unfinished block")
    carfile.extend(len(path.read_bytes()) - len(b"\x99\x01 an unfinished block"))
    assert carfile.get(cid_for(second)) == second and carfile.get(cid_for(first)) == first
    assert len(carfile) == 2 and carfile.reopenable()
    with pytest.raises(atrepo.CarError, match="replaced or is shorter than expected"):
        carfile.extend(path.stat().st_size + 1)
    path.unlink()
    path.write_bytes(b"replaced by something shorter")
    with pytest.raises(atrepo.CarError, match="replaced or is shorter than expected"):
        carfile.extend(carfile.size + 1)
