"""A plain-Parquet copy of one dataset version, with a dataset card, for sharing.

The copy needs no Delta reader and holds exactly one version (no history, nothing
deleted since kept in old files)::

    README.md                          the dataset card, for people
    dataset.json                       the same card, for programs
    records/collection=<nsid>/part-N.parquet
    repos/part-0.parquet
    tables/<nsid>/part-N.parquet       one typed table per collection with a lexicon

Only Parquet files sit inside ``records/``, ``repos/`` and ``tables/<nsid>/``, so
``pl.scan_parquet("copy/records")`` and DuckDB's ``FROM 'copy/records/**/*.parquet'`` read
them as they are. The copy is written beside its destination and renamed into place, so
a destination that exists is whole.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from ..errors import AtrepoError
from ._batch import ACTIVE

if TYPE_CHECKING:
    from ._reader import Dataset

__all__ = ["ROWS_PER_FILE", "write_share"]

ROWS_PER_FILE = 1_000_000  # rows per Parquet file of the copy (a few hundred MB of records)


def write_share(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to ``path`` as plain Parquet with a dataset card; return ``path``.

    Raises:
        AtrepoError: ``path`` exists already.
    """
    target = Path(path)
    if target.exists():
        raise AtrepoError("the sharing copy's directory exists already", path=target,
                          hint="choose a new directory, or remove this one first")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files: dict[str, int] = {}
        counts = (ds.records.group_by("collection").agg(pl.len().alias("records"))
                  .sort("collection").collect())
        for collection, rows in counts.rows():
            part = ds.records.filter(pl.col("collection") == collection).drop("collection")
            files[f"records/collection={collection}"] = _sink(
                part, rows, tmp / "records" / f"collection={collection}")
        repos = ds.repos.collect()
        files["repos"] = _sink(repos.lazy(), repos.height, tmp / "repos")
        for collection in ds._layout.typed_tables():
            table = ds.table(collection)
            rows = table.select(pl.len()).collect().item()
            files[f"tables/{collection}"] = _sink(table, rows, tmp / "tables" / collection)
        card = _card(ds, repos, counts, files)
        (tmp / "dataset.json").write_text(json.dumps(card, indent=2) + "\n")
        (tmp / "README.md").write_text(_readme(card))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _sink(frame: pl.LazyFrame, rows: int, folder: Path) -> int:
    """Write ``frame`` (``rows`` long) as files of at most ROWS_PER_FILE rows; return how many."""
    folder.mkdir(parents=True)
    parts = max(1, -(-rows // ROWS_PER_FILE))
    for i in range(parts):
        frame.slice(i * ROWS_PER_FILE, ROWS_PER_FILE).sink_parquet(folder / f"part-{i}.parquet")
    return parts


def _card(ds: Dataset, repos: pl.DataFrame, counts: pl.DataFrame,
          files: dict[str, int]) -> dict[str, Any]:
    active = repos.filter(pl.col("status") == ACTIVE)
    hosts = (active.group_by("pds").agg(pl.len().alias("repos")).sort("pds")
             .rows(named=True))
    statuses = (repos.group_by("status").agg(pl.len().alias("repos"))
                .sort("status", nulls_last=True).rows())
    verified = active.get_column("verified").sum() / active.height if active.height else None
    committed = ds.meta.get("timestamp")
    from .. import __version__

    return {
        "title": "AT Protocol repositories, exported with atrepo",
        "what": "the records of the listed repositories as their hosts served them, with "
                "provenance (rev, commit_cid, verified, pds, fetched_at) on every row",
        "dataset_version": ds.version,
        "version_committed_at": None if committed is None else
        datetime.fromtimestamp(committed / 1000, timezone.utc).isoformat(),
        "copied_at": datetime.now(timezone.utc).isoformat(),
        "atrepo_version": __version__,
        "collections_filter": ds.meta.get("collections"),
        "hosts": hosts,
        "repos": {"active": active.height,
                  "by_status": {str(s) if s is not None else "never fetched": n
                                for s, n in statuses}},
        "records": int(counts.get_column("records").sum() or 0),
        "collections": {c: n for c, n in counts.rows()},
        "verified_share": verified,
        "files": files,
        "columns": {"records": {k: str(v) for k, v in ds.records.collect_schema().items()},
                    "repos": {k: str(v) for k, v in repos.schema.items()}},
    }


def _readme(card: dict[str, Any]) -> str:
    verified = card["verified_share"]
    lines = [
        f"# {card['title']}", "", card["what"] + ".", "",
        f"- dataset version {card['dataset_version']}, committed "
        f"{card['version_committed_at']}; copied {card['copied_at']}",
        f"- atrepo {card['atrepo_version']}",
        f"- collections filter: {card['collections_filter'] or 'all collections'}",
        f"- {card['repos']['active']:,} repositories with records, "
        f"{card['records']:,} records",
        "- commit signatures verified: " +
        ("n/a" if verified is None else f"{verified:.1%} of the repositories"),
        "", "## Hosts", "", "| pds | repositories |", "|---|---|",
        *(f"| {h['pds']} | {h['repos']:,} |" for h in card["hosts"]),
        "", "## Repositories by status", "", "| status | repositories |", "|---|---|",
        *(f"| {s} | {n:,} |" for s, n in card["repos"]["by_status"].items()),
        "", "## Records by collection", "", "| collection | records |", "|---|---|",
        *(f"| {c} | {n:,} |" for c, n in card["collections"].items()),
        "", "## Reading it", "", "```python",
        "import polars as pl",
        'records = pl.scan_parquet("records", hive_partitioning=True)',
        'repos = pl.read_parquet("repos")',
        "```", "",
        "DuckDB: `SELECT collection, count(*) FROM 'records/**/*.parquet' GROUP BY ALL`.",
        "", "## Deletions", "",
        "This copy is one moment of the source dataset. Accounts deleted, deactivated or "
        "taken down after it are still in it: refresh the source dataset and share a new "
        "copy rather than keeping this one in circulation.", "",
    ]
    return "\n".join(lines)
