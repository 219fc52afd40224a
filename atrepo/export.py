"""``export``: many repositories to one Parquet dataset, resumable after any interruption.

Layout under ``out_dir``::

    collection=app.bsky.feed.post/<did>.parquet     one file per repository and collection
    _manifest.jsonl                                 one line per written repository

Invariants that make "kill at any moment, re-run with resume=True" give exactly the rows of
an uninterrupted run:

1. every file is written to a temporary name and renamed into place (never half-written);
2. before a repository is written, every file it may have left from an interrupted run is
   removed (so a repo that lost a collection in between leaves nothing stale);
3. a repository is appended to the manifest (and the line flushed to disk) only after all
   its files are in place; on resume, repositories in the manifest are skipped.

Rows carry provenance columns: did, rev, commit_cid, verified, pds, fetched_at
(:data:`atrepo.frames.EXPORT_SCHEMA`).

Words: a repository is *written* once its files are in place and its manifest line is on
disk (invariant 3); the DIDs in the manifest are the written ones, which a resumed run
*skips*.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ._io.store import dir_name
from .frames import errors_frame, export_frame
from .snapshot import RepoSnapshot

__all__ = ["ExportReport", "Exporter"]

MANIFEST = "_manifest.jsonl"


@dataclass
class ExportReport:
    """What an export wrote.

    Attributes:
        out_dir: the dataset directory (read it with ``pl.scan_parquet(out_dir / "**/*.parquet",
            hive_partitioning=True)``).
        written: repositories written by this call.
        skipped: repositories already in the manifest (resume).
        records: rows written by this call.
        errors: repositories that failed: did, error, status.
    """

    out_dir: Path
    written: int = 0
    skipped: int = 0
    records: int = 0
    errors: pl.DataFrame = field(default_factory=lambda: errors_frame([]))

    def __repr__(self) -> str:
        return (f"<ExportReport {self.out_dir}: {self.written} repos written, "
                f"{self.skipped} skipped, {self.records:,} records, "
                f"{self.errors.height} failed>")

    def _repr_html_(self) -> str:
        rows = [("dataset", str(self.out_dir)), ("repos written", f"{self.written:,}"),
                ("repos skipped (resume)", f"{self.skipped:,}"),
                ("records written", f"{self.records:,}"), ("repos failed", str(self.errors.height))]
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table><caption>atrepo.ExportReport</caption>{cells}</table>"


class Exporter:
    """Writes snapshots into a dataset directory, keeping the manifest (see module doc)."""

    def __init__(self, out_dir: str | os.PathLike[str], *, resume: bool) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = self.out_dir / MANIFEST
        for leftover in self.out_dir.glob("collection=*/.*.parquet.tmp"):
            leftover.unlink()  # a file being written when a previous run was killed
        if not resume:
            self._clear()
        self.written = self._manifest_dids()

    def _manifest_dids(self) -> set[str]:
        if not self.manifest.exists():
            return set()
        written = set()
        for line in self.manifest.read_text().splitlines():
            try:
                written.add(json.loads(line)["did"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill: that repository is written again
        return written

    def has(self, did: str) -> bool:
        """Whether ``did`` is written (in the manifest), by this run or an earlier one."""
        return did in self.written

    def _clear(self) -> None:
        for path in self.out_dir.glob("collection=*/*.parquet"):
            path.unlink()
        self.manifest.unlink(missing_ok=True)

    def write(self, snap: RepoSnapshot, pds: str | None) -> int:
        """Write one repository's files, then record it in the manifest; return its rows."""
        stem = dir_name(snap.did)
        for old in self.out_dir.glob(f"collection=*/{stem}.parquet"):
            old.unlink()
        frame = export_frame(snap.records, rev=snap.rev, commit_cid=snap.commit_cid,
                             verified=snap.verified, pds=pds, fetched_at=snap.fetched_at)
        for (collection,), part in frame.group_by("collection", maintain_order=True):
            folder = self.out_dir / f"collection={collection}"
            folder.mkdir(exist_ok=True)
            tmp = folder / f".{stem}.parquet.tmp"
            part.drop("collection").write_parquet(tmp)
            os.replace(tmp, folder / f"{stem}.parquet")
        with self.manifest.open("a") as f:
            f.write(json.dumps({"did": snap.did, "rev": snap.rev, "records": frame.height}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.written.add(snap.did)
        return frame.height
