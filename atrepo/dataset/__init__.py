"""Datasets: many repositories as Delta Lake tables, kept current by ``client.export``.

``client.export(source, out_dir)`` commits repositories to ``out_dir`` in batches, one
dataset version per batch; :func:`open_dataset` reads a version back as lazy frames::

    ds = atrepo.open_dataset("out/")
    ds.records            # every record, with provenance
    ds.repos              # one row per repository, with its status
    ds.table("app.bsky.feed.post")
    ds.versions           # what each version added, updated and removed
    ds.as_of(3).records   # time travel
    ds.changes(since=3)   # record-level changes since version 3
    ds.write_parquet("share/")   # plain Parquet + a dataset card
    atrepo.dataset.vacuum("out/")  # delete files no recent version reads

The tables are plain Delta Lake: ``pl.scan_delta("out/records")``, DuckDB's
``delta_scan('out/records')``, Spark or pyarrow read them without atrepo. Layout and
commit protocol: :mod:`atrepo.dataset._layout`, :mod:`atrepo.dataset._writer`.

:class:`Batch` and :class:`DatasetWriter` are the writing side: a batch is filled wherever
repositories are fetched (also on a remote worker) and committed by the one writer.
:class:`DatasetExport` is an export call's dataset side: which repositories need a visit,
and what each outcome changes.
"""

from __future__ import annotations

from ._batch import Batch
from ._export import BATCH_RECORDS, BATCH_REPOS, DatasetExport, ExportReport, Target
from ._layout import REPOS_SCHEMA
from ._maintain import compact, vacuum
from ._reader import CHANGES_SCHEMA, VERSIONS_SCHEMA, Dataset, open_dataset
from ._writer import DatasetWriter

__all__ = ["BATCH_RECORDS", "BATCH_REPOS", "CHANGES_SCHEMA", "REPOS_SCHEMA",
           "VERSIONS_SCHEMA", "Batch", "Dataset", "DatasetExport", "DatasetWriter",
           "ExportReport", "Target", "compact", "open_dataset", "vacuum"]
