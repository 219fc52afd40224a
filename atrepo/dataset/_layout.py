"""Where a dataset keeps what: the Delta tables, the bookkeeping, and their schemas.

A dataset directory holds one Delta Lake table per kind of row, and one folder of
bookkeeping that no table reader looks into::

    records/                  every record: the ``records`` columns plus provenance,
                              partitioned by collection (:data:`RECORDS_SCHEMA`)
    repos/                    one row per repository (:data:`REPOS_SCHEMA`)
    tables/<collection>/      one typed table per collection with a lexicon
                              (:func:`atrepo.tables.records_table`)
    _atrepo/                  the writer's lock and the batch being committed

Every commit atrepo makes to a table carries the *dataset version* it belongs to twice:
as a Delta application transaction (``txn`` action, app id :data:`APP_ID`), which says
which batches a table holds, and in the commit's ``atrepo`` metadata (JSON), which maps
table versions back to dataset versions for time travel.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import AtrepoError
from ..frames import EXPORT_SCHEMA

__all__ = ["APP_ID", "RECORDS_SCHEMA", "REPOS_SCHEMA", "Layout", "commit_meta",
           "in_list", "table_exists"]

APP_ID = "atrepo"  # the application id of every Delta transaction atrepo commits
META_KEY = "atrepo"  # the commit-metadata key holding atrepo's JSON

RECORDS_SCHEMA = EXPORT_SCHEMA
REPOS_SCHEMA = pl.Schema({
    "did": pl.String(), "handle": pl.String(), "pds": pl.String(), "rev": pl.String(),
    "commit_cid": pl.String(), "verified": pl.Boolean(),
    # "active" when its records are in the dataset; otherwise why not (deactivated,
    # takendown, suspended, deleted, not_found, ...), or null when it never could be fetched
    "status": pl.String(), "records": pl.Int64(), "fetched_at": pl.Datetime("us", "UTC"),
    # the last fetch's failure, kept beside the rows of the fetch before it
    "error": pl.String(),
    "collections": pl.List(pl.String()),   # the collections its records are in
})


class Layout:
    """The paths of one dataset directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.records = self.root / "records"
        self.repos = self.root / "repos"
        self.tables = self.root / "tables"
        self.meta = self.root / "_atrepo"
        self.lock = self.meta / "lock"
        self.pending = self.meta / "pending"

    def table(self, collection: str) -> Path:
        """The typed table of ``collection``."""
        return self.tables / collection

    def typed_tables(self) -> list[str]:
        """The collections that have a typed table, sorted."""
        if not self.tables.is_dir():
            return []
        return sorted(p.name for p in self.tables.iterdir() if table_exists(p))

    def is_dataset(self) -> bool:
        """Whether a dataset was ever committed here (its repos table exists)."""
        return table_exists(self.repos)

    def check_dataset(self) -> None:
        """Raise unless this directory holds a dataset.

        Raises:
            AtrepoError: no ``repos`` table (not an atrepo dataset, or nothing committed yet).
        """
        if not self.is_dataset():
            hint = ("client.export(...) writes one" if not self.root.exists() else
                    "an export into this directory has not committed its first batch yet")
            raise AtrepoError("no atrepo dataset here", path=self.root, hint=hint)


def table_exists(path: Path) -> bool:
    """Whether ``path`` is a Delta table: its log has a commit, or a checkpoint (a log
    cleaned up past its old commits may keep only the newest checkpoint)."""
    log = path / "_delta_log"
    return log.is_dir() and any(name.endswith(".json") or ".checkpoint." in name
                                for name in os.listdir(log))


def in_list(column: str, values: Iterable[str]) -> str:
    """A SQL predicate ``column IN ('a', 'b')``, quotes escaped; ``FALSE`` when empty."""
    quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in sorted(set(values)))
    return f"{column} IN ({quoted})" if quoted else "FALSE"


def commit_meta(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """atrepo's metadata of one Delta history entry, or None for a commit atrepo did not make."""
    raw = entry.get(META_KEY)
    if not isinstance(raw, str):
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("version"), int):
        return None
    return {str(key): value for key, value in meta.items()}
