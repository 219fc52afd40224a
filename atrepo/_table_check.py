"""The checking pass of a table: validity, values that do not fit, ``extra``.

Each record is checked against its lexicon (:mod:`atrepo.lexicon`'s validator), in Python,
one record at a time, and fitted to the table's shape: a value of the wrong type (or an
integer outside Int64) is replaced by null and noted, so that ``str.json_decode`` with the
declared dtype reads every record and reads nothing it should not (an integer beyond Int64
would otherwise become null unnoticed). Only records the fitting changed are written out
again. Top-level fields the lexicon does not declare become ``extra``.

:class:`Checker` is the reference, and the path without the compiled core.
:func:`core_check` is the same pass in the core (``rust/src/table.rs``), from each record's
CBOR block; :func:`core_check_texts` from records' JSON text (a ``records`` frame). The core
writes the table's typed columns itself, in the same pass (``rust/src/tablefit.rs``), with
no JSON in between. :func:`descriptor` compiles the lexicon and the shape once into the
data the core checks with, and a record the core leaves undecided (a string format, CID or
datetime outside the common shapes it knows; in JSON text, a float or an integer beyond
Int64) is checked here, by :class:`Checker`, and read by the reference's route, so the
paths give the same problems, in the same order, and the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
import polars as pl

from . import _accel
from .datamodel import record_json
from .lexicon._documents import Def, record_definition, resolve
from .lexicon._shape import Shape
from .lexicon._validate import FORMATS, normalize, record_check

__all__ = ["Checked", "Checker", "CoreChecked", "INT64", "blob_fits", "core_check",
           "core_check_texts", "descriptor"]

INT64 = (-(1 << 63), (1 << 63) - 1)
_CHUNK = 10_000  # records turned into Python strings at a time


class Checker:
    """One pass over a collection's records: problems, values to null, ``extra``."""

    def __init__(self, shape: Shape, collection: str | None) -> None:
        self.shape = shape
        self.collection = collection
        self.check = record_check(collection) if collection is not None else None
        self.declared = {name for name, _ in shape.fields} | {"$type"}

    def run(self, texts: pl.Series) -> Checked:
        """Check every record of ``texts``: what to decode instead, ``extra``, problems."""
        checked = Checked({}, {}, [])
        for start in range(0, len(texts), _CHUNK):
            for i, text in enumerate(texts.slice(start, _CHUNK).to_list(), start):
                if text is not None:
                    self.one(i, orjson.loads(text), checked)
        return checked

    def one(self, i: int, record: Any, checked: Checked) -> None:
        """Check and fit ``record`` (row ``i``, parsed JSON), adding to ``checked``."""
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
        cleaned = _clean_object(record, self.shape, "Record", nulled)
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
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not INT64[0] <= value <= INT64[1]:
            nulled.append(f"{path}: an integer outside Int64; null in the table")
            return None
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "datetime":
        ok = isinstance(value, str)  # parsed, and checked against the range, in polars
    elif kind == "cid":
        ok = isinstance(value, dict) and isinstance(value.get("$link"), str)
    elif kind == "bytes":
        ok = isinstance(value, dict) and isinstance(value.get("$bytes"), str)
    elif kind == "blob":
        return _clean_blob(value, path, nulled)
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


# the parts of a blob the table reads: typed (ref, mimeType, size) or legacy (cid, mimeType)
_BLOB_KEYS = frozenset({"$type", "ref", "mimeType", "size"})
_LEGACY_BLOB_KEYS = frozenset({"cid", "mimeType"})


def _clean_blob(value: Any, path: str, nulled: list[str]) -> Any:
    """A blob that fits, trimmed to the parts the table reads (as they are when only those
    are there), or None (noted)."""
    if not blob_fits(value):
        nulled.append(f"{path}: a {_json_type(value)} where the table has blob; "
                      "null in the table")
        return None
    ref = value.get("ref")
    if isinstance(ref, dict) and isinstance(ref.get("$link"), str):
        if value.keys() <= _BLOB_KEYS and isinstance(value.get("$type", ""), str):
            return value
        return {k: value[k] for k in ("ref", "mimeType", "size") if k in value}
    if value.keys() <= _LEGACY_BLOB_KEYS:
        return value
    return {"mimeType": value["mimeType"], "cid": value["cid"]}


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


# -- the compiled pass ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CoreChecked:
    """What the core's pass found.

    Attributes:
        keys: the key columns (did, rkey, uri, cid; None when not asked for).
        rows: the typed columns of the rows the core decided (the shape's top-level fields
            by their own names, ``extra``, and ``row``: the row each is), in the order they
            were checked; rows with no record are null rows among them.
        deferred: the rows left to the reference, each with the JSON its fitting gives
            (None: not an object, no record).
        extras: the ``extra`` JSON of the deferred rows that have one.
        problems: every row's problems, by row.
        lost: (row, field number, the field's string when it is a datetime) of the
            top-level fields in which the core turned a datetime string into null.
    """

    keys: pl.DataFrame | None
    rows: pl.DataFrame
    deferred: dict[int, str | None]
    extras: dict[int, str]
    problems: list[tuple[int, str]]
    lost: list[tuple[int, int, str | None]]


def core_check(car: Any, did: str | None, keys: Sequence[str], values: Sequence[bytes],
               rows: tuple[int, int | None], shape: Shape, collection: str, *,
               verify_cids: bool) -> CoreChecked:
    """Check rows ``rows`` (start, end) of a walk's ``keys``/``values`` in the core.

    Args:
        car: the snapshot's blocks, served by the core (:func:`atrepo._accel.serves`).
        did: the repository's DID, to build the key columns (``did`` and ``uri`` name it);
            None when the caller has them (from ``records``).
        keys: the walk's keys, as :func:`atrepo._accel.walk` gives them.
        values: the walk's record CIDs (binary), likewise.
        rows: the collection's rows of the walk, [start, end).
        shape: the collection's declared shape.
        collection: the collection's NSID.
        verify_cids: check each block against its CID (off when they were checked already).

    Raises:
        CarError, MstError: a record block does not match its CID, or is missing.
    """
    assert _accel.core is not None
    start, end = rows
    key_columns, parts, found, deferred, lost = _accel.call(
        _accel.core.check_table, _core_checker(collection), car.core_car(), did, keys, values,
        start=start, end=end, verify_cids=verify_cids)

    def text_of(i: int) -> str:
        return record_json(car.get_raw(values[start + i]))

    key_frame = pl.DataFrame(key_columns) if key_columns is not None else None
    return _finish(key_frame, parts, found, deferred, lost, text_of, shape, collection)


def core_check_texts(texts: pl.Series, shape: Shape, collection: str) -> CoreChecked:
    """Check record JSON texts (a ``records`` frame's ``record`` column) in the core, as
    :func:`core_check` checks blocks (no key columns)."""
    assert _accel.core is not None
    _, parts, found, deferred, lost = _accel.call(_accel.core.check_texts_table,
                                                  _core_checker(collection), texts.to_list())
    return _finish(None, parts, found, deferred, lost, lambda i: str(texts[i]), shape,
                   collection)


def _finish(keys: pl.DataFrame | None, parts: list[Any], found: list[tuple[int, int, str]],
            deferred: list[int], lost: list[tuple[int, int, str | None]],
            text_of: Callable[[int], str], shape: Shape, collection: str) -> CoreChecked:
    """The core's rows and problems, with the rows it left to the reference checked here
    (``text_of``: a row's record JSON)."""
    problems = [(i, _worded(kind, text, collection)) for i, kind, text in found]
    rows = pl.concat([pl.DataFrame(part) for part in parts], rechunk=False)
    checked = Checked({}, {}, [])
    texts: dict[int, str | None] = {}
    if deferred:
        reference = Checker(shape, collection)
        for i in deferred:
            text = text_of(i)
            reference.one(i, orjson.loads(text), checked)
            texts[i] = checked.replaced.get(i, text)
        problems = sorted(problems + checked.problems, key=lambda p: p[0])  # stable
    return CoreChecked(keys, rows, texts, checked.extras, problems, lost)


_VALIDATOR, _FITTED = 0, 1


def _worded(kind: int, text: str, collection: str) -> str:
    """A core problem in the reference's words (kind: see ``rust/src/table.rs``)."""
    if kind == _VALIDATOR:
        return f"invalid record: {text}"
    if kind == _FITTED:
        return text
    value = orjson.loads(text) if text else None
    return f"invalid record: Record/$type is {value!r}, not the collection {collection}"


@cache
def _core_checker(collection: str) -> Any:
    assert _accel.core is not None
    return _accel.call(_accel.core.TableChecker, descriptor(collection))


@cache
def descriptor(collection: str) -> str:
    """Return the core's descriptor of a collection (it must have a lexicon), JSON text.

    ``defs`` are the lexicon's definitions as the validator compiles them (one entry per
    referenced definition, so recursive lexicons stay finite), ``root`` the record
    object's, ``shape`` the table's shape (:class:`~atrepo.lexicon._shape.Shape`).
    """
    from .lexicon._schema import collection_shape

    shape = collection_shape(collection)
    definition = record_definition(collection)
    assert shape is not None and definition is not None
    defs = _Defs()
    root = defs.add(definition)
    return orjson.dumps({"collection": collection, "root": root, "defs": defs.nodes,
                         "shape": _shape_node(shape)}).decode()


def _shape_node(shape: Shape) -> dict[str, Any]:
    node: dict[str, Any] = {"k": shape.kind}
    if shape.fields:
        node["f"] = [[name, _shape_node(field)] for name, field in shape.fields]
    if shape.item is not None:
        node["i"] = _shape_node(shape.item)
    if shape.refs:
        node["refs"] = list(shape.refs)
    return node


class _Defs:
    """Lexicon definitions as the core's nodes, mirroring ``_validate._compile``."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.refs: dict[str, int] = {}

    def ref(self, ref: str) -> int:
        target = resolve(ref)
        if target.get("type") == "ref":  # a reference to a reference: the same check
            return self.ref(target["ref"])
        if ref not in self.refs:
            self.refs[ref] = len(self.nodes)
            self.nodes.append({})
            self.nodes[self.refs[ref]] = self.body(target)
        return self.refs[ref]

    def add(self, node: Def) -> int:
        if node.get("type") == "ref":
            return self.ref(node["ref"])
        at = len(self.nodes)
        self.nodes.append({})
        self.nodes[at] = self.body(node)
        return at

    def body(self, node: Def) -> dict[str, Any]:
        kind = node.get("type")
        if kind == "object":
            properties = node.get("properties") or {}
            required = set(node.get("required") or ())
            nullable = set(node.get("nullable") or ())
            must = [name for name, prop in properties.items() if name in required and not (
                prop.get("type") in ("integer", "boolean", "string") and "default" in prop)]
            props = [[name, self.add(prop), name in nullable] for name, prop in properties.items()]
            return {"t": "object", "props": props, "must": must}
        if kind == "array":
            return {"t": "array", "item": self.add(node["items"]),
                    "max": node.get("maxLength"), "min": node.get("minLength")}
        if kind == "union":
            refs = {normalize(ref): ref for ref in node.get("refs", [])}
            members = {name: self.ref(ref) for name, ref in refs.items()}
            spell = {spelling: at for name, at in members.items()
                     for spelling in (name, name + "#main", name[4:], name[4:] + "#main")
                     if "#" not in name or not spelling.endswith("#main")}
            return {"t": "union", "spell": spell, "members": members,
                    "closed": bool(node.get("closed")),
                    "listing": ", ".join(node.get("refs", []))}
        if kind == "boolean":
            const = node.get("const")
            return {"t": "boolean", "const": const if isinstance(const, bool) else None}
        if kind == "integer":
            return {"t": "integer", "const": node.get("const"), "enum": node.get("enum"),
                    "max": node.get("maximum"), "min": node.get("minimum")}
        if kind == "string":
            form = node.get("format")
            return {"t": "string", "const": node.get("const"), "enum": node.get("enum"),
                    **{key: node.get(key) for key in ("maxLength", "minLength",
                                                      "maxGraphemes", "minGraphemes")},
                    "format": form if str(form) in FORMATS else None}
        if kind == "bytes":
            return {"t": "bytes", "max": node.get("maxLength"), "min": node.get("minLength")}
        if kind in ("cid-link", "blob", "unknown"):
            return {"t": kind}
        return {"t": "unexpected", "message": f"Unexpected lexicon type: {kind}"}
