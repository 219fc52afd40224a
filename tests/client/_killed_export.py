"""The child process of the kill tests in ``test_export.py``: an export paused after each file.

usage: python tests/client/_killed_export.py CONCURRENCY PLC_URL PDS_URL CACHE OUT NAME...

Run as a script, so that this folder is ``sys.path[0]`` and ``_loopback`` imports by name as
in the tests. After every Parquet file it writes it prints ``wrote`` and waits for ``go`` on
stdin (anything else ends it with status 3), so the parent can kill it at an exact moment;
``finished`` means the export returned.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import polars as pl
from _loopback import client


def main(argv: list[str]) -> None:
    concurrency, plc, pds, cache, out, *names = argv
    write = pl.DataFrame.write_parquet

    def reported_write(self: pl.DataFrame, *args: Any, **kwargs: Any) -> None:
        write(self, *args, **kwargs)
        print("wrote", flush=True)
        if sys.stdin.readline() != "go\n":
            sys.exit(3)

    pl.DataFrame.write_parquet = reported_write  # type: ignore[method-assign]
    sandbox = SimpleNamespace(plc_url=plc, pds_url=pds)
    with client("sync", sandbox, cache, max_concurrency=int(concurrency)) as made:
        made.export(names, out)
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
