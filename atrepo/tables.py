"""Typed tables of one collection: declared columns from the lexicon, the same every time.

``table(collection)`` turns a collection's ``record`` JSON into columns. With a lexicon
(:mod:`atrepo.lexicon`) the columns, their order and dtypes are declared: ``did, rkey,
uri, cid``, the lexicon's fields in lexicon order, then ``extra`` (JSON text of the
top-level fields the lexicon does not declare; null when there are none). Tables of one
collection from any number of repositories therefore stack with a plain ``pl.concat``.

How a table is built, and why it never fails on odd records:

1. One pass over the records checks each against its lexicon (:mod:`atrepo.lexicon`'s
   validator; every problem becomes a row of ``problems``); in the compiled core when it is
   in use (from the CBOR blocks for a snapshot, from the JSON texts for a ``records``
   frame), else in Python (:mod:`atrepo._table_check`). An invalid record is also
   fitted to the table's shape: a value of the wrong type, or an integer outside Int64,
   becomes null, with a ``problems`` row naming the field; the raw JSON stays in
   ``records``.
2. The core writes the typed columns in the same pass. On the Python path (and for the
   rare records the core leaves to it), ``str.json_decode`` with the declared (JSON-side)
   dtype reads the fitted records at once, and polars expressions turn
   ``{"$link"}``/``{"$bytes"}`` wrappers into strings, legacy blobs into the blob struct,
   and datetime strings into ``Datetime("us", "UTC")`` (one without a timezone is read as
   UTC); both give the same columns. A datetime that does not parse or lies outside
   1990-2100 (UTC) is null, with a ``problems`` row.

A collection without a lexicon gets an inferred shape: fields in sorted order (at every
depth) and each field's type unified over all of its records (a field whose values
disagree is kept as JSON text), so the same records always give the same schema.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

import polars as pl

from . import _accel
from .errors import AtrepoError
from .frames import PROBLEMS_SCHEMA, RECORDS_SCHEMA
from .lexicon._schema import (EXTRA, KEY_COLUMNS, collection_shape, column_name,
                              lexicon_schema)
from .lexicon._schema import table_schema as shape_schema
from ._infer import inferred_shape
from ._table_check import Checker, CoreChecked, core_check, core_check_texts
from .lexicon._shape import Shape

if TYPE_CHECKING:
    from .snapshot import RepoSnapshot

__all__ = ["DATETIME_RANGE", "HasRecords", "Source", "check_collection", "collections_for",
           "diff_table", "inferred_shape", "records_table", "snapshot_table", "table",
           "table_problems", "table_schema", "table_with_problems"]

# datetimes outside these years (UTC) are taken as wrong clocks, not as data: research on
# Bluesky reports createdAt values of 1970 and of year 1 (from clients' zero timestamps)
DATETIME_RANGE = (datetime(1990, 1, 1, tzinfo=timezone.utc),
                  datetime(2101, 1, 1, tzinfo=timezone.utc))
_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"
# no timezone: read as UTC, as the reference's normalizeDatetime does (real records from
# some clients lack the offset, and the lexicon validator accepts them)
_NAIVE_FORMAT = "%Y-%m-%dT%H:%M:%S%.f"


class HasRecords(Protocol):
    """Anything with a ``records`` frame: a :class:`~atrepo.RepoSnapshot`, a dataset."""

    @property
    def records(self) -> pl.DataFrame | pl.LazyFrame: ...


# where records come from: a snapshot, a records frame or lazy frame, a dataset
Source = pl.DataFrame | pl.LazyFrame | HasRecords


def table(source: Source, collection: str) -> pl.DataFrame:
    """Return the typed table of ``collection`` from any source of records.

    Args:
        source: a :class:`~atrepo.RepoSnapshot` (the same as ``source.table(collection)``),
            a ``records`` frame of any number of repositories (``client.fetch_records``), a
            ``LazyFrame`` of records (only ``collection`` is collected), or anything with a
            ``records`` attribute.
        collection: the collection's NSID.

    Example:
        >>> import atrepo
        >>> from atrepo import tables
        >>> records = atrepo.read_car("examples/data/sample.car").records
        >>> likes = tables.table(records.lazy(), "app.bsky.feed.like")
        >>> likes.height, likes.schema == atrepo.lexicon_schema("app.bsky.feed.like")
        (154, True)
    """
    from .snapshot import RepoSnapshot

    if isinstance(source, RepoSnapshot):
        return source.table(collection)  # built once, and its problems kept, by the snapshot
    return table_with_problems(source, collection)[0]


def table_problems(source: Source, collection: str) -> pl.DataFrame:
    """Return the problems :func:`table` found in ``collection``'s records.

    Columns ``collection, rkey, cid, error``, as :attr:`RepoSnapshot.problems
    <atrepo.snapshot.RepoSnapshot.problems>`; for a snapshot, its decoding problems of
    that collection too.
    """
    return table_with_problems(source, collection)[1]


def table_with_problems(source: Source, collection: str
                        ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (:func:`table`, :func:`table_problems`) of ``collection`` in ``source``.

    Raises:
        TypeError: ``source`` is none of the supported kinds.
    """
    from .snapshot import RepoSnapshot

    if isinstance(source, RepoSnapshot):
        frame = source.table(collection)
        return frame, source.problems.filter(pl.col("collection") == collection)
    if isinstance(source, pl.LazyFrame):
        source = (source.filter(pl.col("collection") == collection)
                  .select(RECORDS_SCHEMA.names()).collect())
    elif not isinstance(source, pl.DataFrame):
        if not hasattr(source, "records"):
            msg = (f"records come from a RepoSnapshot, a records DataFrame or LazyFrame, or "
                   f"an object with .records, not {type(source).__name__}")
            raise TypeError(msg)
        return table_with_problems(source.records, collection)
    return records_table(source, collection)


def collections_for(collections: Sequence[str] | None,
                    table: str | None) -> Sequence[str] | None:
    """The ``collections=`` a call with ``table=`` needs: just that collection by default."""
    return [table] if table is not None and collections is None else collections


def diff_table(diff: pl.DataFrame, collection: str) -> pl.DataFrame:
    """Return the changed records of ``collection`` in a diff frame as a typed table.

    Columns: ``action`` (create, update, delete), ``old_cid``, then the declared table
    columns of ``collection`` (``cid`` is the new CID, or the old one for a delete). The
    fields are the new record's; for a delete, the deleted record's when the old snapshot
    held it (null otherwise), so deleted posts can be read too.

    Args:
        diff: a frame from :func:`atrepo.diff` or ``client.diff``.
        collection: the collection's NSID.
    """
    changed = diff.filter(pl.col("collection") == collection)
    deleted = pl.col("action") == "delete"
    records = changed.select(
        pl.col("uri").str.extract(r"^at://([^/]+)", 1).alias("did"), "collection", "rkey",
        "uri", pl.coalesce("new_cid", "old_cid").alias("cid"),
        pl.when(deleted).then(pl.col("old_record")).otherwise(pl.col("record"))
        .alias("record"))
    typed, _ = records_table(records, collection)
    return pl.concat([changed.select("action", "old_cid"), typed], how="horizontal")


def check_collection(collection: str, present: Sequence[str], *, did: str | None = None) -> None:
    """Raise unless ``collection`` is one NSID that has a lexicon or is among ``present``.

    Raises:
        AtrepoError: a pattern (``app.bsky.feed.*``), or an NSID with neither a lexicon
            nor records here; the message lists the collections present (and the closest
            names).
    """
    if collection in present or lexicon_schema(collection) is not None:
        return
    listing = ", ".join(present) or "none"
    if collection.endswith(".*"):
        prefix = collection[:-1]
        matching = [c for c in present if c.startswith(prefix)]
        msg = "table() takes one collection, not a pattern"
        raise AtrepoError(msg, did=did, collection=collection,
                          matching=", ".join(matching) or "none",
                          hint="call table() once per collection")
    close = difflib.get_close_matches(collection, present, n=3)
    hint = f"did you mean {' or '.join(close)}?" if close else None
    msg = "no such collection in this repository, and no lexicon defines it"
    raise AtrepoError(msg, did=did, collection=collection, collections=listing, hint=hint)


def table_schema(collection: str, records: pl.DataFrame) -> pl.Schema:
    """Return the schema ``records_table`` gives: declared, or inferred from ``records``."""
    declared = lexicon_schema(collection)
    if declared is not None:
        return declared
    return shape_schema(inferred_shape(_texts(records, collection)))


def records_table(records: pl.DataFrame, collection: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (table, problems) of one collection's rows of a ``records`` frame.

    Args:
        records: a frame with the ``records`` columns (one or many repositories); rows of
            other collections are ignored.
        collection: the collection's NSID.

    Returns:
        The typed table, in the order of ``records``, and a ``problems`` frame
        (collection, rkey, cid, error) with a row per problem found.
    """
    rows = records.filter(pl.col("collection") == collection)
    texts = rows.get_column("record")
    shape = collection_shape(collection)
    declared = shape is not None
    if shape is None:
        shape = inferred_shape(texts)
    keys = rows.select(KEY_COLUMNS.names())
    if declared and _accel.core is not None:
        return _assemble_core(keys, core_check_texts(texts, shape, collection), shape,
                              collection)
    checked = Checker(shape, collection if declared else None).run(texts)
    fields, late = _decode(_scatter(len(texts), checked.replaced, texts), shape)
    extras = _scatter(len(texts), dict(checked.extras))
    return _assemble(keys, fields, extras, checked.problems, late, collection)


def snapshot_table(snap: RepoSnapshot, collection: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (table, problems) of ``collection`` in a snapshot.

    A collection with a lexicon, in a snapshot whose blocks the compiled core serves, is
    checked by the core from each record's CBOR block (:func:`~atrepo._table_check.core_check`);
    otherwise from the records' JSON text, by :func:`records_table`. Both give the same.
    """
    shape = collection_shape(collection)
    if shape is None or not _accel.serves(snap.blocks):
        return records_table(snap._collection_records(collection), collection)
    keys, values = snap._walk()
    start = bisect.bisect_left(keys, collection + "/")
    end = bisect.bisect_left(keys, collection + "0", start)  # "0" sorts after "/"
    if "_decoded" in snap.__dict__:
        # records are decoded: their key columns are at hand, and every block was checked
        # against its CID when they were
        rows = snap.records.slice(start, end - start).select(KEY_COLUMNS.names())
        checked = core_check(snap.blocks, None, keys, values, (start, end), shape, collection,
                             verify_cids=False)
    else:
        checked = core_check(snap.blocks, snap.did, keys, values, (start, end), shape,
                             collection, verify_cids=True)
        assert checked.keys is not None
        rows = checked.keys
    return _assemble_core(rows, checked, shape, collection)


def _assemble_core(keys: pl.DataFrame, checked: CoreChecked, shape: Shape, collection: str
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The table and problems frame of the core's pass: its typed rows and the deferred
    rows read by :func:`_decode`, put in row order."""
    names = {name: column_name(name) for name, _ in shape.fields}
    rows = checked.rows.rename(names)
    late = [(field, i, _late(shape.fields[field][0], shown)) for i, field, shown in checked.lost]
    if checked.deferred:
        at = list(checked.deferred)
        fields, deferred_late = _decode(pl.Series(list(checked.deferred.values()),
                                                  dtype=pl.String), shape)
        extras = pl.Series(EXTRA, [checked.extras.get(i) for i in at], dtype=pl.String)
        rows = pl.concat([rows, fields.with_columns(extras, pl.Series("row", at, dtype=pl.UInt32))])
        late.extend((field, at[i], message) for field, i, message in deferred_late)
    late.sort(key=lambda p: p[:2])  # by field, then row, as _decode gives them
    if not rows.get_column("row").is_sorted():
        rows = rows.sort("row")
    return _assemble(keys, rows.drop("row", EXTRA), rows.get_column(EXTRA), checked.problems,
                     late, collection)


def _assemble(keys: pl.DataFrame, fields: pl.DataFrame, extras: pl.Series,
              found: list[tuple[int, str]], late: list[tuple[int, int, str]],
              collection: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The table and problems frame of checked records.

    Args:
        keys: the key columns (did, rkey, uri, cid), one row per record.
        fields: the typed field columns, one row per record (all null: no record).
        extras: each record's ``extra`` JSON.
        found: the checking pass's (row, error) problems, in row order.
        late: (field number, row, error) of the datetimes that became null in ``fields``,
            by field, then row.
        collection: the collection's NSID.
    """
    if late:
        # the table's datetime message replaces the validator's for the same field
        replaced = {(i, message.split(":", 1)[0]) for _, i, message in late}
        found = [(i, m) for i, m in found
                 if (i, m.removeprefix("invalid record: ").split(" ", 1)[0]) not in replaced]
        found = found + [(i, message) for _, i, message in late]
    table = pl.concat([keys, fields, extras.alias(EXTRA).to_frame()], how="horizontal")
    at = pl.Series([i for i, _ in found], dtype=pl.UInt32)
    problems = keys.select(pl.lit(collection).alias("collection"), "rkey", "cid")[at]
    problems = problems.with_columns(pl.Series("error", [e for _, e in found], dtype=pl.String))
    return table, problems.cast(dict(PROBLEMS_SCHEMA))  # type: ignore[arg-type]


def _texts(records: pl.DataFrame, collection: str) -> pl.Series:
    return records.filter(pl.col("collection") == collection).get_column("record")


# -- decoding ------------------------------------------------------------------------------

def _decode(texts: pl.Series, shape: Shape) -> tuple[pl.DataFrame, list[tuple[int, int, str]]]:
    """Read checked JSON texts with the shape's JSON-side dtype, then fix wrapped values.

    Returns the field columns and the (field number, row, error) problems of datetimes
    that do not parse or lie outside :data:`DATETIME_RANGE` (null in the table), by field,
    then row.

    Raises:
        polars.exceptions.ComputeError: a value does not read as its declared dtype.
    """
    if not shape.fields:
        return pl.DataFrame(), []
    raw = pl.Struct({name: field.raw for name, field in shape.fields})
    column = texts.alias("record")
    if column.is_null().all():
        decoded = pl.Series("record", [None] * len(texts), dtype=raw)
    else:
        decoded = column.str.json_decode(dtype=raw)
    frame = decoded.struct.unnest()
    fixed = frame.select([_fix(pl.col(name), field).alias(column_name(name))
                          for name, field in shape.fields])
    return fixed, _datetime_problems(frame, fixed, shape)


def _datetime_problems(raw: pl.DataFrame, fixed: pl.DataFrame, shape: Shape
                       ) -> list[tuple[int, int, str]]:
    """(field number, row, error) where a datetime string was read but the table holds
    null instead."""
    problems: list[tuple[int, int, str]] = []
    for k, (name, field) in enumerate(shape.fields):
        if not field.has("datetime"):
            continue
        lost = (_count(raw.get_column(name).to_frame(), field)
                != _count(fixed.get_column(column_name(name)).alias(name).to_frame(), field))
        for i in lost.arg_true().to_list():
            value = raw.get_column(name)[i]
            problems.append((k, i, _late(name, value if isinstance(value, str) else None)))
    return problems


def _late(name: str, value: str | None) -> str:
    """The problem of top-level field ``name`` whose datetime became null (``value``: the
    field's own string, when the field is a datetime)."""
    shown = f"{value[:40]!r}" if value is not None else "a datetime inside"
    return (f"Record/{name}: {shown} does not parse as a datetime or lies outside "
            f"{DATETIME_RANGE[0].year}-{DATETIME_RANGE[1].year - 1}; null in the table")


def _count(frame: pl.DataFrame, shape: Shape) -> pl.Series:
    """Per row, how many non-null datetimes a field holds (at any depth)."""
    name = frame.columns[0]
    return frame.select(_count_expr(pl.col(name), shape).fill_null(0)).to_series()


def _count_expr(expr: pl.Expr, shape: Shape) -> pl.Expr:
    if shape.kind == "datetime":
        return expr.is_not_null().cast(pl.UInt32)
    if shape.kind == "array":
        assert shape.item is not None
        return expr.list.eval(_count_expr(pl.element(), shape.item)).list.sum()
    parts = [_count_expr(expr.struct.field(n), f).fill_null(0)
             for n, f in shape.fields if f.has("datetime")]
    return pl.sum_horizontal(parts)


def _fix(expr: pl.Expr, shape: Shape) -> pl.Expr:
    """Expression from the JSON-side value to the table value (identity when plain)."""
    if shape.plain:
        return expr
    kind = shape.kind
    if kind == "datetime":
        parsed = pl.coalesce(*(expr.str.to_datetime(form, time_unit="us", time_zone="UTC",
                                                    strict=False)
                               for form in (_DATETIME_FORMAT, _NAIVE_FORMAT)))
        return (pl.when(parsed.is_between(pl.lit(DATETIME_RANGE[0]),
                                          pl.lit(DATETIME_RANGE[1]), closed="left"))
                .then(parsed).otherwise(None))
    if kind == "cid":
        return expr.struct.field("$link")
    if kind == "bytes":
        return expr.struct.field("$bytes")
    if kind == "blob":
        ref = pl.coalesce(expr.struct.field("ref").struct.field("$link"),
                          expr.struct.field("cid"))
        return (pl.when(expr.is_not_null())
                .then(pl.struct(ref.alias("ref"), expr.struct.field("mimeType"),
                                expr.struct.field("size")))
                .otherwise(None))
    if kind == "array":
        assert shape.item is not None
        return expr.list.eval(_fix(pl.element(), shape.item))
    fields = [_fix(expr.struct.field(name), field).alias(name) for name, field in shape.fields]
    return pl.when(expr.is_not_null()).then(pl.struct(fields)).otherwise(None)


def _scatter(length: int, values: dict[int, str | None],
             base: pl.Series | None = None) -> pl.Series:
    """``base`` (or nulls) with ``values`` put in at their rows, as a String series."""
    series = base if base is not None else pl.Series([None] * length, dtype=pl.String)
    if not values:
        return series
    return series.clone().scatter(list(values), pl.Series(list(values.values()),
                                                          dtype=pl.String))
