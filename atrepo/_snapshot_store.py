"""The store seen from the frames side: downloads go in, :class:`~atrepo.RepoSnapshot` comes out.

:class:`~atrepo._io.store.PackStore` keeps packs and entries on disk and knows nothing of
snapshots or polars; :class:`SnapshotStore` adds the two operations that do:

* :meth:`SnapshotStore.add` appends a download to the pack, opens the new commit over the
  whole pack, walks it, checks that every record block is present, and only then records
  the entry (so an entry always names a whole, checked tree);
* :meth:`SnapshotStore.open` opens an entry again, without walking: its tree was checked
  when it was recorded, so it is walked only when its records are first needed (a diff
  never needs to), and its record counts come from the entry.

A sparse entry (``StoreEntry.held``) holds only the part of its tree that ``held`` covers: it
is added walked over that part alone, and opened only for collections inside it (by default
exactly those), so its snapshots and the diffs over them never see the absent part of the tree,
let alone as deleted records.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import car as _car
from ._io.store import PackStore, StoreEntry
from .errors import AtrepoError
from .snapshot import RepoSnapshot, check_complete, covers, open_snapshot

__all__ = ["SnapshotStore"]


class SnapshotStore(PackStore):
    """The pack store, adding downloads as entries and opening entries as snapshots."""

    def add(self, download: _car.CarFile, *, did: str, commit_cid: str,
            signing_key: str | None, handle: str | None, source: str, mem_limit_mb: float,
            progress: bool | None = None, handle_verified: bool = False,
            held: list[str] | None = None, bytes_downloaded: int | None = None
            ) -> RepoSnapshot:
        """Store a download as the next entry of ``did``; return its snapshot, walked whole.

        The caller has checked the commit (DID, and signature against ``signing_key`` when
        one is given): it is not checked again here, once per fetch being enough (the pack
        holds the very blocks checked), and the snapshot is ``verified`` when a
        ``signing_key`` is given. On any error nothing is recorded. ``download`` belongs to
        the store from here on. ``handle_verified`` says whether ``handle`` was checked both
        ways (recorded, so that a verifying client is never shown a handle a non-verifying
        one stored). ``held``: the collections of a sparse download, the only part of the
        tree walked, checked and recorded as held (the snapshot is opened with
        ``collections=held``). ``bytes_downloaded``: what the download cost, when that is
        not the CAR's size (a sparse one's is its answers' bodies).

        Raises:
            CarError: the download is not a CAR file, or a block does not match its CID.
            MstError: the tree over the pack is incomplete or malformed.
            SignatureError: the commit belongs to another DID.
        """
        size = download.size if bytes_downloaded is None else bytes_downloaded
        with self.writing(did) as writer:
            pack = writer.append(download, mem_limit_mb)
            try:
                snap = open_snapshot(pack, did=did, handle=handle, progress_bar=progress,
                                     root=commit_cid, source=source, bytes_downloaded=size,
                                     collections=held)
                snap.verified = signing_key is not None  # checked by the caller
                check_complete(snap)
            except BaseException:
                pack.close()
                raise
            writer.commit(StoreEntry(
                rev=snap.rev, commit_cid=commit_cid, data_cid=snap.data_cid,
                fetched_at=snap.fetched_at, records=len(snap), source=source,
                bytes_downloaded=size, verified=snap.verified, pack_bytes=pack.size,
                collections=snap._known_counts(), held=held), handle=handle,
                signing_key=signing_key,
                handle_verified=handle_verified)
        return snap

    def open(self, did: str, entry: StoreEntry, collections: Sequence[str] | None, *,
             mem_limit_mb: float, progress: bool | None, signing_key: str | None,
             handle: str | None, source: str = "cache") -> RepoSnapshot:
        """Open ``entry`` of ``did`` from its pack (no network, no walk yet).

        The commit is checked against ``signing_key`` when one is given (the snapshot is
        ``verified`` then); the caller chooses it and ``handle`` (see
        :meth:`~atrepo._io.store.PackStore.entry_key` and
        :meth:`~atrepo._io.store.PackStore.identity`). A sparse entry opens with
        ``collections=None`` as its held collections.

        Raises:
            AtrepoError: a sparse entry does not hold all of ``collections``.
            CarError: the pack or the entry's commit block is unreadable.
            SignatureError: the commit fails ``signing_key``.
        """
        if entry.held is not None and collections is None:
            collections = entry.held
        elif entry.held is not None and not covers(entry.held, collections):
            raise AtrepoError("the stored snapshot holds only some collections (it was "
                              "fetched sparse)", did=did, rev=entry.rev,
                              held=",".join(entry.held),
                              asked="all" if collections is None else ",".join(collections),
                              hint="ask for collections it holds, or get_repo(...) the others")
        pack = self.open_pack(did, mem_limit_mb)
        try:
            return open_snapshot(pack, did=did, signing_key=signing_key,
                                 collections=collections, handle=handle,
                                 fetched_at=entry.fetched_at, progress_bar=progress,
                                 root=entry.commit_cid, source=source, walk_now=False,
                                 counts=entry.collections)
        except BaseException:
            pack.close()
            raise
