"""Listing a host's repositories: the ``listRepos`` pager with its cursor files, and
``listReposByCollection`` with its fallback. Written once for both clients.

A :class:`Pager` asks for one page at a time (``flow()``, run by the client's driver) and
is handed each answer (``take(page)``); it stops when the host gives no further cursor,
when ``limit`` repositories were taken, or when a cursor repeats (``walk_cursor``). With
``resume``, the cursor after each fully taken page is saved under the cache directory (one
small JSON file per host, replaced atomically), and a later listing of the same host starts
from it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from ._config import ClientConfig
from . import _flows as flows
from ._flows.effects import Flow
from .retry import RetryPolicy
from .repos import RepoRef
from ._names import file_name, legacy_name
from ._progress import Progress, progress
from .errors import AtrepoError, RepoUnavailable
from .frames import repos_frame

__all__ = ["Pager", "by_collection", "pager"]

PAGE_LIMIT = 1000  # the most repositories listRepos returns per page


def pager(host: str, config: ClientConfig, *, limit: int | None, resume: bool) -> Pager:
    """A :class:`Pager` over ``host`` with the client's retry policy and cursor directory.

    Raises:
        AtrepoError: ``host`` is not an http(s) URL.
    """
    if not host.startswith(("http://", "https://")):
        raise AtrepoError("host must be a URL", host=host, hint="e.g. https://bsky.network")
    return Pager(host, limit=limit, resume=resume, state_dir=config.cache_path / "cursors",
                 policy=config.retry, progress_bar=config.progress)


class Pager:
    """Paging through ``com.atproto.sync.listRepos`` (see the module docstring)."""

    def __init__(self, host: str, *, limit: int | None, resume: bool, state_dir: Path,
                 policy: RetryPolicy, progress_bar: bool | None = None) -> None:
        self.host = host.rstrip("/")
        self.policy = policy
        self.limit = limit
        self.resume = resume
        self.state = state_dir / (file_name(self.host.split("://")[-1]) + ".json")
        self.cursor = self._saved_cursor() if resume else None
        self.count = 0
        self.exhausted = limit is not None and limit <= 0
        self._progress = progress_bar
        self._kept: list[RepoRef] | None = None
        self._bar: Progress | None = None

    def _saved_cursor(self) -> str | None:
        """The saved cursor of this host; also from a file under an earlier version's name
        (unbounded and not one to one, hence the check of its ``host``)."""
        authority = self.host.split("://")[-1]
        legacy = self.state.with_name(legacy_name(authority) + ".json")
        for path in (self.state, legacy):
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(saved, dict) and (path == self.state or saved.get("host") == self.host):
                cursor = saved.get("cursor")
                return cursor if isinstance(cursor, str) else None
        return None

    def flow(self) -> Flow[tuple[list[RepoRef], str | None]]:
        """The request for the next page."""
        remaining = PAGE_LIMIT if self.limit is None else min(PAGE_LIMIT,
                                                              self.limit - self.count)
        return flows.list_repos_page(self.host, cursor=self.cursor, limit=remaining,
                                          policy=self.policy)

    def take(self, page: tuple[list[RepoRef], str | None]) -> list[RepoRef]:
        """Record a page's answer; return its repositories (cut to ``limit``)."""
        repos, page_cursor = page
        if self.limit is not None:
            repos = repos[: self.limit - self.count]
        self.count += len(repos)
        next_cursor, warning = flows.walk_cursor(self.cursor, page_cursor, len(repos))
        if warning:
            warnings.warn(f"listRepos on {self.host}: {warning}", stacklevel=3)
        self.cursor = next_cursor
        self.exhausted = next_cursor is None or (self.limit is not None
                                                 and self.count >= self.limit)
        if self.resume:
            self._save()
        if self._kept is not None:
            self._kept.extend(repos)
        if self._bar is not None:
            self._bar.update(len(repos))
        return repos

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Keep every repository taken inside, for :meth:`frame`, with a progress bar."""
        self._kept = []
        with progress(self.limit, f"listing {self.host}", self._progress, unit="repo") as bar:
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None

    def frame(self) -> pl.DataFrame:
        """The ``list_repos`` frame of what was taken while :meth:`collecting`."""
        return repos_frame((r.did, r.head, r.rev, r.active, r.status)
                           for r in self._kept or [])

    def _save(self) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        # a temporary name of this writer's own: listings of one host in two processes
        # must not replace each other's half-written file
        tmp = self.state.with_name(f"{self.state.name}.{os.getpid()}.{id(self)}.tmp")
        tmp.write_text(json.dumps({"host": self.host, "cursor": self.cursor}))
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
            warnings.warn(f"listReposByCollection on {host}: {warning}", stacklevel=3)
        if cursor is None:
            return dids


def _by_describing(collection: str, host: str, config: ClientConfig) -> Flow[list[str]]:
    warnings.warn(f"{host} does not serve com.atproto.sync.listReposByCollection; "
                  "asking describeRepo for every repository it lists instead",
                  stacklevel=4)
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
