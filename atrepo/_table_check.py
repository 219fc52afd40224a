"""The checking pass of a table: validity, values that do not fit, ``extra``.

Each record is checked against its lexicon (:mod:`atrepo.lexicon`'s validator), in Python,
one record at a time. A valid record already has the declared types and is read as it is;
an invalid one is fitted to the table's shape: a value of the wrong type (or an integer
outside Int64) is replaced by null and noted, so that ``str.json_decode`` with the declared
dtype reads every record. Top-level fields the lexicon does not declare become ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl

from .lexicon._shape import Shape
from .lexicon._validate import record_check

__all__ = ["Checked", "Checker", "INT64", "blob_fits"]

INT64 = (-(1 << 63), (1 << 63) - 1)
_CHUNK = 10_000  # records turned into Python strings at a time


class Checker:
    """One pass over a collection's records: problems, values to null, ``extra``."""

    def __init__(self, shape: Shape, collection: str | None) -> None:
        self.shape = shape
        self.collection = collection
        self.check = record_check(collection) if collection is not None else None
        self.declared = {name for name, _ in shape.fields} | {"$type"}

    def run(self, texts: pl.Series, *, fit_all: bool = False) -> Checked:
        """Check every record of ``texts``: what to decode instead, ``extra``, problems.

        A record that is valid against its lexicon has the declared types already and is
        decoded as it is, unless the shape keeps some value as JSON text, or ``fit_all``.
        """
        fit_valid = fit_all or self.check is None or self.shape.has("json")
        checked = Checked({}, {}, [])
        for start in range(0, len(texts), _CHUNK):
            for i, text in enumerate(texts.slice(start, _CHUNK).to_list(), start):
                if text is not None:
                    self._one(i, orjson.loads(text), fit_valid, checked)
        return checked

    def _one(self, i: int, record: Any, fit_valid: bool, checked: Checked) -> None:
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
class Checked:
    """What a pass found: JSON to decode instead (by row), ``extra`` JSON, problems."""

    replaced: dict[int, str | None]
    extras: dict[int, str]
    problems: list[tuple[int, str]]


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
              and INT64[0] <= value <= INT64[1])
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "datetime":
        ok = isinstance(value, str)  # parsed, and checked against the range, in polars
    elif kind == "cid":
        ok = isinstance(value, dict) and isinstance(value.get("$link"), str)
    elif kind == "bytes":
        ok = isinstance(value, dict) and isinstance(value.get("$bytes"), str)
    elif kind == "blob":
        ok = blob_fits(value)
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


def blob_fits(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("mimeType"), str):
        return False
    ref = value.get("ref")
    size = value.get("size")
    if isinstance(ref, dict) and isinstance(ref.get("$link"), str):
        return size is None or (isinstance(size, int) and not isinstance(size, bool)
                                and INT64[0] <= size <= INT64[1])
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
