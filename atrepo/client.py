"""Client and AsyncClient: one core (:class:`_BaseClient`), two thin drivers.

Every operation is written once, as a generator flow in :class:`_BaseClient` that yields
network effects (HTTP requests, DNS lookups, sleeps) and does its local work (reading the
downloaded CAR) in between. :class:`Client` runs flows with ``run_sync`` over an
``httpx.Client`` and never touches asyncio, so it works inside a running Jupyter event
loop; :class:`AsyncClient` runs the same flows with ``run_async`` over an
``httpx.AsyncClient``. The public methods of the two differ only in ``def``/``async def``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import polars as pl

from . import car
from ._config import ClientConfig
from ._diff import diff
from ._flows import identity as identity_flows
from ._flows import sync as sync_flows
from ._flows.effects import Flow
from ._io.cache import IdentityCache
from ._io.store import SnapshotStore, StoredSnapshot, dir_name
from ._io.drivers import (
    AsyncDnsResolver,
    AsyncHostLimits,
    AsyncSystemDnsResolver,
    DnsResolver,
    HostLimits,
    SystemDnsResolver,
    run_async,
    run_sync,
)
from ._flows.policy import RetryPolicy
from ._flows.sync import RepoRef
from ._progress import progress
from .errors import (
    AtrepoError,
    CarError,
    MstError,
    RepoUnavailable,
    ResolutionError,
    SignatureError,
)
from .export import ExportReport, Exporter
from .frames import RECORDS_SCHEMA
from .identity import Identity
from .snapshot import RepoSnapshot, check_commit, narrowed, open_snapshot
from .syntax import is_did

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")
log = logging.getLogger("atrepo")


REPOS_SCHEMA = pl.Schema({"did": pl.String, "head": pl.String, "rev": pl.String,
                          "active": pl.Boolean, "status": pl.String})


class _Pager:
    """Paging through listRepos, written once for both clients.

    ``flow()`` fetches the next page; ``take(page)`` records it and says whether to go on.
    With ``resume``, the cursor after each fully processed page is saved under the cache
    directory (one small JSON file per host, replaced atomically), and a later listing of the
    same host starts from it.
    """

    def __init__(self, host: str, *, limit: int | None, resume: bool, state_dir: Path,
                 policy: RetryPolicy) -> None:
        self.host = host.rstrip("/")
        self.policy = policy
        self.limit = limit
        self.resume = resume
        self.state = state_dir / (dir_name(self.host.split("://")[-1]) + ".json")
        self.cursor = self._saved_cursor() if resume else None
        self.count = 0
        self.done = limit is not None and limit <= 0

    def _saved_cursor(self) -> str | None:
        try:
            saved = json.loads(self.state.read_text())
        except (OSError, ValueError):
            return None
        cursor = saved.get("cursor") if isinstance(saved, dict) else None
        return cursor if isinstance(cursor, str) else None

    def flow(self) -> Flow[tuple[list[RepoRef], str | None]]:
        remaining = 1000 if self.limit is None else min(1000, self.limit - self.count)
        return sync_flows.list_repos_page(self.host, cursor=self.cursor, limit=remaining,
                                          policy=self.policy)

    def take(self, page: tuple[list[RepoRef], str | None]) -> list[RepoRef]:
        repos, page_cursor = page
        if self.limit is not None:
            repos = repos[: self.limit - self.count]
        self.count += len(repos)
        next_cursor, warning = sync_flows.walk_cursor(self.cursor, page_cursor, len(repos))
        if warning:
            warnings.warn(f"listRepos on {self.host}: {warning}", stacklevel=3)
        self.cursor = next_cursor
        self.done = next_cursor is None or (self.limit is not None and self.count >= self.limit)
        if self.resume:
            self._save()
        return repos

    def _save(self) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"host": self.host, "cursor": self.cursor}))
        os.replace(tmp, self.state)


def repos_frame(repos: Sequence[RepoRef]) -> pl.DataFrame:
    """The list_repos frame: did, head, rev, active, status (one row per repo, in order)."""
    rows = [(r.did, r.head, r.rev, r.active, r.status) for r in repos]
    return pl.DataFrame(rows, schema=REPOS_SCHEMA, orient="row")


ERRORS_SCHEMA = pl.Schema({"did": pl.String, "error": pl.String, "status": pl.String})
SNAPSHOTS_SCHEMA = pl.Schema({"rev": pl.String(), "data_cid": pl.String(),
                              "fetched_at": pl.Datetime("us", "UTC"), "records": pl.Int64()})


class _Bulk:
    """Outcomes of a bulk call, kept in input order: record frames, and errors per repo."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.frames: dict[int, pl.DataFrame] = {}
        self.errors: dict[int, tuple[str, str, str | None]] = {}

    def done(self, i: int, outcome: RepoSnapshot | BaseException) -> None:
        """Record repo ``i``'s snapshot or AtrepoError; anything else is a bug: re-raised."""
        if isinstance(outcome, RepoSnapshot):
            self.frames[i] = outcome.records
        elif isinstance(outcome, AtrepoError):
            status = outcome.status if isinstance(outcome, RepoUnavailable) else None
            did = getattr(outcome, "did", None) or self.names[i]
            self.errors[i] = (did, f"{type(outcome).__name__}: {outcome}", status)
        else:
            raise outcome

    def records(self) -> pl.DataFrame:
        frames = [self.frames[i] for i in sorted(self.frames)]
        return pl.concat(frames) if frames else pl.DataFrame(schema=RECORDS_SCHEMA)

    def error_frame(self) -> pl.DataFrame:
        rows = [self.errors[i] for i in sorted(self.errors)]
        return pl.DataFrame(rows, schema=ERRORS_SCHEMA, orient="row")


class _ExportRun:
    """One export call's bookkeeping, shared by both clients: skips, writes, failures."""

    def __init__(self, names: Sequence[str], out_dir: str | os.PathLike[str],
                 resume: bool) -> None:
        self.names = list(names)
        self.exporter = Exporter(out_dir, resume=resume)
        self.report = ExportReport(self.exporter.out_dir)
        self.bulk = _Bulk(self.names)

    def finished(self, did: str) -> bool:
        return did in self.exporter.done

    def done(self, i: int, outcome: tuple[RepoSnapshot, str | None] | None | BaseException
             ) -> None:
        """Record repo ``i``: written (snapshot, pds), skipped (None) or failed (error)."""
        if outcome is None:
            self.report.skipped += 1
        elif isinstance(outcome, tuple):
            self.report.records += self.exporter.write(*outcome)
            self.report.written += 1
        else:
            self.bulk.done(i, outcome)

    def finish(self) -> ExportReport:
        self.report.errors = self.bulk.error_frame()
        return self.report


def _named(dids_or_handles_or_host: str | Iterable[str]) -> list[str] | None:
    """The repositories an export names, or None when it names a host URL to list."""
    if isinstance(dids_or_handles_or_host, str):
        return None if "://" in dids_or_handles_or_host else [dids_or_handles_or_host]
    return list(dids_or_handles_or_host)


def _dids_frame(dids: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame({"did": list(dids)}, schema={"did": pl.String})


class _BaseClient:
    """Configuration and the flows shared by Client and AsyncClient."""

    def __init__(self, *, plc_url: str = "https://plc.directory",
                 handle_resolver: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 30.0, body_timeout: float = 900.0,
                 max_concurrency: int = 8, max_per_host: int = 4,
                 mem_limit_mb: float = 64, verify: bool = True, progress: bool | None = None,
                 max_repo_bytes: int = 4 << 30, max_cache_bytes: int = 20 << 30,
                 retry: RetryPolicy | None = None) -> None:
        self.config = ClientConfig(
            plc_url=plc_url.rstrip("/"),
            handle_resolver=handle_resolver.rstrip("/") if handle_resolver else None,
            cache_dir=None if cache_dir is None else Path(cache_dir), timeout=timeout,
            body_timeout=body_timeout,
            max_concurrency=max_concurrency, max_per_host=max_per_host,
            mem_limit_mb=mem_limit_mb, verify=verify, progress=progress,
            max_repo_bytes=max_repo_bytes, max_cache_bytes=max_cache_bytes,
            retry=retry or RetryPolicy())
        self.last_errors = pl.DataFrame(schema=ERRORS_SCHEMA)
        self._identities = IdentityCache(self.config.cache_path / "identity")
        self._snapshots = SnapshotStore(self.config.cache_path / "repos",
                                        max_bytes=self.config.max_cache_bytes)

    # -- flows ----------------------------------------------------------------------------

    def _resolve_flow(self, identifier: str, *, fresh: bool = False) -> Flow[Identity]:
        """Resolve through the identity cache (``fresh=True`` skips it, and refreshes it)."""
        if not fresh:
            cached = self._identities.get(identifier)
            if cached is not None:
                return cached
        try:
            ident = yield from identity_flows.resolve(identifier, plc_url=self.config.plc_url,
                                                      xrpc_resolver=self.config.handle_resolver,
                                                      verify=self.config.verify)
        except ResolutionError as exc:
            self._identities.put_error(identifier, exc)
            raise
        self._identities.put(identifier, ident)
        return ident

    def _resolve_handle_flow(self, handle: str) -> Flow[str]:
        return identity_flows.resolve_handle(handle,
                                             xrpc_resolver=self.config.handle_resolver)

    def _get_repo_flow(self, name: str, collections: Sequence[str] | None) -> Flow[RepoSnapshot]:
        """Resolve; reuse, update or download the stored repository; verify; open it.

        With a stored snapshot, ``getLatestCommit`` says whether anything changed: if not,
        the stored snapshot is reopened (one small request). If so, only the blocks newer
        than the stored revision are asked for (``getRepo?since=``) and combined with the
        stored ones; when that does not give a complete, verified tree, the whole
        repository is downloaded instead. A partial tree is never returned.
        """
        ident = yield from self._resolve_flow(name)
        return (yield from self._fetch_flow(ident, collections,
                                            self._snapshots.newest(ident.did)))

    def _fetch_flow(self, ident: Identity, collections: Sequence[str] | None,
                    newest: StoredSnapshot | None, stored: RepoSnapshot | None = None
                    ) -> Flow[RepoSnapshot]:
        """get_repo after resolution; ``stored``, if given, is ``newest`` already opened."""
        if newest is not None:
            commit_cid, rev = yield from sync_flows.get_latest_commit(self._pds(ident),
                                                                      ident.did,
                                                                      policy=self.config.retry)
            if rev == newest.rev and commit_cid == newest.commit_cid:
                return stored or self._open_stored(ident.did, newest, collections,
                                                   source="cache")
            try:
                return (yield from self._download_flow(ident, collections, since=newest.rev))
            except (CarError, MstError) as exc:
                log.info("incremental fetch of %s did not give a whole tree (%s); "
                         "fetching it in full", ident.did, exc)
        return (yield from self._download_flow(ident, collections, since=None))

    def _download_flow(self, ident: Identity, collections: Sequence[str] | None,
                       since: str | None) -> Flow[RepoSnapshot]:
        """Download a CAR (all of it, or what is newer than ``since``) and store it.

        A signature that fails against the resolved key is retried once against a freshly
        resolved DID document: the account may have rotated its key since the first lookup.
        """
        part = self._new_path("downloads", ident.did, ".part")
        try:
            yield from sync_flows.get_repo(self._pds(ident), ident.did, path=str(part),
                                           since=since, max_bytes=self.config.max_repo_bytes,
                                           policy=self.config.retry)
            download = car.read_car(part, self.config.mem_limit_mb)
            try:
                key = self._signing_key(ident)
                try:
                    commit_cid = check_commit(download, did=ident.did, signing_key=key)[0]
                except SignatureError:
                    ident = yield from self._resolve_flow(ident.did, fresh=True)
                    key = self._signing_key(ident)
                    commit_cid = check_commit(download, did=ident.did, signing_key=key)[0]
            except BaseException:
                download.close()
                raise
            return self._store(download, ident, str(commit_cid), key, collections,
                               source="full" if since is None else "incremental")
        finally:
            part.unlink(missing_ok=True)

    def _by_collection_flow(self, collection: str, host: str) -> Flow[list[str]]:
        """DIDs whose repositories hold ``collection``, by listReposByCollection.

        Where the host does not serve that method, every active repository it lists is
        asked for its collections with describeRepo on the same host (so the fallback
        suits a PDS, not a relay), and a warning says so.
        """
        dids: list[str] = []
        cursor: str | None = None
        host = host.rstrip("/")
        while True:
            page = yield from sync_flows.list_repos_by_collection_page(
                host, collection, cursor=cursor, policy=self.config.retry)
            if page is None:
                return (yield from self._by_collection_fallback(collection, host))
            dids.extend(page[0])
            cursor, warning = sync_flows.walk_cursor(cursor, page[1], len(page[0]))
            if warning:
                warnings.warn(f"listReposByCollection on {host}: {warning}", stacklevel=3)
            if cursor is None:
                return dids

    def _by_collection_fallback(self, collection: str, host: str) -> Flow[list[str]]:
        warnings.warn(f"{host} does not serve com.atproto.sync.listReposByCollection; "
                      "asking describeRepo for every repository it lists instead",
                      stacklevel=4)
        pager = self._pager(host, None, False)
        dids = []
        while not pager.done:
            for repo in pager.take((yield from pager.flow())):
                if not repo.active:
                    continue
                try:
                    held = yield from sync_flows.describe_repo(host, repo.did,
                                                               policy=self.config.retry)
                except RepoUnavailable:  # went away between the listing and the question
                    continue
                if collection in held:
                    dids.append(repo.did)
        return dids

    def _export_one_flow(self, name: str, run: _ExportRun, collections: Sequence[str] | None
                         ) -> Flow[tuple[RepoSnapshot, str | None] | None]:
        """Resolve ``name``; fetch it unless the manifest already has it (then None)."""
        if run.finished(name):
            return None
        ident = yield from self._resolve_flow(name)
        if run.finished(ident.did):
            return None
        snap = yield from self._fetch_flow(ident, collections,
                                           self._snapshots.newest(ident.did))
        return snap, ident.pds

    def _pager(self, host: str, limit: int | None, resume: bool) -> _Pager:
        if not host.startswith(("http://", "https://")):
            raise AtrepoError("host must be a URL", host=host, hint="e.g. https://bsky.network")
        return _Pager(host, limit=limit, resume=resume,
                      state_dir=self.config.cache_path / "cursors", policy=self.config.retry)

    def _diff_flow(self, name: str, collections: Sequence[str] | None) -> Flow[pl.DataFrame]:
        """The newest stored snapshot against a fresh get_repo (which is stored in turn)."""
        ident = yield from self._resolve_flow(name)
        newest = self._snapshots.newest(ident.did)
        if newest is None:
            warnings.warn(f"no stored snapshot of {ident.did} yet: every record shows as a "
                          "create", stacklevel=4)
        old = None if newest is None else self._open_stored(ident.did, newest, collections,
                                                            source="cache")
        new = yield from self._fetch_flow(ident, collections, newest, old)
        return diff(old, new)

    # -- local work (no network) ----------------------------------------------------------

    def _stored_did(self, name: str) -> str:
        """The DID behind ``name`` without the network: a DID, or a handle seen before."""
        if is_did(name):
            return name
        try:
            cached = self._identities.get(name)
        except ResolutionError:
            cached = None
        did = cached.did if cached is not None else self._snapshots.did_for_handle(name)
        if did is None:
            raise ResolutionError("no stored snapshot for this handle", identifier=name,
                                  hint="get_repo it once while online, or pass its DID")
        return did

    def _snapshots_frame(self, name: str) -> pl.DataFrame:
        rows = [(e.rev, e.data_cid, e.fetched_at, e.records)
                for e in self._snapshots.snapshots(self._stored_did(name))]
        return pl.DataFrame(rows, schema=SNAPSHOTS_SCHEMA, orient="row")

    def _stored_snapshot(self, name: str, rev: str | None,
                         collections: Sequence[str] | None) -> RepoSnapshot:
        did = self._stored_did(name)
        stored = self._snapshots.snapshots(did)
        chosen = stored[-1] if stored and rev is None else \
            next((e for e in stored if e.rev == rev), None)
        if chosen is None:
            raise AtrepoError("no stored snapshot", did=did, rev=rev,
                              hint="client.snapshots(...) lists the stored revisions; "
                                   "client.get_repo(...) stores a new one")
        return self._open_stored(did, chosen, collections, source="cache")

    def _new_path(self, folder: str, did: str, suffix: str) -> Path:
        where = self.config.cache_path / folder
        where.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=dir_name(did) + "-", suffix=suffix, dir=where)
        os.close(handle)
        return Path(name)

    def _pds(self, ident: Identity) -> str:
        if ident.pds is None:
            raise ResolutionError("DID document names no PDS", identifier=ident.did)
        return ident.pds

    def _signing_key(self, ident: Identity) -> str | None:
        """The key commits are checked against (None when verification is off)."""
        if not self.config.verify:
            return None
        if ident.signing_key is None:
            raise ResolutionError("DID document has no signing key to verify with",
                                  identifier=ident.did)
        return ident.signing_key

    def _store(self, download: car.CarFile, ident: Identity, commit_cid: str,
               key: str | None, collections: Sequence[str] | None, *, source: str
               ) -> RepoSnapshot:
        """Store a checked download as the next snapshot; return it (``collections`` kept)."""
        whole = self._snapshots.add(download, did=ident.did, commit_cid=commit_cid,
                                    signing_key=key, handle=ident.handle, source=source,
                                    mem_limit_mb=self.config.mem_limit_mb,
                                    progress=self.config.progress)
        return whole if collections is None else narrowed(whole, collections)

    def _open_stored(self, did: str, entry: StoredSnapshot, collections: Sequence[str] | None,
                     *, source: str) -> RepoSnapshot:
        """Open a stored snapshot from the store (no network).

        Its tree was checked whole when it was stored, so it is walked only when its
        records are first asked for (a diff never needs to).
        """
        handle, key = self._snapshots.identity(did)
        pack = self._snapshots.open_pack(did, self.config.mem_limit_mb)
        return open_snapshot(pack, did=did, signing_key=key if entry.verified else None,
                             collections=collections, handle=handle,
                             fetched_at=entry.fetched_at, progress_bar=self.config.progress,
                             root=entry.commit_cid, source=source, walk_now=False)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} plc={self.config.plc_url} cache={self.config.cache_path}>"


class Client(_BaseClient):
    """The synchronous client. Safe to use inside a running event loop (Jupyter).

    Every option is a keyword argument:

    Options:
        plc_url: the PLC directory that resolves ``did:plc`` DIDs.
        handle_resolver: an XRPC service asked (``com.atproto.identity.resolveHandle``)
            when DNS TXT and HTTPS well-known give no answer; None: not asked.
        cache_dir: where identities and repository snapshots are stored; None:
            ``$ATREPO_CACHE_DIR``, else the user's cache directory (``~/.cache/atrepo``).
        timeout: seconds per connect or read.
        body_timeout: seconds one whole response may take (a host that trickles bytes,
            each read just within ``timeout``, is cut off).
        max_concurrency: repositories fetched at once in bulk calls.
        max_per_host: requests in flight to any one host at once.
        mem_limit_mb: CAR bytes held in memory before reading from disk instead.
        verify: check commit signatures and handles (``snap.verified``).
        progress: progress bars; None: when a person is watching.
        max_repo_bytes: cap on one downloaded repository (after decompression).
        max_cache_bytes: cap on the stored repositories; the least recently used go first.
        retry: budgets and delays for 429s and failures (:class:`RetryPolicy`).
        http: an ``httpx.Client`` to use instead of a new one (proxies, transports, tests).
        dns: a DNS TXT resolver to use instead of the system's (dnspython).

    Example::

        with atrepo.Client() as client:
            snap = client.get_repo("alice.bsky.social")
    """

    def __init__(self, *, http: httpx.Client | None = None, dns: DnsResolver | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        self._http = http or httpx.Client(timeout=self.config.timeout, follow_redirects=True)
        self._dns = dns or SystemDnsResolver()
        self._limits = HostLimits(self.config.max_per_host)

    def _run(self, flow: Flow[T]) -> T:
        return run_sync(flow, self._http, self._dns, limits=self._limits,
                        total_timeout=self.config.body_timeout)

    def resolve(self, identifier: str) -> Identity:
        """Return the :class:`~atrepo.identity.Identity` of a handle, DID or AT-URI."""
        return self._run(self._resolve_flow(identifier))

    def resolve_handle(self, handle: str) -> str:
        """Return the DID a handle points to (DNS TXT, HTTPS well-known, then XRPC)."""
        return self._run(self._resolve_handle_flow(handle))

    def get_repo(self, name: str, collections: Sequence[str] | None = None) -> RepoSnapshot:
        """Return a verified :class:`~atrepo.RepoSnapshot` of an account's repository.

        The repository is stored as a snapshot in the cache. When one is stored already,
        only what changed since is downloaded (``snap.source`` says how it was obtained).
        """
        return self._run(self._get_repo_flow(name, collections))

    def diff(self, name: str, collections: Sequence[str] | None = None) -> pl.DataFrame:
        """Return what changed since the newest stored snapshot (see :func:`atrepo.diff`).

        The repository is fetched again (incrementally) and stored as the next snapshot.
        """
        return self._run(self._diff_flow(name, collections))

    def snapshots(self, name: str) -> pl.DataFrame:
        """Return the stored snapshots of a repository: rev, data_cid, fetched_at, records.

        No network: a handle must have been fetched before (or pass the DID).
        """
        return self._snapshots_frame(name)

    def snapshot(self, name: str, rev: str | None = None,
                 collections: Sequence[str] | None = None) -> RepoSnapshot:
        """Open a stored snapshot (the newest, or revision ``rev``) without the network."""
        return self._stored_snapshot(name, rev, collections)

    def iter_repos(self, host: str, *, limit: int | None = None,
                   resume: bool = False) -> Iterator[RepoRef]:
        """Yield a :class:`RepoRef` per repository ``host`` lists (com.atproto.sync.listRepos)."""
        pager = self._pager(host, limit, resume)
        while not pager.done:
            yield from pager.take(self._run(pager.flow()))

    def list_repos(self, host: str, limit: int | None = None,
                   resume: bool = False) -> pl.DataFrame:
        """Return every repository ``host`` lists: did, head, rev, active, status.

        Args:
            host: the host's base URL (a PDS or a relay).
            limit: stop after this many repositories.
            resume: continue from the cursor saved by an earlier interrupted listing.
        """
        repos: list[RepoRef] = []
        with progress(limit, f"listing {host}", self.config.progress, unit="repo") as bar:
            for repo in self.iter_repos(host, limit=limit, resume=resume):
                repos.append(repo)
                bar.update(1)
        return repos_frame(repos)

    def _each(self, count: int, desc: str, flow_for: Callable[[int], Flow[Any]],
              record: Callable[[int, Any], None]) -> None:
        """Run ``flow_for(i)`` for every i, ``max_concurrency`` at a time, in threads.

        ``record(i, value or AtrepoError)`` is called in this thread, in order; an
        AtrepoError belongs to its repository, any other exception propagates.
        """
        def one(i: int) -> tuple[int, Any]:
            try:
                return i, self._run(flow_for(i))
            except AtrepoError as exc:
                return i, exc

        with progress(count, desc, self.config.progress, unit="repo") as bar, \
                ThreadPoolExecutor(self.config.max_concurrency) as pool:
            for i, outcome in pool.map(one, range(count)):
                record(i, outcome)
                bar.update(1)

    def fetch_records(self, dids_or_handles: Iterable[str],
                      collections: Sequence[str] | None = None) -> pl.DataFrame:
        """Return the records of many repositories as one frame (columns as ``records``).

        Repositories are fetched ``max_concurrency`` at a time. One that fails does not stop
        the call: it is listed in :attr:`last_errors` (did, error, status).
        """
        names = list(dids_or_handles)
        bulk = _Bulk(names)
        self._each(len(names), "fetching repos",
                   lambda i: self._get_repo_flow(names[i], collections), bulk.done)
        self.last_errors = bulk.error_frame()
        return bulk.records()

    def list_repos_by_collection(self, collection: str, host: str) -> pl.DataFrame:
        """Return [did] of the repositories on ``host`` that hold records of ``collection``."""
        return _dids_frame(self._run(self._by_collection_flow(collection, host)))

    def export(self, dids_or_handles_or_host: str | Iterable[str],
               out_dir: str | os.PathLike[str], collections: Sequence[str] | None = None,
               resume: bool = True) -> ExportReport:
        """Write repositories to a Parquet dataset under ``out_dir``, partitioned by collection.

        Args:
            dids_or_handles_or_host: names of repositories, or a host URL (every active
                repository it lists).
            out_dir: the dataset directory (see :mod:`atrepo.export` for the layout).
            collections: only these collections.
            resume: skip repositories a previous (possibly interrupted) run finished;
                False starts the dataset afresh.
        """
        names = _named(dids_or_handles_or_host)
        if names is None:  # a host: its active repositories
            names = [r.did for r in self.iter_repos(str(dids_or_handles_or_host)) if r.active]
        run = _ExportRun(names, out_dir, resume)
        self._each(len(names), "exporting",
                   lambda i: self._export_one_flow(names[i], run, collections), run.done)
        report = run.finish()
        self.last_errors = report.errors
        return report

    def close(self) -> None:
        """Close the HTTP connections and the cache."""
        self._http.close()
        self._identities.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """The asynchronous client: the same methods as :class:`Client`, awaited.

    Takes the same options as :class:`Client`; ``http`` is an ``httpx.AsyncClient`` and
    ``dns`` an asynchronous resolver.
    """

    def __init__(self, *, http: httpx.AsyncClient | None = None,
                 dns: AsyncDnsResolver | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._http = http or httpx.AsyncClient(timeout=self.config.timeout,
                                               follow_redirects=True)
        self._dns = dns or AsyncSystemDnsResolver()
        self._limits = AsyncHostLimits(self.config.max_per_host)

    async def _run(self, flow: Flow[T]) -> T:
        return await run_async(flow, self._http, self._dns, limits=self._limits,
                               total_timeout=self.config.body_timeout)

    async def resolve(self, identifier: str) -> Identity:
        """Return the :class:`~atrepo.identity.Identity` of a handle, DID or AT-URI."""
        return await self._run(self._resolve_flow(identifier))

    async def resolve_handle(self, handle: str) -> str:
        """Return the DID a handle points to (DNS TXT, HTTPS well-known, then XRPC)."""
        return await self._run(self._resolve_handle_flow(handle))

    async def get_repo(self, name: str, collections: Sequence[str] | None = None
                       ) -> RepoSnapshot:
        """Return a verified :class:`~atrepo.RepoSnapshot` of an account's repository."""
        return await self._run(self._get_repo_flow(name, collections))

    async def diff(self, name: str, collections: Sequence[str] | None = None
                   ) -> pl.DataFrame:
        """Return what changed since the newest stored snapshot (see Client.diff)."""
        return await self._run(self._diff_flow(name, collections))

    async def snapshots(self, name: str) -> pl.DataFrame:
        """Return the stored snapshots of a repository (see Client.snapshots)."""
        return self._snapshots_frame(name)

    async def snapshot(self, name: str, rev: str | None = None,
                       collections: Sequence[str] | None = None) -> RepoSnapshot:
        """Open a stored snapshot without the network (see Client.snapshot)."""
        return self._stored_snapshot(name, rev, collections)

    async def iter_repos(self, host: str, *, limit: int | None = None,
                         resume: bool = False) -> AsyncIterator[RepoRef]:
        """Yield a :class:`RepoRef` per repository ``host`` lists (com.atproto.sync.listRepos)."""
        pager = self._pager(host, limit, resume)
        while not pager.done:
            for repo in pager.take(await self._run(pager.flow())):
                yield repo

    async def list_repos(self, host: str, limit: int | None = None,
                         resume: bool = False) -> pl.DataFrame:
        """Return every repository ``host`` lists: did, head, rev, active, status."""
        repos: list[RepoRef] = []
        with progress(limit, f"listing {host}", self.config.progress, unit="repo") as bar:
            async for repo in self.iter_repos(host, limit=limit, resume=resume):
                repos.append(repo)
                bar.update(1)
        return repos_frame(repos)

    async def _each(self, count: int, desc: str, flow_for: Callable[[int], Flow[Any]],
                    record: Callable[[int, Any], None]) -> None:
        """Client._each with tasks under a semaphore instead of threads."""
        limit = asyncio.Semaphore(self.config.max_concurrency)

        async def one(i: int) -> Any:
            async with limit:
                return await self._run(flow_for(i))

        with progress(count, desc, self.config.progress, unit="repo") as bar:
            tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
            for i, task in enumerate(tasks):
                try:
                    record(i, await task)
                except AtrepoError as exc:  # belongs to repo i; other exceptions propagate
                    record(i, exc)
                bar.update(1)

    async def fetch_records(self, dids_or_handles: Iterable[str],
                            collections: Sequence[str] | None = None) -> pl.DataFrame:
        """Return the records of many repositories as one frame; failures go to last_errors."""
        names = list(dids_or_handles)
        bulk = _Bulk(names)
        await self._each(len(names), "fetching repos",
                         lambda i: self._get_repo_flow(names[i], collections), bulk.done)
        self.last_errors = bulk.error_frame()
        return bulk.records()

    async def list_repos_by_collection(self, collection: str, host: str) -> pl.DataFrame:
        """Return [did] of the repositories on ``host`` that hold records of ``collection``."""
        return _dids_frame(await self._run(self._by_collection_flow(collection, host)))

    async def export(self, dids_or_handles_or_host: str | Iterable[str],
                     out_dir: str | os.PathLike[str], collections: Sequence[str] | None = None,
                     resume: bool = True) -> ExportReport:
        """Write repositories to a Parquet dataset under ``out_dir`` (see Client.export)."""
        names = _named(dids_or_handles_or_host)
        if names is None:  # a host: its active repositories
            names = [r.did async for r in self.iter_repos(str(dids_or_handles_or_host))
                     if r.active]
        run = _ExportRun(names, out_dir, resume)
        await self._each(len(names), "exporting",
                         lambda i: self._export_one_flow(names[i], run, collections), run.done)
        report = run.finish()
        self.last_errors = report.errors
        return report

    async def aclose(self) -> None:
        """Close the HTTP connections and the cache."""
        await self._http.aclose()
        self._identities.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
