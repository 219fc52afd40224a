"""Module-level shortcuts (``atrepo.resolve``, ``get_repo``, ``list_repos``) on one lazy Client."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import polars as pl

from .client import Client
from .identity import Identity
from .snapshot import RepoSnapshot

__all__ = ["default_client", "get_repo", "list_repos", "resolve"]

_default: Client | None = None
_lock = threading.Lock()


def default_client() -> Client:
    """The Client behind the shortcuts, created with default settings on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = Client()
        return _default


def resolve(identifier: str) -> Identity:
    """``Client().resolve(identifier)`` on the shared default client."""
    return default_client().resolve(identifier)


def get_repo(name: str, collections: Sequence[str] | None = None) -> RepoSnapshot:
    """``Client().get_repo(name, collections)`` on the shared default client."""
    return default_client().get_repo(name, collections)


def list_repos(host: str, limit: int | None = None, resume: bool = False) -> pl.DataFrame:
    """``Client().list_repos(host, limit, resume)`` on the shared default client."""
    return default_client().list_repos(host, limit, resume)
