"""What an export and an open keep: nothing per repository once a batch is committed, no
more threads, open files or log to replay after many commits than after a few, row groups of
bounded size from the merge at the end, and only the newest log file of the ``repos`` table
to open a dataset."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import duckdb
import polars as pl
from deltalake import DeltaTable
from test_dataset import POST, batch, first, post, snap

import atrepo
from atrepo.dataset import Batch, DatasetExport, compact, open_dataset
from atrepo.dataset._delta import ROW_GROUP_ROWS

BATCH = 4


def _live(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


def _export_round(export: DatasetExport, start: int) -> None:
    """Hand the export one batch of new repositories (it commits when the batch is full)."""
    for n in range(start, start + BATCH):
        did = f"did:plc:{n:024d}"
        export.fetched(snap(did, {f"{POST}/3k{n:03d}": post(f"p{n}")}), pds="https://p.test",
                       handle=None)


def test_an_export_keeps_no_frame_or_snapshot_per_repository_after_its_commits(tmp_path):
    export = DatasetExport(tmp_path / "ds", batch_repos=BATCH)
    try:
        _export_round(export, 0)
        frames, snaps = _live(pl.DataFrame), _live(atrepo.RepoSnapshot)
        for round_ in range(1, 4):   # three more batches: 4x the repositories
            _export_round(export, round_ * BATCH)
            assert export.batch.repos == 0 and export.report.commits == round_ + 1
        assert (_live(pl.DataFrame), _live(atrepo.RepoSnapshot)) == (frames, snaps)
    finally:
        report = export.finish()
    assert report.written == 4 * BATCH
    assert open_dataset(tmp_path / "ds").records.select(pl.len()).collect().item() == 4 * BATCH


def _threads() -> int:
    """The process's threads now, native ones included (deltalake's runtime)."""
    return len(os.listdir("/proc/self/task"))


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _replayed(table: Path) -> int:
    """How many commit files a load of ``table`` reads after its newest checkpoint."""
    log = table / "_delta_log"
    checkpoints = [int(p.name.split(".")[0]) for p in log.glob("*.checkpoint.parquet")]
    newest = max(checkpoints, default=-1)
    return sum(1 for p in log.glob("*.json") if int(p.stem) > newest)


def test_many_commits_leave_no_more_threads_open_files_or_log_than_a_few(tmp_path):
    # each load of a table replays its log since the newest checkpoint, reading the
    # commit files at once on deltalake's runtime, which starts a thread for each: with
    # delta-rs's default interval (a checkpoint every 100 commits) an export's threads and
    # memory grew with every commit (24 threads to 44 over 20 commits)
    export = DatasetExport(tmp_path / "ds", batch_repos=BATCH)
    try:
        threads, files = [], []
        for round_ in range(24):
            _export_round(export, round_ * BATCH)
            threads.append(_threads())
            files.append(_open_files())
        tables = [tmp_path / "ds" / "records", tmp_path / "ds" / "repos",
                  *(tmp_path / "ds" / "tables").iterdir()]
        assert max(threads[12:]) <= max(threads[:12]) + 2, threads
        assert max(files[12:]) <= max(files[:12]), files
        assert all(_replayed(table) <= 10 for table in tables)
    finally:
        export.finish()


def test_an_export_of_several_batches_leaves_one_file_per_partition(tmp_path):
    export = DatasetExport(tmp_path / "ds", batch_repos=BATCH)
    for round_ in range(3):
        _export_round(export, round_ * BATCH)
    assert export.finish().commits == 3
    records = DeltaTable(tmp_path / "ds" / "records")
    assert len(records.file_uris()) == 1 and records.history(1)[0]["operation"] == "OPTIMIZE"
    ds = open_dataset(tmp_path / "ds")
    assert ds.records.select(pl.len()).collect().item() == 3 * BATCH == ds.meta["records"]


def _row_groups(uri: str) -> list[int]:
    """The rows of each row group of one Parquet file of a table."""
    path = uri.removeprefix("file://")
    return [rows for _, rows in duckdb.sql(
        "SELECT DISTINCT row_group_id, row_group_num_rows FROM parquet_metadata(?) "
        "ORDER BY row_group_id", params=[path]).fetchall()]


def test_the_merge_writes_row_groups_of_bounded_size(tmp_path):
    # a merge builds each row group in memory before writing it, so the row groups' bound
    # is its memory's; with delta-rs's default (1M rows) the merged partition below would
    # be one row group of every row, and a host's merge would hold its whole table
    per_batch = ROW_GROUP_ROWS // 2 + 100
    export = DatasetExport(tmp_path / "ds", batch_repos=1)
    for n in range(3):
        export.fetched(snap(f"did:plc:{n:024d}", {f"{POST}/3k{n}{k:05d}": post(f"p{k}")
                                                  for k in range(per_batch)}),
                       pds="https://p.test", handle=None)
    assert export.finish().commits == 3
    (merged,) = DeltaTable(tmp_path / "ds" / "records").file_uris()
    groups = _row_groups(merged)
    assert sum(groups) == 3 * per_batch and max(groups) == ROW_GROUP_ROWS, groups
    (typed,) = DeltaTable(tmp_path / "ds" / "tables" / POST).file_uris()
    assert max(_row_groups(typed)) == ROW_GROUP_ROWS


def test_opening_reads_only_the_newest_commit_of_the_repos_log(tmp_path):
    with first(tmp_path) as writer:
        writer.commit(_one(2))
    expected = open_dataset(tmp_path / "ds")
    log = tmp_path / "ds" / "repos" / "_delta_log"
    aside = tmp_path / "aside"
    aside.mkdir()
    for old in sorted(log.glob("*.json"))[:-1]:   # any load of the whole table fails now
        shutil.move(old, aside / old.name)
    ds = open_dataset(tmp_path / "ds")
    assert (ds.version, ds.meta) == (expected.version, expected.meta) == (1, expected.meta)
    assert ds.meta["repos"] == 3 and ds.meta["records"] == 6


def test_a_compaction_newest_in_the_log_is_passed_over(tmp_path):
    with first(tmp_path) as writer:
        for n in range(2, 5):
            writer.commit(_one(n))
    before = open_dataset(tmp_path / "ds")
    assert compact(tmp_path / "ds")["repos"] > 0
    newest = DeltaTable(tmp_path / "ds" / "repos").history(1)[0]
    assert newest["operation"] == "OPTIMIZE"   # a commit atrepo did not make
    ds = open_dataset(tmp_path / "ds")
    assert (ds.version, ds.meta) == (before.version, before.meta) == (3, before.meta)
    assert ds.repos.select(pl.len()).collect().item() == 5


def _one(n: int) -> Batch:
    """A batch of one new repository with one post."""
    return batch(snap(f"did:plc:{n:024d}", {f"{POST}/3k{n:03d}": post(f"n{n}")}))
