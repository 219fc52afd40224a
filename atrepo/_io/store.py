"""The pack store: every fetched revision of every repository on disk, sharing their blocks.

Words used here and by the modules above (one name per concept):

*entry*
    A :class:`StoreEntry`: the store's record of one kept revision (rev, commit, record
    counts, how it was downloaded). ``client.snapshots()`` lists the entries.
*pack*
    The blocks of every entry of one repository, in one CAR file.
*index*
    The file that lists a repository's entries (named ``snapshots.json`` on disk).
*snapshot*
    Not used here: a :class:`~atrepo.RepoSnapshot` is opened over a pack by the frames side
    (:mod:`atrepo._snapshot_store`); this module knows nothing of frames or polars.

Each repository has a directory under ``<cache>/repos/`` holding:

``blocks.car``
    The pack: a CARv1 file whose blocks are those of every entry. The first
    download becomes the pack as it is; later downloads append only the blocks the pack
    lacks. Blocks are content-addressed, so two revisions share every record and every MST
    node they have in common: ten entries that differ by 1% of their records cost little
    more than one. An entry is opened by indexing the pack and starting at its commit.
``snapshots.json``
    The index, replaced atomically: the DID, the last handle and signing key seen, the
    length of the pack that is known complete (``pack_bytes``) and the entries.
``lock``
    Held (``flock``) while a download is appended, verified and recorded, so threads and
    processes sharing the cache take turns. Bytes past ``pack_bytes`` are an append that
    did not finish (or did not verify); the next writer cuts them off first.

:meth:`PackWriter.commit` records an entry; its caller (``SnapshotStore.add``) does so only
after the entry's whole tree was found and checked in the pack, and checks the commit's DID
and signature before that. A sparse entry (``held``) names the collections whose part of the
tree was found and checked; the rest of its tree may be absent from the pack, and is never
read as empty.

The whole store is bounded by ``max_bytes``, downloads in progress under
``<cache>/downloads`` included: after a commit, part files killed processes left are
deleted (:mod:`atrepo._io.downloads`) and the repositories used least recently are removed
until it fits (never the one just written). Sizes come from an in-memory ledger refreshed
from the directories' stats every so many commits (:meth:`PackStore._evict`), so a host
export does not read every index after every commit. A directory is renamed aside before
it is deleted, so a kill never leaves an index without its pack; should a pack be short or
missing all the same, its index counts as absent (:meth:`PackStore._index`). What is open
over a pack is not broken by eviction: it holds the pack open (in memory or mapped), and a
deleted file lives on until it is closed.

Directory names come from :func:`dir_name`: bounded, and distinct on case-insensitive
file systems.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import car as _car
from .._names import file_name, legacy_name
from .downloads import clean, part_file
from .._varint import encode_varint
from ..errors import AtrepoError, CarError

__all__ = ["PackStore", "PackWriter", "StoreEntry", "dir_name"]

log = logging.getLogger("atrepo")

PACK = "blocks.car"
INDEX = "snapshots.json"
LOCK = "lock"
_TRASH = ".evicted-"   # a directory being removed (never a repository's: see file_name)


@dataclass(frozen=True)
class StoreEntry:
    """One kept revision of a repository (an entry of the index)."""

    rev: str
    commit_cid: str
    data_cid: str
    fetched_at: datetime
    records: int
    source: str             # "full", "incremental" or "sparse": how its blocks were downloaded
    bytes_downloaded: int   # the body bytes of that download
    verified: bool
    pack_bytes: int         # the pack's complete length once this entry was recorded
    collections: dict[str, int] | None = None  # records per collection (None: an index
                                               # written before these were recorded)
    signing_key: str | None = None  # the key it was verified with (None: not verified, or
                                    # an index written before; see PackStore.entry_key)
    held: list[str] | None = None   # a sparse entry's collections= patterns: the only key
                                    # ranges whose nodes and records the pack is known to hold
                                    # (None: the whole tree)

    def to_json(self) -> dict[str, Any]:
        """The entry as it is written to the index."""
        return {**asdict(self), "fetched_at": self.fetched_at.isoformat()}

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> StoreEntry:
        """The entry read back from the index."""
        return cls(**{**entry, "fetched_at": datetime.fromisoformat(entry["fetched_at"])})


def dir_name(did: str) -> str:
    """A DID as a directory name: bounded, and unique on case-insensitive file systems.

    See :func:`atrepo._names.file_name`; every ``did:plc`` keeps the name earlier versions
    gave it (:func:`~atrepo._names.legacy_name`), and a store directory under another
    legacy name is moved to its new name when it is first used (:meth:`PackStore._dir`).
    """
    return file_name(did)


class PackStore:
    """The packs and indexes of every repository under one directory (see the module doc)."""

    def __init__(self, root: Path, *, max_bytes: int, downloads: Path | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.downloads = root.parent / "downloads" if downloads is None else downloads
        self._ledger: dict[str, tuple[float, int]] | None = None  # see _evict
        self._since_scan = 0
        self._ledger_lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------

    def _dir(self, did: str) -> Path:
        where = self.root / dir_name(did)
        legacy = legacy_name(did)
        if legacy != where.name and not where.exists():
            self._migrate(did, self.root / legacy, where)
        return where

    @staticmethod
    def _migrate(did: str, legacy: Path, where: Path) -> None:
        """Move ``did``'s directory from its legacy name, if it has one there.

        Only a directory whose index names ``did`` moves: the legacy names were not one to
        one (``did:web:a_b`` and ``did:web:a:b`` shared one). Another process may have
        moved it first, which is as good.
        """
        try:
            owner = json.loads((legacy / INDEX).read_text()).get("did")
        except (OSError, ValueError, AttributeError):
            return
        if owner == did:
            try:
                legacy.rename(where)
            except OSError:
                if not where.exists():
                    raise

    def _index(self, did: str) -> dict[str, Any]:
        """``did``'s index; empty when there is none, or when its pack is damaged.

        A pack shorter than the index says (or gone: a kill inside eviction, a full disk)
        can never open its entries again, and a pack only grows while it is whole; so its
        index counts as absent, the next fetch downloads the repository in full, and that
        write replaces both (issue 13, item 14).
        """
        where = self._dir(did)
        empty = {"did": did, "pack_bytes": 0, "snapshots": []}
        try:
            index: dict[str, Any] = json.loads((where / INDEX).read_text())
            length = index["pack_bytes"]
            if type(length) is not int:
                raise ValueError(f"pack_bytes is {length!r}")
        except FileNotFoundError:
            return empty
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AtrepoError("the store's index is unreadable", did=did,
                              path=where / INDEX, detail=str(exc),
                              hint="delete that repository's directory from the cache") from exc
        try:
            size = (where / PACK).stat().st_size
        except FileNotFoundError:
            size = -1
        if size < length:
            log.info("the stored pack of %s is %s; it is downloaded again", did,
                     "missing" if size < 0 else f"shorter than its index says ({size} < "
                                                f"{length} bytes)")
            return empty
        return index

    def entries(self, did: str) -> list[StoreEntry]:
        """The entries of ``did``, oldest revision first (empty if none)."""
        entries = [StoreEntry.from_json(e) for e in self._index(did)["snapshots"]]
        return sorted(entries, key=lambda e: e.rev)

    def newest(self, did: str) -> StoreEntry | None:
        """The entry of ``did`` with the highest revision, if any."""
        entries = self.entries(did)
        return entries[-1] if entries else None

    def identity(self, did: str) -> tuple[str | None, str | None, bool]:
        """The (handle, signing key, handle verified) last recorded for ``did``.

        The handle is only known to verify both ways when the writer checked it; an index
        written before that was recorded says so by a signing key (only a verifying writer
        records one).
        """
        index = self._index(did)
        key = index.get("signing_key")
        return index.get("handle"), key, bool(index.get("handle_verified", key is not None))

    def entry_key(self, did: str, entry: StoreEntry) -> str | None:
        """The key ``entry`` was verified with, or None when it was not verified."""
        if not entry.verified:
            return None
        return entry.signing_key or self._index(did).get("signing_key")

    def did_for_handle(self, handle: str, *, verified_only: bool = False) -> str | None:
        """The DID of the stored repository last seen with ``handle``, if any.

        ``verified_only``: only where the handle was checked both ways when it was recorded
        (see :meth:`identity`).
        """
        for index_path in self.root.glob(f"*/{INDEX}"):
            try:
                index = json.loads(index_path.read_text())
                checked = bool(index.get("handle_verified",
                                         index.get("signing_key") is not None))
            except (OSError, ValueError, AttributeError):
                continue
            if index.get("handle") == handle and isinstance(index.get("did"), str) \
                    and (checked or not verified_only):
                did: str = index["did"]
                return did
        return None

    def open_pack(self, did: str, mem_limit_mb: float,
                  length: int | None = None) -> _car.CarFile:
        """Index the first ``length`` bytes (default: the complete part) of ``did``'s pack."""
        if length is None:
            length = self._index(did)["pack_bytes"]
        self._touch(did)
        return _car.read_car(self._dir(did) / PACK, mem_limit_mb, length=length)

    def _touch(self, did: str) -> None:
        """Mark ``did`` as recently used (eviction removes the least recently used)."""
        where = self._dir(did)
        try:
            os.utime(where / INDEX)
        except FileNotFoundError:
            return
        with self._ledger_lock:
            if self._ledger is not None and where.name in self._ledger:
                self._ledger[where.name] = (time.time(), self._ledger[where.name][1])

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def writing(self, did: str) -> Iterator[PackWriter]:
        """Hold ``did``'s lock and yield a :class:`PackWriter`; evict after a commit.

        Nothing may wait on the network inside: the lock is held throughout.

        Raises:
            AtrepoError: the store could not be written (a full disk, ...); what was
                recorded before stands, and bytes appended past it are cut off by the
                next writer.
        """
        where = self._dir(did)
        try:
            where.mkdir(parents=True, exist_ok=True)
            with open(where / LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    writer = PackWriter(did, where, self._index(did))
                    yield writer
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except OSError as exc:
            raise AtrepoError("cannot write to the cache", did=did, path=where,
                              detail=str(exc), hint="free some disk space, or lower "
                              "max_cache_bytes or choose another cache_dir") from exc
        if writer.committed:
            with self._ledger_lock:
                if self._ledger is not None:
                    self._ledger[where.name] = (time.time(), writer.length)
                self._evict(keep=where.name,
                            rescan=self._since_scan >= len(self._ledger or ()))

    def download_file(self, did: str) -> AbstractContextManager[Path]:
        """A new part file under ``downloads/`` for one download of ``did`` (see
        :mod:`atrepo._io.downloads`); it and its lock are deleted when the block ends."""
        return part_file(self.downloads, dir_name(did))

    def clean_downloads(self) -> int:
        """Delete the part files killed processes left; return the bytes of live ones."""
        return clean(self.downloads)

    def evict(self, *, keep: str | None = None) -> list[str]:
        """Remove least recently used repositories until the store fits ``max_bytes``.

        Stale part files are deleted first, and live ones count against the budget too.
        Returns the DIDs removed. ``keep`` is never removed, even if it alone is too big.
        """
        with self._ledger_lock:
            return self._evict(keep=None if keep is None else dir_name(keep), rescan=True)

    def _evict(self, *, keep: str | None, rescan: bool) -> list[str]:
        """:meth:`evict`, from the ledger (read from disk again when ``rescan``); hold
        ``_ledger_lock`` (the threads of a bulk call share the store).

        The ledger (directory name -> (last use, pack bytes)) is what the directories'
        stats said at the last scan, plus what this process wrote and opened since. A scan
        stats every directory, so the store rescans after as many commits as it had
        directories: O(1) amortized per commit over a host export, instead of reading
        every index after every commit (issue 10); what other processes sharing the cache
        wrote meanwhile is seen at the next scan.
        """
        if rescan or self._ledger is None:
            self._ledger = self._scan()
            self._since_scan = 0
        self._since_scan += 1
        total = sum(size for _, size in self._ledger.values()) + self.clean_downloads()
        removed = []
        for name, (_used, size) in sorted(self._ledger.items(), key=lambda kv: kv[1][0]):
            if total <= self.max_bytes:
                break
            if name == keep:
                continue
            gone, did = self._remove(self.root / name)
            if gone:
                self._ledger.pop(name, None)
                total -= size
                if did is not None:
                    removed.append(did)
        return removed

    def _scan(self) -> dict[str, tuple[float, int]]:
        """(last use, pack bytes) of every repository directory, from two stats each.

        Left-overs of an eviction that was killed (see :meth:`_remove`) are removed here.
        """
        ledger = {}
        try:
            folders = list(os.scandir(self.root))
        except FileNotFoundError:
            return {}
        for folder in folders:
            if folder.name.startswith(_TRASH):
                shutil.rmtree(folder.path, ignore_errors=True)
                continue
            try:
                used = os.stat(os.path.join(folder.path, INDEX)).st_mtime
                size = os.stat(os.path.join(folder.path, PACK)).st_size
            except OSError:
                continue
            ledger[folder.name] = (used, size)
        return ledger

    def _remove(self, where: Path) -> tuple[bool, str | None]:
        """Delete a repository's directory; return (whether it is gone, its DID if known).

        The directory is first renamed out of the way, in one step, so that a kill during
        the deletion cannot leave an index whose pack is gone (the next scan finishes it).
        One that cannot be moved (permissions) is left as it is.
        """
        try:
            did = json.loads((where / INDEX).read_text()).get("did")
        except (OSError, ValueError, AttributeError):
            did = None
        trash = self.root / f"{_TRASH}{os.getpid()}-{time.monotonic_ns()}"
        try:
            where.rename(trash)
        except FileNotFoundError:
            return True, None    # another process removed it first
        except OSError:
            return False, None
        shutil.rmtree(trash, ignore_errors=True)
        return True, did if isinstance(did, str) else None


class PackWriter:
    """Appends one download to a pack and records the entry it holds (under the lock)."""

    def __init__(self, did: str, where: Path, index: dict[str, Any]) -> None:
        self.did = did
        self.where = where
        self.index = index
        self.pack = where / PACK
        self.length: int = index["pack_bytes"]
        self.committed = False

    def append(self, download: _car.CarFile, mem_limit_mb: float) -> _car.CarFile:
        """Add the blocks of ``download`` (a CAR file) that the pack lacks; return the pack.

        The returned CarFile holds the whole pack, this download included, indexed once:
        the first download becomes the pack itself (the file is moved, and its index kept);
        a later one has only its new blocks, each checked against its CID, appended to the
        pack, whose index is extended by them. Otherwise ``download`` is closed and its file
        removed, also on failure.

        Raises:
            CarError: the download is not a CAR file, or a block does not match its CID.
        """
        if download.path is not None and self.length == 0:
            os.replace(download.path, self.pack)
            download.path = str(self.pack)
            self.length = download.size
            return download
        try:
            if download.path is None:
                raise CarError("a download to store must be a CAR file", did=self.did)
            held = _car.read_car(self.pack, mem_limit_mb, length=self.length)
            try:
                self._append_new_blocks(download, held)
                held.extend(self.length)
            except BaseException:
                held.close()
                raise
            return held
        finally:
            download.close()
            if download.path is not None:
                Path(download.path).unlink(missing_ok=True)

    def _append_new_blocks(self, download: _car.CarFile, held: _car.CarFile) -> None:
        with open(self.pack, "r+b") as out:
            out.truncate(self.length)  # drop what an unfinished writer left
            out.seek(self.length)
            for raw, data, offset in download.iter_raw():
                if held.locate(raw) is None:  # only what is kept needs hashing
                    _car.check_block(raw, data, offset)
                    out.write(encode_varint(len(raw) + len(data)) + raw + data)
            out.flush()
            os.fsync(out.fileno())
            self.length = out.tell()

    def commit(self, entry: StoreEntry, *, handle: str | None, signing_key: str | None,
               handle_verified: bool = False) -> StoreEntry:
        """Record ``entry`` (and the identity it was verified with) in the index.

        ``signing_key`` is the key the commit was verified with (None: not verified); an
        unverified write keeps the key recorded before, which older entries were verified
        with. ``handle_verified`` says whether ``handle`` was checked both ways.
        """
        entry = replace(entry, pack_bytes=self.length,
                        signing_key=signing_key if entry.verified else None)
        others = [e for e in self.index["snapshots"] if e["rev"] != entry.rev]
        index = {"did": self.did, "handle": handle, "handle_verified": handle_verified,
                 "signing_key": signing_key or self.index.get("signing_key"),
                 "pack_bytes": self.length, "snapshots": [*others, entry.to_json()]}
        tmp = self.where / f"{INDEX}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, self.where / INDEX)
        self.index = index
        self.committed = True
        return entry

