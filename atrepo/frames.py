"""The frames atrepo returns: one declared schema per kind, and the builders that fill them.

Every builder returns a frame with exactly its schema, also when empty, so code written
against a frame never meets a missing column. CIDs are strings; no Python objects go into
columns. Record frames are in MST key order, i.e. sorted by (collection, rkey).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import polars as pl

__all__ = ["COLLECTIONS_SCHEMA", "PROBLEMS_SCHEMA", "RECORDS_SCHEMA", "collections_frame",
           "problems_frame", "records_frame", "table_frame"]

RECORDS_SCHEMA = pl.Schema({
    "did": pl.String, "collection": pl.String, "rkey": pl.String, "uri": pl.String,
    "cid": pl.String, "record": pl.String,
})
COLLECTIONS_SCHEMA = pl.Schema({"collection": pl.String, "count": pl.UInt32})
PROBLEMS_SCHEMA = pl.Schema({
    "collection": pl.String, "rkey": pl.String, "cid": pl.String, "error": pl.String,
})


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


def collections_frame(keys: Sequence[str]) -> pl.DataFrame:
    """Return [collection, count] for MST keys, sorted by collection."""
    if not keys:
        return pl.DataFrame(schema=COLLECTIONS_SCHEMA)
    return (_split_keys(keys).group_by("collection").len(name="count")
            .with_columns(pl.col("count").cast(pl.UInt32)).sort("collection"))


def problems_frame(rows: Sequence[tuple[str, str, str, str]]) -> pl.DataFrame:
    """Return the ``problems`` frame from (collection, rkey, cid, error) rows."""
    return pl.DataFrame(list(rows), schema=PROBLEMS_SCHEMA, orient="row")


def table_frame(records: pl.DataFrame) -> pl.DataFrame:
    """Return one collection's records with their fields as typed columns.

    Columns ``uri``, ``rkey``, ``cid`` come first, then the record fields (nested objects
    as structs, arrays as lists). Polars infers types over all rows; where one field's
    values cannot share a type (a string here, a number there), that field falls back to
    a column of JSON text, so heterogeneous records never fail. Undecodable records give
    a row of nulls.
    """
    keys = records.select("uri", "rkey", "cid")
    texts = records.get_column("record")
    if texts.is_null().all():
        return keys
    try:
        fields = texts.str.json_decode(infer_schema_length=None).struct.unnest()
    except (pl.exceptions.PolarsError, ValueError, TypeError):
        fields = _fields_one_by_one(texts)
    clash = [name for name in fields.columns if name in keys.columns]
    fields = fields.rename({name: f"record.{name}" for name in clash})
    return pl.concat([keys, fields], how="horizontal")


def _fields_one_by_one(texts: pl.Series) -> pl.DataFrame:
    """Build the field columns separately, keeping JSON text where types conflict."""
    rows: list[dict[str, Any]] = [orjson.loads(t) if t is not None else {} for t in texts]
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns.append(pl.Series(name, values, strict=True))
        except (pl.exceptions.PolarsError, ValueError, TypeError, OverflowError):
            columns.append(pl.Series(name, [None if v is None else orjson.dumps(v).decode()
                                             for v in values], dtype=pl.String))
    return pl.DataFrame(columns)
