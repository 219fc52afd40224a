"""A batch: what one dataset commit changes, gathered wherever the repositories were fetched.

A :class:`Batch` is plain data (polars frames and tuples, so it pickles): a client's bulk
run fills one as repositories finish, and a remote worker can fill one just the same and
ship it to the process that owns the dataset, which hands it to
:meth:`~atrepo.dataset.DatasetWriter.commit`. Each repository is in a batch at most once
(the last word about a DID wins), so no commit can hold a repository's rows twice.

What a batch says about a repository, by the method that put it there:

* :meth:`Batch.add_snapshot` — fetched: its rows replace whatever the dataset held for it;
* :meth:`Batch.add_removed` — the host no longer serves it (deleted, deactivated, taken
  down, ...): its rows go, its ``repos`` row keeps the status;
* :meth:`Batch.add_failed` — this fetch failed: its rows stay as they were, its ``repos``
  row records the error (a later export tries again);
* :meth:`Batch.add_excluded` — never to be exported: its rows and its ``repos`` row go.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import polars as pl

from ..frames import export_frame
from ..snapshot import RepoSnapshot
from ._layout import RECORDS_SCHEMA, REPOS_SCHEMA

__all__ = ["ACTIVE", "Batch"]

ACTIVE = "active"  # the status of a repository whose records the dataset holds


class Batch:
    """The repositories of one commit (see the module docstring)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[Any, ...]] = {}      # did -> repos row (fetched, removed)
        self._records: dict[str, pl.DataFrame] = {}      # did -> its export rows (fetched)
        self._failed: dict[str, str] = {}                # did -> error
        self._excluded: set[str] = set()

    def _forget(self, did: str) -> None:
        self._rows.pop(did, None)
        self._records.pop(did, None)
        self._failed.pop(did, None)
        self._excluded.discard(did)

    def add_snapshot(self, snap: RepoSnapshot, *, pds: str | None,
                     handle: str | None = None) -> int:
        """Add a fetched repository; return its number of rows."""
        self._forget(snap.did)
        frame = export_frame(snap.records, rev=snap.rev, commit_cid=snap.commit_cid,
                             verified=snap.verified, pds=pds, fetched_at=snap.fetched_at)
        collections = sorted(set(frame.get_column("collection").to_list()))
        self._records[snap.did] = frame
        self._rows[snap.did] = (snap.did, handle or snap.handle, pds, snap.rev,
                                snap.commit_cid, snap.verified, ACTIVE, frame.height,
                                snap.fetched_at, None, collections)
        return frame.height

    def add_removed(self, did: str, status: str, *, pds: str | None = None,
                    checked_at: datetime | None = None) -> None:
        """Add a repository its host no longer serves, and why (``status``)."""
        self._forget(did)
        when = checked_at or datetime.now(timezone.utc)
        self._rows[did] = (did, None, pds, None, None, None, status, 0, when, None, [])

    def add_failed(self, did: str, error: str) -> None:
        """Add a repository whose fetch failed: its rows stay, the error is recorded."""
        self._forget(did)
        self._failed[did] = error

    def add_excluded(self, did: str) -> None:
        """Add a repository that must not be in the dataset at all."""
        self._forget(did)
        self._excluded.add(did)

    def extend(self, other: Batch) -> None:
        """Take in every repository of ``other`` (its word wins where both name a DID)."""
        for did, row in other._rows.items():
            self._forget(did)
            self._rows[did] = row
            if did in other._records:
                self._records[did] = other._records[did]
        for did, error in other._failed.items():
            self.add_failed(did, error)
        for did in other._excluded:
            self.add_excluded(did)

    # -- what the writer reads ------------------------------------------------------------

    @property
    def repos(self) -> int:
        """How many repositories the batch names."""
        return len(self._rows) + len(self._failed) + len(self._excluded)

    @property
    def rows(self) -> int:
        """How many record rows the batch holds."""
        return sum(frame.height for frame in self._records.values())

    @property
    def dids(self) -> set[str]:
        """Every DID the batch names."""
        return set(self._rows) | set(self._failed) | self._excluded

    @property
    def replaced(self) -> set[str]:
        """DIDs whose record rows the commit replaces (fetched, removed, excluded)."""
        return set(self._rows) | self._excluded

    @property
    def failed(self) -> dict[str, str]:
        """DID -> error of the repositories whose fetch failed."""
        return dict(self._failed)

    @property
    def excluded(self) -> set[str]:
        """DIDs that must leave the dataset."""
        return set(self._excluded)

    def records_frame(self) -> pl.DataFrame:
        """Every fetched repository's rows, sorted by (collection, did, rkey).

        Sorted so that a file's statistics narrow its collection and DIDs, which lets
        readers and the next refresh's deletes skip files.
        """
        if not self._records:
            return pl.DataFrame(schema=RECORDS_SCHEMA)
        return pl.concat(self._records.values()).sort("collection", "did", "rkey")

    def repos_frame(self) -> pl.DataFrame:
        """The ``repos`` rows of fetched and removed repositories, sorted by did."""
        rows = [self._rows[did] for did in sorted(self._rows)]
        return pl.DataFrame(rows, schema=REPOS_SCHEMA, orient="row")

    def __repr__(self) -> str:
        return (f"<Batch {len(self._records)} fetched, {len(self._rows) - len(self._records)} "
                f"removed, {len(self._failed)} failed, {len(self._excluded)} excluded; "
                f"{self.rows:,} rows>")
