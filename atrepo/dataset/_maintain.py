"""Upkeep of a dataset kept for months: compacting small files, and vacuuming old ones.

Each refresh commits a few small files per collection and rewrites the files that held the
changed repositories' rows, so after many refreshes a table is many small files and many
files no version reads any more. :func:`compact` merges small files (one Delta commit per
table, no row changes, so it needs no recovery); :func:`vacuum` deletes the files that no
version newer than ``older_than`` reads — which is also what finally removes deleted
accounts' rows from disk: until then ``as_of`` an older version still shows them.

Both hold the dataset's lock, so neither runs beside an export.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from ._delta import checkpoint, merge_files
from ._layout import Layout
from ._lock import DatasetLock

__all__ = ["SMALL_FILE_BYTES", "SMALL_FILES", "TARGET_FILE_BYTES", "compact", "vacuum"]

SMALL_FILE_BYTES = 32 << 20   # a data file under this is worth merging ...
SMALL_FILES = 16              # ... once a table has at least this many of them
TARGET_FILE_BYTES = 128 << 20  # the size compaction aims for


def _tables(layout: Layout) -> list[Path]:
    return [layout.records, layout.repos, *(layout.table(c) for c in layout.typed_tables())]


def small_files(table: DeltaTable) -> int:
    """How many of ``table``'s current files are smaller than SMALL_FILE_BYTES."""
    sizes = pl.DataFrame(table.get_add_actions(flatten=True)).get_column("size_bytes")
    return int((sizes < SMALL_FILE_BYTES).sum())


def compact_tables(layout: Layout, *, only_if_needed: bool = True) -> dict[str, int]:
    """Compact the tables of ``layout`` (the caller holds the lock), then checkpoint each
    at its newest version (:func:`~atrepo.dataset._delta.checkpoint`); files removed per
    table."""
    removed = {}
    for path in _tables(layout):
        if not path.exists():
            continue
        table = DeltaTable(path)
        if not only_if_needed or small_files(table) >= SMALL_FILES:
            removed[path.name] = merge_files(path, table, target_bytes=TARGET_FILE_BYTES)
        checkpoint(path, table)   # the table is loaded at its compaction's version
    return removed


def compact(path: str | os.PathLike[str], *, only_if_needed: bool = False) -> dict[str, int]:
    """Merge each table's small files into files of ~128 MB, and checkpoint each table at its
    newest version (so opening it reads one log file); return files removed per table.

    Args:
        path: the dataset directory.
        only_if_needed: only tables with at least SMALL_FILES small files (what an export
            does after committing).

    Raises:
        AtrepoError: no dataset at ``path``, or an export is writing it.
    """
    with _held(path) as layout:
        return compact_tables(layout, only_if_needed=only_if_needed)


def vacuum(path: str | os.PathLike[str], *,
           older_than: timedelta = timedelta(days=7)) -> int:
    """Delete the files no version newer than ``older_than`` reads; return how many.

    Versions older than that can no longer be read afterwards (``as_of`` them fails), and
    the rows of accounts removed before then are gone from disk.

    Raises:
        AtrepoError: no dataset at ``path``, or an export is writing it.
    """
    hours = int(older_than.total_seconds() // 3600)
    with _held(path) as layout:
        return sum(len(DeltaTable(table).vacuum(retention_hours=hours, dry_run=False,
                                                enforce_retention_duration=False))
                   for table in _tables(layout) if table.exists())


@contextmanager
def _held(path: str | os.PathLike[str]) -> Iterator[Layout]:
    """The dataset at ``path``, its lock held for the block (AtrepoError if it is not one)."""
    layout = Layout(path)
    layout.check_dataset()
    lock = DatasetLock(layout.lock)
    try:
        yield layout
    finally:
        lock.release()
