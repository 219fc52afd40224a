"""The child process of the kill tests in ``test_export_crash.py``: an export paused at events.

The children are forked by a :mod:`multiprocessing` fork server that imported this module
(and so atrepo, polars and deltalake) once: a trial's child starts in milliseconds instead
of importing them again, and it is still a process of its own that a SIGKILL ends at once.
The server only imports; it forks while idle, before any polars or Delta work has started
a thread pool of its own.

:func:`run` gets the sandbox's ``plc`` and ``pds``, ``cache``, ``out``, ``source``,
``exclude`` and ``batch`` (repositories per commit). After every *event* — a repository
handed to the dataset (``fetched``), and before and after each Delta table commit
(``before <table>``, ``after <table>``) — it sends the event on its connection and waits
for ``go`` (anything else ends it with status 3), so the parent can kill it at an exact
moment. ``finished <version>`` means the export returned; ``refused <message>`` (status 4)
that it raised an AtrepoError.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _loopback import client

import atrepo
from atrepo.dataset import _delta, _export

__all__ = ["run"]


def run(conn: Connection, cfg: dict[str, Any]) -> None:
    """Export as ``cfg`` says, reporting each event on ``conn`` and waiting for its go."""

    def event(name: str) -> None:
        conn.send(name)
        try:
            said = conn.recv()
        except EOFError:   # the parent is gone
            said = None
        if said != "go":
            sys.exit(3)

    commit = _delta.commit
    fetched = _export.DatasetExport.fetched

    def reported_commit(path: Path, *args: Any, **kwargs: Any) -> None:
        event(f"before {path.name}")
        commit(path, *args, **kwargs)
        event(f"after {path.name}")

    def reported_fetched(self: _export.DatasetExport, *args: Any, **kwargs: Any) -> None:
        fetched(self, *args, **kwargs)
        event("fetched")

    _delta.commit = reported_commit  # type: ignore[assignment]
    _export.DatasetExport.fetched = reported_fetched  # type: ignore[method-assign]
    sandbox = SimpleNamespace(plc_url=cfg["plc"], pds_url=cfg["pds"])
    with client("sync", sandbox, cfg["cache"], max_concurrency=2) as made:
        try:
            report = made.export(cfg["source"], cfg["out"], exclude=cfg["exclude"],
                                 batch_repos=cfg["batch"])
        except atrepo.AtrepoError as exc:
            conn.send(f"refused {exc}")
            sys.exit(4)
    conn.send(f"finished {report.version}")
