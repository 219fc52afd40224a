"""The Delta Lake operations atrepo uses, in one place: commit a batch to a table, read back.

Every commit is tagged with its dataset version (see :mod:`atrepo.dataset._layout`), so
that ``committed(path)`` tells which batches a table holds after any crash, and
``table_at(path, n)`` loads the table as it was at dataset version ``n``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, \
    write_deltalake
from deltalake.exceptions import DeltaError

from ..errors import AtrepoError
from ._layout import APP_ID, META_KEY, commit_meta, table_exists

__all__ = ["ROW_GROUP_ROWS", "WRITER", "checkpoint", "commit", "committed", "held_version",
           "history", "merge_files", "newest_commit", "scan", "table_at"]

_COMMIT_FILE = re.compile(r"\d{20}\.json")   # a commit's log file (not a checkpoint, ...)

# Parquet inside the tables, for every file a commit or a merge writes: zstd, and row
# groups of at most ROW_GROUP_ROWS rows. A row group is a unit of parallel reading and of
# statistics-based skipping for readers, and what a writer builds in memory before
# writing it: a merge of a table's files (compaction) holds one at a time, so this bounds
# a merge's memory whatever the size of the table (delta-rs's own default, 1M rows, let a
# merge of a large records table hold up to a million rows at once)
ROW_GROUP_ROWS = 16 * 1024
WRITER = WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)
# a checkpoint every 10 commits (delta-rs's default is 100): every load of a table replays
# its log since the newest checkpoint, reading those commit files at once on deltalake's
# runtime, a thread each; an export commits many batches, and its threads and memory grew
# with every commit until the hundredth
_CONFIGURATION = {"delta.checkpointInterval": "10"}


def commit(path: Path, frame: pl.DataFrame, *, version: int, meta: dict[str, Any],
           replace: str | None, reset: bool = False,
           partition_by: list[str] | None = None) -> None:
    """Commit ``frame`` to the table at ``path`` as dataset version ``version``, atomically.

    Args:
        path: the table (created when absent).
        frame: the rows to add.
        version: the dataset version; recorded as the table's application transaction.
        meta: atrepo's commit metadata (``version`` is set from ``version``).
        replace: a predicate: rows matching it are removed in the same commit (every row
            of ``frame`` must match it too); None adds only.
        reset: replace every row of the table (``replace`` is then ignored).
        partition_by: the partition columns, for a table being created.
    """
    properties = CommitProperties(
        custom_metadata={META_KEY: json.dumps({**meta, "version": version})},
        app_transactions=[Transaction(APP_ID, version)])
    exists = table_exists(path)
    mode: Any = "append"
    predicate = None
    if exists and reset:
        mode = "overwrite"
    elif exists and replace is not None:
        mode, predicate = "overwrite", replace
    with _refused("commit to the dataset table", path, version=version):
        write_deltalake(path, frame, mode=mode, predicate=predicate,
                        partition_by=partition_by if not exists or reset else None,
                        schema_mode=None if not exists else "overwrite" if reset else "merge",
                        configuration=None if exists else _CONFIGURATION,
                        writer_properties=WRITER, commit_properties=properties)


def merge_files(path: Path, table: DeltaTable, *, target_bytes: int) -> int:
    """Merge the small files of ``table`` (loaded from ``path``) into files of about
    ``target_bytes`` (one Delta commit, no row changes); return how many it removed.

    One output file at a time (delta-rs's default is one per CPU), with the tables' writer
    settings: a merge holds about one output row group at a time (docs/performance.md,
    Memory).
    """
    with _refused("merge the dataset table's files", path):
        metrics = table.optimize.compact(target_size=target_bytes, max_concurrent_tasks=1,
                                         writer_properties=WRITER)
    return int(metrics.get("numFilesRemoved", 0))


def checkpoint(path: Path, table: DeltaTable) -> None:
    """Write a checkpoint of ``table`` (loaded from ``path``) at its loaded version, unless
    its log has one there.

    Loading a table reads its newest checkpoint and replays every commit file after it, one
    file read each on deltalake's runtime: with a checkpoint at the newest version, opening
    the dataset after an export reads one file per table (``docs/performance.md``, Scans).
    """
    log = path / "_delta_log"
    if (log / f"{table.version():020d}.checkpoint.parquet").exists():
        return
    with _refused("write a checkpoint of the dataset table", path,
                  table_version=table.version()):
        table.create_checkpoint()


@contextmanager
def _refused(what: str, path: Path, **fields: Any) -> Iterator[None]:
    """deltalake refusing an operation on the table at ``path`` (a full disk, a table it
    cannot read) is an AtrepoError saying what could not be done, naming the table."""
    try:
        yield
    except (DeltaError, OSError, ValueError) as exc:
        raise AtrepoError(f"could not {what}: {exc}", path=path, **fields) from exc


def committed(path: Path) -> int:
    """The newest dataset version the table at ``path`` holds (-1: none, or no table)."""
    if not table_exists(path):
        return -1
    version = DeltaTable(path).transaction_version(APP_ID)
    return -1 if version is None else version


def history(path: Path, limit: int | None = None
            ) -> list[tuple[int, int, int, dict[str, Any] | None]]:
    """(table version, dataset version, timestamp ms, atrepo metadata) per commit, oldest first.

    A commit atrepo did not make (a compaction run with deltalake directly) changes no
    rows, so it belongs to the dataset version before it (metadata None). ``limit``: only
    the newest commits (their dataset versions are then known only where they have
    metadata).
    """
    entries = sorted(DeltaTable(path).history(limit), key=lambda e: int(e["version"]))
    out: list[tuple[int, int, int, dict[str, Any] | None]] = []
    current = -1
    for entry in entries:
        meta = commit_meta(entry)
        if meta is not None:
            current = int(meta["version"])
        out.append((int(entry["version"]), current, int(entry["timestamp"]), meta))
    return out


def newest_commit(path: Path) -> tuple[int, dict[str, Any]] | None:
    """(timestamp ms, atrepo metadata) of the newest commit atrepo made to the table, read
    from its log files alone, newest first (None: none found).

    Opening a dataset needs only this of its ``repos`` table; loading the table would
    replay its whole log (a checkpoint and the commits after it) first. Commits atrepo did
    not make (a compaction) change no rows, so they are passed over, as in :func:`history`.
    """
    for info, meta in _atrepo_commits(path):
        if isinstance(info.get("timestamp"), int):
            return info["timestamp"], meta
    return None


def _atrepo_commits(path: Path, upto: int | None = None
                    ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(``commitInfo``, atrepo metadata) of each commit atrepo made to the table, newest
    first, from the log files kept (at or before table version ``upto``, when given);
    stops at a log it cannot read."""
    log = path / "_delta_log"
    try:
        names = sorted((name for name in os.listdir(log) if _COMMIT_FILE.fullmatch(name)
                        and (upto is None or int(name[:20]) <= upto)), reverse=True)
        for name in names:
            info = _commit_info((log / name).read_text())
            meta = None if info is None else commit_meta(info)
            if info is not None and meta is not None:
                yield info, meta
    except (OSError, ValueError):
        return


def _commit_info(text: str) -> dict[str, Any] | None:
    """The ``commitInfo`` action of one commit's log file, if it has one."""
    for line in text.splitlines():
        action = json.loads(line)
        info = action.get("commitInfo") if isinstance(action, dict) else None
        if isinstance(info, dict):
            return info
    return None


def table_at(path: Path, version: int) -> DeltaTable | None:
    """The table at ``path`` loaded as it was at dataset version ``version``; None when it
    did not exist yet.

    Its log is replayed once when its newest version holds that batch (the usual case: a
    dataset opened at its newest version), and the loaded table is what a scan reads, so
    opening and counting does not replay each log twice.
    """
    if not table_exists(path):
        return None
    table = DeltaTable(path)
    held = held_version(path, table)
    if held is None or held <= version:
        return table
    chosen = None
    commits = history(path)
    for table_v, dataset_v, _, _ in commits:
        if dataset_v <= version:
            chosen = table_v
    if chosen is None and commits and commits[0][0] > 0:
        # the log before the oldest kept commit was cleaned up: that state is gone
        msg = "this dataset version is no longer kept (its log was cleaned up)"
        raise AtrepoError(msg, path=path, version=version,
                          oldest=commits[0][1], hint="ds.versions lists those still readable")
    if chosen is None:
        return None
    table.load_as_version(chosen)
    return table


def held_version(path: Path, table: DeltaTable) -> int | None:
    """The newest dataset version ``table`` (loaded from ``path``) holds.

    Read from the log file of the newest atrepo commit at or before the loaded version (a
    small file: what a later commit adds does not change it), which costs far less than
    asking the loaded table for its transactions; from those when the log no longer has
    that file.
    """
    for _info, meta in _atrepo_commits(path, upto=table.version()):
        return int(meta["version"])
    return table.transaction_version(APP_ID)


def scan(path: Path | DeltaTable, version: int | None = None) -> pl.LazyFrame:
    """The table at ``path`` as it was at table version ``version`` (None: the newest), or
    a loaded table as it is loaded."""
    if isinstance(path, DeltaTable):
        return pl.scan_delta(path)
    return pl.scan_delta(str(path), version=version)
