"""Counts over a Dataset: the Delta log is read once per Dataset, then only data files."""

from __future__ import annotations

import shutil

import polars as pl
from deltalake import DeltaTable
from test_dataset import POST, A, C, batch, first, post, snap

from atrepo.dataset import open_dataset


def test_a_count_equals_the_row_counts_of_the_delta_log(tmp_path):
    with first(tmp_path):
        pass
    ds = open_dataset(tmp_path / "ds")
    logged = DeltaTable(tmp_path / "ds" / "records").get_add_actions(flatten=True)
    assert ds.records.select(pl.len()).collect().item() \
        == sum(logged.column("num_records").to_pylist()) == ds.meta["records"] == 5


def test_a_held_dataset_answers_later_queries_without_its_delta_log(tmp_path):
    with first(tmp_path):
        pass
    ds = open_dataset(tmp_path / "ds")
    assert ds.records.select(pl.len()).collect().item() == 5   # loads the log, once
    log = tmp_path / "ds" / "records" / "_delta_log"
    shutil.move(log, tmp_path / "log-aside")   # any later read of the log would fail
    assert ds.records.select(pl.len()).collect().item() == 5
    assert sorted(ds.records.group_by("collection").len().collect().rows()) == [
        ("app.bsky.feed.like", 1), (POST, 3), ("app.example.thing", 1)]
    assert ds.records.filter(pl.col("did") == A).select(pl.len()).collect().item() == 4


def test_a_held_dataset_keeps_counting_its_own_version_after_a_new_commit(tmp_path):
    with first(tmp_path) as writer:
        ds = open_dataset(tmp_path / "ds")
        assert ds.records.select(pl.len()).collect().item() == 5
        writer.commit(batch(snap(C, {f"{POST}/3k010": post("c1"), f"{POST}/3k011": post("c2")})))
    assert ds.records.select(pl.len()).collect().item() == 5
    assert open_dataset(tmp_path / "ds").records.select(pl.len()).collect().item() == 7
