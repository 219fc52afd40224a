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
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..errors import AtrepoError, RepoUnavailable
from ..frames import errors_frame
from ..snapshot import RepoSnapshot
from ..syntax import is_did
from ._batch import ACTIVE, Batch
from ._maintain import compact_tables
from ._writer import DatasetWriter

__all__ = ["BATCH_RECORDS", "BATCH_REPOS", "DatasetExport", "ExportReport", "Target"]

# a commit (one dataset version, one Parquet file per collection touched) is made when a
# batch reaches either bound: files of ~10-100 MB, and at most this much held in memory
BATCH_REPOS = 1000
BATCH_RECORDS = 200_000


@dataclass(frozen=True)
class Target:
    """One repository an export's source names.

    Attributes:
        name: a DID or handle.
        rev: the revision its host lists (``listRepos``), when known.
        head: the commit CID its host lists, when known.
        status: why its host lists it as inactive (``deactivated``, ...); None when active
            or not listed.
    """

    name: str
    rev: str | None = None
    head: str | None = None
    status: str | None = None


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
        self.exclude = {exclude} if isinstance(exclude, str) else set(exclude or ())
        for did in self.exclude:
            if not is_did(did):
                raise AtrepoError("exclude= takes DIDs", value=did,
                                  hint="resolve handles first: client.resolve(h).did")
        if batch_repos < 1 or batch_records < 1:
            raise AtrepoError("batch sizes must be at least 1", batch_repos=batch_repos,
                              batch_records=batch_records)
        self.writer = DatasetWriter(out_dir, collections=collections, resume=resume)
        self.hosts = [h.rstrip("/") for h in hosts]
        self._limits = (batch_repos, batch_records)
        self._held = {did: (rev, cid, status, error) for did, rev, cid, status, error in
                      self.writer.known().select("did", "rev", "commit_cid", "status",
                                                 "error").rows()}
        self._pds = dict(self.writer.known().select("did", "pds").rows())
        self._errors: list[tuple[str, str, str | None]] = []
        self.batch = Batch()
        self.report = ExportReport(self.writer.layout.root)

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
                work.append(Target(did))
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
        """Commit what is left, release the dataset, and return the report."""
        try:
            self.commit()
            version = self.writer.finish(hosts=self.hosts)
            if version is not None:
                self.report.commits += 1
            if self.report.commits:   # many refreshes leave many small files
                compact_tables(self.writer.layout)
            self.report.version = self.writer.version
            self.report.errors = self.errors()
        finally:
            self.writer.close()
        return self.report

    def close(self) -> None:
        """Release the dataset without committing (the run ended in an exception)."""
        self.writer.close()
