"""One export call's side of a dataset: what to fetch, what each outcome changes, commits.

:class:`DatasetExport` knows what the dataset holds (its ``repos`` rows) and turns what
an export learns about each repository into batches (:class:`~atrepo.dataset.Batch`),
committing one whenever it holds ``batch_repos`` repositories or ``batch_records`` rows.
It does no network I/O: a client's bulk run (or a distributed driver, with workers doing
the fetching) asks it which targets need a visit, runs those, and hands it the outcomes.

What an export does with each repository (the dataset is the reference):

* named in ``exclude``: never fetched; its rows and ``repos`` row leave the dataset;
* listed inactive by its host (``listRepos`` status): its rows leave, its status is
  recorded, no request is made;
* listed, or found by ``getLatestCommit``, at the commit the dataset holds: unchanged,
  nothing downloaded (*skipped*);
* otherwise fetched (incrementally where the client's store has it) and its rows replaced;
* the host will not serve it (:class:`~atrepo.RepoUnavailable`): its rows leave, the
  status is recorded;
* any other failure: its rows stay as they were and the error is recorded in ``repos``;
  the next export tries again.

Because the dataset itself records every commit, a re-run after an interruption finds
what was committed unchanged and continues with the rest.

An export can also run in parts elsewhere (on a Dask cluster, see :mod:`atrepo._dask`):
:meth:`DatasetExport.shard` packs some planned targets with what the dataset holds of them
into a :class:`Shard` (plain data), a :class:`ShardExport` on the worker makes the same
decisions over it and ships its batches back as a :class:`ShardResult`, and
:meth:`DatasetExport.merge` applies each result once, committing by the same batch bounds.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import polars as pl

from ..errors import AtrepoError, RepoUnavailable
from ..frames import errors_frame
from ..snapshot import RepoSnapshot
from ..syntax import is_did
from ._batch import ACTIVE, Batch
from ._maintain import compact_tables
from ._writer import DatasetWriter

__all__ = ["BATCH_RECORDS", "BATCH_REPOS", "DatasetExport", "ExportReport", "Shard",
           "ShardExport", "ShardResult", "Target"]

# a commit (one dataset version, one Parquet file per collection touched) is made when a
# batch reaches either bound. Committing costs a few KB per record for a moment (the typed
# tables and the Delta writes), so these bound an export's peak memory whatever its size;
# the small files of many commits are compacted when the export ends
BATCH_REPOS = 100
BATCH_RECORDS = 50_000


@dataclass(frozen=True)
class Target:
    """One repository an export's source names.

    Attributes:
        name: a DID or handle.
        rev: the revision its host lists (``listRepos``), when known.
        head: the commit CID its host lists, when known.
        status: why its host lists it as inactive (``deactivated``, ...); None when active
            or not listed.
        host: the host that listed it (a listing's host, a frame's ``host`` or ``pds``),
            when known; a distributed export splits its work by it.
    """

    name: str
    rev: str | None = None
    head: str | None = None
    status: str | None = None
    host: str | None = None


# what the dataset holds of a DID: rev, commit_cid, status, error (its repos row)
Held: TypeAlias = tuple[str | None, str | None, str | None, str | None]
Error: TypeAlias = tuple[str, str, str | None]   # did, error, status (a row of errors)


@dataclass(frozen=True)
class Shard:
    """A part of an export to run elsewhere: plain data, so it pickles (no settings, no
    secrets: those travel apart).

    Attributes:
        id: names the shard; a result is applied once per id.
        targets: the targets to visit (planned already).
        held: what the dataset holds of the DIDs the targets name (or whose handle they
            are), by DID.
        pds: the ``pds`` the dataset records for those DIDs.
    """

    id: str
    targets: tuple[Target, ...]
    held: dict[str, Held]
    pds: dict[str, str | None]


@dataclass
class ShardResult:
    """What a shard did: its batches (each within the export's bounds), counts and errors."""

    id: str
    batches: list[Batch]
    written: int
    skipped: int
    removed: int
    records: int
    errors: list[Error]


@dataclass
class ExportReport:
    """What an export did to its dataset.

    Attributes:
        out_dir: the dataset directory (``atrepo.open_dataset(out_dir)`` reads it).
        written: repositories fetched and committed by this call.
        skipped: repositories unchanged since the dataset's version (nothing downloaded).
        removed: repositories whose rows this call removed (no longer served, or excluded).
        records: record rows committed by this call.
        version: the dataset version after the call.
        commits: versions this call committed.
        errors: repositories that failed: did, error, status.
    """

    out_dir: Path
    written: int = 0
    skipped: int = 0
    removed: int = 0
    records: int = 0
    version: int | None = None
    commits: int = 0
    errors: pl.DataFrame = field(default_factory=lambda: errors_frame([]))

    def _rows(self) -> list[tuple[str, str]]:
        return [("dataset", str(self.out_dir)), ("version", str(self.version)),
                ("repos written", f"{self.written:,}"),
                ("repos unchanged (skipped)", f"{self.skipped:,}"),
                ("repos removed", f"{self.removed:,}"),
                ("records written", f"{self.records:,}"), ("commits", f"{self.commits:,}"),
                ("repos failed", f"{self.errors.height:,}")]

    def __repr__(self) -> str:
        return (f"<ExportReport {self.out_dir} version {self.version}: {self.written} repos "
                f"written, {self.skipped} unchanged, {self.removed} removed, "
                f"{self.records:,} records, {self.errors.height} failed>")

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in self._rows())
        return f"<table><caption>atrepo.ExportReport</caption>{cells}</table>"


class DatasetExport:
    """An export call's dataset side (see the module docstring).

    Args:
        out_dir: the dataset directory.
        collections: the export's collections filter (must be the dataset's unless
            ``resume=False``).
        resume: False starts the dataset afresh (its first commit replaces everything).
        exclude: DIDs that must never be in the dataset.
        hosts: the hosts the source names (recorded with every version).
        batch_repos: commit when a batch holds this many repositories.
        batch_records: commit when a batch holds this many record rows.

    Raises:
        AtrepoError: an ``exclude`` entry is not a DID; or as :class:`DatasetWriter`.
    """

    def __init__(self, out_dir: str | os.PathLike[str], *,
                 collections: Sequence[str] | None = None, resume: bool = True,
                 exclude: Iterable[str] | None = None, hosts: Sequence[str] = (),
                 batch_repos: int = BATCH_REPOS, batch_records: int = BATCH_RECORDS) -> None:
        exclude = {exclude} if isinstance(exclude, str) else set(exclude or ())
        for did in exclude:
            if not is_did(did):
                raise AtrepoError("exclude= takes DIDs", value=did,
                                  hint="resolve handles first: client.resolve(h).did")
        if batch_repos < 1 or batch_records < 1:
            raise AtrepoError("batch sizes must be at least 1", batch_repos=batch_repos,
                              batch_records=batch_records)
        self.writer = DatasetWriter(out_dir, collections=collections, resume=resume)
        known = self.writer.known()
        self._start(self.writer.layout.root, exclude, (batch_repos, batch_records),
                    held={did: (rev, cid, status, error) for did, rev, cid, status, error in
                          known.select("did", "rev", "commit_cid", "status", "error").rows()},
                    pds=dict(known.select("did", "pds").rows()),
                    hosts=[h.rstrip("/") for h in hosts])
        self._handles = {handle: did for did, handle in known.select("did", "handle").rows()
                         if handle is not None}
        self._applied: set[str] = set()

    def _start(self, root: Path, exclude: set[str], limits: tuple[int, int], *,
               held: dict[str, Held], pds: dict[str, str | None],
               hosts: list[str] | None = None) -> None:
        """Set up what every export side keeps: the held rows, the batch, the tally."""
        self.exclude = exclude
        self.hosts = hosts or []
        self._limits = limits
        self._held = held
        self._pds = pds
        self._errors: list[Error] = []
        self.batch = Batch()
        self.report = ExportReport(root)

    # -- planning -------------------------------------------------------------------------

    def plan(self, targets: Iterable[Target]) -> list[Target]:
        """The targets that need a visit; decides the rest from the listing alone.

        Excluded DIDs present in the dataset are removed; listed-inactive repositories are
        removed with their status; listed ones at the dataset's commit are skipped. For a
        host source, repositories the dataset holds from that host but the listing no
        longer names are added, so that a deleted account's rows go too.
        """
        work: list[Target] = []
        seen: set[str] = set()
        for target in targets:
            seen.add(target.name)
            if target.name in self.exclude:
                continue
            if target.status is not None:
                self._unavailable(target.name, target.status)
            elif target.rev is not None and self._holds(target.name, target.rev,
                                                        target.head):
                self.report.skipped += 1
            else:
                work.append(target)
        for did in sorted(self.exclude & set(self._held)):
            self._excluded(did)
        for did, pds in sorted(self._pds.items()):
            if pds is not None and pds.rstrip("/") in self.hosts and did not in seen and \
                    did not in self.exclude and self._held[did][2] == ACTIVE:
                work.append(Target(did, host=pds))
        # in DID order, so that each commit's files cover a narrow range of DIDs and a later
        # refresh's replacements rewrite few of them (file statistics on did)
        return sorted(work, key=lambda target: target.name)

    def is_excluded(self, did: str) -> bool:
        """Whether ``did`` must not be exported (a handle resolves to it)."""
        return did in self.exclude

    def holds(self, did: str, rev: str, commit_cid: str | None) -> bool:
        """Whether the dataset holds ``did`` at this commit (with no error pending)."""
        return self._holds(did, rev, commit_cid)

    def _holds(self, did: str, rev: str, commit_cid: str | None) -> bool:
        held = self._held.get(did)
        if held is None:
            return False
        held_rev, held_cid, status, error = held
        return (status == ACTIVE and error is None and held_rev == rev
                and (commit_cid is None or held_cid == commit_cid))

    def _unavailable(self, did: str, status: str) -> None:
        """Its host does not serve ``did``: remove its rows, unless that is recorded."""
        held = self._held.get(did)
        if held is not None and held[2] == status:
            self.report.skipped += 1   # already recorded as such
            return
        self._removed(did, status)

    # -- outcomes -------------------------------------------------------------------------

    def fetched(self, snap: RepoSnapshot, *, pds: str | None, handle: str | None) -> None:
        """A repository was fetched: its rows replace the dataset's."""
        if snap.did in self.exclude:
            self._excluded(snap.did)
            return
        self.report.records += self.batch.add_snapshot(snap, pds=pds, handle=handle)
        self.report.written += 1
        self._after_add()

    def unchanged(self, did: str) -> None:
        """A repository is at the commit the dataset holds."""
        self.report.skipped += 1

    def excluded(self, did: str) -> None:
        """A named repository turned out to be an excluded DID."""
        self._excluded(did)

    def _excluded(self, did: str) -> None:
        if did in self._held:
            if self._held[did][2] == ACTIVE:
                self.report.removed += 1
            self.batch.add_excluded(did)
            self._after_add()

    def failed(self, name: str, error: AtrepoError) -> None:
        """A repository could not be fetched: removed if its host will not serve it, else
        its rows stay and the error is recorded."""
        did = getattr(error, "did", None) or name
        status = error.status if isinstance(error, RepoUnavailable) else None
        self._errors.append((did, f"{type(error).__name__}: {error}", status))
        if not is_did(did) or did in self.exclude:
            return   # a name that never resolved has nothing in the dataset
        if status is not None:
            self._unavailable(did, status)
        else:
            self.batch.add_failed(did, f"{type(error).__name__}: {error}")
            self._after_add()

    def _removed(self, did: str, status: str) -> None:
        if self._held.get(did, (None, None, None, None))[2] == ACTIVE:
            self.report.removed += 1
        self.batch.add_removed(did, status, pds=self._pds.get(did))
        self._after_add()

    def _after_add(self) -> None:
        repos, records = self._limits
        if self.batch.repos >= repos or self.batch.rows >= records:
            self.commit()

    def commit(self) -> None:
        """Commit the batch so far (a no-op when it is empty)."""
        version = self.writer.commit(self.batch, hosts=self.hosts)
        self.batch = Batch()
        if version is not None:
            self.report.commits += 1
            self.report.version = version

    def errors(self) -> pl.DataFrame:
        """The ``last_errors`` frame of this export."""
        return errors_frame(self._errors)

    def finish(self) -> ExportReport:
        """Commit what is left, merge the tables' small files (after several batches, or
        once many refreshes left many), release the dataset, and return the report."""
        try:
            self.commit()
            version = self.writer.finish(hosts=self.hosts)
            if version is not None:
                self.report.commits += 1
            if self.report.commits:
                # an export of several batches left a file per batch in each partition, and
                # many refreshes leave many small files: merge them for the readers
                compact_tables(self.writer.layout, only_if_needed=self.report.commits < 2)
            self.report.version = self.writer.version
            self.report.errors = self.errors()
        finally:
            self.writer.close()
        return self.report

    def close(self) -> None:
        """Release the dataset without committing (the run ended in an exception)."""
        self.writer.close()

    # -- parts run elsewhere --------------------------------------------------------------

    @property
    def bounds(self) -> tuple[int, int]:
        """The batch bounds: (``batch_repos``, ``batch_records``)."""
        return self._limits

    def shard(self, id: str, targets: Sequence[Target]) -> Shard:
        """Pack planned ``targets`` with what the dataset holds of them into a :class:`Shard`.

        A target named by handle carries the row of the DID the dataset last saw with that
        handle; the worker uses it only if the handle still resolves to that DID.
        """
        dids = {self._handles.get(t.name, t.name) for t in targets}
        return Shard(id, tuple(targets),
                     held={did: self._held[did] for did in dids if did in self._held},
                     pds={did: self._pds[did] for did in dids if did in self._pds})

    def merge(self, result: ShardResult) -> bool:
        """Apply a shard's result once (False: a result of that shard was applied already).

        Its batches join the current batch and are committed by the same bounds as local
        outcomes: the batch is committed first when one would take it past a bound.
        """
        if result.id in self._applied:
            return False
        self._applied.add(result.id)
        repos, records = self._limits
        for part in result.batches:
            if self.batch.repos and (self.batch.repos + part.repos > repos
                                     or self.batch.rows + part.rows > records):
                self.commit()
            self.batch.extend(part)
            self._after_add()
        self.report.written += result.written
        self.report.skipped += result.skipped
        self.report.removed += result.removed
        self.report.records += result.records
        self._errors.extend(result.errors)
        return True


class ShardExport(DatasetExport):
    """A shard's export side on a worker: the decisions of :class:`DatasetExport` over the
    rows the shard carries, with each full batch kept to ship back instead of committed.

    Args:
        shard: the part to run.
        exclude: the export's ``exclude`` DIDs (a name may resolve to one).
        batch_repos: cut a batch at this many repositories (the export's bound).
        batch_records: cut a batch at this many record rows.
    """

    def __init__(self, shard: Shard, *, exclude: frozenset[str], batch_repos: int,
                 batch_records: int) -> None:
        self._start(Path(shard.id), set(exclude), (batch_repos, batch_records),
                    held=dict(shard.held), pds=dict(shard.pds))
        self.id = shard.id
        self.shipped: list[Batch] = []

    def plan(self, targets: Iterable[Target]) -> list[Target]:
        """The shard's targets as they are: the dataset's side planned them."""
        return list(targets)

    def commit(self) -> None:
        """Keep the batch so far for the result (nothing is written here)."""
        if self.batch.repos:
            self.shipped.append(self.batch)
        self.batch = Batch()

    def finish(self) -> ExportReport:
        """Keep what is left; return the shard's tally (its errors included)."""
        self.commit()
        self.report.errors = self.errors()
        return self.report

    def result(self) -> ShardResult:
        """The shard's result, once :meth:`finish` ran."""
        report = self.report
        return ShardResult(self.id, self.shipped, written=report.written,
                           skipped=report.skipped, removed=report.removed,
                           records=report.records, errors=list(self._errors))

    def close(self) -> None:
        """Nothing to release: a shard holds no dataset."""
