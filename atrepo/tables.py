"""Typed tables of one collection: declared columns from the lexicon, the same every time.

``table(collection)`` turns a collection's ``record`` JSON into columns. With a lexicon
(:mod:`atrepo.lexicon`) the columns, their order and dtypes are declared: ``did, rkey,
uri, cid``, the lexicon's fields in lexicon order, then ``extra`` (JSON text of the
top-level fields the lexicon does not declare; null when there are none). Tables of one
collection from any number of repositories therefore stack with a plain ``pl.concat``.

How a table is built, and why it never fails on odd records:

1. One pass over the records checks each against its lexicon (:mod:`atrepo.lexicon`'s
   validator; every problem becomes a row of ``problems``) and against the table's shape:
   a value of the wrong type, an integer outside Int64, or a datetime that is not an
   atproto datetime or lies outside 1990-2100 (UTC) becomes null, with a ``problems`` row
   naming the field. Only records that need such a change are written out again; the
   raw JSON stays in ``records``.
2. ``str.json_decode`` with the declared (JSON-side) dtype reads all records at once, and
   polars expressions turn ``{"$link"}``/``{"$bytes"}`` wrappers into strings, legacy blobs
   into the blob struct, and datetime strings into ``Datetime("us", "UTC")``.

A collection without a lexicon gets an inferred shape: fields in sorted order (at every
depth) and each field's type unified over all of its records (a field whose values
disagree is kept as JSON text), so the same records always give the same schema.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import polars as pl

from .errors import AtrepoError
from .frames import PROBLEMS_SCHEMA, RECORDS_SCHEMA
from .lexicon._schema import (EXTRA, KEY_COLUMNS, collection_shape, column_name,
                              lexicon_schema)
from .lexicon._schema import table_schema as shape_schema
from .lexicon._shape import Shape
from .lexicon._validate import record_check

__all__ = ["DATETIME_RANGE", "Source", "check_collection", "diff_table", "inferred_shape",
           "records_table", "table", "table_problems", "table_schema", "table_with_problems"]

# datetimes outside these years (UTC) are taken as wrong clocks, not as data: research on
# Bluesky reports createdAt values of 1970 and of year 1 (from clients' zero timestamps)
DATETIME_RANGE = (datetime(1990, 1, 1, tzinfo=timezone.utc),
                  datetime(2101, 1, 1, tzinfo=timezone.utc))
_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"
_INT64 = (-(1 << 63), (1 << 63) - 1)


Source = Any  # RepoSnapshot | pl.DataFrame | pl.LazyFrame | anything with ``.records``


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
        source = source.records
    if isinstance(source, pl.LazyFrame):
        source = (source.filter(pl.col("collection") == collection)
                  .select(RECORDS_SCHEMA.names()).collect())
    elif not isinstance(source, pl.DataFrame) and hasattr(source, "records"):
        return table_with_problems(source.records, collection)
    if not isinstance(source, pl.DataFrame):
        msg = (f"records come from a RepoSnapshot, a records DataFrame or LazyFrame, or an "
               f"object with .records, not {type(source).__name__}")
        raise TypeError(msg)
    return records_table(source, collection)


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
    checker = _Pass(shape, collection if declared else None)
    checked = checker.run(texts)
    try:
        fields, late = _decode(_scatter(len(texts), checked.replaced, texts), shape)
    except pl.exceptions.ComputeError:
        # a valid record the fast path passed through still did not read (an open
        # union's other member reusing a field name with another type): fit every record
        checked = checker.run(texts, fit_all=True)
        fields, late = _decode(_scatter(len(texts), checked.replaced, texts), shape)
    found = checked.problems
    if late:
        # the table's datetime message replaces the validator's for the same field
        replaced = {(i, message.split(":", 1)[0]) for i, message in late}
        found = [(i, m) for i, m in found
                 if (i, m.removeprefix("invalid record: ").split(" ", 1)[0]) not in replaced]
        found.extend(late)
    extras = _scatter(len(texts), dict(checked.extras)).alias(EXTRA)
    table = pl.concat([rows.select(KEY_COLUMNS.names()), fields, extras.to_frame()],
                      how="horizontal")
    problems = pl.DataFrame(
        [(collection, rows["rkey"][i], rows["cid"][i], error) for i, error in found],
        schema=PROBLEMS_SCHEMA, orient="row")
    return table, problems


def _texts(records: pl.DataFrame, collection: str) -> pl.Series:
    return records.filter(pl.col("collection") == collection).get_column("record")


# -- decoding ------------------------------------------------------------------------------

def _decode(texts: pl.Series, shape: Shape) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """Read checked JSON texts with the shape's JSON-side dtype, then fix wrapped values.

    Returns the field columns and the (row, error) problems of datetimes that do not
    parse or lie outside :data:`DATETIME_RANGE` (null in the table).

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
                       ) -> list[tuple[int, str]]:
    """Rows where a datetime string was read but the table holds null instead."""
    problems: list[tuple[int, str]] = []
    for name, field in shape.fields:
        if not field.has("datetime"):
            continue
        lost = (_count(raw.get_column(name).to_frame(), field)
                != _count(fixed.get_column(column_name(name)).alias(name).to_frame(), field))
        for i in lost.arg_true().to_list():
            value = raw.get_column(name)[i]
            shown = f"{value[:40]!r}" if isinstance(value, str) else "a datetime inside"
            problems.append((i, f"Record/{name}: {shown} is not a datetime within "
                                f"{DATETIME_RANGE[0].year}-{DATETIME_RANGE[1].year - 1}; "
                                "null in the table"))
    return problems


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
        parsed = expr.str.to_datetime(_DATETIME_FORMAT, time_unit="us", time_zone="UTC",
                                      strict=False)
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


# -- the checking pass ---------------------------------------------------------------------

class _Pass:
    """One pass over a collection's records: problems, values to null, ``extra``."""

    def __init__(self, shape: Shape, collection: str | None) -> None:
        self.shape = shape
        self.collection = collection
        self.check = record_check(collection) if collection is not None else None
        self.declared = {name for name, _ in shape.fields} | {"$type"}

    def run(self, texts: pl.Series, *, fit_all: bool = False) -> _Checked:
        """Check every record of ``texts``: what to decode instead, ``extra``, problems.

        A record that is valid against its lexicon has the declared types already and is
        decoded as it is, unless the shape keeps some value as JSON text, or ``fit_all``.
        """
        fit_valid = fit_all or self.check is None or self.shape.has("json")
        checked = _Checked({}, {}, [])
        for start in range(0, len(texts), _CHUNK):
            for i, text in enumerate(texts.slice(start, _CHUNK).to_list(), start):
                if text is not None:
                    self._one(i, orjson.loads(text), fit_valid, checked)
        return checked

    def _one(self, i: int, record: Any, fit_valid: bool, checked: _Checked) -> None:
        if not isinstance(record, dict):
            checked.replaced[i] = None
            checked.problems.append((i, "invalid record: Record must be an object"))
            return
        found: list[str] = []
        if self.check is not None:
            if record.get("$type") != self.collection:
                found.append(f"Record/$type is {record.get('$type')!r}, not the "
                             f"collection {self.collection}")
            self.check(record, "Record", found)
        nulled: list[str] = []
        cleaned = (_clean_object(record, self.shape, "Record", nulled)
                   if found or fit_valid else record)
        if cleaned is not record:
            checked.replaced[i] = orjson.dumps(cleaned).decode()
        if not record.keys() <= self.declared:
            extra = {k: v for k, v in record.items() if k not in self.declared}
            checked.extras[i] = orjson.dumps(extra).decode()
        if nulled:
            # the table's own message replaces the validator's for a nulled field
            paths = tuple(message.split(":", 1)[0] + " " for message in nulled)
            found = [m for m in found if not m.startswith(paths)] + nulled
        checked.problems.extend(
            (i, message if message in nulled else f"invalid record: {message}")
            for message in found)


@dataclass(frozen=True, slots=True)
class _Checked:
    """What a pass found: JSON to decode instead (by row), ``extra`` JSON, problems."""

    replaced: dict[int, str | None]
    extras: dict[int, str]
    problems: list[tuple[int, str]]


_CHUNK = 10_000  # records turned into Python strings at a time


def _scatter(length: int, values: dict[int, str | None],
             base: pl.Series | None = None) -> pl.Series:
    """``base`` (or nulls) with ``values`` put in at their rows, as a String series."""
    series = base if base is not None else pl.Series([None] * length, dtype=pl.String)
    if not values:
        return series
    return series.clone().scatter(list(values), pl.Series(list(values.values()),
                                                          dtype=pl.String))


_MISSING = object()


def _clean(value: Any, shape: Shape, path: str, nulled: list[str]) -> Any:
    """Return ``value`` if it fits ``shape``, a fitting copy, or None (noted in ``nulled``)."""
    if value is None:
        return None
    kind = shape.kind
    if kind == "string":
        ok = isinstance(value, str)
    elif kind == "integer":
        ok = (isinstance(value, int) and not isinstance(value, bool)
              and _INT64[0] <= value <= _INT64[1])
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "datetime":
        ok = isinstance(value, str)  # parsed, and checked against the range, in polars
    elif kind == "cid":
        ok = isinstance(value, dict) and isinstance(value.get("$link"), str)
    elif kind == "bytes":
        ok = isinstance(value, dict) and isinstance(value.get("$bytes"), str)
    elif kind == "blob":
        ok = _blob_fits(value)
    elif kind == "json":
        return orjson.dumps(value).decode()
    elif kind == "array":
        if not isinstance(value, list):
            ok = False
        else:
            assert shape.item is not None
            items = [_clean(item, shape.item, f"{path}/{i}", nulled)
                     for i, item in enumerate(value)]
            return value if all(a is b for a, b in zip(items, value)) else items
    else:
        if isinstance(value, dict):
            return _clean_object(value, shape, path, nulled)
        ok = False
    if ok:
        return value
    nulled.append(f"{path}: a {_json_type(value)} where the table has {kind}; "
                  "null in the table")
    return None


def _clean_object(value: dict[str, Any], shape: Shape, path: str, nulled: list[str]) -> Any:
    if shape.kind == "union":
        member = value.get("$type")
        if not isinstance(member, str):
            nulled.append(f"{path}: a union member without $type; null in the table")
            return None
        if not _known_member(member, shape.refs):
            return {"$type": member}  # an open union's other member: only its $type fits
    changed: dict[str, Any] | None = None
    for name, field in shape.fields:
        item = value.get(name, _MISSING)
        if item is _MISSING or item is None:
            continue
        fitted = _clean(item, field, f"{path}/{name}", nulled)
        if fitted is not item:
            changed = changed if changed is not None else dict(value)
            changed[name] = fitted
    return value if changed is None else changed


def _known_member(member: str, refs: tuple[str, ...]) -> bool:
    ref = member if member.startswith("lex:") else f"lex:{member}"
    return ref in refs or ref.removesuffix("#main") in refs or f"{ref}#main" in refs


def _blob_fits(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("mimeType"), str):
        return False
    ref = value.get("ref")
    size = value.get("size")
    if isinstance(ref, dict) and isinstance(ref.get("$link"), str):
        return size is None or (isinstance(size, int) and not isinstance(size, bool)
                                and _INT64[0] <= size <= _INT64[1])
    return isinstance(value.get("cid"), str)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# -- inference for collections without a lexicon ----------------------------------------

def inferred_shape(texts: Iterable[str | None]) -> Shape:
    """Return the shape of records with no lexicon: sorted fields, types unified over all."""
    merged: Shape | None = None
    for text in texts:
        if text is None:
            continue
        record = orjson.loads(text)
        if isinstance(record, dict):
            record = {k: v for k, v in record.items() if k != "$type"}
        found = _infer(record)
        merged = found if merged is None else _unify(merged, found)
    if merged is None or merged.kind != "object":
        return Shape("object")
    return _finish(merged)


_NULL = Shape("null")


def _infer(value: Any) -> Shape:
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return Shape("boolean")
    if isinstance(value, int):
        return Shape("integer") if _INT64[0] <= value <= _INT64[1] else Shape("json")
    if isinstance(value, str):
        return Shape("string")
    if isinstance(value, list):
        item = _NULL
        for element in value:
            item = _unify(item, _infer(element))
        return Shape("array", item=item)
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$link"), str):
            return Shape("cid")
        if len(value) == 1 and isinstance(value.get("$bytes"), str):
            return Shape("bytes")
        if value.get("$type") == "blob" and _blob_fits(value):
            return Shape("blob")
        if not value:
            return Shape("json")  # polars has no empty struct
        return Shape("object", fields=tuple(sorted((k, _infer(v)) for k, v in value.items())))
    return Shape("json")


def _unify(a: Shape, b: Shape) -> Shape:
    if a.kind == "null":
        return _finish(b)
    if b.kind == "null" or a == b:
        return _finish(a)
    if a.kind == b.kind == "object":
        fields = dict(a.fields)
        for name, shape in b.fields:
            fields[name] = _unify(fields[name], shape) if name in fields else _finish(shape)
        return Shape("object", fields=tuple(sorted(fields.items())))
    if a.kind == b.kind == "array":
        assert a.item is not None and b.item is not None
        return Shape("array", item=_unify(a.item, b.item))
    return Shape("json")


def _finish(shape: Shape) -> Shape:
    """A shape with no ``null`` left in it (a field only ever null is a string)."""
    if shape.kind == "null":
        return Shape("string")
    if shape.kind == "array":
        assert shape.item is not None
        return Shape("array", item=_finish(shape.item))
    if shape.kind == "object":
        return Shape("object", fields=tuple((n, _finish(f)) for n, f in shape.fields))
    return shape

