"""Part files: downloads in progress under ``<cache>/downloads``, and those a killed process left.

A download writes ``<name>-<random>.part`` and, for as long as it runs, holds an ``flock``
on ``<name>-<random>.lock`` beside it. The kernel drops that lock when its process ends,
however it ends (a SIGKILL included), so a lock nobody holds means nobody will finish the
part. The lock is a file of its own because the part is not one inode for its whole life:
a retried download deletes and creates it again.

The rule (:func:`clean`): a ``.part`` or ``.lock`` file is *stale*, and deleted, when it is
older than :data:`GRACE` seconds and no process holds its lock. The grace covers the instant
between creating a lock file and locking it, and parts of earlier versions, which had no
lock; a live download is never deleted, however long it stalls, since its lock is held.
:func:`clean` returns the bytes of what it kept, which the cache budget counts
(``max_cache_bytes``: downloads take disk space too).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import AtrepoError

__all__ = ["GRACE", "clean", "part_file"]

GRACE = 60.0    # seconds: far longer than creating and locking a file takes
_PART, _LOCK = ".part", ".lock"


@contextmanager
def part_file(folder: Path, name: str) -> Iterator[Path]:
    """Yield a new, empty part file for one download, locked; delete both files after.

    Raises:
        AtrepoError: ``folder`` cannot hold a new file (a full disk, ...).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, lock_name = tempfile.mkstemp(prefix=name + "-", suffix=_LOCK, dir=folder)
    except OSError as exc:
        raise AtrepoError("cannot create a download file in the cache", path=folder,
                          detail=str(exc), hint="free some disk space, or choose another "
                          "cache_dir") from exc
    lock = Path(lock_name)
    part = lock.with_suffix(_PART)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)   # a new file: nobody else holds it
        part.write_bytes(b"")
        yield part
    finally:
        part.unlink(missing_ok=True)
        lock.unlink(missing_ok=True)
        os.close(fd)


def clean(folder: Path, *, now: float | None = None) -> int:
    """Delete the stale part and lock files in ``folder``; return the bytes of the others.

    ``now`` is the current time (``time.time()`` by default), for tests.
    """
    now = time.time() if now is None else now
    kept = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        path = Path(entry.path)
        if path.suffix not in (_PART, _LOCK):
            continue
        try:
            stat = entry.stat()
        except FileNotFoundError:
            continue   # finished meanwhile
        if now - stat.st_mtime > GRACE and not _held(path.with_suffix(_LOCK)):
            try:
                path.unlink(missing_ok=True)
                continue
            except OSError:
                pass   # not ours to delete (another user's cache): it still takes space
        kept += stat.st_size
    return kept


def _held(lock: Path) -> bool:
    """Whether a live process holds ``lock`` (False when it does not exist)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True    # unreadable: assume its owner is alive rather than delete its part
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)   # also lets go of the lock if it was taken here
    return False
