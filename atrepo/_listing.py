"""Listings: a host's repositories (``listRepos``), a relay's hosts (``listHosts``) and the PLC
directory's operation log (``/export``), each by one :class:`Pager` with its cursor files;
and ``listReposByCollection`` with its fallback. Written once for both clients.

A :class:`Pager` asks for one page at a time (``flow()``, run by the client's driver) and
is handed each answer (``take(page)``); it stops when the host gives no further cursor,
when ``limit`` items were taken, or when a cursor repeats (``walk_cursor``). With
``resume``, the cursor after each fully taken page is saved under the cache directory (one
small JSON file per listing and host, replaced atomically), and a later listing of the same
host starts from it. While collecting a frame, the pages' frames are combined every
:data:`COMPACT_PAGES` pages, so memory holds frames, not every page's objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import polars as pl

from ._config import ClientConfig
from . import _flows as flows
from ._flows.effects import Flow
from ._flows.listing import HostRef, host_url, list_hosts_page
from ._flows.plc import EXPORT_COUNT, PlcOp, export_page
from .retry import RetryPolicy
from .repos import RepoRef
from ._names import file_name, legacy_name
from ._progress import Progress, progress
from ._warn import warn
from .errors import AtrepoError, RepoUnavailable
from .frames import current_plc, hosts_frame, plc_frame, repos_frame

__all__ = ["Pager", "by_collection", "hosts_pager", "pager", "plc_pager"]

PAGE_LIMIT = 1000  # the most repositories listRepos (and hosts listHosts) returns per page
COMPACT_PAGES = 64  # pages' frames kept before they are combined into one
T = TypeVar("T")
Ask = Callable[[str | None, int], Flow[tuple[list[T], str | None]]]


def pager(host: str, config: ClientConfig, *, limit: int | None, resume: bool
          ) -> Pager[RepoRef]:
    """A :class:`Pager` over ``host`` with the client's retry policy and cursor directory.

    Raises:
        AtrepoError: ``host`` is not an http(s) URL.
    """
    if not host.startswith(("http://", "https://")):
        raise AtrepoError("host must be a URL", host=host, hint="e.g. https://bsky.network")
    return Pager(host, limit=limit, resume=resume, state_dir=config.cache_path / "cursors",
                 policy=config.retry, progress_bar=config.progress)


def hosts_pager(relay: str, config: ClientConfig, *, limit: int | None, resume: bool
                ) -> Pager[HostRef]:
    """A :class:`Pager` over a relay's ``com.atproto.sync.listHosts``."""
    relay = relay.rstrip("/")

    def ask(cursor: str | None, count: int) -> Flow[tuple[list[HostRef], str | None]]:
        return list_hosts_page(relay, cursor=cursor, limit=count, policy=config.retry)

    return Pager(relay, limit=limit, resume=resume, state_dir=config.cache_path / "cursors",
                 policy=config.retry, progress_bar=config.progress, method="listHosts",
                 prefix="hosts-", ask=ask, page_frame=_hosts_page, unit="host")


def plc_pager(config: ClientConfig, *, after: str | None, limit: int | None, resume: bool
              ) -> Pager[PlcOp]:
    """A :class:`Pager` over the client's PLC directory's export, from ``after``.

    Its frame is each DID's current state (:func:`~atrepo.frames.current_plc`); nullified
    operations are read (and counted against ``limit``) but are never a DID's state. The log
    only grows, so a finished listing saves the time of its last operation: resuming it
    reads what was added since.
    """
    plc = config.plc_url

    def ask(cursor: str | None, count: int) -> Flow[tuple[list[PlcOp], str | None]]:
        return export_page(plc, after=cursor, limit=count, policy=config.retry)

    return Pager(plc, limit=limit, resume=resume, state_dir=config.cache_path / "cursors",
                 policy=config.retry, progress_bar=config.progress, method="the PLC export",
                 prefix="plc-", ask=ask, page_frame=_plc_page, combine=current_plc, start=after,
                 page_limit=EXPORT_COUNT, unit="op", end=_plc_end)


def _repos_page(repos: list[RepoRef]) -> pl.DataFrame:
    return repos_frame((r.did, r.head, r.rev, r.active, r.status) for r in repos)


def _hosts_page(hosts: list[HostRef]) -> pl.DataFrame:
    return hosts_frame((host_url(h.hostname), h.hostname, h.status, h.account_count, h.seq)
                       for h in hosts)


def _plc_page(ops: list[PlcOp]) -> pl.DataFrame:
    return plc_frame((op.did, op.handle, op.pds, op.signing_key, op.status, op.created, op.cid)
                     for op in ops if not op.nullified)


def _plc_end(ops: list[PlcOp]) -> str | None:
    return ops[-1].created_at if ops else None


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames)


class Pager(Generic[T]):
    """Paging through a cursor listing (see the module docstring); ``listRepos`` by default.

    Args:
        host: the server listed (its cursor file is named after it).
        limit: stop after this many items (None: all).
        resume: start from the saved cursor, and save it after each page.
        state_dir: the directory of cursor files.
        policy: the retry budgets and delays of ``listRepos`` pages.
        progress_bar: the client's ``progress`` option.
        method: what is listed, for warnings.
        prefix: the start of the cursor file's name (listings other than listRepos have
            one, so that each listing of one host has its own cursor).
        ask: ``(cursor, count) -> flow of (items, next cursor)``: one page (default: a page
            of ``host``'s listRepos).
        page_frame: one page's items as a frame (default: the ``list_repos`` frame).
        combine: the frame of the pages' frames, given oldest first; also applied every
            :data:`COMPACT_PAGES` pages, so combining combined frames must give the same.
        start: the cursor to start from when no saved one is resumed.
        page_limit: the most items one page is asked for.
        unit: the progress bar's unit.
        end: for a log that only grows: the cursor after the last page's items (None when
            it had none: the cursor it was asked with), saved when the listing ends, so that
            resuming a finished listing reads only what was added since. Without it, a
            finished listing saves no cursor, and resuming it starts from the beginning.
    """

    def __init__(self, host: str, *, limit: int | None, resume: bool, state_dir: Path,
                 policy: RetryPolicy, progress_bar: bool | None = None,
                 method: str = "listRepos", prefix: str = "", ask: Ask[T] | None = None,
                 page_frame: Callable[[list[T]], pl.DataFrame] | None = None,
                 combine: Callable[[list[pl.DataFrame]], pl.DataFrame] = _concat,
                 start: str | None = None, page_limit: int = PAGE_LIMIT,
                 unit: str = "repo",
                 end: Callable[[list[T]], str | None] | None = None) -> None:
        self.host = host.rstrip("/")
        self.policy = policy
        self.limit = limit
        self.resume = resume
        self.state = state_dir / (prefix + file_name(self.host.split("://")[-1]) + ".json")
        self.method = method
        self.prefix = prefix
        self.cursor = (self._saved_cursor() if resume else None) or start
        self.count = 0
        self.exhausted = limit is not None and limit <= 0
        self._ask: Ask[Any] = ask or self._list_repos_page
        self._page_frame: Callable[[list[Any]], pl.DataFrame] = page_frame or _repos_page
        self._combine = combine
        self._page_limit = page_limit
        self._unit = unit
        self._end: Callable[[list[Any]], str | None] | None = end
        self._progress = progress_bar
        self._kept: list[pl.DataFrame] | None = None
        self._bar: Progress | None = None

    def _saved_cursor(self) -> str | None:
        """The saved cursor of this host; also from a file under an earlier version's name
        (unbounded and not one to one, hence the check of its ``host``)."""
        authority = self.host.split("://")[-1]
        legacy = self.state.with_name(legacy_name(authority) + ".json")
        # earlier versions saved listRepos cursors only, without a prefix
        for path in (self.state, legacy) if not self.prefix else (self.state,):
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(saved, dict) and (path == self.state or saved.get("host") == self.host):
                cursor = saved.get("cursor")
                return cursor if isinstance(cursor, str) else None
        return None

    def _list_repos_page(self, cursor: str | None, count: int
                    ) -> Flow[tuple[list[RepoRef], str | None]]:
        return flows.list_repos_page(self.host, cursor=cursor, limit=count,
                                     policy=self.policy)

    def flow(self) -> Flow[tuple[list[T], str | None]]:
        """The request for the next page."""
        remaining = self._page_limit if self.limit is None else min(self._page_limit,
                                                                    self.limit - self.count)
        return self._ask(self.cursor, remaining)

    def take(self, page: tuple[list[T], str | None]) -> list[T]:
        """Record a page's answer; return its items (cut to ``limit``)."""
        repos, page_cursor = page
        if self.limit is not None:
            repos = repos[: self.limit - self.count]
        self.count += len(repos)
        next_cursor, warning = flows.walk_cursor(self.cursor, page_cursor, len(repos))
        if warning:
            warn(f"{self.method} on {self.host}: {warning}")
        previous, self.cursor = self.cursor, next_cursor
        self.exhausted = next_cursor is None or (self.limit is not None
                                                 and self.count >= self.limit)
        if self.resume:
            end = None if next_cursor is not None or self._end is None else \
                self._end(repos) or previous
            self._save(next_cursor or end)
        if self._kept is not None:
            self._kept.append(self._page_frame(repos))
            if len(self._kept) >= COMPACT_PAGES:
                self._kept = [self._combine(self._kept)]
        if self._bar is not None:
            self._bar.update(len(repos))
        return repos

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Keep every page taken inside, for :meth:`frame`, with a progress bar."""
        self._kept = []
        with progress(self.limit, f"listing {self.host}", self._progress,
                      unit=self._unit) as bar:
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None

    def frame(self) -> pl.DataFrame:
        """The frame of what was taken while :meth:`collecting` (its schema when empty)."""
        return self._combine(self._kept or [self._page_frame([])])

    def _save(self, cursor: str | None) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        # a temporary name of this writer's own: listings of one host in two processes
        # must not replace each other's half-written file
        tmp = self.state.with_name(f"{self.state.name}.{os.getpid()}.{id(self)}.tmp")
        tmp.write_text(json.dumps({"host": self.host, "cursor": cursor}))
        os.replace(tmp, self.state)


def by_collection(collection: str, host: str, config: ClientConfig) -> Flow[list[str]]:
    """DIDs whose repositories hold ``collection``, by listReposByCollection.

    Where the host does not serve that method, every active repository it lists is
    asked for its collections with describeRepo on the same host (so the fallback
    suits a PDS, not a relay), and a warning says so.
    """
    dids: list[str] = []
    cursor: str | None = None
    host = host.rstrip("/")
    while True:
        page = yield from flows.list_repos_by_collection_page(
            host, collection, cursor=cursor, policy=config.retry)
        if page is None:
            return (yield from _by_describing(collection, host, config))
        dids.extend(page[0])
        cursor, warning = flows.walk_cursor(cursor, page[1], len(page[0]))
        if warning:
            warn(f"listReposByCollection on {host}: {warning}")
        if cursor is None:
            return dids


def _by_describing(collection: str, host: str, config: ClientConfig) -> Flow[list[str]]:
    warn(f"{host} does not serve com.atproto.sync.listReposByCollection; "
         "asking describeRepo for every repository it lists instead")
    listing = pager(host, config, limit=None, resume=False)
    dids = []
    while not listing.exhausted:
        for repo in listing.take((yield from listing.flow())):
            if not repo.active:
                continue
            try:
                held = yield from flows.describe_repo(host, repo.did, policy=config.retry)
            except RepoUnavailable:  # went away between the listing and the question
                continue
            if collection in held:
                dids.append(repo.did)
    return dids
