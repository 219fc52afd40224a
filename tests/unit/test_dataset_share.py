"""Dataset.write_parquet: a plain-Parquet copy of one version, with a dataset card."""

from __future__ import annotations

import json

import duckdb
import polars as pl
import pytest

import atrepo
from atrepo.dataset import Batch, DatasetWriter, open_dataset
from atrepo.dataset import _share
from test_dataset import LIKE, PDS, POST, A, B, C, batch, first, like, post, snap


def test_the_copy_is_plain_parquet_any_reader_takes_as_a_directory(tmp_path):
    with first(tmp_path) as writer:
        gone = Batch()
        gone.add_removed(B, "takendown")
        writer.commit(gone, hosts=[PDS])
    ds = open_dataset(tmp_path / "ds")
    out = ds.write_parquet(tmp_path / "share")
    assert out == tmp_path / "share"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "dataset.json", "records",
                                                     "repos", "tables"]
    records = pl.scan_parquet(out / "records", hive_partitioning=True).collect()
    keys = ["did", "collection", "uri", "cid", "record", "rev", "fetched_at"]
    assert sorted(records.select(keys).rows()) == sorted(ds.records.select(keys).collect().rows())
    assert pl.read_parquet(out / "repos").height == 2
    assert pl.read_parquet(out / "tables" / POST).schema == atrepo.lexicon_schema(POST)
    counted = duckdb.sql(f"SELECT collection, count(*) FROM '{out}/records/**/*.parquet' "
                         "GROUP BY ALL ORDER BY 1").fetchall()
    assert counted == [(LIKE, 1), (POST, 2), ("app.example.thing", 1)]
    # nothing but Parquet inside the data directories
    for folder in ("records", "repos", "tables"):
        assert {p.suffix for p in (out / folder).rglob("*") if p.is_file()} == {".parquet"}


def test_the_card_says_what_when_where_how_many_and_how_verified(tmp_path):
    writer = DatasetWriter(tmp_path / "ds")
    writer.commit(batch(snap(A, {f"{POST}/3k001": post("a1")}),
                        snap(C, {f"{LIKE}/3k002": like(1), f"{LIKE}/3k003": like(2)})),
                  hosts=[PDS])
    unverified = Batch()
    unverified.add_snapshot(atrepo.read_car(_car(B)), pds=PDS)
    writer.commit(unverified)
    writer.close()
    ds = open_dataset(tmp_path / "ds")
    out = ds.write_parquet(tmp_path / "share")
    card = json.loads((out / "dataset.json").read_text())
    assert card["dataset_version"] == 1 and card["atrepo_version"] == atrepo.__version__
    assert card["hosts"] == [{"pds": PDS, "repos": 3}]
    assert card["repos"] == {"active": 3, "by_status": {"active": 3}}
    assert card["records"] == 4 and card["collections"] == {LIKE: 2, POST: 2}
    assert card["verified_share"] == pytest.approx(2 / 3)
    assert card["files"]["records/collection=app.bsky.feed.like"] == 1
    readme = (out / "README.md").read_text()
    assert "66.7% of the repositories" in readme and f"| {PDS} | 3 |" in readme
    assert "## Deletions" in readme


def _car(did: str) -> bytes:
    """A repository read without its key: not verified."""
    from atrepo.testing import make_repo_car

    return make_repo_car({f"{POST}/3k004": post("b")}, did=did)[0]


def test_the_copy_never_lands_half_written_or_over_another(tmp_path, monkeypatch):
    with first(tmp_path):
        pass
    ds = open_dataset(tmp_path / "ds")
    (tmp_path / "taken").mkdir()
    with pytest.raises(atrepo.AtrepoError, match="exists already"):
        ds.write_parquet(tmp_path / "taken")

    def broken(*args, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(_share, "_readme", broken)
    with pytest.raises(OSError, match="disk full"):
        ds.write_parquet(tmp_path / "share")
    assert not (tmp_path / "share").exists() and not (tmp_path / ".share.tmp").exists()
