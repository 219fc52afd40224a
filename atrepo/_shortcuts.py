"""Module-level shortcuts (``atrepo.resolve``, ``atrepo.get_repo``) on one lazy default Client."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .client import Client
from .identity import Identity
from .snapshot import RepoSnapshot

__all__ = ["default_client", "get_repo", "resolve"]

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
