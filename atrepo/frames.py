"""The frames atrepo returns: one declared schema per kind, and the builder that fills it.

Every builder returns a frame with exactly its schema, also when empty, so code written
against a frame never meets a missing column. CIDs are strings; no Python objects go into
columns. Record frames are in MST key order, i.e. sorted by (collection, rkey).

Frame kinds, their schemas and who returns them:

* records, :data:`RECORDS_SCHEMA`: ``snap.records``, ``client.fetch_records``;
* collections, :data:`COLLECTIONS_SCHEMA`: ``snap.collections``;
* problems, :data:`PROBLEMS_SCHEMA`: ``snap.problems``;
* diff, :data:`DIFF_SCHEMA`: ``atrepo.diff``, ``client.diff``;
* snapshots, :data:`SNAPSHOTS_SCHEMA`: ``client.snapshots`` (the store's entries);
* repos, :data:`REPOS_SCHEMA`: ``client.list_repos``;
* dids, :data:`DIDS_SCHEMA`: ``client.list_repos_by_collection``;
* errors, :data:`ERRORS_SCHEMA`: ``client.last_errors``, ``report.errors``;
* export rows, :data:`EXPORT_SCHEMA`: what ``client.export`` writes (records plus
  provenance);
* hosts, :data:`HOSTS_SCHEMA`: ``client.list_hosts`` (a relay's hosts, in its order);
* PLC states, :data:`PLC_SCHEMA`: ``client.list_plc`` (each DID's current state, by the
  time of its latest operation);
* fetched, :data:`FETCHED_SCHEMA`: ``client.last_fetched`` (where each repository of the
  last bulk call was listed and where it was fetched from).

``snap.table(collection)`` has the schema its collection's lexicon declares
(:func:`atrepo.lexicon_schema`); :mod:`atrepo.tables` builds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

__all__ = ["COLLECTIONS_SCHEMA", "DIDS_SCHEMA", "DIFF_SCHEMA", "ERRORS_SCHEMA",
           "EXPORT_SCHEMA", "FETCHED_SCHEMA", "HOSTS_SCHEMA", "PLC_SCHEMA", "PROBLEMS_SCHEMA",
           "RECORDS_SCHEMA", "REPOS_SCHEMA", "SNAPSHOTS_SCHEMA", "collections_frame",
           "concat_records", "current_plc", "dids_frame", "diff_frame", "errors_frame",
           "export_frame", "fetched_frame", "hosts_frame", "plc_frame", "problems_frame",
           "records_frame", "repos_frame", "snapshots_frame"]

RECORDS_SCHEMA = pl.Schema({
    "did": pl.String, "collection": pl.String, "rkey": pl.String, "uri": pl.String,
    "cid": pl.String, "record": pl.String,
})
COLLECTIONS_SCHEMA = pl.Schema({"collection": pl.String, "count": pl.UInt32})
PROBLEMS_SCHEMA = pl.Schema({
    "collection": pl.String, "rkey": pl.String, "cid": pl.String, "error": pl.String,
})
DIFF_SCHEMA = pl.Schema({
    "collection": pl.String, "rkey": pl.String, "uri": pl.String, "action": pl.String,
    "old_cid": pl.String, "new_cid": pl.String, "record": pl.String, "old_record": pl.String,
})
# collections: the collections a sparse snapshot holds (its ``collections=``); null for a
# snapshot of the whole repository
SNAPSHOTS_SCHEMA = pl.Schema({"rev": pl.String(), "data_cid": pl.String(),
                              "fetched_at": pl.Datetime("us", "UTC"), "records": pl.Int64(),
                              "collections": pl.List(pl.String())})
REPOS_SCHEMA = pl.Schema({"did": pl.String, "head": pl.String, "rev": pl.String,
                          "active": pl.Boolean, "status": pl.String})
DIDS_SCHEMA = pl.Schema({"did": pl.String})
ERRORS_SCHEMA = pl.Schema({"did": pl.String, "error": pl.String, "status": pl.String})
EXPORT_SCHEMA = pl.Schema([*RECORDS_SCHEMA.items(), ("rev", pl.String()),
                           ("commit_cid", pl.String()), ("verified", pl.Boolean()),
                           ("pds", pl.String()), ("fetched_at", pl.Datetime("us", "UTC"))])

HOSTS_SCHEMA = pl.Schema({"host": pl.String(), "hostname": pl.String(), "status": pl.String(),
                          "account_count": pl.Int64(), "seq": pl.Int64()})
PLC_SCHEMA = pl.Schema({"did": pl.String(), "handle": pl.String(), "pds": pl.String(),
                        "signing_key": pl.String(), "status": pl.String(),
                        "created_at": pl.Datetime("us", "UTC"), "cid": pl.String()})
FETCHED_SCHEMA = pl.Schema({"did": pl.String(), "listed_host": pl.String(), "pds": pl.String(),
                            "rev": pl.String(), "records": pl.Int64(), "source": pl.String(),
                            "error": pl.String()})


def _from_rows(rows: Iterable[Sequence[Any]], schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=schema, orient="row")


def _split_keys(keys: Sequence[str]) -> pl.DataFrame:
    """Columns ``collection`` and ``rkey`` from MST keys ``collection/rkey``."""
    parts = pl.Series("key", keys, dtype=pl.String).str.split_exact("/", 1)
    return parts.struct.rename_fields(["collection", "rkey"]).struct.unnest()


def records_frame(did: str, keys: Sequence[str], cids: Sequence[str],
                  records: Sequence[str | None]) -> pl.DataFrame:
    """Return the ``records`` frame for parallel lists of MST keys, CIDs and record JSON."""
    split = _split_keys(keys)
    frame = split.with_columns(
        pl.lit(did, dtype=pl.String).alias("did"),
        (pl.lit(f"at://{did}/") + pl.col("collection") + pl.lit("/") + pl.col("rkey"))
        .alias("uri"),
        pl.Series("cid", cids, dtype=pl.String),
        pl.Series("record", records, dtype=pl.String),
    )
    return frame.select(RECORDS_SCHEMA.names())


def concat_records(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Return ``records`` frames one after the other (an empty one for no frames)."""
    return pl.concat(frames) if frames else pl.DataFrame(schema=RECORDS_SCHEMA)


def collections_frame(counts: Mapping[str, int]) -> pl.DataFrame:
    """Return [collection, count] from record counts per collection, sorted by collection."""
    return _from_rows(sorted(counts.items()), COLLECTIONS_SCHEMA)


def problems_frame(rows: Iterable[tuple[str, str, str, str]]) -> pl.DataFrame:
    """Return the ``problems`` frame from (collection, rkey, cid, error) rows."""
    return _from_rows(rows, PROBLEMS_SCHEMA)


def diff_frame(rows: Iterable[tuple[str, str, str, str, str | None, str | None, str | None,
                                    str | None]]) -> pl.DataFrame:
    """Return the ``diff`` frame from rows in :data:`DIFF_SCHEMA` order, sorted by key."""
    return _from_rows(rows, DIFF_SCHEMA).sort("collection", "rkey")


def snapshots_frame(rows: Iterable[tuple[str, str, datetime, int, Sequence[str] | None]]
                    ) -> pl.DataFrame:
    """Return the ``snapshots`` frame from (rev, data_cid, fetched_at, records, collections)
    rows (collections: what a sparse snapshot holds, None for a whole one)."""
    return _from_rows(rows, SNAPSHOTS_SCHEMA)


def repos_frame(rows: Iterable[tuple[str, str | None, str | None, bool, str | None]]
                ) -> pl.DataFrame:
    """Return the ``list_repos`` frame from (did, head, rev, active, status) rows, in order."""
    return _from_rows(rows, REPOS_SCHEMA)


def dids_frame(dids: Iterable[str]) -> pl.DataFrame:
    """Return a one-column [did] frame, in order."""
    return _from_rows(((did,) for did in dids), DIDS_SCHEMA)


def errors_frame(rows: Iterable[tuple[str, str, str | None]]) -> pl.DataFrame:
    """Return the ``last_errors`` frame from (did, error, status) rows, in order."""
    return _from_rows(rows, ERRORS_SCHEMA)


def hosts_frame(rows: Iterable[tuple[str, str, str | None, int | None, int | None]]
                ) -> pl.DataFrame:
    """Return the ``list_hosts`` frame from (host, hostname, status, account_count, seq) rows."""
    return _from_rows(rows, HOSTS_SCHEMA)


def plc_frame(rows: Iterable[tuple[str, str | None, str | None, str | None, str, datetime, str]]
              ) -> pl.DataFrame:
    """Return PLC operations as a :data:`PLC_SCHEMA` frame, in order (one row per operation).

    Rows are (did, handle, pds, signing_key, status, created_at, cid).
    """
    return _from_rows(rows, PLC_SCHEMA)


def current_plc(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Return each DID's latest row of PLC operation frames given oldest first.

    The result is ordered by ``created_at`` (then DID): the order of the log, so a later
    listing continues where this one ends.
    """
    if not frames:
        return pl.DataFrame(schema=PLC_SCHEMA)
    latest = pl.concat(frames).unique("did", keep="last", maintain_order=True)
    return latest.sort("created_at", "did")


def fetched_frame(rows: Iterable[tuple[str, str | None, str | None, str | None, int | None,
                                       str | None, str | None]]) -> pl.DataFrame:
    """Return the ``last_fetched`` frame from rows in :data:`FETCHED_SCHEMA` order, in order."""
    return _from_rows(rows, FETCHED_SCHEMA)


def export_frame(records: pl.DataFrame, *, rev: str, commit_cid: str, verified: bool,
                 pds: str | None, fetched_at: datetime) -> pl.DataFrame:
    """Return a ``records`` frame with the provenance columns an export writes beside it."""
    return records.with_columns(
        pl.lit(rev, dtype=pl.String).alias("rev"),
        pl.lit(commit_cid, dtype=pl.String).alias("commit_cid"),
        pl.lit(verified, dtype=pl.Boolean).alias("verified"),
        pl.lit(pds, dtype=pl.String).alias("pds"),
        pl.lit(fetched_at, dtype=EXPORT_SCHEMA["fetched_at"]).alias("fetched_at"))
