"""Module-level shortcuts (``atrepo.resolve``, ``get_repo``, ``list_repos``) on one lazy Client.

The default client is created on first use with the defaults, which the environment can set
(``ATREPO_PLC_URL``, ``ATREPO_HANDLE_RESOLVER``, ``ATREPO_CACHE_DIR``, ``ATREPO_PROGRESS``;
see :mod:`atrepo._config`), or replaced at any time with :func:`configure`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import polars as pl

from .client import Client
from .identity import Identity
from .snapshot import RepoSnapshot

__all__ = ["configure", "default_client", "get_repo", "list_repos", "resolve"]

_default: Client | None = None
_lock = threading.Lock()


def default_client() -> Client:
    """The Client behind the shortcuts, created with default settings on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = Client()
        return _default


def configure(**client_options: Any) -> Client:
    """Point the module shortcuts at a new ``Client(**client_options)``; return it.

    The previous default client, if one was made, is closed. Options left out take their
    defaults (from the environment where it sets them), so ``configure()`` alone starts
    afresh after the environment changed.

    Example::

        atrepo.configure(plc_url="http://localhost:2582", handle_resolver="http://localhost:2583")
        atrepo.get_repo("alice.test")
    """
    global _default
    new = Client(**client_options)
    with _lock:
        old, _default = _default, new
    if old is not None:
        old.close()
    return new


def resolve(identifier: str) -> Identity:
    """``Client().resolve(identifier)`` on the shared default client."""
    return default_client().resolve(identifier)


def get_repo(name: str, collections: Sequence[str] | None = None) -> RepoSnapshot:
    """``Client().get_repo(name, collections)`` on the shared default client."""
    return default_client().get_repo(name, collections)


def list_repos(host: str, limit: int | None = None, resume: bool = False) -> pl.DataFrame:
    """``Client().list_repos(host, limit, resume)`` on the shared default client."""
    return default_client().list_repos(host, limit, resume)
