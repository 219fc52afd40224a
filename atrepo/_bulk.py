"""Bulk calls (``fetch_records``, ``export``): what runs for each repository, and the tally.

A bulk call is a *run*: one flow per named repository (:meth:`Run.flow`), run by the client
``max_concurrency`` at a time (:mod:`atrepo._io.bounded`); every outcome is handed to
:meth:`Run.record` as it comes in, one at a time, in the order the repositories finish
(each keeps its index ``i``, so results are assembled in input order), and when all are
in, the client sets ``last_errors`` from :meth:`Run.errors` and returns
:meth:`Run.result`. The clients differ only in how they run the flows (threads or tasks).

Words:

*recorded*
    An outcome the run has taken into its tally: a snapshot (or, in an export, a fetched,
    unchanged or excluded repository) or an :class:`~atrepo.AtrepoError`. Any other
    exception is a bug and propagates.
*written*, *skipped*, *removed*, *failed*
    In an export (see :class:`~atrepo.dataset.DatasetExport`): a repository fetched and
    committed by this run; one at the commit the dataset holds (nothing downloaded); one
    whose rows this run removed; one whose fetch ended in an AtrepoError (a row of
    ``errors``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import polars as pl

from . import _flows as flows
from ._flows.effects import Flow
from ._pipeline import Pipeline
from .dataset import DatasetExport, ExportReport, Target
from .errors import AtrepoError, RepoUnavailable
from .frames import concat_records, errors_frame, fetched_frame
from .snapshot import RepoSnapshot

__all__ = ["Excluded", "ExportRun", "FetchRun", "Fetched", "Run", "Unchanged"]

R = TypeVar("R")


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


@dataclass(frozen=True, slots=True)
class Fetched:
    """An export's repository, fetched: its snapshot and where it came from."""

    snap: RepoSnapshot
    pds: str | None
    handle: str | None


@dataclass(frozen=True, slots=True)
class Unchanged:
    """An export's repository, at the commit the dataset holds: nothing downloaded."""

    did: str


@dataclass(frozen=True, slots=True)
class Excluded:
    """An export's repository whose name resolved to an excluded DID: not fetched."""

    did: str


class ExportRun(Run[ExportReport]):
    """``export``: visit each target the dataset cannot decide alone, and hand it the outcome.

    The dataset side (:class:`~atrepo.dataset.DatasetExport`) plans the targets (the
    listing decides unchanged, inactive and excluded repositories without a request),
    turns each recorded outcome into its batch and commits batch by batch.
    """

    desc = "exporting"

    def __init__(self, pipeline: Pipeline, dataset: DatasetExport, targets: Sequence[Target],
                 collections: Sequence[str] | None) -> None:
        self._targets = dataset.plan(targets)
        super().__init__([target.name for target in self._targets])
        self._pipeline = pipeline
        self._dataset = dataset
        self._collections = collections

    def flow(self, i: int) -> Flow[Fetched | Unchanged | Excluded]:
        """Resolve; ask getLatestCommit unless the host listed the rev; fetch if changed."""
        target = self._targets[i]
        ident = yield from self._pipeline.resolve(target.name)
        if self._dataset.is_excluded(ident.did):
            return Excluded(ident.did)
        head = None
        if target.rev is None:   # not listed: one small request says whether it changed
            head = yield from flows.get_latest_commit(
                Pipeline._pds(ident), ident.did, policy=self._pipeline.config.retry)
            if self._dataset.holds(ident.did, head[1], head[0]):
                return Unchanged(ident.did)
        elif target.head is not None and _same_host(target.host, ident.pds):
            head = target.head, target.rev   # its own PDS listed it: no need to ask again
        # the pipeline takes that answer instead of asking again
        snap = yield from self._pipeline.fetch_latest(ident, self._collections, head=head)
        return Fetched(snap, ident.pds, ident.handle)

    def record(self, i: int, outcome: Fetched | Unchanged | Excluded | BaseException) -> None:
        """Hand repository ``i``'s outcome to the dataset (which may commit a batch)."""
        if isinstance(outcome, Fetched):
            self._dataset.fetched(outcome.snap, pds=outcome.pds, handle=outcome.handle)
        elif isinstance(outcome, Unchanged):
            self._dataset.unchanged(outcome.did)
        elif isinstance(outcome, Excluded):
            self._dataset.excluded(outcome.did)
        elif isinstance(outcome, AtrepoError):
            self._dataset.failed(self.names[i], outcome)
        else:
            raise outcome

    def errors(self) -> pl.DataFrame:
        return self._dataset.errors()

    def result(self) -> ExportReport:
        return self._dataset.finish()


def _same_host(listed: str | None, pds: str | None) -> bool:
    """Whether a listing's host is the PDS a repository's DID document names (a listing
    of another host, one the account has left, may be stale)."""
    return listed is not None and pds is not None and listed.rstrip("/") == pds.rstrip("/")
