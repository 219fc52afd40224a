"""``atrepo.read_car``: a repository CAR from local input to a verified RepoSnapshot."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, TypeVar

from . import _accel
from . import car as _car
from .snapshot import RepoSnapshot, open_snapshot, walks_in_parallel

__all__ = ["read_car"]

T = TypeVar("T")


def read_car(source: bytes | str | os.PathLike[str] | IO[bytes], *, did: str | None = None,
             signing_key: str | None = None, collections: Sequence[str] | None = None,
             mem_limit_mb: float = 64, verify_cids: bool = True,
             progress: bool | None = None) -> RepoSnapshot:
    """Return the :class:`~atrepo.RepoSnapshot` of a repository CAR read from local input.

    Not to be confused with :func:`atrepo.car.read_car`, which returns the raw blocks.

    Args:
        source: the CAR as bytes, a path, or an open binary file.
        did: when given, the commit must belong to this DID.
        signing_key: the DID's ``did:key``; when given the commit signature is checked and
            ``snap.verified`` is True (a bad signature raises SignatureError).
        collections: NSIDs, or prefixes ending in ``.*``, to keep; other subtrees of the
            MST are not even read.
        mem_limit_mb: CAR bytes held in memory at most; larger inputs are read from disk.
        verify_cids: check every block used against its CID.
        progress: show a progress bar while decoding (None: when interactive).

    Raises:
        CarError, MstError, SignatureError: see :doc:`errors`.

    Example:
        >>> snap = read_car("examples/data/sample.car")
        >>> snap.records.height == len(snap)
        True
    """
    if isinstance(source, (str, os.PathLike)) and not _accel.accelerated:
        _index_in_workers_too(os.fspath(source), mem_limit_mb, verify_cids, collections)
    carfile = _importing_frames_meanwhile(
        lambda: _car.read_car(source, mem_limit_mb, verify_cids=verify_cids))
    return open_snapshot(carfile, did=did, signing_key=signing_key, collections=collections,
                         progress_bar=progress)


def _index_in_workers_too(path: str, mem_limit_mb: float, verify_cids: bool,
                          collections: Sequence[str] | None) -> None:
    """Start worker processes indexing a big CAR file while this process indexes it."""
    from ._parallel import default_workers, open_in_workers  # the pure path's alone

    workers = default_workers()
    try:
        size = os.stat(path).st_size
    except OSError:
        return  # car.read_car reports the missing file, with its path
    if walks_in_parallel(size, collections, workers):
        open_in_workers(path, mem_limit_mb, verify_cids, workers)


def _importing_frames_meanwhile(index: Callable[[], T]) -> T:
    """``index()``, with the frames layer imported meanwhile when it is not loaded yet.

    The compiled core frames and indexes a CAR without the GIL, and every frame a snapshot
    gives needs polars, whose import (~0.15 s) is longer than the index of most CARs: a
    first read in a process runs the index on a thread of its own while this thread imports
    polars, so the two overlap. The import stays on the calling thread (a module half
    imported by another thread is never seen). A plain thread, not an executor:
    ``concurrent.futures`` (and ``logging`` behind it) would be imported before the overlap
    began. The pure path holds the GIL while it indexes, so there it only runs ``index()``.
    """
    if not _accel.accelerated or "polars" in sys.modules:
        return index()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(index())
        except BaseException as exc:  # handed to the caller, raised there
            failure.append(exc)

    thread = threading.Thread(target=run, name="atrepo-read-car")
    thread.start()
    try:
        from . import frames  # noqa: F401  (polars, for the snapshot's frames)
    finally:
        thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
