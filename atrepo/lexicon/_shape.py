"""Table shapes derived from lexicons: the declared dtype of every field, and how to read it.

A :class:`Shape` says, for one field, the polars dtype a table declares (``dtype``), the
dtype ``str.json_decode`` reads the atproto JSON with (``raw``), and which kind of value it
is. The two differ where the JSON data model wraps a value: a CID link is
``{"$link": ...}`` in JSON and a string in the table; bytes are ``{"$bytes": ...}`` and a
base64 string; a datetime is a string in JSON and ``Datetime("us", "UTC")`` in the table.

The mapping from lexicon types (https://atproto.com/specs/lexicon):

======================  ===========================================================
lexicon                 table dtype
======================  ===========================================================
string                  String (``format: datetime``: ``Datetime("us", "UTC")``)
integer / boolean       Int64 / Boolean
bytes / cid-link        String (base64 / the CID)
blob                    Struct{ref: String (CID), mimeType: String, size: Int64}
object (or a ref to)    Struct of its properties, in lexicon order
array                   List of the item's dtype
union                   Struct{$type: String, every member's fields} (all nullable;
                        members' same-named fields are merged)
unknown                 String (the value's JSON text)
======================  ===========================================================

References are followed across documents; a reference back into a definition already
being expanded (a recursive lexicon) becomes an ``unknown`` field, so every shape is
finite. Two union members' fields of one name and different kinds also become ``unknown``,
and so does an object that declares no properties (polars has no empty struct).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ..errors import AtrepoError
from ._documents import Def, resolve

__all__ = ["Shape", "record_shape"]

DATETIME = pl.Datetime("us", "UTC")
_SCALARS: dict[str, pl.DataType] = {
    "string": pl.String(), "datetime": DATETIME, "integer": pl.Int64(),
    "boolean": pl.Boolean(), "bytes": pl.String(), "cid": pl.String(), "json": pl.String(),
}
_RAW: dict[str, pl.DataType] = {
    "string": pl.String(), "datetime": pl.String(), "integer": pl.Int64(),
    "boolean": pl.Boolean(), "bytes": pl.Struct({"$bytes": pl.String()}),
    "cid": pl.Struct({"$link": pl.String()}), "json": pl.String(),
}
BLOB_DTYPE = pl.Struct({"ref": pl.String(), "mimeType": pl.String(), "size": pl.Int64()})
# legacy blobs ({"cid": ..., "mimeType": ...}) are still found in old repositories
BLOB_RAW = pl.Struct({"$type": pl.String(), "ref": pl.Struct({"$link": pl.String()}),
                      "mimeType": pl.String(), "size": pl.Int64(), "cid": pl.String()})


@dataclass(frozen=True, slots=True)
class Shape:
    """One field's table dtype, JSON-reading dtype and kind.

    Attributes:
        kind: ``string``, ``datetime``, ``integer``, ``boolean``, ``bytes``, ``cid``,
            ``json`` (kept as JSON text), ``blob``, ``object``, ``union`` or ``array``.
        fields: the (name, shape) pairs of an object or union, in order; a union's first
            field is ``$type``.
        item: an array's item shape.
        refs: a union's member references (``lex:nsid#name``), for telling known members
            from others.
    """

    kind: str
    fields: tuple[tuple[str, Shape], ...] = ()
    item: Shape | None = None
    refs: tuple[str, ...] = ()

    @property
    def dtype(self) -> pl.DataType:
        """The dtype of this field in a table."""
        if self.kind in _SCALARS:
            return _SCALARS[self.kind]
        if self.kind == "blob":
            return BLOB_DTYPE
        if self.kind == "array":
            assert self.item is not None
            return pl.List(self.item.dtype)
        return pl.Struct({name: shape.dtype for name, shape in self.fields})

    @property
    def raw(self) -> pl.DataType:
        """The dtype ``str.json_decode`` reads this field's atproto JSON with."""
        if self.kind in _RAW:
            return _RAW[self.kind]
        if self.kind == "blob":
            return BLOB_RAW
        if self.kind == "array":
            assert self.item is not None
            return pl.List(self.item.raw)
        return pl.Struct({name: shape.raw for name, shape in self.fields})

    def has(self, kind: str) -> bool:
        """Whether this shape or any shape inside it is of ``kind``."""
        return (self.kind == kind or any(f.has(kind) for _, f in self.fields)
                or (self.item is not None and self.item.has(kind)))

    @property
    def plain(self) -> bool:
        """True when the JSON reads directly as the table dtype (no fix-up anywhere)."""
        if self.kind in ("string", "integer", "boolean", "json"):
            return True
        if self.kind == "array":
            assert self.item is not None
            return self.item.plain
        if self.kind in ("object", "union"):
            return all(shape.plain for _, shape in self.fields)
        return False


_JSON = Shape("json")
_TYPE = Shape("string")


def record_shape(record: Def) -> Shape:
    """Return the object shape of a record definition's ``record`` object."""
    return _object(record, ())


def _shape(node: Def, stack: tuple[str, ...]) -> Shape:
    kind = node.get("type")
    if kind == "ref":
        ref = node["ref"]
        if ref in stack:
            return _JSON
        return _shape(resolve(ref), (*stack, ref))
    if kind == "string":
        return Shape("datetime" if node.get("format") == "datetime" else "string")
    if kind in ("integer", "boolean", "bytes"):
        return Shape(kind)
    if kind == "cid-link":
        return Shape("cid")
    if kind == "blob":
        return Shape("blob")
    if kind == "object":
        return _object(node, stack)
    if kind == "array":
        return Shape("array", item=_shape(node["items"], stack))
    if kind == "union":
        return _union(node, stack)
    if kind in ("unknown", "token"):
        return _JSON
    msg = "lexicon type has no table dtype"
    raise AtrepoError(msg, type=kind)


def _object(node: Def, stack: tuple[str, ...]) -> Shape:
    fields = tuple((name, _shape(prop, stack))
                   for name, prop in node.get("properties", {}).items())
    # polars has no empty struct: an object that declares nothing is kept as JSON text
    return Shape("object", fields=fields) if fields else _JSON


def _union(node: Def, stack: tuple[str, ...]) -> Shape:
    merged: dict[str, Shape] = {"$type": _TYPE}
    for ref in node.get("refs", []):
        member = _JSON if ref in stack else _shape(resolve(ref), (*stack, ref))
        for name, shape in member.fields:
            merged[name] = merge(merged[name], shape) if name in merged else shape
    return Shape("union", fields=tuple(merged.items()), refs=tuple(node.get("refs", [])))


def merge(a: Shape, b: Shape) -> Shape:
    """Return one shape that holds values of both (union members sharing a field name)."""
    if a == b:
        return a
    if a.kind in ("object", "union") and b.kind in ("object", "union"):
        fields = dict(a.fields)
        for name, shape in b.fields:
            fields[name] = merge(fields[name], shape) if name in fields else shape
        kind = "union" if "union" in (a.kind, b.kind) else "object"
        return Shape(kind, fields=tuple(fields.items()), refs=a.refs + b.refs)
    if a.kind == b.kind == "array":
        assert a.item is not None and b.item is not None
        return Shape("array", item=merge(a.item, b.item))
    return _JSON
