"""Client and AsyncClient: one core (:class:`_BaseClient`), two thin drivers.

Every operation is written once, below the clients: the way of one repository in
:mod:`atrepo._pipeline`, listings in :mod:`atrepo._listing`, bulk calls in
:mod:`atrepo._bulk`, all as generator flows that yield network effects (HTTP requests, DNS
lookups, sleeps) and do their local work in between. :class:`Client` runs flows with
``run_sync`` over an ``httpx.Client`` and never touches asyncio, so it works inside a
running Jupyter event loop; :class:`AsyncClient` runs the same flows with ``run_async``
over an ``httpx.AsyncClient``. The public methods of the two differ only in
``def``/``async def`` and in the driver that runs the flows.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from contextlib import AbstractContextManager
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

import httpx
import polars as pl

from . import _dask, _listing, tables
from ._args import (check_after, check_collection, check_collections, check_flag, check_host,
                    check_limit, check_names, check_out_dir, framed_names)
from ._bulk import ExportRun, FetchRun, Run
from ._config import DEFAULTS, client_config
from ._flows import identity as identity_flows
from ._flows.effects import Flow
from .retry import RateLimit, RetryPolicy
from ._io.dns import AsyncDnsResolver, AsyncSystemDnsResolver, DnsResolver, SystemDnsResolver
from ._io.bounded import arun_bounded, run_bounded
from ._io.http import run_async, run_sync
from ._io.limits import AsyncHostLimits, HostLimits
from ._pipeline import Pipeline
from ._progress import Progress, progress
from .errors import AtrepoError, ClientClosed, UsageError
from .export import (BATCH_RECORDS, BATCH_REPOS, DatasetExport, ExportReport, Target,
                     listed_target, source_targets)
from ._flows.listing import HostRef
from ._flows.plc import PlcOp
from .frames import dids_frame, errors_frame, fetched_frame
from .identity import Identity
from .repos import RepoRef
from .snapshot import RepoSnapshot
from .tables import collections_for, diff_table

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")


class _BaseClient:
    """Configuration, the pipeline and the work shared by Client and AsyncClient."""

    _http: httpx.Client | httpx.AsyncClient

    def __init__(self, *, plc_url: str | None = None, handle_resolver: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None,
                 timeout: float = DEFAULTS.timeout, body_timeout: float = DEFAULTS.body_timeout,
                 max_concurrency: int = DEFAULTS.max_concurrency,
                 max_per_host: int = DEFAULTS.max_per_host,
                 mem_limit_mb: float = DEFAULTS.mem_limit_mb, verify: bool = DEFAULTS.verify,
                 progress: bool | None = DEFAULTS.progress,
                 max_repo_bytes: int = DEFAULTS.max_repo_bytes,
                 max_cache_bytes: int = DEFAULTS.max_cache_bytes,
                 retry: RetryPolicy = DEFAULTS.retry,
                 rate_limit: RateLimit | None = DEFAULTS.rate_limit,
                 http: httpx.Client | httpx.AsyncClient | None = None,
                 dns: DnsResolver | AsyncDnsResolver | None = None) -> None:
        self.config = client_config(
            plc_url=plc_url, handle_resolver=handle_resolver, cache_dir=cache_dir,
            timeout=timeout, body_timeout=body_timeout, max_concurrency=max_concurrency,
            max_per_host=max_per_host, mem_limit_mb=mem_limit_mb, verify=verify,
            progress=progress, max_repo_bytes=max_repo_bytes, max_cache_bytes=max_cache_bytes,
            retry=retry, rate_limit=rate_limit)
        self._connect(http, dns)  # before the cache opens: a wrong http= leaves nothing open
        self.last_errors = errors_frame([])
        self.last_fetched = fetched_frame([])
        self._pipeline = Pipeline(self.config)
        self._closed = False

    def _connect(self, http: httpx.Client | httpx.AsyncClient | None,
                 dns: DnsResolver | AsyncDnsResolver | None) -> None:
        """Set up the driver's HTTP client, DNS resolver and host limits."""
        raise NotImplementedError

    def _check_open(self) -> None:
        """Refuse every call on a closed client with :class:`ClientClosed`.

        Checked before any work, so a closed client never reaches httpx (whose error is a
        RuntimeError) or a closed cache.
        """
        if self._closed or self._http.is_closed:  # closed here, or by whoever passed it
            raise ClientClosed("client is closed", client=type(self).__name__,
                               hint="create a new client; `with atrepo.Client() as client:` "
                                    "closes it at the end of the block")

    def _resolve_handle_flow(self, handle: str) -> Flow[str]:
        return identity_flows.resolve_handle(handle,
                                             xrpc_resolver=self.config.handle_resolver)

    def _pager(self, host: str, limit: int | None, resume: bool) -> _listing.Pager[RepoRef]:
        self._check_open()
        return _listing.pager(check_host(host), self.config, limit=check_limit(limit),
                              resume=check_flag(resume, argument="resume"))

    def _hosts_pager(self, relay_url: str, limit: int | None, resume: bool
                     ) -> _listing.Pager[HostRef]:
        self._check_open()
        return _listing.hosts_pager(check_host(relay_url, argument="relay_url"), self.config,
                                    limit=check_limit(limit),
                                    resume=check_flag(resume, argument="resume"))

    def _plc_pager(self, after: object, limit: int | None, resume: bool
                   ) -> _listing.Pager[PlcOp]:
        self._check_open()
        return _listing.plc_pager(self.config, after=check_after(after),
                                  limit=check_limit(limit),
                                  resume=check_flag(resume, argument="resume"))

    def _by_collection_flow(self, collection: str, host: str) -> Flow[list[str]]:
        self._check_open()
        return _listing.by_collection(check_collection(collection), check_host(host),
                                      self.config)

    def _fetch_run(self, dids_or_handles: Iterable[str] | pl.DataFrame | pl.LazyFrame,
                   collections: Sequence[str] | None) -> FetchRun:
        self._check_open()
        framed = framed_names(dids_or_handles, argument="dids_or_handles")
        if framed is not None:
            return FetchRun(self._pipeline, framed.names, check_collections(collections),
                            listed=framed.hosts)
        return FetchRun(self._pipeline, check_names(dids_or_handles, argument="dids_or_handles"),
                        check_collections(collections))

    def _dataset_export(self, source: object, out_dir: str | os.PathLike[str],
                        collections: Sequence[str] | None, resume: bool,
                        exclude: Iterable[str] | None, batch_repos: int, batch_records: int,
                        dask: object, shard_repos: object
                        ) -> tuple[DatasetExport, str | list[Target]]:
        """An export's dataset, opened (and locked), and its source: a host URL to list, or
        the targets it names."""
        self._check_open()
        if dask is not None:   # before the dataset is made and a host listed
            _dask.check_dask(dask, shard_repos)
        targets = source_targets(source)
        dataset = DatasetExport(check_out_dir(out_dir), collections=check_collections(collections),
                                resume=check_flag(resume, argument="resume"), exclude=exclude,
                                hosts=[targets] if isinstance(targets, str) else [],
                                batch_repos=batch_repos, batch_records=batch_records)
        return dataset, targets

    def _export_run(self, dataset: DatasetExport, targets: Sequence[Target],
                    collections: Sequence[str] | None) -> ExportRun:
        return ExportRun(self._pipeline, dataset, targets, check_collections(collections))

    def _on_dask(self, dask: object, dataset: DatasetExport, targets: Sequence[Target],
                 collections: Sequence[str] | None, shard_repos: int) -> ExportReport:
        """An export's visits on the cluster of ``dask`` (see :mod:`atrepo._dask`)."""
        report = _dask.export_on_dask(dask, dataset, targets, config=self.config,
                                      collections=check_collections(collections),
                                      shard_repos=shard_repos)
        self.last_errors = report.errors
        return report

    def _bar(self, run: Run[Any]) -> AbstractContextManager[Progress]:
        """The one progress bar of a bulk call."""
        return progress(len(run.names), run.desc, self.config.progress, unit="repo")

    def _ended(self, run: Run[T]) -> T:
        """The end of every bulk call: its errors become ``last_errors``; its result."""
        self.last_errors = run.errors()
        return run.result()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} plc={self.config.plc_url} cache={self.config.cache_path}>"


def _check_driver(client: _BaseClient, http: object, dns: object, http_type: type,
                  *, asynchronous: bool) -> None:
    """Refuse an ``http=`` or ``dns=`` of the other client's kind (sync versus async)."""
    name = type(client).__name__
    if http is not None and not isinstance(http, http_type):
        raise UsageError(f"{name} takes an httpx.{http_type.__name__}", argument="http",
                         type=type(http).__name__)
    txt = getattr(dns, "txt", None)
    if dns is not None and (not callable(txt)
                            or inspect.iscoroutinefunction(txt) != asynchronous):
        kind = "an async" if asynchronous else "a plain (not async)"
        raise UsageError(f"{name} takes a resolver with {kind} txt(name) method",
                         argument="dns", type=type(dns).__name__)


class Client(_BaseClient):
    """The synchronous client. Safe to use inside a running event loop (Jupyter).

    Every option is a keyword argument, and ``inspect.signature(Client)`` shows each default.
    Four of them default to an environment variable when it is set (for the module
    shortcuts too): ``ATREPO_PLC_URL``, ``ATREPO_HANDLE_RESOLVER``, ``ATREPO_CACHE_DIR``,
    ``ATREPO_PROGRESS``.

    Options:
        plc_url: the PLC directory that resolves ``did:plc`` DIDs; None:
            ``$ATREPO_PLC_URL``, else ``https://plc.directory``.
        handle_resolver: an XRPC service asked (``com.atproto.identity.resolveHandle``)
            when DNS TXT and HTTPS well-known give no answer, and the only one asked for
            ``.test`` handles or when it is on loopback; None: ``$ATREPO_HANDLE_RESOLVER``,
            else not asked; ``""``: not asked.
        cache_dir: where identities and repository snapshots are stored; None:
            ``$ATREPO_CACHE_DIR``, else the user's cache directory (``~/.cache/atrepo``).
        timeout: seconds per connect or read.
        body_timeout: seconds one whole response may take (a host that trickles bytes,
            each read just within ``timeout``, is cut off).
        max_concurrency: repositories fetched at once in bulk calls.
        max_per_host: requests in flight to any one host at once.
        mem_limit_mb: CAR bytes held in memory before reading from disk instead.
        verify: check commit signatures and handles (``snap.verified``).
        progress: progress bars; None: ``$ATREPO_PROGRESS`` (0/false/no/off: none), else
            when a person is watching.
        max_repo_bytes: cap on one downloaded repository (after decompression).
        max_cache_bytes: cap on the stored repositories; the least recently used go first.
        retry: budgets and delays for 429s and failures (:class:`RetryPolicy`).
        rate_limit: requests per host (:class:`~atrepo.retry.RateLimit`; default the
            published PDS limit, 3,000 per 5 minutes), shared by every thread; a 429 pauses
            the host for all of them, and ``RateLimit-Remaining`` running low slows them
            down before one. None: no rate, only 429s and those headers.
        http: an ``httpx.Client`` to use instead of a new one (proxies, transports, tests).
        dns: a DNS TXT resolver to use instead of the system's (dnspython).

    Example::

        with atrepo.Client() as client:
            snap = client.get_repo("alice.bsky.social")
    """

    _http: httpx.Client

    def _connect(self, http: httpx.Client | httpx.AsyncClient | None,
                 dns: DnsResolver | AsyncDnsResolver | None) -> None:
        _check_driver(self, http, dns, httpx.Client, asynchronous=False)
        self._http = cast(httpx.Client, http) or httpx.Client(timeout=self.config.timeout,
                                                               follow_redirects=True)
        self._dns = cast(DnsResolver, dns) or SystemDnsResolver()
        self._limits = HostLimits(self.config.max_per_host, rate=self.config.rate_limit,
                                  policy=self.config.retry)

    def _run(self, flow: Flow[T]) -> T:
        self._check_open()
        return run_sync(flow, self._http, self._dns, limits=self._limits,
                        total_timeout=self.config.body_timeout)

    def _each(self, run: Run[T]) -> T:
        """Run every flow of ``run``, ``max_concurrency`` at a time, in threads.

        Outcomes are recorded in this thread as they come in (:func:`run_bounded`: at most
        ``max_concurrency`` repositories in flight and as many finished ones waiting, so
        memory does not grow with the number of repositories); an AtrepoError belongs to
        its repository, any other exception propagates. Each thread runs in a copy of this
        thread's context, so the call's progress bar is the only one shown.
        """
        self._check_open()

        def one(i: int) -> Any:
            try:
                return self._run(run.flow(i))
            except AtrepoError as exc:
                return exc

        with self._bar(run) as bar:
            def done(i: int, outcome: Any) -> None:
                run.record(i, outcome)
                bar.update(1)

            run_bounded(len(run.names), one, done, workers=self.config.max_concurrency)
        return self._ended(run)

    def resolve(self, identifier: str) -> Identity:
        """Return the :class:`~atrepo.identity.Identity` of a handle, DID or AT-URI."""
        return self._run(self._pipeline.resolve(identifier))

    def resolve_handle(self, handle: str) -> str:
        """Return the DID a handle points to (DNS TXT, HTTPS well-known, then XRPC)."""
        return self._run(self._resolve_handle_flow(handle))

    def get_repo(self, name: str, collections: Sequence[str] | None = None, *,
                 sparse: bool | None = None) -> RepoSnapshot:
        """Return a verified :class:`~atrepo.RepoSnapshot` of an account's repository.

        The repository is stored as a snapshot in the cache. When one is stored already,
        only what changed since is downloaded (``snap.source`` says how it was obtained).
        With ``collections=``, ``sparse`` chooses a sparse fetch of only their part of the
        tree (``getRecord`` + ``getBlocks``): None when the repository is not tiny, True
        always, False never; a host without those methods is fetched in full.
        """
        return self._run(self._pipeline.get_repo(name, check_collections(collections),
                                                 sparse))

    def diff(self, name: str, collections: Sequence[str] | None = None, *,
             table: str | None = None) -> pl.DataFrame:
        """Return what changed since the newest stored snapshot (see :func:`atrepo.diff`).

        The repository is fetched again (incrementally) and stored as the next snapshot.
        ``table=`` gives that collection's changed records as its typed table
        (:func:`atrepo.tables.diff_table`).
        """
        wanted = check_collections(collections_for(collections, table))
        frame = self._run(self._pipeline.diff(name, wanted))
        return frame if table is None else diff_table(frame, table)

    def snapshots(self, name: str) -> pl.DataFrame:
        """Return the stored snapshots of a repository: rev, data_cid, fetched_at, records,
        collections (what a sparse snapshot holds; null for a whole one).

        No network: a handle must have been fetched before (or pass the DID).
        """
        self._check_open()
        return self._pipeline.entries_frame(name)

    def snapshot(self, name: str, rev: str | None = None,
                 collections: Sequence[str] | None = None) -> RepoSnapshot:
        """Open a stored snapshot (the newest, or revision ``rev``) without the network."""
        self._check_open()
        return self._pipeline.open_stored(name, rev, check_collections(collections))

    def iter_repos(self, host: str, *, limit: int | None = None,
                   resume: bool = False) -> Iterator[RepoRef]:
        """Yield a :class:`RepoRef` per repository ``host`` lists (com.atproto.sync.listRepos)."""
        pager = self._pager(host, limit, resume)
        while not pager.exhausted:
            yield from pager.take(self._run(pager.flow()))

    def list_repos(self, host: str, limit: int | None = None,
                   resume: bool = False) -> pl.DataFrame:
        """Return every repository ``host`` lists: did, head, rev, active, status.

        Args:
            host: the host's base URL (a PDS or a relay).
            limit: stop after this many repositories.
            resume: continue from the cursor saved by an earlier interrupted listing.
        """
        pager = self._pager(host, limit, resume)
        with pager.collecting():
            while not pager.exhausted:
                pager.take(self._run(pager.flow()))
        return pager.frame()

    def fetch_records(self, dids_or_handles: Iterable[str] | pl.DataFrame | pl.LazyFrame,
                      collections: Sequence[str] | None = None, *,
                      table: str | None = None) -> pl.DataFrame:
        """Return the records of many repositories as one frame (columns as ``records``).

        Repositories are fetched ``max_concurrency`` at a time, each from the PDS its DID
        document names (never from a host that lists it but no longer holds it). One that
        fails does not stop the call: it is listed in :attr:`last_errors` (did, error,
        status). :attr:`last_fetched` says, per repository, where it was listed and where it
        was fetched from (see :data:`~atrepo.frames.FETCHED_SCHEMA`).

        Args:
            dids_or_handles: DIDs or handles (a string is one name), or a polars DataFrame
                or LazyFrame with a ``did`` column (``list_repos``, ``list_plc``, ...), each
                DID fetched once; its ``host`` column, else its ``pds`` column, is where
                each was listed (``last_fetched.listed_host``).
            collections: only these collections (NSIDs, or prefixes ending in ``.*``).
            table: return this collection's typed table of every repository fetched
                instead of the records (:func:`atrepo.tables.table`); only that
                collection is fetched unless ``collections`` says otherwise.

        Returns:
            The records of every repository fetched, in input order.

        Raises:
            UsageError: not names, or a frame without a string ``did`` column.
            ClientClosed: the client is closed.
        """
        run = self._fetch_run(dids_or_handles, collections_for(collections, table))
        records = self._each(run)
        self.last_fetched = run.fetched()
        return records if table is None else tables.table(records, table)

    def list_repos_by_collection(self, collection: str, host: str) -> pl.DataFrame:
        """Return [did] of the repositories on ``host`` that hold records of ``collection``."""
        return dids_frame(self._run(self._by_collection_flow(collection, host)))

    def list_hosts(self, relay_url: str, *, limit: int | None = None,
                   resume: bool = False) -> pl.DataFrame:
        """Return the hosts a relay lists (``com.atproto.sync.listHosts``), in its order.

        Columns (:data:`~atrepo.frames.HOSTS_SCHEMA`): ``host`` (the base URL to list or
        crawl: https, or http for a loopback host), ``hostname`` (as the relay lists it),
        ``status`` (the relay's word: active, idle, offline, throttled, banned), and
        ``account_count`` and ``seq`` (the newest event the relay saw from it), as the relay
        reports them (null when it does not).

        Args:
            relay_url: the relay's base URL, e.g. ``https://bsky.network``.
            limit: stop after this many hosts.
            resume: continue from the cursor saved by an earlier interrupted listing of
                this relay (saved after every page under the cache directory).

        Returns:
            One row per host.

        Raises:
            UsageError: ``relay_url`` is not an http(s) URL, or ``limit``/``resume`` of the
                wrong type.
            RateLimited: the relay kept answering 429.
            TransportError: an error status, a malformed page (a hostname that is none, a
                count that is not a whole number), or a listing that repeats its cursor.
        """
        pager = self._hosts_pager(relay_url, limit, resume)
        with pager.collecting():
            while not pager.exhausted:
                pager.take(self._run(pager.flow()))
        return pager.frame()

    def list_plc(self, after: datetime | str | None = None, limit: int | None = None, *,
                 resume: bool = False) -> pl.DataFrame:
        """Return each DID's current state from the PLC directory's operation log (``/export``).

        The log is read from ``after`` (or the start) in pages of 1000 operations; a DID's
        row is its latest operation that was not nullified. Columns
        (:data:`~atrepo.frames.PLC_SCHEMA`): ``did``; ``handle`` (the first ``at://`` name
        it claims: not verified, ``resolve`` verifies); ``pds`` (its PDS endpoint);
        ``signing_key`` (the ``did:key`` its commits are signed with); ``status``
        (``active``, or ``tombstoned`` when the DID was deactivated for good: handle, pds
        and key are then null); ``created_at`` (when that operation was accepted); ``cid``
        (that operation's CID). Rows are in log order (by ``created_at``).

        A later call with ``after=frame["created_at"].max()`` returns only DIDs that changed
        since; ``pl.concat([old, new]).unique("did", keep="last")`` is then the current
        state of all of them.

        Args:
            after: start after this time (an aware datetime or ISO 8601 string); None: the
                start of the log.
            limit: stop after this many operations (the frame has at most that many rows).
            resume: continue from the cursor saved by an earlier listing of this directory
                (saved after every page): an interrupted one from its last page, a finished
                one from its last operation (only what was added since); ``after`` applies
                when none is saved.

        Returns:
            One row per DID whose operations were read.

        Raises:
            UsageError: ``after`` is not a time with a zone, or ``limit``/``resume`` of the
                wrong type.
            RateLimited: the directory kept answering 429.
            TransportError: an error status, a page or line past its bound, or a line that
                is not an operation (naming the URL and the line).
        """
        pager = self._plc_pager(after, limit, resume)
        with pager.collecting():
            while not pager.exhausted:
                pager.take(self._run(pager.flow()))
        return pager.frame()

    def export(self, source: str | Iterable[str] | pl.DataFrame | pl.LazyFrame,
               out_dir: str | os.PathLike[str], *, collections: Sequence[str] | None = None,
               resume: bool = True, exclude: Iterable[str] | None = None,
               dask: Any = None, batch_repos: int = BATCH_REPOS,
               batch_records: int = BATCH_RECORDS, shard_repos: int = _dask.SHARD_REPOS
               ) -> ExportReport:
        """Commit repositories to the dataset under ``out_dir``, or bring it up to date.

        The dataset (see docs/datasets.md, read it with :func:`atrepo.open_dataset`) holds
        every record with provenance, one row per repository with its status, and a typed
        table per collection with a lexicon; each batch of repositories is one atomic
        commit. On an existing dataset, repositories at the commit it holds cost no
        download, changed ones are fetched (incrementally) and replaced, and ones their
        host no longer serves (deleted, deactivated, taken down, suspended) are removed
        with their status recorded. An interrupted export run again continues.

        With ``dask=``, the repositories are fetched on that cluster (see "On a Dask
        cluster" in docs/datasets.md): this process lists and plans, workers fetch shards of
        repositories by host (each host's limits held across the cluster), and this process
        commits their results, to the same dataset a local export makes.

        Args:
            source: a host URL (every repository it lists), a polars frame with a ``did``
                column (``list_repos``: its revs and statuses are used), or DIDs or
                handles (a string is one name).
            out_dir: the dataset directory (created when missing).
            collections: only these collections (NSIDs, or prefixes ending in ``.*``); a
                dataset keeps the collections it was made with.
            resume: False starts the dataset afresh (one version replacing everything;
                older versions stay readable with ``as_of``).
            exclude: DIDs never to export; removed from the dataset if present.
            dask: a ``distributed.Client`` (synchronous) whose cluster fetches the
                repositories; ``out_dir`` is written by this process only. None: here.
            batch_repos: commit after this many repositories.
            batch_records: commit after this many record rows.
            shard_repos: with ``dask=``, repositories per task (a host's listing is cut
                into ranges of this many).

        Returns:
            What the export did (:class:`~atrepo.dataset.ExportReport`); failures are also
            in :attr:`last_errors`.

        Raises:
            AtrepoError: another export is writing the dataset, or ``collections`` differs
                from the dataset's (unless ``resume=False``).
            UsageError: a malformed source, out_dir or option; a ``dask=`` that is not a
                synchronous distributed.Client (or distributed is not installed).
        """
        dataset, targets = self._dataset_export(source, out_dir, collections, resume,
                                                exclude, batch_repos, batch_records, dask,
                                                shard_repos)
        try:
            if isinstance(targets, str):   # a host: what it lists, with revs and statuses
                host = targets
                targets = [listed_target(ref, host) for ref in self.iter_repos(host)]
            if dask is not None:
                return self._on_dask(dask, dataset, targets, collections, shard_repos)
            return self._each(self._export_run(dataset, targets, collections))
        finally:
            dataset.close()   # released also when the run ends in an exception

    def close(self) -> None:
        """Close the HTTP connections and the cache; later calls raise ClientClosed."""
        self._closed = True
        self._http.close()
        self._pipeline.close()

    def __enter__(self) -> Client:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """The asynchronous client: the same methods as :class:`Client`, awaited.

    Takes the same options as :class:`Client`; ``http`` is an ``httpx.AsyncClient`` and
    ``dns`` an asynchronous resolver.
    """

    _http: httpx.AsyncClient

    def _connect(self, http: httpx.Client | httpx.AsyncClient | None,
                 dns: DnsResolver | AsyncDnsResolver | None) -> None:
        _check_driver(self, http, dns, httpx.AsyncClient, asynchronous=True)
        self._http = cast(httpx.AsyncClient, http) or httpx.AsyncClient(
            timeout=self.config.timeout, follow_redirects=True)
        self._dns = cast(AsyncDnsResolver, dns) or AsyncSystemDnsResolver()
        self._limits = AsyncHostLimits(self.config.max_per_host, rate=self.config.rate_limit,
                                       policy=self.config.retry)

    async def _run(self, flow: Flow[T]) -> T:
        self._check_open()
        return await run_async(flow, self._http, self._dns, limits=self._limits,
                               total_timeout=self.config.body_timeout)

    async def _each(self, run: Run[T]) -> T:
        """Client._each with tasks (:func:`arun_bounded`) instead of threads.

        Outcomes are recorded one at a time as they come in, each in a worker thread
        (recording builds frames or writes files), and so is the end (an export's last
        commit, a fetch's concatenated frame), so the event loop keeps running.
        """
        self._check_open()

        async def one(i: int) -> Any:
            try:
                return await self._run(run.flow(i))
            except AtrepoError as exc:
                return exc

        with self._bar(run) as bar:
            async def done(i: int, outcome: Any) -> None:
                await asyncio.to_thread(run.record, i, outcome)
                bar.update(1)

            await arun_bounded(len(run.names), one, done, workers=self.config.max_concurrency)
        return await asyncio.to_thread(self._ended, run)

    async def resolve(self, identifier: str) -> Identity:
        """Return the :class:`~atrepo.identity.Identity` of a handle, DID or AT-URI."""
        return await self._run(self._pipeline.resolve(identifier))

    async def resolve_handle(self, handle: str) -> str:
        """Return the DID a handle points to (DNS TXT, HTTPS well-known, then XRPC)."""
        return await self._run(self._resolve_handle_flow(handle))

    async def get_repo(self, name: str, collections: Sequence[str] | None = None, *,
                       sparse: bool | None = None) -> RepoSnapshot:
        """Return a verified :class:`~atrepo.RepoSnapshot` of an account's repository."""
        return await self._run(self._pipeline.get_repo(name, check_collections(collections),
                                                       sparse))

    async def diff(self, name: str, collections: Sequence[str] | None = None, *,
                   table: str | None = None) -> pl.DataFrame:
        """Return what changed since the newest stored snapshot (see Client.diff)."""
        wanted = check_collections(collections_for(collections, table))
        frame = await self._run(self._pipeline.diff(name, wanted))
        return frame if table is None else diff_table(frame, table)

    async def snapshots(self, name: str) -> pl.DataFrame:
        """Return the stored snapshots of a repository (see Client.snapshots)."""
        self._check_open()
        return await asyncio.to_thread(self._pipeline.entries_frame, name)  # disk reads

    async def snapshot(self, name: str, rev: str | None = None,
                       collections: Sequence[str] | None = None) -> RepoSnapshot:
        """Open a stored snapshot without the network (see Client.snapshot)."""
        self._check_open()
        return await asyncio.to_thread(self._pipeline.open_stored, name, rev,  # disk, CPU
                                       check_collections(collections))

    async def iter_repos(self, host: str, *, limit: int | None = None,
                         resume: bool = False) -> AsyncIterator[RepoRef]:
        """Yield a :class:`RepoRef` per repository ``host`` lists (com.atproto.sync.listRepos)."""
        pager = self._pager(host, limit, resume)
        while not pager.exhausted:
            for repo in pager.take(await self._run(pager.flow())):
                yield repo

    async def list_repos(self, host: str, limit: int | None = None,
                         resume: bool = False) -> pl.DataFrame:
        """Return every repository ``host`` lists: did, head, rev, active, status."""
        pager = self._pager(host, limit, resume)
        with pager.collecting():
            while not pager.exhausted:
                pager.take(await self._run(pager.flow()))
        return pager.frame()

    async def fetch_records(self, dids_or_handles: Iterable[str] | pl.DataFrame | pl.LazyFrame,
                            collections: Sequence[str] | None = None, *,
                            table: str | None = None) -> pl.DataFrame:
        """Return the records of many repositories as one frame (see Client.fetch_records);
        failures go to last_errors, where each was listed and fetched from to last_fetched."""
        run = self._fetch_run(dids_or_handles, collections_for(collections, table))
        records = await self._each(run)
        self.last_fetched = run.fetched()
        return records if table is None else tables.table(records, table)

    async def list_repos_by_collection(self, collection: str, host: str) -> pl.DataFrame:
        """Return [did] of the repositories on ``host`` that hold records of ``collection``."""
        return dids_frame(await self._run(self._by_collection_flow(collection, host)))

    async def list_hosts(self, relay_url: str, *, limit: int | None = None,
                         resume: bool = False) -> pl.DataFrame:
        """Return the hosts a relay lists (see Client.list_hosts)."""
        pager = self._hosts_pager(relay_url, limit, resume)
        with pager.collecting():
            while not pager.exhausted:
                pager.take(await self._run(pager.flow()))
        return pager.frame()

    async def list_plc(self, after: datetime | str | None = None, limit: int | None = None, *,
                       resume: bool = False) -> pl.DataFrame:
        """Return each DID's current state from the PLC directory's log (see Client.list_plc)."""
        pager = self._plc_pager(after, limit, resume)
        with pager.collecting():
            while not pager.exhausted:
                pager.take(await self._run(pager.flow()))
        return pager.frame()

    async def export(self, source: str | Iterable[str] | pl.DataFrame | pl.LazyFrame,
                     out_dir: str | os.PathLike[str], *,
                     collections: Sequence[str] | None = None, resume: bool = True,
                     exclude: Iterable[str] | None = None, dask: Any = None,
                     batch_repos: int = BATCH_REPOS, batch_records: int = BATCH_RECORDS,
                     shard_repos: int = _dask.SHARD_REPOS) -> ExportReport:
        """Commit repositories to the dataset under ``out_dir``, or bring it up to date
        (see Client.export).

        Its disk work (opening the dataset, planning, each commit, the last one and the
        compaction) runs in worker threads, off the event loop. With ``dask=`` (a synchronous
        ``distributed.Client``), the listing is awaited here and the driver, which waits
        on the cluster's results, runs in a thread.
        """
        dataset, targets = await asyncio.to_thread(
            self._dataset_export, source, out_dir, collections, resume, exclude, batch_repos,
            batch_records, dask, shard_repos)
        try:
            if isinstance(targets, str):   # a host: what it lists, with revs and statuses
                host = targets
                targets = [listed_target(ref, host) async for ref in self.iter_repos(host)]
            if dask is not None:
                return await asyncio.to_thread(self._on_dask, dask, dataset, targets,
                                               collections, shard_repos)
            # planning may commit (a listing of many inactive repositories fills batches)
            run = await asyncio.to_thread(self._export_run, dataset, targets, collections)
            return await self._each(run)
        finally:
            dataset.close()   # released also when the run ends in an exception

    async def aclose(self) -> None:
        """Close the HTTP connections and the cache; later calls raise ClientClosed."""
        self._closed = True
        await self._http.aclose()
        self._pipeline.close()

    async def __aenter__(self) -> AsyncClient:
        self._check_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
