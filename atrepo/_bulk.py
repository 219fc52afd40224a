"""Bulk calls (``fetch_records``, ``export``): what runs for each repository, and the tally.

A bulk call is a *run*: one flow per named repository (:meth:`Run.flow`), run by the client
``max_concurrency`` at a time (:mod:`atrepo._io.bounded`); every outcome is handed to
:meth:`Run.record` as it comes in, one at a time, in the order the repositories finish
(each keeps its index ``i``, so results are assembled in input order), and when all are
in, the client sets ``last_errors`` from :meth:`Run.errors` and returns
:meth:`Run.result`. The clients differ only in how they run the flows (threads or tasks).

Words:

*recorded*
    An outcome the run has taken into its tally: a snapshot (or, in an export, a written
    repository or a skipped one) or an :class:`~atrepo.AtrepoError`. Any other exception is
    a bug and propagates.
*written*, *skipped*, *failed*
    In an export: a repository whose files are in place and recorded in the manifest by
    this run; one the manifest already held (not fetched again); one whose fetch ended in
    an AtrepoError (a row of ``errors``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

import polars as pl

from ._args import check_out_dir, check_source
from ._flows.effects import Flow
from ._pipeline import Pipeline
from .errors import AtrepoError, RepoUnavailable
from .export import Exporter, ExportReport
from .frames import concat_records, errors_frame, fetched_frame
from .snapshot import RepoSnapshot

__all__ = ["ExportRun", "FetchRun", "Run", "named"]

R = TypeVar("R")


def named(source: str | Iterable[str]) -> list[str] | None:
    """The repositories a bulk call names, or None when it names a host URL to list.

    Raises:
        UsageError: see :func:`~atrepo._args.check_source` (``"localhost:2583"`` is a
            host without its scheme, not a handle).
    """
    checked = check_source(source, argument="dids_or_handles_or_host")
    return None if isinstance(checked, str) else checked


class Run(ABC, Generic[R]):
    """One bulk call: its names, a flow per name, the errors tally, and its result."""

    desc: str  # what its progress bar says

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._errors: dict[int, tuple[str, str, str | None]] = {}

    @abstractmethod
    def flow(self, i: int) -> Flow[Any]:
        """The flow for repository ``i``."""

    @abstractmethod
    def record(self, i: int, outcome: Any) -> None:
        """Record repository ``i``'s outcome (a value of its flow, or an AtrepoError)."""

    def _failed(self, i: int, outcome: BaseException) -> None:
        """Record an AtrepoError as repository ``i``'s row of errors; re-raise anything else."""
        if not isinstance(outcome, AtrepoError):
            raise outcome
        status = outcome.status if isinstance(outcome, RepoUnavailable) else None
        did = getattr(outcome, "did", None) or self.names[i]
        self._errors[i] = (did, f"{type(outcome).__name__}: {outcome}", status)

    def errors(self) -> pl.DataFrame:
        """The ``last_errors`` frame: did, error, status of the repositories that failed."""
        return errors_frame(self._errors[i] for i in sorted(self._errors))

    @abstractmethod
    def result(self) -> R:
        """What the bulk call returns, once every outcome is recorded."""


class FetchRun(Run[pl.DataFrame]):
    """``fetch_records``: every repository's records, concatenated in input order.

    Each repository is fetched from the PDS its DID document names, whatever listed it;
    :meth:`fetched` says, per repository, where it was listed (``listed``, when the source
    said: a frame's ``host`` or ``pds`` column) and where it was fetched from.
    """

    desc = "fetching repos"

    def __init__(self, pipeline: Pipeline, names: Sequence[str],
                 collections: Sequence[str] | None,
                 listed: Sequence[str | None] | None = None) -> None:
        super().__init__(names)
        self._pipeline = pipeline
        self._collections = collections
        self._listed = list(listed) if listed is not None else [None] * len(self.names)
        self._frames: dict[int, pl.DataFrame] = {}
        self._snaps: dict[int, tuple[str, int, str]] = {}  # rev, records, source
        self._pds: dict[int, tuple[str, str | None]] = {}  # set by each flow as it resolves

    def flow(self, i: int) -> Flow[RepoSnapshot]:
        ident = yield from self._pipeline.resolve(self.names[i])
        self._pds[i] = (ident.did, ident.pds)
        return (yield from self._pipeline.fetch_latest(ident, self._collections))

    def record(self, i: int, outcome: RepoSnapshot | BaseException) -> None:
        if isinstance(outcome, RepoSnapshot):
            self._frames[i] = outcome.records
            self._snaps[i] = (outcome.rev, self._frames[i].height, outcome.source)
        else:
            self._failed(i, outcome)

    def result(self) -> pl.DataFrame:
        return concat_records([self._frames[i] for i in sorted(self._frames)])

    def fetched(self) -> pl.DataFrame:
        """The ``last_fetched`` frame: one row per repository, in input order."""
        rows = []
        for i, name in enumerate(self.names):
            did, pds = self._pds.get(i, (None, None))
            rev, records, source = self._snaps.get(i, (None, None, None))
            failed = self._errors.get(i)
            rows.append((did or (failed[0] if failed else name), self._listed[i], pds, rev,
                         records, source, failed[1] if failed else None))
        return fetched_frame(rows)


class ExportRun(Run[ExportReport]):
    """``export``: fetch and write every repository the manifest does not hold yet."""

    desc = "exporting"

    def __init__(self, pipeline: Pipeline, names: Sequence[str],
                 out_dir: str | os.PathLike[str], *, resume: bool,
                 collections: Sequence[str] | None) -> None:
        super().__init__(names)
        self._pipeline = pipeline
        self._collections = collections
        self._exporter = Exporter(check_out_dir(out_dir), resume=resume)
        self._report = ExportReport(self._exporter.out_dir)

    def flow(self, i: int) -> Flow[tuple[RepoSnapshot, str | None] | None]:
        """Resolve; fetch unless the manifest has the repository (then None)."""
        if self._exporter.has(self.names[i]):
            return None
        ident = yield from self._pipeline.resolve(self.names[i])
        if self._exporter.has(ident.did):
            return None
        snap = yield from self._pipeline.fetch_latest(ident, self._collections)
        return snap, ident.pds

    def record(self, i: int, outcome: tuple[RepoSnapshot, str | None] | None | BaseException
               ) -> None:
        """Record repository ``i``: written (snapshot, pds), skipped (None) or failed."""
        if outcome is None:
            self._report.skipped += 1
        elif isinstance(outcome, tuple):
            self._report.records += self._exporter.write(*outcome)
            self._report.written += 1
        else:
            self._failed(i, outcome)

    def result(self) -> ExportReport:
        self._report.errors = self.errors()
        return self._report
