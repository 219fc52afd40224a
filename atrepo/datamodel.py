"""The atproto JSON data model: conversions between Python values and JSON objects.

In JSON, atproto writes a CID link as ``{"$link": "bafy..."}``, bytes as
``{"$bytes": "<base64, no padding>"}`` and a blob as ``{"$type": "blob", "ref": {"$link":
...}, "mimeType": ..., "size": ...}`` (https://atproto.com/specs/data-model). In Python,
atrepo holds links as :class:`~atrepo.CID`, bytes as ``bytes``, and everything else as the
plain ``dict``/``list``/``str``/``int``/``bool``/``None`` that :mod:`atrepo.cbor` decodes.

:func:`record_json` is the hot path of reading a repository: DAG-CBOR bytes straight to
JSON text, with cbor2 decoding and orjson writing, and links turned into ``$link`` objects
while decoding. It rejects what the data model forbids (other tags, non-string or duplicate
keys, indefinite lengths, floats, integers beyond signed 64 bits, a top level that is not a
map) but does not re-check canonical form or look for bytes after the record: the block's
bytes were already checked against its CID, and those checks would cost a re-encode or a
slower file-like decoder per record (see docs/reading.md).
"""

from __future__ import annotations

import base64
from typing import Any

import cbor2
import multiformats
import orjson

from . import cbor
from ._text import preview
from .cbor import (
    CBOR_ERRORS,
    MAX_DEPTH,
    Link,
    check_int,
    check_value,
    decode_error,
    link_bytes,
    reject_float,
)
from .cid import CID, cid_str
from .errors import DecodeError

__all__ = ["from_json", "record_json", "to_json"]


def to_json(value: Any) -> Any:
    """Return ``value`` in the JSON data model: links as ``$link``, bytes as ``$bytes``.

    Raises:
        DecodeError: when ``value`` holds something the data model does not (floats,
            integers beyond 64 bits, non-string map keys, other types), as
            :func:`atrepo.cbor.encode` would.

    Example:
        >>> to_json({"b": b"\\x01\\x02", "n": [1, None]})
        {'b': {'$bytes': 'AQI'}, 'n': [1, None]}
    """
    return _to_json(value, 0)


def _to_json(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise DecodeError("value nested too deeply", max_depth=MAX_DEPTH)
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                raise DecodeError("map key is not a string", key=preview(key, 50))
        return {key: _to_json(item, depth + 1) for key, item in value.items()}
    if kind is list:
        return [_to_json(item, depth + 1) for item in value]
    if kind is bytes:
        return {"$bytes": _b64(value)}
    if kind is Link:
        return {"$link": cid_str(value)}
    if isinstance(value, multiformats.CID):
        return {"$link": str(CID.from_raw(bytes(value)))}
    if kind is int:
        return check_int(value)
    if value is None or kind is str or kind is bool:
        return value
    if kind is float:
        reject_float(value)
    raise DecodeError("type not allowed in the data model", type=kind.__name__)


def from_json(obj: Any) -> Any:
    """Return the Python value of a JSON data-model object, checking it as the spec demands.

    JSON has one number type, so an integer-valued number that a JSON parser hands over as
    a float (``123.0``) is the integer ``123``; any other float is refused.

    Raises:
        DecodeError: on non-integral numbers, malformed ``$link``/``$bytes``/blob objects,
            an empty or non-string ``$type``, integers beyond 64 bits, or non-JSON types;
            the message shows the offending value, cut short and with control characters
            escaped.

    Example:
        >>> from_json({"a": {"$bytes": "AQI"}, "n": 123.0})
        {'a': b'\\x01\\x02', 'n': 123}
    """
    return _from_json(obj, 0)


def _from_json(obj: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise DecodeError("JSON nested too deeply", max_depth=MAX_DEPTH)
    kind = type(obj)
    if kind is dict:
        return _from_json_object(obj, depth)
    if kind is list:
        return [_from_json(item, depth + 1) for item in obj]
    if kind is int:
        return check_int(obj)
    if obj is None or kind is str or kind is bool:
        return obj
    if kind is float:
        # JSON has one number type: 123.0 is the integer 123 (parsers hand it over as a float)
        if obj.is_integer():
            return check_int(int(obj))
        reject_float(obj)
    raise DecodeError("type not allowed in the JSON data model", type=kind.__name__)


def _from_json_object(obj: dict[str, Any], depth: int) -> Any:
    for key in obj:
        if type(key) is not str:
            raise DecodeError("object key is not a string", key=preview(key, 50))
    if "$link" in obj:
        return _parse_link(obj)
    if "$bytes" in obj:
        return _parse_bytes(obj)
    if "$type" in obj:
        _check_type_field(obj)
    value = {key: _from_json(item, depth + 1) for key, item in obj.items()}
    if obj.get("$type") == "blob":
        _check_blob(value)
    return value


def _parse_link(obj: dict[str, Any]) -> CID:
    link = obj["$link"]
    if len(obj) != 1 or type(link) is not str:
        raise DecodeError("malformed $link object", value=preview(obj, 100),
                          hint='expected exactly {"$link": "<cid string>"}')
    try:
        return CID.decode(link)
    except DecodeError as exc:
        raise DecodeError("malformed $link object: not a CID", value=preview(link, 100),
                          hint=exc.message) from exc


def _parse_bytes(obj: dict[str, Any]) -> bytes:
    text = obj["$bytes"]
    if len(obj) != 1 or type(text) is not str:
        raise DecodeError("malformed $bytes object", value=preview(obj, 100),
                          hint='expected exactly {"$bytes": "<base64>"}')
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as exc:  # binascii.Error, or a non-ASCII character
        raise DecodeError("malformed $bytes object: not base64",
                          value=preview(text, 100)) from exc


def _check_type_field(obj: dict[str, Any]) -> None:
    kind = obj["$type"]
    if type(kind) is not str or not kind:
        raise DecodeError("$type must be a non-empty string", value=preview(kind, 100))


def _check_blob(value: dict[str, Any]) -> None:
    ref, mime, size = value.get("ref"), value.get("mimeType"), value.get("size")
    if not isinstance(ref, multiformats.CID):
        raise DecodeError("blob needs a $link 'ref'", value=preview(ref, 100))
    if type(mime) is not str or not mime:
        raise DecodeError("blob needs a string 'mimeType'", value=preview(mime, 100))
    if type(size) is not int or size < 0:
        raise DecodeError("blob needs a non-negative integer 'size'", value=preview(size, 100))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


# --- the hot path: one record block -> JSON text -------------------------------------------

def _link_object(tag: cbor2.CBORTag, immutable: bool) -> dict[str, str]:
    return {"$link": cid_str(link_bytes(tag))}


def _json_default(value: Any) -> Any:
    if type(value) is bytes:
        return {"$bytes": _b64(value)}
    raise TypeError(f"type not allowed in the data model: {type(value).__name__}")




def record_json(data: bytes) -> str:
    """Return the JSON text of one DAG-CBOR record block (the ``record`` column).

    Raises:
        DecodeError: when the block is not decodable DAG-CBOR, is not a map, or holds
            values the data model forbids (see the module docstring).

    Example:
        >>> record_json(bytes.fromhex("a1652474797065617a"))
        '{"$type":"z"}'
    """
    try:
        value = cbor.loads(data, _link_object)
        if type(value) is not dict or data[:2] == b"\xd8\x2a":
            raise DecodeError("record is not a map", type=type(value).__name__)
        # a float starts with byte f9, fa or fb and an integer above 2^63 - 1 with 1b: a
        # record holding none of these bytes (memchr, fast) cannot hold either, which
        # orjson would otherwise write without complaint
        if b"\xfb" in data or b"\xfa" in data or b"\xf9" in data or b"\x1b" in data:
            check_value(value)  # the encoder's own check: floats, out-of-range ints
        return orjson.dumps(value, default=_json_default).decode()
    except DecodeError:
        raise
    except (orjson.JSONEncodeError, *CBOR_ERRORS) as exc:
        raise decode_error(exc, "undecodable record") from exc
