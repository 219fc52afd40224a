"""Client and AsyncClient: one core (:class:`_BaseClient`), two thin drivers.

Every operation is written once, as a generator flow in :class:`_BaseClient` that yields
network effects (HTTP requests, DNS lookups, sleeps) and does its local work (reading the
downloaded CAR) in between. :class:`Client` runs flows with ``run_sync`` over an
``httpx.Client`` and never touches asyncio, so it works inside a running Jupyter event
loop; :class:`AsyncClient` runs the same flows with ``run_async`` over an
``httpx.AsyncClient``. The public methods of the two differ only in ``def``/``async def``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from . import car
from ._config import ClientConfig
from ._flows import identity as identity_flows
from ._flows import sync as sync_flows
from ._flows.effects import Flow
from ._io.drivers import (
    AsyncDnsResolver,
    AsyncSystemDnsResolver,
    DnsResolver,
    SystemDnsResolver,
    run_async,
    run_sync,
)
from .errors import ResolutionError, SignatureError
from .identity import Identity
from .snapshot import RepoSnapshot, open_snapshot

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")


def _safe(did: str) -> str:
    """A DID as a file-name component."""
    return did.replace(":", "_").replace("%", "_").replace("/", "_")


class _BaseClient:
    """Configuration and the flows shared by Client and AsyncClient."""

    def __init__(self, *, plc_url: str = "https://plc.directory",
                 handle_resolver: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 30.0, max_concurrency: int = 8, mem_limit_mb: float = 64,
                 verify: bool = True, progress: bool | None = None) -> None:
        self.config = ClientConfig(
            plc_url=plc_url.rstrip("/"),
            handle_resolver=handle_resolver.rstrip("/") if handle_resolver else None,
            cache_dir=None if cache_dir is None else Path(cache_dir), timeout=timeout,
            max_concurrency=max_concurrency, mem_limit_mb=mem_limit_mb, verify=verify,
            progress=progress)

    # -- flows ----------------------------------------------------------------------------

    def _resolve_flow(self, identifier: str) -> Flow[Identity]:
        return identity_flows.resolve(identifier, plc_url=self.config.plc_url,
                                      xrpc_resolver=self.config.handle_resolver,
                                      verify=self.config.verify)

    def _resolve_handle_flow(self, handle: str) -> Flow[str]:
        return identity_flows.resolve_handle(handle,
                                             xrpc_resolver=self.config.handle_resolver)

    def _get_repo_flow(self, name: str, collections: Sequence[str] | None) -> Flow[RepoSnapshot]:
        """Resolve, download the CAR to disk, then read and verify it.

        A signature that fails against the resolved key is retried once against a freshly
        resolved DID document: the account may have rotated its key since the first lookup.
        """
        ident = yield from self._resolve_flow(name)
        if ident.pds is None:
            raise ResolutionError("DID document names no PDS", identifier=ident.did)
        part = self._new_path("downloads", ident.did, ".part")
        try:
            yield from sync_flows.get_repo(ident.pds, ident.did, path=str(part),
                                           max_bytes=self.config.max_repo_bytes)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        # kept in the cache: the snapshot reads records from it lazily, worker processes
        # open it by path, and later issues list and diff stored snapshots
        path = self._new_path(f"repos/{_safe(ident.did)}", ident.did, ".car")
        os.replace(part, path)
        try:
            try:
                return self._read(path, ident, collections)
            except SignatureError:
                fresh = yield from self._resolve_flow(ident.did)
                return self._read(path, fresh, collections)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    # -- local work (no network) ----------------------------------------------------------

    def _new_path(self, folder: str, did: str, suffix: str) -> Path:
        where = self.config.cache_path / folder
        where.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=_safe(did) + "-", suffix=suffix, dir=where)
        os.close(handle)
        return Path(name)

    def _read(self, path: Path, ident: Identity, collections: Sequence[str] | None
              ) -> RepoSnapshot:
        key = ident.signing_key if self.config.verify else None
        if self.config.verify and key is None:
            raise ResolutionError("DID document has no signing key to verify with",
                                  identifier=ident.did)
        carfile = car.read_car(path, self.config.mem_limit_mb)
        return open_snapshot(carfile, did=ident.did, signing_key=key, collections=collections,
                             handle=ident.handle, progress_bar=self.config.progress)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} plc={self.config.plc_url} cache={self.config.cache_path}>"


class Client(_BaseClient):
    """The synchronous client. Safe to use inside a running event loop (Jupyter).

    Example::

        with atrepo.Client() as client:
            snap = client.get_repo("alice.bsky.social")
    """

    def __init__(self, *, http: httpx.Client | None = None, dns: DnsResolver | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        self._http = http or httpx.Client(timeout=self.config.timeout, follow_redirects=True)
        self._dns = dns or SystemDnsResolver()

    def _run(self, flow: Flow[T]) -> T:
        return run_sync(flow, self._http, self._dns)

    def resolve(self, identifier: str) -> Identity:
        """Return the :class:`~atrepo.identity.Identity` of a handle, DID or AT-URI."""
        return self._run(self._resolve_flow(identifier))

    def resolve_handle(self, handle: str) -> str:
        """Return the DID a handle points to (DNS TXT, HTTPS well-known, then XRPC)."""
        return self._run(self._resolve_handle_flow(handle))

    def get_repo(self, name: str, collections: Sequence[str] | None = None) -> RepoSnapshot:
        """Return a verified :class:`~atrepo.RepoSnapshot` of an account's repository."""
        return self._run(self._get_repo_flow(name, collections))

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """The asynchronous client: the same methods as :class:`Client`, awaited."""

    def __init__(self, *, http: httpx.AsyncClient | None = None,
                 dns: AsyncDnsResolver | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._http = http or httpx.AsyncClient(timeout=self.config.timeout,
                                               follow_redirects=True)
        self._dns = dns or AsyncSystemDnsResolver()

    async def _run(self, flow: Flow[T]) -> T:
        return await run_async(flow, self._http, self._dns)

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

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
