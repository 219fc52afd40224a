"""The child process of the kill tests in ``test_export_crash.py``: an export paused at events.

usage: python tests/client/_killed_export.py CONFIG_JSON

CONFIG_JSON holds ``plc``, ``pds`` (the sandbox), ``cache``, ``out``, ``source``,
``exclude`` and ``batch`` (repositories per commit). Run as a script, so that this folder is
``sys.path[0]`` and ``_loopback`` imports by name as in the tests. After every *event* — a
repository handed to the dataset (``fetched``), and before and after each Delta table commit
(``before <table>``, ``after <table>``) — it prints the event and waits for ``go`` on stdin
(anything else ends it with status 3), so the parent can kill it at an exact moment.
``finished <version>`` means the export returned; ``refused <message>`` (status 4) that it
raised an AtrepoError.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _loopback import client

import atrepo
from atrepo.dataset import _delta, _export


def event(name: str) -> None:
    """Say what just happened, then wait for the parent's go."""
    print(name, flush=True)
    if sys.stdin.readline() != "go\n":
        sys.exit(3)


def main(argv: list[str]) -> None:
    cfg = json.loads(argv[0])
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
            print("refused", exc, flush=True)
            sys.exit(4)
    print("finished", report.version, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
