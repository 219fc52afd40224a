"""DatasetWriter: commits batches of repositories to a dataset, one version per batch.

A batch touches up to three kinds of tables (records, the typed tables of its collections,
repos), and Delta Lake commits one table at a time. What makes a batch all-or-nothing
anyway — for readers and across a SIGKILL at any instant:

1. **Plan first.** Before any table is touched, the batch's ``repos`` rows and its plan
   (version, which DIDs and collections it replaces, which tables it touches) are written
   to ``_atrepo/pending`` (a temporary directory renamed into place, so it is whole or
   absent).
2. **Commit in a fixed order**: records, then the typed tables, then repos. Each commit
   replaces the batch's DIDs' rows in one Delta transaction tagged with the version.
3. **The repos table commits last**, so its newest version *is* the dataset's version:
   :class:`~atrepo.dataset.Dataset` reads every other table at the version matching it, and
   a reader never sees half a batch.
4. **Recovery** (when a writer opens and finds a plan): tables already holding the version
   are left alone (their transaction says so); if the records table does not hold it,
   nothing of the batch was committed and the plan is dropped (the next export fetches
   those repositories again); otherwise the missing typed tables are rebuilt from the
   committed records and the repos table from the plan.

A :class:`~atrepo.dataset.DatasetLock` keeps a second writer out while one is open.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import AtrepoError
from ..lexicon import lexicon_schema
from ..tables import records_table
from . import _delta
from ._batch import ACTIVE, Batch
from ._layout import REPOS_SCHEMA, Layout, in_list, table_exists
from ._lock import DatasetLock

__all__ = ["DatasetWriter", "normalized_collections"]


def normalized_collections(collections: Iterable[str] | None) -> list[str] | None:
    """The collections filter as a dataset records it: sorted, unique; None for all."""
    return None if collections is None else sorted(set(collections))


@dataclass(frozen=True)
class _Plan:
    """What one batch commits (written to ``_atrepo/pending`` before any table is touched)."""

    version: int
    reset: bool
    replaced: list[str]       # DIDs whose record rows are replaced
    collections: list[str]    # collections those rows are (or were) in
    typed: list[str]          # typed tables touched
    repos: list[str]          # DIDs whose repos rows are replaced
    touches_records: bool
    meta: dict[str, Any]      # the repos commit's metadata
    # DIDs the dataset held a repos row of before: only their rows can be there to remove
    # (None, in a plan written before this field: any DID may be held)
    held: list[str] | None = None

    def records_predicate(self) -> str | None:
        """The record rows this commit replaces; None: it only adds rows."""
        if not self._holds_any(self.replaced):
            return None
        return f"{in_list('did', self.replaced)} AND {in_list('collection', self.collections)}"

    def did_predicate(self, dids: list[str]) -> str | None:
        """The rows of ``dids`` this commit replaces; None: it only adds rows.

        A batch of DIDs the dataset never held (every batch of a fresh export) has no rows
        to remove, and is committed as an append: a predicate would have Delta look for its
        matches in every file whose DID range overlaps the batch's, a cost that grows with
        the table. A batch holding any DID seen before replaces by all its DIDs, because a
        replacing write's rows must all match its predicate.
        """
        return in_list("did", dids) if self._holds_any(dids) else None

    def _holds_any(self, dids: list[str]) -> bool:
        return bool(dids) and (self.held is None or not set(dids).isdisjoint(self.held))


class DatasetWriter:
    """The one writer of a dataset directory (see the module docstring).

    Args:
        root: the dataset directory (created when absent).
        collections: the collections filter of the export; an existing dataset must have
            been exported with the same one unless ``resume=False``.
        resume: False: the first commit replaces everything the dataset held (its history
            stays readable with ``as_of``).

    Raises:
        AtrepoError: another writer holds the dataset, or ``collections`` differs from the
            dataset's.
    """

    _held: set[str]        # the DIDs with a repos row (a superset after removals)
    _repos_total: int      # the totals of the newest version's metadata
    _records_total: int

    def __init__(self, root: str | os.PathLike[str], *,
                 collections: Iterable[str] | None = None, resume: bool = True) -> None:
        self.layout = Layout(root)
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self._lock = DatasetLock(self.layout.lock)
        try:
            self._recover()
            self.version = _delta.committed(self.layout.repos)
            self.collections = normalized_collections(collections)
            last = self._last_meta()
            if resume and last is not None and last.get("collections") != self.collections:
                raise _collections_differ(self.layout.root, last.get("collections"),
                                          self.collections)
            # a new dataset's first commit creates every table, as a reset would
            self._reset = not resume or self.version < 0
            self._continue_from(last)
            # set when a commit fails after writing its plan (see _settle)
            self._unsettled = False
        except BaseException:
            self._lock.release()
            raise

    # -- what the dataset holds -----------------------------------------------------------

    def known(self, dids: Sequence[str] | None = None) -> pl.DataFrame:
        """The ``repos`` rows of ``dids`` (None: all) as the next commit builds on them.

        Rows are looked up only when the dataset holds one of ``dids``: a batch of new
        repositories (every batch of a first export) reads nothing, where a scan would
        read every file of the ``repos`` table, one more with each commit.
        """
        self._settle()
        if self._reset or (dids is not None and self._held.isdisjoint(dids)):
            return pl.DataFrame(schema=REPOS_SCHEMA)
        repos = _delta.scan(self.layout.repos, None)
        if dids is not None:
            repos = repos.filter(pl.col("did").is_in(list(dids)))
        return repos.select(REPOS_SCHEMA.names()).collect()

    # -- committing -----------------------------------------------------------------------

    def commit(self, batch: Batch, *, hosts: Sequence[str] = ()) -> int | None:
        """Commit ``batch`` as the next version; return it (None: nothing to commit).

        Args:
            batch: the repositories of this commit.
            hosts: the hosts the export asked, recorded in the version's metadata.
        """
        if not batch.repos and not self._reset:
            return None
        return self._commit(batch, hosts)

    def finish(self, *, hosts: Sequence[str] = ()) -> int | None:
        """Commit what must be there even when no repository changed; return its version.

        A new dataset gets its (empty) tables, and a ``resume=False`` run that found no
        repository still empties the dataset.
        """
        if self._reset:
            return self._commit(Batch(), hosts)
        return None

    def _commit(self, batch: Batch, hosts: Sequence[str]) -> int:
        self._settle()
        version = self.version + 1
        if self._reset:   # compared against everything the reset removes
            prior = self._all_rows()
        else:
            prior = self.known(sorted(batch.dids))
        repos = _repos_rows(batch, pl.DataFrame(schema=REPOS_SCHEMA) if self._reset
                            else prior)
        records = batch.records_frame()
        plan = self._plan(version, batch, prior, repos, records, hosts)
        try:
            self._write_pending(plan, repos)
            self._apply(plan, records, _typed(records, plan.typed), repos)
            shutil.rmtree(self.layout.pending)
        except BaseException:
            self._unsettled = True   # part of the batch may be committed: see _settle
            raise
        self._held = (set() if self._reset else self._held) | set(plan.repos)
        self.version, self._reset = version, False
        self._repos_total, self._records_total = plan.meta["repos"], plan.meta["records"]
        return version

    def _plan(self, version: int, batch: Batch, prior: pl.DataFrame, repos: pl.DataFrame,
              records: pl.DataFrame, hosts: Sequence[str]) -> _Plan:
        replaced = batch.replaced
        held = prior.filter(pl.col("did").is_in(sorted(replaced)))
        old = set(held.get_column("collections").explode().drop_nulls().to_list())
        collections = old | set(records.get_column("collection").to_list())
        typed = {c for c in collections if lexicon_schema(c) is not None}
        if self._reset:
            typed |= set(self.layout.typed_tables())
        before, after = _active(prior), _active(repos)   # failed ones keep their prior row
        added = [did for did in after if did not in before]
        updated = [did for did in after if did in before and before[did] != after[did]]
        gone = [did for did in before if did not in after]
        if self._reset:
            repos_total, records_total = len(after), records.height
        else:
            repos_total = self._repos_total + len(added) - len(gone)
            records_total = (self._records_total + records.height
                             - int(held.get_column("records").sum() or 0))
        meta = {"operation": "reset" if self._reset and self.version >= 0 else "export",
                "collections": self.collections, "added": len(added),
                "updated": len(updated), "removed": len(gone), "repos": repos_total,
                "records": records_total, "hosts": sorted(set(hosts)),
                "atrepo": _atrepo_version(),
                "committed_at": datetime.now(timezone.utc).isoformat()}
        touches = (self._reset or not table_exists(self.layout.records)
                   or (bool(replaced) and bool(collections)))
        return _Plan(version=version, reset=self._reset, replaced=sorted(replaced),
                     # a reset rewrites every table whole: no rows to pick out
                     held=[] if self._reset else sorted(prior.get_column("did").to_list()),
                     collections=sorted(collections), typed=sorted(typed),
                     repos=sorted(batch.dids), touches_records=touches, meta=meta)

    def _apply(self, plan: _Plan, records: pl.DataFrame | None,
               typed: dict[str, pl.DataFrame], repos: pl.DataFrame, *,
               recovering: bool = False) -> None:
        """Commit the plan's tables in order.

        A recovery skips the tables that already hold the plan's version. A normal commit
        knows that none does (its version is new, and the lock keeps other writers out), so
        it loads no table to ask.
        """
        version, small = plan.version, {"operation": plan.meta["operation"]}

        def due(path: Path) -> bool:
            return not recovering or _delta.committed(path) < version

        if plan.touches_records and due(self.layout.records):
            assert records is not None  # recovery drops a plan whose records did not commit
            _delta.commit(self.layout.records, records, version=version, meta=small,
                          replace=plan.records_predicate(), reset=plan.reset,
                          partition_by=["collection"])
        for collection in plan.typed:
            path = self.layout.table(collection)
            if due(path):
                _delta.commit(path, typed[collection], version=version, meta=small,
                              replace=plan.did_predicate(plan.replaced), reset=plan.reset)
        if due(self.layout.repos):
            _delta.commit(self.layout.repos, repos, version=version, meta=plan.meta,
                          replace=plan.did_predicate(plan.repos), reset=plan.reset)

    # -- the pending plan -----------------------------------------------------------------

    def _write_pending(self, plan: _Plan, repos: pl.DataFrame) -> None:
        tmp = self.layout.meta / "pending.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        repos.write_parquet(tmp / "repos.parquet")
        (tmp / "plan.json").write_text(json.dumps(asdict(plan)))
        for name in ("repos.parquet", "plan.json"):
            _fsync(tmp / name)
        os.replace(tmp, self.layout.pending)
        _fsync(self.layout.meta)

    def _settle(self) -> None:
        """After a commit of this writer failed (a full disk, say), before it is used again:
        finish or drop that batch as a new writer would (:meth:`_recover`), and go on from
        what the dataset then holds.

        Without this, the next commit would fail on the plan the failed one left in
        ``_atrepo/pending``, and a caller could not retry the batch on the same writer.
        """
        if not self._unsettled:
            return
        self._recover()
        version = _delta.committed(self.layout.repos)
        if version > self.version:   # the recovery committed the rest of the batch
            self.version, self._reset = version, False
            self._continue_from(self._last_meta())
        self._unsettled = False

    def _continue_from(self, last: dict[str, Any] | None) -> None:
        """Take the totals and held DIDs from the dataset (``last``: its newest metadata)."""
        totals = {} if last is None or self._reset else last
        self._repos_total = int(totals.get("repos", 0))
        self._records_total = int(totals.get("records", 0))
        # a superset after removals: that costs a lookup
        self._held = set() if self._reset else self._held_dids()

    def _recover(self) -> None:
        """Finish or drop the batch a killed writer left (module docstring, step 4)."""
        shutil.rmtree(self.layout.meta / "pending.tmp", ignore_errors=True)
        if not (self.layout.pending / "plan.json").exists():
            shutil.rmtree(self.layout.pending, ignore_errors=True)
            return
        plan = _Plan(**json.loads((self.layout.pending / "plan.json").read_text()))
        if plan.touches_records and _delta.committed(self.layout.records) < plan.version:
            shutil.rmtree(self.layout.pending)   # nothing of it was committed
            return
        lagging = [c for c in plan.typed
                   if _delta.committed(self.layout.table(c)) < plan.version]
        records = pl.DataFrame()
        if lagging:
            records = (_delta.scan(self.layout.records, None)
                       .filter(pl.col("did").is_in(plan.replaced),
                               pl.col("collection").is_in(lagging)).collect())
        repos = pl.read_parquet(self.layout.pending / "repos.parquet")
        self._apply(plan, None, _typed(records, lagging), repos, recovering=True)
        shutil.rmtree(self.layout.pending)

    def _held_dids(self) -> set[str]:
        """The DIDs the ``repos`` table holds a row of."""
        if not table_exists(self.layout.repos):
            return set()
        dids = _delta.scan(self.layout.repos, None).select("did").collect()
        return set(dids.get_column("did").to_list())

    def _all_rows(self) -> pl.DataFrame:
        if not table_exists(self.layout.repos):
            return pl.DataFrame(schema=REPOS_SCHEMA)
        return _delta.scan(self.layout.repos, None).select(REPOS_SCHEMA.names()).collect()

    def _last_meta(self) -> dict[str, Any] | None:
        if self.version < 0:
            return None
        metas = [meta for _table_version, version, _when, meta in
                 _delta.history(self.layout.repos) if version == self.version]
        return next((meta for meta in reversed(metas) if meta is not None), None)

    def close(self) -> None:
        """Release the dataset (the lock)."""
        self._lock.release()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DatasetWriter {self.layout.root} version={self.version}>"


def _active(repos: pl.DataFrame) -> dict[str, tuple[str | None, str | None]]:
    """did -> (rev, commit_cid) of the rows whose records the dataset holds."""
    return {did: (rev, cid) for did, rev, cid, status in
            repos.select("did", "rev", "commit_cid", "status").rows() if status == ACTIVE}


def _repos_rows(batch: Batch, prior: pl.DataFrame) -> pl.DataFrame:
    """The batch's new repos rows: fetched and removed as given; failed ones keep their
    previous row with the error set (or get a row of their own)."""
    failed = batch.failed
    kept = prior.filter(pl.col("did").is_in(sorted(failed))).with_columns(
        pl.col("did").replace_strict(failed, return_dtype=pl.String).alias("error"))
    now = datetime.now(timezone.utc)
    new: list[tuple[Any, ...]] = [(did, None, None, None, None, None, None, 0, now, error, [])
           for did, error in sorted(failed.items()) if did not in set(kept["did"])]
    return pl.concat([batch.repos_frame(), kept,
                      pl.DataFrame(new, schema=REPOS_SCHEMA, orient="row")]).sort("did")


def _typed(records: pl.DataFrame, collections: Sequence[str]) -> dict[str, pl.DataFrame]:
    """The typed table rows of ``records`` for each of ``collections`` (all with a lexicon)."""
    out = {}
    for collection in collections:
        schema = lexicon_schema(collection)
        assert schema is not None   # only collections with a lexicon get a typed table
        if records.is_empty():
            out[collection] = pl.DataFrame(schema=schema)
        else:
            out[collection] = records_table(records, collection)[0]
    return out


def _collections_differ(root: Path, held: list[str] | None,
                        asked: list[str] | None) -> AtrepoError:
    def show(value: list[str] | None) -> str:
        return "all" if value is None else ",".join(value) or "none"

    return AtrepoError("this dataset was exported with other collections", path=root,
                       dataset=show(held), asked=show(asked),
                       hint="pass the dataset's collections= to bring it up to date, "
                            "resume=False to start it afresh with the new ones, or "
                            "another directory")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atrepo_version() -> str:
    from .. import __version__

    return __version__
