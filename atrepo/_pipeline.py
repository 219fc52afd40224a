"""The way of one repository, from a name to a stored, verified snapshot, for both clients.

Every step is here, in order, and nowhere else:

1. **resolve** the name to an identity (DID document: PDS and signing key), through the
   identity cache (a handle the resolver no longer resolves because the account is
   deactivated, taken down or suspended is a ``RepoUnavailable`` saying so);
2. ask ``getLatestCommit`` when an entry is stored: an unchanged repository is reopened
   from the store (one small request), its commit checked now if the client that stored
   it did not verify and this one does;
3. **fetch** the CAR with ``getRepo`` (whole, or ``since`` the stored revision) into a
   locked part file under the cache (see :mod:`atrepo._io.downloads`);
4. **verify** the commit (DID and signature) against the resolved key, re-resolving once
   when the signature fails (the account may have rotated its key);
5. **store** the blocks in the pack and walk the tree over the whole pack
   (:meth:`~atrepo._snapshot_store.SnapshotStore.add`): only a whole, checked tree is
   recorded as an entry;
6. return the **snapshot** (cut to ``collections=`` from the walk already done).

An incremental fetch that does not give a whole, verified tree falls back to a full one;
a partial tree is never returned. The network steps are generator flows (see
:mod:`atrepo._flows`), run by either client's driver; the local steps run in between.

Words (as in :mod:`atrepo._io.store` and :mod:`atrepo.snapshot`): an *entry* is one kept
revision in the store; a *snapshot* is a :class:`~atrepo.RepoSnapshot`. The public API and
its messages say *stored snapshot* for an entry (``client.snapshots()`` lists entries,
``client.snapshot()`` opens one as a snapshot).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import polars as pl

from . import car
from ._config import ClientConfig
from ._diff import diff
from ._flows import identity as identity_flows
from . import _flows as flows
from ._flows.effects import Flow
from ._io.cache import IdentityCache
from ._io.store import StoreEntry
from ._snapshot_store import SnapshotStore
from .errors import (AtrepoError, CarError, MstError, RepoUnavailable, ResolutionError,
                     SignatureError)
from .frames import snapshots_frame
from .identity import Identity
from .snapshot import RepoSnapshot, check_commit, narrowed
from .syntax import is_did, is_handle

__all__ = ["Pipeline"]

log = logging.getLogger("atrepo")


class Pipeline:
    """The per-repository steps of a client: its identity cache, its store, its flows."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        # answers depend on how they were resolved (see atrepo._io.cache)
        self.identities = IdentityCache(config.cache_path / "identity",
                                        scope=(config.plc_url, config.handle_resolver,
                                               config.verify))
        self.store = SnapshotStore(config.cache_path / "repos",
                                   max_bytes=config.max_cache_bytes,
                                   downloads=config.cache_path / "downloads")
        self.store.clean_downloads()   # what killed processes left (atrepo._io.downloads)

    # -- flows ----------------------------------------------------------------------------

    def resolve(self, identifier: str, *, fresh: bool = False) -> Flow[Identity]:
        """Resolve through the identity cache (``fresh=True`` skips it, and refreshes it)."""
        if not fresh:
            cached = self.identities.get(identifier)
            if cached is not None:
                return cached
        try:
            ident = yield from identity_flows.resolve(identifier, plc_url=self.config.plc_url,
                                                      xrpc_resolver=self.config.handle_resolver,
                                                      verify=self.config.verify)
        except ResolutionError as exc:
            yield from self._raise_if_unavailable(identifier, exc)
            self.identities.put_error(identifier, exc)
            raise
        self.identities.put(identifier, ident)
        return ident

    def _raise_if_unavailable(self, identifier: str, failure: ResolutionError) -> Flow[None]:
        """Raise RepoUnavailable when the handle resolver says why ``identifier`` failed.

        A PDS stops resolving the handle of an account it deactivated, took down or
        suspended, but its ``describeRepo`` (which takes a handle) still names the state
        (``RepoDeactivated``, ...): that is the answer a user needs, not "handle does not
        resolve". A deleted account's handle is unknown to it, as is one never used, so
        those stay a ResolutionError. Anything else the resolver says leaves ``failure``
        as it is: the question is only asked to explain it.

        Raises:
            RepoUnavailable: the account is deactivated, taken down or suspended.
        """
        resolver = self.config.handle_resolver
        handle = identifier.removeprefix("@").lower()
        if resolver is None or not is_handle(handle):
            return
        try:
            yield from flows.describe_repo(resolver, handle, policy=self.config.retry)
        except RepoUnavailable as gone:
            if gone.status != "not_found":
                raise RepoUnavailable(f"repository {gone.status}", did=None,
                                      status=gone.status, handle=handle, host=resolver,
                                      hint="the host no longer resolves this handle; it "
                                           "says the account is " + gone.status) from failure
        except AtrepoError:
            return  # not a PDS that knows the handle: the resolution error stands

    def get_repo(self, name: str, collections: Sequence[str] | None) -> Flow[RepoSnapshot]:
        """Steps 1-6 for ``name`` (see the module docstring)."""
        ident = yield from self.resolve(name)
        return (yield from self.fetch_latest(ident, collections))

    def fetch_latest(self, ident: Identity, collections: Sequence[str] | None
                     ) -> Flow[RepoSnapshot]:
        """Steps 2-6 for a resolved identity, against its newest entry if there is one."""
        return (yield from self.fetch(ident, collections, self.store.newest(ident.did)))

    def fetch(self, ident: Identity, collections: Sequence[str] | None,
              newest: StoreEntry | None, opened: RepoSnapshot | None = None
              ) -> Flow[RepoSnapshot]:
        """Steps 2-6 for a resolved identity; ``opened``, if given, is ``newest`` opened."""
        if newest is not None:
            commit_cid, rev = yield from flows.get_latest_commit(self._pds(ident),
                                                                      ident.did,
                                                                      policy=self.config.retry)
            if rev == newest.rev and commit_cid == newest.commit_cid:
                if opened is not None and (opened.verified or not self.config.verify):
                    return opened
                return (yield from self._reopen(ident, newest, collections))
            try:
                return (yield from self._download(ident, collections, since=newest.rev))
            except (CarError, MstError) as exc:
                log.info("incremental fetch of %s did not give a whole tree (%s); "
                         "fetching it in full", ident.did, exc)
        return (yield from self._download(ident, collections, since=None))

    def _download(self, ident: Identity, collections: Sequence[str] | None,
                  since: str | None) -> Flow[RepoSnapshot]:
        """Steps 3-6: download a CAR (all of it, or what is newer than ``since``), store it."""
        with self.store.download_file(ident.did) as part:
            yield from flows.get_repo(self._pds(ident), ident.did, path=str(part),
                                      since=since, max_bytes=self.config.max_repo_bytes,
                                      policy=self.config.retry)
            download = car.read_car(part, self.config.mem_limit_mb)
            try:
                key = self._signing_key(ident)
                try:
                    commit_cid = check_commit(download, did=ident.did, signing_key=key)[0]
                except SignatureError:
                    ident = yield from self.resolve(ident.did, fresh=True)
                    key = self._signing_key(ident)
                    commit_cid = check_commit(download, did=ident.did, signing_key=key)[0]
            except BaseException:
                download.close()
                raise
            whole = self.store.add(download, did=ident.did, commit_cid=str(commit_cid),
                                   signing_key=key, handle=ident.handle,
                                   handle_verified=ident.handle_verified,
                                   source="full" if since is None else "incremental",
                                   mem_limit_mb=self.config.mem_limit_mb,
                                   progress=self.config.progress)
            return whole if collections is None else narrowed(whole, collections)

    def diff(self, name: str, collections: Sequence[str] | None) -> Flow[pl.DataFrame]:
        """The newest entry against a fresh fetch (which is stored in turn)."""
        ident = yield from self.resolve(name)
        newest = self.store.newest(ident.did)
        if newest is None:
            warnings.warn(f"no stored snapshot of {ident.did} yet: every record shows as a "
                          "create", stacklevel=4)
        old = None if newest is None else self._open(
            ident.did, newest, collections, handle=ident.handle,
            signing_key=self.store.entry_key(ident.did, newest))
        new = yield from self.fetch(ident, collections, newest, old)
        return diff(old, new)

    # -- the store, offline ---------------------------------------------------------------

    def stored_did(self, name: str) -> str:
        """The DID behind ``name`` without the network: a DID, or a handle seen before."""
        if is_did(name):
            return name
        try:
            cached = self.identities.get(name)
        except ResolutionError:
            cached = None
        did = cached.did if cached is not None else \
            self.store.did_for_handle(name, verified_only=self.config.verify)
        if did is None:
            raise ResolutionError("no stored snapshot for this handle", identifier=name,
                                  hint="get_repo it once while online, or pass its DID")
        return did

    def entries_frame(self, name: str) -> pl.DataFrame:
        """The ``snapshots`` frame: one row per entry of ``name``, oldest first."""
        return snapshots_frame((e.rev, e.data_cid, e.fetched_at, e.records)
                               for e in self.store.entries(self.stored_did(name)))

    def open_stored(self, name: str, rev: str | None,
                    collections: Sequence[str] | None) -> RepoSnapshot:
        """Open the newest entry of ``name`` (or the one of revision ``rev``), offline."""
        did = self.stored_did(name)
        entries = self.store.entries(did)
        chosen = entries[-1] if entries and rev is None else \
            next((e for e in entries if e.rev == rev), None)
        if chosen is None:
            raise AtrepoError("no stored snapshot", did=did, rev=rev,
                              hint="client.snapshots(...) lists the stored revisions; "
                                   "client.get_repo(...) stores a new one")
        handle, _key, handle_verified = self.store.identity(did)
        return self._open(did, chosen, collections,
                          handle=handle if handle_verified or not self.config.verify else None,
                          signing_key=self.store.entry_key(did, chosen))

    def _reopen(self, ident: Identity, entry: StoreEntry, collections: Sequence[str] | None
                ) -> Flow[RepoSnapshot]:
        """Open an unchanged entry for a fetch: verified now if it was stored unverified.

        An entry a non-verifying client stored is checked against the resolved key before a
        verifying client is given it (re-resolving once, as for a download, in case the key
        was rotated), so what was never checked is never served as checked.

        Raises:
            SignatureError: the stored commit fails the DID's key.
        """
        key = self.store.entry_key(ident.did, entry)
        if key is None and self.config.verify:
            try:
                return self._open(ident.did, entry, collections, handle=ident.handle,
                                  signing_key=self._signing_key(ident))
            except SignatureError:
                ident = yield from self.resolve(ident.did, fresh=True)
                key = self._signing_key(ident)
        return self._open(ident.did, entry, collections, handle=ident.handle, signing_key=key)

    def _open(self, did: str, entry: StoreEntry, collections: Sequence[str] | None, *,
              handle: str | None, signing_key: str | None) -> RepoSnapshot:
        return self.store.open(did, entry, collections, mem_limit_mb=self.config.mem_limit_mb,
                               progress=self.config.progress, handle=handle,
                               signing_key=signing_key)

    # -- small parts ----------------------------------------------------------------------

    @staticmethod
    def _pds(ident: Identity) -> str:
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

    def close(self) -> None:
        """Close the identity cache."""
        self.identities.close()
