"""Repositories nobody here wrote: public sample CARs of real accounts (see the fixtures' README).

Everything else in the suite reads repositories made by the reference implementation from
records we chose; these were exported from real PDSes by their owners (and one is a slice of
a repository, which must fail clearly). Each is read through both paths (the compiled core and
the pure-Python reference), and every collection it holds must give a typed table.
"""

from __future__ import annotations

from pathlib import Path

import libipld
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import atrepo
from atrepo.errors import MstError
from atrepo.tables import table_problems

from _core_diff import pure

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
WHOLE = ["bnewbold.robocracy.org.car", "fakermaker.repo.car", "greenground.repo.car",
         "paul_staging.repo.car"]


def _blocks_by_cid(path: Path) -> dict[str, object]:
    """The CAR's blocks as libipld (an independent decoder) reads them."""
    _, blocks = libipld.decode_car(path.read_bytes())
    return {libipld.encode_cid(cid): block for cid, block in blocks.items()}


@pytest.mark.parametrize("name", WHOLE)
def test_records_agree_with_an_independent_decoder(name: str) -> None:
    snap = atrepo.read_car(REAL / name)
    blocks = _blocks_by_cid(REAL / name)
    records = snap.records
    assert records.height > 0
    for collection, rkey, cid in records.select("collection", "rkey", "cid").rows():
        block = blocks[cid]
        assert isinstance(block, dict) and block.get("$type") == collection, (collection, rkey)
    assert records.select("collection", "rkey").is_duplicated().sum() == 0


@pytest.mark.parametrize("name", WHOLE)
def test_both_paths_read_the_same_records(name: str) -> None:
    accelerated = atrepo.read_car(REAL / name).records
    with pure():
        reference = atrepo.read_car(REAL / name).records
    assert_frame_equal(accelerated, reference)


@pytest.mark.parametrize("name", WHOLE)
def test_every_collection_gives_a_typed_table(name: str) -> None:
    snap = atrepo.read_car(REAL / name)
    held = snap.records.group_by("collection").len()
    for collection, count in held.rows():
        table = snap.table(collection)
        assert table.height == count, collection
        assert table.columns[:4] == ["did", "rkey", "uri", "cid"]
        assert table.columns[-1] == "extra"
        declared = atrepo.lexicon_schema(collection)
        if declared is not None:
            assert table.schema == declared, collection
        expected_uris = [f"at://{snap.did}/{collection}/{rkey}" for rkey in table["rkey"]]
        assert table["uri"].to_list() == expected_uris
        with pure():
            assert_frame_equal(atrepo.read_car(REAL / name).table(collection), table)


def test_real_posts_have_their_text_and_times() -> None:
    snap = atrepo.read_car(REAL / "paul_staging.repo.car")
    posts = snap.table("app.bsky.feed.post")
    assert table_problems(snap, "app.bsky.feed.post").height == 0
    assert posts["text"].null_count() == 0
    assert posts.schema["createdAt"] == pl.Datetime("us", "UTC")
    assert posts["createdAt"].null_count() == 0


def test_a_slice_of_a_repository_names_the_missing_node() -> None:
    with pytest.raises(MstError) as accelerated:
        _ = atrepo.read_car(REAL / "repo_slice.car").records
    with pure(), pytest.raises(MstError) as reference:
        _ = atrepo.read_car(REAL / "repo_slice.car").records
    assert accelerated.value.cid is not None
    assert accelerated.value.cid == reference.value.cid
    assert "fetch the full repository" in str(accelerated.value)
