"""Table shapes for collections without a lexicon, inferred from their records.

The shape must not depend on which record comes first: fields are sorted at every depth,
and each field's kind is unified over all records (null joins any kind; two objects merge
their fields; two arrays unify their items; anything else becomes JSON text). CID links,
bytes and blobs are recognised by their JSON data model form.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ._table_check import INT64, blob_fits
from .lexicon._shape import Shape

__all__ = ["inferred_shape"]


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
        return Shape("integer") if INT64[0] <= value <= INT64[1] else Shape("json")
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
        if value.get("$type") == "blob" and blob_fits(value):
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
