"""Progress bars through one helper: tqdm.auto when a person is watching, nothing otherwise.

``enabled=None`` means "decide": bars show in a notebook or on a terminal, and never in CI
(``CI`` set), when ``ATREPO_PROGRESS=0``, or when stderr is not a terminal outside Jupyter.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["Progress", "progress", "wants_progress"]


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
    setting = os.environ.get("ATREPO_PROGRESS")
    if setting is not None:
        return setting.strip().lower() not in ("0", "false", "no", "off", "")
    if os.environ.get("CI"):
        return False
    return _in_notebook() or sys.stderr.isatty()


@contextmanager
def progress(total: int | None, desc: str, enabled: bool | None,
             unit: str = "it") -> Iterator[Progress]:
    """Yield a bar with ``.update(n)``; a silent stand-in when bars are off."""
    if not wants_progress(enabled):
        yield _Silent()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False)
    try:
        yield bar
    finally:
        bar.close()
