"""One writer per dataset: an exclusive ``flock`` on ``_atrepo/lock``.

The lock is held for as long as a :class:`~atrepo.dataset.DatasetWriter` is open. The
kernel drops it when its process ends in any way (SIGKILL included), so a crashed export
never leaves a dataset locked. A second writer fails at once with an AtrepoError naming
the process that holds it, instead of interleaving its commits with the first one's.
Readers never take it: Delta's log gives them a consistent version at any moment.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import AtrepoError

__all__ = ["DatasetLock"]


class DatasetLock:
    """An exclusive, non-blocking lock on one dataset (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            self.release()
            msg = "another export is writing this dataset"
            raise AtrepoError(msg, path=path.parent.parent, pid=holder,
                              hint="wait for it to finish, or export into another "
                                   "directory") from exc
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        """Release the lock (closing the file releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
