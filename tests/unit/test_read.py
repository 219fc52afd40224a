"""atrepo.read_car (atrepo/_read.py): a repository CAR from local input to a RepoSnapshot."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import atrepo
from atrepo._read import read_car
from atrepo.snapshot import walks_in_parallel


def _rows(snap: atrepo.RepoSnapshot) -> list[tuple[str, str, str]]:
    frame = snap.records
    return list(zip(frame["collection"], frame["rkey"], frame["cid"]))


def test_sources_agree(ref_small, tmp_path):
    data = ref_small.car.read_bytes()
    expected = _rows(read_car(data))
    assert expected == ref_small.records
    assert _rows(read_car(str(ref_small.car), mem_limit_mb=0)) == expected
    assert _rows(read_car(ref_small.car, mem_limit_mb=0)) == expected     # a Path
    assert _rows(read_car(io.BytesIO(data), mem_limit_mb=0.05)) == expected
    with ref_small.car.open("rb") as f:
        assert _rows(read_car(f)) == expected


def test_did_and_key_are_checked_when_given(ref_small):
    truth = ref_small.truth
    snap = read_car(ref_small.car, did=truth["did"], signing_key=truth["signing_key"])
    assert snap.verified and snap.source == "file" and snap.bytes_downloaded == 0
    with pytest.raises(atrepo.SignatureError):
        read_car(ref_small.car, did="did:plc:" + "a" * 24)


def test_a_missing_file_is_a_car_error_naming_it(tmp_path):
    missing = tmp_path / "nothing.car"
    with pytest.raises(atrepo.CarError, match="cannot open CAR file") as info:
        read_car(missing)
    assert info.value.fields["path"] == missing or str(missing) in str(info.value)


def test_only_big_unfiltered_files_are_walked_by_workers():
    big = 8 << 20
    assert walks_in_parallel(big, None, 2)
    assert not walks_in_parallel(big - 1, None, 2)
    assert not walks_in_parallel(big, ["app.bsky.feed.post"], 2)   # a filter reads few nodes
    assert not walks_in_parallel(big, None, 0)


_FIRST_READ = """
import json, sys, threading
import atrepo, atrepo.car
from atrepo import _read
seen = []
real = atrepo.car.read_car
def spy(*args, **kwargs):
    seen.append(threading.current_thread().name)
    return real(*args, **kwargs)
_read._car.read_car = spy
first = {"polars": "polars" in sys.modules}
try:
    atrepo.read_car(sys.argv[1])
except atrepo.CarError as exc:
    first["error"] = [type(exc).__name__, exc.fields.get("offset")]
first["after"] = "polars" in sys.modules
atrepo.read_car("examples/data/sample.car")
print(json.dumps({"first": first, "seen": seen, "threads": threading.active_count()}))
"""


@pytest.mark.skipif(not atrepo.accelerated, reason="the compiled core is not in use")
def test_a_first_read_imports_polars_while_the_core_indexes(tmp_path):
    # a fresh interpreter: the first read runs the index on a thread of its own and imports
    # polars meanwhile; its failure reaches the caller; a second read, polars loaded, runs
    # on the calling thread
    root = Path(__file__).resolve().parents[2]
    sample = (root / "examples" / "data" / "sample.car").read_bytes()
    cut = tmp_path / "cut.car"
    cut.write_bytes(sample[:len(sample) // 2])
    env = {k: v for k, v in os.environ.items() if k != "ATREPO_PURE_PYTHON"}
    out = subprocess.run([sys.executable, "-c", _FIRST_READ, str(cut)], cwd=root, env=env,
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["first"]["polars"] is False
    assert result["first"]["error"][0] == "CarError"
    assert isinstance(result["first"]["error"][1], int)   # the truncated block's offset
    assert result["first"]["after"] is True
    assert result["seen"] == ["atrepo-read-car", "MainThread"]
    assert result["threads"] == 1


def test_the_pure_path_reads_on_the_callers_thread() -> None:
    # the pure path holds the GIL while it indexes: nothing would overlap, so no thread
    root = Path(__file__).resolve().parents[2]
    code = ("import sys, threading, atrepo\n"
            "started = []\n"
            "threading.Thread.start = lambda self: started.append(self.name)\n"
            "atrepo.read_car('examples/data/sample.car')\n"
            "assert not atrepo.accelerated and started == [], started\n"
            "print('polars' in sys.modules)")
    env = {**os.environ, "ATREPO_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"   # nor was polars imported on the way
