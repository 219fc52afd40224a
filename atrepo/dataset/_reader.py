"""Dataset: a dataset directory opened at one version, as lazy frames.

Every frame is read at the same *dataset version* (one committed batch): the version of
the ``repos`` table, which commits last (see :mod:`atrepo.dataset._writer`), with each
other table at its newest version holding that batch. A dataset being written is read as
of its last whole batch, never half of one.
"""

from __future__ import annotations

import html
import os
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import AtrepoError
from ..frames import DIFF_SCHEMA
from ..tables import check_collection, records_table
from . import _delta
from ._layout import RECORDS_SCHEMA, REPOS_SCHEMA, Layout, table_exists

__all__ = ["CHANGES_SCHEMA", "VERSIONS_SCHEMA", "Dataset", "open_dataset"]

VERSIONS_SCHEMA = pl.Schema({
    "version": pl.Int64(), "timestamp": pl.Datetime("ms", "UTC"), "added": pl.Int64(),
    "updated": pl.Int64(), "removed": pl.Int64(), "repos": pl.Int64(),
    "records": pl.Int64(), "operation": pl.String(),
})
CHANGES_SCHEMA = pl.Schema([("did", pl.String()), *DIFF_SCHEMA.items()])


def open_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Open the dataset an export wrote under ``path``, at its newest version.

    Raises:
        AtrepoError: ``path`` holds no atrepo dataset.

    Example::

        ds = atrepo.open_dataset("out/")
        ds.records.group_by("collection").len().collect()
    """
    layout = Layout(path)
    layout.check_dataset()
    newest = _delta.newest_commit(layout.repos)   # the repos table commits last
    if newest is None:   # its log was cleaned up past atrepo's commits: read it whole
        return Dataset(layout, _delta.committed(layout.repos))
    timestamp, meta = newest
    return Dataset(layout, int(meta["version"]), {**meta, "timestamp": timestamp})


class Dataset:
    """One version of a dataset (from :func:`open_dataset` or :meth:`as_of`).

    Attributes:
        path: the dataset directory.
        version: the dataset version read (one per committed batch, from 0).
    """

    def __init__(self, layout: Layout, version: int,
                 meta: dict[str, Any] | None = None) -> None:
        self._layout = layout
        self.path = layout.root
        self.version = version
        self.meta = meta if meta is not None else self._versions_meta().get(version, {})
        self._scans: dict[Path, pl.LazyFrame | None] = {}

    # -- the tables -----------------------------------------------------------------------

    def _scan(self, path: Path) -> pl.LazyFrame | None:
        """The table at ``path`` at this dataset version (None: no such table then).

        One scan per table and Dataset, its version fixed once found (later commits don't
        move it). Every frame of the table is built on that scan, which loads the table's
        Delta log on its first query and keeps it: later queries go straight to the data
        files, so a count (``ds.records.select(pl.len())``) reads a few Parquet footers
        instead of the log again, whatever the number of repositories.
        """
        if path not in self._scans:
            table = _delta.table_at(path, self.version)
            self._scans[path] = None if table is None else _delta.scan(table)
        return self._scans[path]

    @property
    def records(self) -> pl.LazyFrame:
        """Every record: the ``records`` columns plus rev, commit_cid, verified, pds,
        fetched_at."""
        frame = self._scan(self._layout.records)
        if frame is None:
            return pl.LazyFrame(schema=RECORDS_SCHEMA)
        return frame.select(RECORDS_SCHEMA.names())

    @property
    def repos(self) -> pl.LazyFrame:
        """One row per repository: did, handle, pds, rev, commit_cid, verified, status
        ("active" when its records are here), records, fetched_at, error, collections."""
        frame = self._scan(self._layout.repos)
        assert frame is not None   # open_dataset checked it
        return frame.select(REPOS_SCHEMA.names())

    def table(self, collection: str) -> pl.LazyFrame:
        """The typed table of ``collection`` (columns of :func:`atrepo.lexicon_schema`).

        A collection without a lexicon gets the inferred table of its records (built when
        called, from :attr:`records`).

        Raises:
            AtrepoError: a collection the dataset has no records of and no lexicon defines.
        """
        frame = self._scan(self._layout.table(collection))
        if frame is not None:
            return frame
        check_collection(collection, self.collections)
        rows = self.records.filter(pl.col("collection") == collection).collect()
        return records_table(rows, collection)[0].lazy()

    @cached_property
    def collections(self) -> list[str]:
        """The collections this version holds records of, sorted."""
        path = self._layout.records
        if not table_exists(path):
            return []
        return sorted(self.records.select(pl.col("collection").unique()).collect()
                      .get_column("collection").to_list())

    # -- versions -------------------------------------------------------------------------

    def _versions_meta(self) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for _, version, timestamp, meta in _delta.history(self._layout.repos):
            if meta is not None:
                found[version] = {**meta, "timestamp": timestamp}
        return found

    @property
    def versions(self) -> pl.DataFrame:
        """One row per version up to this one: version, timestamp, added, updated, removed
        (repositories), repos and records (totals after it), operation."""
        rows = [(v, datetime.fromtimestamp(m["timestamp"] / 1000, timezone.utc),
                 m.get("added"), m.get("updated"), m.get("removed"), m.get("repos"),
                 m.get("records"), m.get("operation"))
                for v, m in sorted(self._versions_meta().items()) if v <= self.version]
        return pl.DataFrame(rows, schema=VERSIONS_SCHEMA, orient="row")

    def as_of(self, version: int | datetime) -> Dataset:
        """The dataset as it was at ``version`` (a number, or the newest one at a datetime).

        Raises:
            AtrepoError: no such version (or none yet at that time).
        """
        known = self._versions_meta()
        if isinstance(version, datetime):
            when = version if version.tzinfo else version.replace(tzinfo=timezone.utc)
            stamp = when.timestamp() * 1000
            earlier = [v for v, m in known.items() if m["timestamp"] <= stamp]
            if not earlier:
                raise AtrepoError("the dataset has no version that old", path=self.path,
                                  as_of=when.isoformat(), hint="ds.versions lists them")
            return Dataset(self._layout, max(earlier))
        if version not in known:
            raise AtrepoError("no such dataset version", path=self.path, version=version,
                              versions=f"{min(known)}..{max(known)}" if known else "none")
        return Dataset(self._layout, version)

    def changes(self, since: int | datetime) -> pl.LazyFrame:
        """What changed from version ``since`` to this one: the diff frame's columns plus did.

        One row per record created, updated or deleted (``record``: the new JSON, null for
        deletes; ``old_record``: the previous JSON), sorted by (did, collection, rkey).
        Records of repositories removed in between show as deletes.
        """
        old = self.as_of(since)
        keys = ["did", "rev", "commit_cid", "status"]
        moved = (old.repos.select(keys).join(self.repos.select(keys), on="did", how="full",
                                             coalesce=True, suffix="_new")
                 .filter(pl.any_horizontal(pl.col(k).ne_missing(pl.col(f"{k}_new"))
                                           for k in keys[1:]))
                 .select("did").collect().get_column("did").to_list())
        columns = ["did", "collection", "rkey", "uri", "cid", "record"]
        before = old.records.filter(pl.col("did").is_in(moved)).select(columns)
        after = self.records.filter(pl.col("did").is_in(moved)).select(columns)
        joined = before.join(after, on=["did", "collection", "rkey", "uri"], how="full",
                             coalesce=True, suffix="_new")
        action = (pl.when(pl.col("cid").is_null()).then(pl.lit("create"))
                  .when(pl.col("cid_new").is_null()).then(pl.lit("delete"))
                  .when(pl.col("cid") != pl.col("cid_new")).then(pl.lit("update")))
        return (joined.with_columns(action.alias("action"))
                .filter(pl.col("action").is_not_null())
                .select(pl.col("did"), pl.col("collection"), pl.col("rkey"), pl.col("uri"),
                        pl.col("action"), pl.col("cid").alias("old_cid"),
                        pl.col("cid_new").alias("new_cid"),
                        pl.col("record_new").alias("record"),
                        pl.col("record").alias("old_record"))
                .sort("did", "collection", "rkey")
                .cast(CHANGES_SCHEMA))

    def write_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write this version as plain Parquet with a dataset card (README.md, dataset.json),
        for sharing; return ``path``.

        See :mod:`atrepo.dataset._share` for the layout. The copy needs no Delta reader.

        Raises:
            AtrepoError: ``path`` exists already.
        """
        from ._share import write_share

        return write_share(self, path)

    # -- display --------------------------------------------------------------------------

    def _summary(self) -> list[tuple[str, str]]:
        meta = self.meta
        when = meta.get("timestamp")
        stamp = "" if when is None else \
            datetime.fromtimestamp(when / 1000, timezone.utc).isoformat(timespec="seconds")
        collections = meta.get("collections")
        return [("path", str(self.path)), ("version", str(self.version)),
                ("committed", stamp), ("repos", f"{meta.get('repos', 0):,}"),
                ("records", f"{meta.get('records', 0):,}"),
                ("collections filter", "all" if collections is None else
                 ", ".join(collections)),
                ("hosts", ", ".join(meta.get("hosts", [])) or "-")]

    def __repr__(self) -> str:
        meta = self.meta
        return (f"<Dataset {self.path} version {self.version}: {meta.get('repos', 0):,} "
                f"repos, {meta.get('records', 0):,} records>")

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in self._summary())
        return f"<table><caption>atrepo.Dataset</caption>{cells}</table>"

