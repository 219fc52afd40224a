"""The declared schema of a collection's table, derived from its lexicon."""

from __future__ import annotations

from functools import cache

import polars as pl

from ._documents import record_definition
from ._shape import Shape, record_shape

__all__ = ["EXTRA", "KEY_COLUMNS", "collection_shape", "column_name", "lexicon_schema",
           "table_schema"]

# the columns every table starts with, before the record's fields; then "extra"
KEY_COLUMNS = pl.Schema({"did": pl.String, "rkey": pl.String, "uri": pl.String,
                         "cid": pl.String})
EXTRA = "extra"
_RESERVED = frozenset({*KEY_COLUMNS.names(), EXTRA})


def column_name(field: str) -> str:
    """The table column of a record field: its name, or ``record_<name>`` when the name is
    one of the table's own columns (a feed generator's ``did`` is ``record_did``)."""
    return f"record_{field}" if field in _RESERVED else field


@cache
def collection_shape(collection: str) -> Shape | None:
    """Return the record shape of a collection, or None when no lexicon defines it."""
    definition = record_definition(collection)
    return None if definition is None else record_shape(definition)


@cache
def _schema(collection: str) -> pl.Schema | None:
    shape = collection_shape(collection)
    if shape is None:
        return None
    return table_schema(shape)


def table_schema(shape: Shape) -> pl.Schema:
    """Return the table schema of a record shape: keys, the fields, then ``extra``."""
    columns: dict[str, pl.DataType] = dict(KEY_COLUMNS)
    columns.update((column_name(name), field.dtype) for name, field in shape.fields)
    columns[EXTRA] = pl.String()
    return pl.Schema(columns)


def lexicon_schema(collection: str) -> pl.Schema | None:
    """Return the declared schema of ``table(collection)``, or None without a lexicon.

    The columns are ``did, rkey, uri, cid``, then the record's fields in the order the
    lexicon lists them (objects as structs, arrays as lists, unions as one struct of
    ``$type`` plus every member's fields, datetimes as ``Datetime("us", "UTC")``, blobs as
    ``{ref, mimeType, size}``, CID links as strings), then ``extra``: the JSON text of
    fields the lexicon does not declare. A field named like one of the table's own
    columns is prefixed (a feed generator's ``did`` is ``record_did``).

    Args:
        collection: an NSID such as ``"app.bsky.feed.post"``.
    """
    schema = _schema(collection)
    return None if schema is None else pl.Schema(schema)
