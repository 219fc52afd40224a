"""The way of one repository, from a name to a stored, verified snapshot, for both clients.

Every step is here, in order, and nowhere else:

1. **resolve** the name to an identity (DID document: PDS and signing key), through the
   identity cache (a handle the resolver no longer resolves because the account is
   deactivated, taken down or suspended is a ``RepoUnavailable`` saying so);
2. ask ``getLatestCommit`` when an entry is stored (unless the caller asked already and
   hands the answer on, as an export does to decide whether to fetch at all): an unchanged
   repository is reopened from the store (one small request), its commit checked now if the
   client that stored it did not verify and this one does;
3. **fetch** the CAR with ``getRepo`` (whole, or ``since`` the stored revision) into a
   locked part file under the cache (see :mod:`atrepo._io.downloads`), or, for a *sparse*
   fetch of ``collections=``, the commit and only the MST nodes and records of their key
   ranges (:mod:`atrepo._flows.sparse`), written as a CAR;
4. **verify** the commit (DID and signature) against the resolved key, re-resolving once
   when the signature fails (the account may have rotated its key);
5. **store** the blocks in the pack and walk the tree over the whole pack
   (:meth:`~atrepo._snapshot_store.SnapshotStore.add`): only a whole, checked tree is
   recorded as an entry;
6. return the **snapshot** (cut to ``collections=`` from the walk already done).

An incremental fetch that does not give a whole, verified tree falls back to a full one;
a partial tree is never returned.

Sparse fetches (``sparse=``: None decides, True, False never; only with ``collections=``):
``None`` fetches sparse unless the root node says the repository is small (a whole CAR is
then cheaper than the rounds); bulk calls (``fetch_records``, ``export``) decide the same way
for their ``collections=``. The ``getBlocks`` requests of a round go ``max_per_host`` at a
time. A host that lacks ``getRecord`` or ``getBlocks`` is fetched in full instead. A sparse
entry records the collections it holds (``StoreEntry.held``, the ``collections`` column of
``client.snapshots()``); it is reopened only for collections inside them, is never the base
of an incremental fetch (its pack lacks the rest of the tree: a full fetch follows it, or a
sparse one asking only for the blocks its pack lacks), and a diff against it covers only the
collections it holds, with a warning saying so (:func:`atrepo.diff` compares the key ranges
both snapshots were opened with). The network steps are generator flows (see
:mod:`atrepo._flows`), run by either client's driver; the local steps run in between.

Words (as in :mod:`atrepo._io.store` and :mod:`atrepo.snapshot`): an *entry* is one kept
revision in the store; a *snapshot* is a :class:`~atrepo.RepoSnapshot`. The public API and
its messages say *stored snapshot* for an entry (``client.snapshots()`` lists entries,
``client.snapshot()`` opens one as a snapshot).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from . import car, cbor
from ._args import check_flag
from ._config import ClientConfig
from ._diff import diff
from ._flows import identity as identity_flows
from . import _flows as flows
from ._flows.effects import Flow
from ._flows.repo import MethodMissing
from ._flows.sparse import fetch_sparse
from ._io.cache import IdentityCache
from ._io.store import StoreEntry
from ._snapshot_store import SnapshotStore
from ._varint import encode_varint
from .cid import CID
from ._warn import warn
from .errors import (AtrepoError, CarError, MstError, RepoUnavailable, ResolutionError,
                     SignatureError, UsageError)
from .frames import snapshots_frame
from .identity import Identity
from .snapshot import RepoSnapshot, check_commit, collection_ranges, covers, narrowed
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

    def get_repo(self, name: str, collections: Sequence[str] | None,
                 sparse: bool | None = None) -> Flow[RepoSnapshot]:
        """Steps 1-6 for ``name`` (see the module docstring).

        Raises:
            UsageError: ``sparse`` is not True, False or None, or True without collections.
        """
        if sparse is not None:
            check_flag(sparse, argument="sparse")
            if sparse and collections is None:
                raise UsageError("a sparse fetch needs collections=", argument="sparse",
                                 hint="name the collections to fetch, or leave sparse=None")
        ident = yield from self.resolve(name)
        return (yield from self.fetch_latest(ident, collections, sparse))

    def fetch_latest(self, ident: Identity, collections: Sequence[str] | None,
                     sparse: bool | None = None, *,
                     head: tuple[str, str] | None = None) -> Flow[RepoSnapshot]:
        """Steps 2-6 for a resolved identity, against its newest entry if there is one.

        ``head``: the (commit CID, rev) ``getLatestCommit`` just answered, when the caller
        asked it already (step 2 then asks nothing).
        """
        return (yield from self.fetch(ident, collections, self.store.newest(ident.did),
                                      sparse=sparse, head=head))

    def fetch(self, ident: Identity, collections: Sequence[str] | None,
              newest: StoreEntry | None, opened: RepoSnapshot | None = None, *,
              sparse: bool | None = None,
              head: tuple[str, str] | None = None) -> Flow[RepoSnapshot]:
        """Steps 2-6 for a resolved identity; ``opened``, if given, is ``newest`` opened;
        ``head``, if given, is the repository's (commit CID, rev) just asked."""
        if newest is not None:
            commit_cid, rev = head if head is not None else (
                yield from flows.get_latest_commit(self._pds(ident), ident.did,
                                                   policy=self.config.retry))
            current = rev == newest.rev and commit_cid == newest.commit_cid
            if current and covers(newest.held, collections):
                if opened is not None and (opened.verified or not self.config.verify):
                    return opened
                return (yield from self._reopen(ident, newest, collections))
            if not current and newest.held is None and sparse is not True:
                try:
                    return (yield from self._download(ident, collections, since=newest.rev))
                except (CarError, MstError) as exc:
                    log.info("incremental fetch of %s did not give a whole tree (%s); "
                             "fetching it in full", ident.did, exc)
        if collections is not None and sparse is not False:
            try:
                snap = yield from self._sparse(ident, collections, newest,
                                               decide=sparse is None)
            except MethodMissing as exc:
                log.info("%s cannot be fetched sparse (%s); fetching it in full",
                         ident.did, exc)
            else:
                if snap is not None:
                    return snap
        return (yield from self._download(ident, collections, since=None))

    def _download(self, ident: Identity, collections: Sequence[str] | None,
                  since: str | None) -> Flow[RepoSnapshot]:
        """Steps 3-6: download a CAR (all of it, or what is newer than ``since``), store it."""
        with self.store.download_file(ident.did) as part:
            yield from flows.get_repo(self._pds(ident), ident.did, path=str(part),
                                      since=since, max_bytes=self.config.max_repo_bytes,
                                      policy=self.config.retry)
            download = car.read_car(part, self.config.mem_limit_mb)
            return (yield from self._store(ident, download, collections,
                                           source="full" if since is None else "incremental"))

    def _sparse(self, ident: Identity, collections: Sequence[str],
                newest: StoreEntry | None, *, decide: bool) -> Flow[RepoSnapshot | None]:
        """Steps 3-6 of a sparse fetch of ``collections``; None when ``decide`` found the
        repository too small to be worth it.

        The blocks are written as they arrive, then framed as a CAR rooted at the commit,
        which is verified and stored as any download is. Blocks the store holds for the
        repository are not asked for again, so a stored repository costs what changed. When
        the newest entry is a sparse one of the same commit, the new entry holds both
        entries' collections.
        """
        ranges = collection_ranges(collections) or []
        did = ident.did
        pack = None if newest is None else self.store.open_pack(did, self.config.mem_limit_mb)
        with self.store.download_file(did) as blocks, self.store.download_file(did) as part:
            try:
                with open(blocks, "wb") as out:
                    def sink(raw: bytes, data: bytes) -> None:
                        out.write(encode_varint(len(raw) + len(data)) + raw + data)

                    got = yield from fetch_sparse(
                        self._pds(ident), did, ranges, sink=sink, decide=decide,
                        max_bytes=self.config.max_repo_bytes, policy=self.config.retry,
                        have=None if pack is None else pack.get_raw,
                        width=self.config.max_per_host)
            finally:
                if pack is not None:
                    pack.close()
            if got is None:
                return None
            _frame_car(part, got.commit_cid, blocks)
            held = list(collections)
            if newest is not None and newest.held is not None and \
                    newest.commit_cid == str(CID.from_raw(got.commit_cid)):
                held = sorted({*newest.held, *collections})
            download = car.read_car(part, self.config.mem_limit_mb)
            return (yield from self._store(ident, download, collections, source="sparse",
                                           held=held, size=got.size))

    def _store(self, ident: Identity, download: car.CarFile,
               collections: Sequence[str] | None, *, source: str,
               held: list[str] | None = None, size: int | None = None) -> Flow[RepoSnapshot]:
        """Steps 4-6: verify the commit of ``download``, store it, return the snapshot.

        ``held`` and ``size`` are a sparse download's (see
        :meth:`~atrepo._snapshot_store.SnapshotStore.add`).
        """
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
                               handle_verified=ident.handle_verified, source=source,
                               mem_limit_mb=self.config.mem_limit_mb,
                               progress=self.config.progress, held=held,
                               bytes_downloaded=size)
        return whole if collections is None or list(collections) == held else \
            narrowed(whole, collections)

    def diff(self, name: str, collections: Sequence[str] | None) -> Flow[pl.DataFrame]:
        """The newest entry against a fresh fetch (which is stored in turn)."""
        ident = yield from self.resolve(name)
        newest = self.store.newest(ident.did)
        partial = newest is not None and not covers(newest.held, collections)
        view = newest.held if newest is not None and partial else collections
        old = None if newest is None else self._open(
            ident.did, newest, view, handle=ident.handle,
            signing_key=self.store.entry_key(ident.did, newest))
        new = yield from self.fetch(ident, collections, newest, old, sparse=None)
        # warned only once the fetch succeeded: an unavailable repository raises alone
        if newest is None:
            warn(f"no stored snapshot of {ident.did} yet: every record shows as a create")
        elif partial:
            warn(f"the stored snapshot of {ident.did} holds only "
                 f"{', '.join(newest.held or ())} (it was fetched sparse): the diff "
                 "covers only what both snapshots hold")
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
        return snapshots_frame((e.rev, e.data_cid, e.fetched_at, e.records, e.held)
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


def _frame_car(path: Path, root: bytes, blocks: Path) -> None:
    """Write a CARv1 at ``path``: a header naming ``root``, then the frames in ``blocks``."""
    header = cbor.encode({"roots": [CID.from_raw(root)], "version": 1})
    with open(path, "wb") as out, open(blocks, "rb") as frames:
        out.write(encode_varint(len(header)) + header)
        shutil.copyfileobj(frames, out)
