"""Progress bars through one helper: tqdm.auto when a person is watching, nothing otherwise.

``enabled=None`` means "decide": bars show in a notebook or on a terminal, and never in CI
(``CI`` set), when ``ATREPO_PROGRESS=0``, or when stderr is not a terminal outside Jupyter.

One bar per call: while a bar is showing, every bar asked for inside it (a repository
decoded during ``fetch_records``, say) is a silent stand-in, so a bulk call shows its one
bar instead of one flashing bar per repository. "Inside" follows the context
(:mod:`contextvars`): tasks inherit it, and the client hands it to its worker threads.
Counts are whole numbers of things (``18/21 repo``), never scaled (``18.0/21.0``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from ._config import env_progress

__all__ = ["Progress", "progress", "wants_progress"]

# True while a bar is showing in this context: bars asked for inside it stay silent
_SHOWING: ContextVar[bool] = ContextVar("atrepo_progress_showing", default=False)


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = getattr(shell, "get_ipython", lambda: None)()
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


def wants_progress(enabled: bool | None) -> bool:
    """Resolve a ``progress=`` option (None = decide from the environment)."""
    if enabled is not None:
        return enabled
    setting = env_progress()
    if setting is not None:
        return setting
    if os.environ.get("CI"):
        return False
    return _in_notebook() or sys.stderr.isatty()


@contextmanager
def progress(total: int | None, desc: str, enabled: bool | None,
             unit: str = "it") -> Iterator[Progress]:
    """Yield a bar with ``.update(n)``; a silent stand-in when bars are off or one shows."""
    if _SHOWING.get() or not wants_progress(enabled):
        yield _Silent()
        return
    from tqdm.auto import tqdm

    token = _SHOWING.set(True)
    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
    try:
        yield bar
    finally:
        bar.close()
        _SHOWING.reset(token)
