"""The store seen from the frames side: downloads go in, :class:`~atrepo.RepoSnapshot` comes out.

:class:`~atrepo._io.store.PackStore` keeps packs and entries on disk and knows nothing of
snapshots or polars; :class:`SnapshotStore` adds the two operations that do:

* :meth:`SnapshotStore.add` appends a download to the pack, opens the new commit over the
  whole pack, walks it, checks that every record block is present, and only then records
  the entry (so an entry always names a whole, checked tree);
* :meth:`SnapshotStore.open` opens an entry again, without walking: its tree was checked
  when it was recorded, so it is walked only when its records are first needed (a diff
  never needs to), and its record counts come from the entry.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import car as _car
from ._io.store import PackStore, StoreEntry
from .snapshot import RepoSnapshot, check_complete, open_snapshot

__all__ = ["SnapshotStore"]


class SnapshotStore(PackStore):
    """The pack store, adding downloads as entries and opening entries as snapshots."""

    def add(self, download: _car.CarFile, *, did: str, commit_cid: str,
            signing_key: str | None, handle: str | None, source: str, mem_limit_mb: float,
            progress: bool | None = None, handle_verified: bool = False) -> RepoSnapshot:
        """Store a download as the next entry of ``did``; return its snapshot, walked whole.

        The caller has checked the commit (DID, and signature against ``signing_key`` when
        one is given): it is not checked again here, once per fetch being enough (the pack
        holds the very blocks checked), and the snapshot is ``verified`` when a
        ``signing_key`` is given. On any error nothing is recorded. ``download`` belongs to
        the store from here on. ``handle_verified`` says whether ``handle`` was checked both
        ways (recorded, so that a verifying client is never shown a handle a non-verifying
        one stored).

        Raises:
            CarError: the download is not a CAR file, or a block does not match its CID.
            MstError: the tree over the pack is incomplete or malformed.
            SignatureError: the commit belongs to another DID.
        """
        size = download.size
        with self.writing(did) as writer:
            pack = writer.append(download, mem_limit_mb)
            try:
                snap = open_snapshot(pack, did=did, handle=handle, progress_bar=progress,
                                     root=commit_cid, source=source, bytes_downloaded=size)
                snap.verified = signing_key is not None  # checked by the caller
                check_complete(snap)
            except BaseException:
                pack.close()
                raise
            writer.commit(StoreEntry(
                rev=snap.rev, commit_cid=commit_cid, data_cid=snap.data_cid,
                fetched_at=snap.fetched_at, records=len(snap), source=source,
                bytes_downloaded=size, verified=snap.verified, pack_bytes=pack.size,
                collections=snap._known_counts()), handle=handle, signing_key=signing_key,
                handle_verified=handle_verified)
        return snap

    def open(self, did: str, entry: StoreEntry, collections: Sequence[str] | None, *,
             mem_limit_mb: float, progress: bool | None, signing_key: str | None,
             handle: str | None, source: str = "cache") -> RepoSnapshot:
        """Open ``entry`` of ``did`` from its pack (no network, no walk yet).

        The commit is checked against ``signing_key`` when one is given (the snapshot is
        ``verified`` then); the caller chooses it and ``handle`` (see
        :meth:`~atrepo._io.store.PackStore.entry_key` and
        :meth:`~atrepo._io.store.PackStore.identity`).

        Raises:
            CarError: the pack or the entry's commit block is unreadable.
            SignatureError: the commit fails ``signing_key``.
        """
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
