"""Checking records against their lexicon, with the semantics of ``@atproto/lexicon``.

:func:`validate_record` follows the reference's ``assertValidRecord`` rule for rule, so the
two agree on which records are valid (``tests/unit/test_lexicon_validation.py`` compares
them on generated records): required properties (a missing one with a ``default`` is fine),
``nullable``, types, ``const``/``enum``, string ``minLength``/``maxLength`` (UTF-8 bytes)
and ``minGraphemes``/``maxGraphemes``, string formats, integer ``minimum``/``maximum``,
array lengths, bytes lengths, blobs, CID links, refs and unions (a closed union refuses
other ``$type`` values; an open one accepts them unchecked). ``knownValues`` are only
informational. Undeclared properties are allowed. Unlike the reference, which stops at
the first problem, every problem is reported.

Each lexicon definition is compiled once into a checking function.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from .. import syntax
from ..cid import CID
from ._documents import Def, record_definition, resolve
from ._strings import (grapheme_len, is_bcp47, is_iso_datetime, is_lexicon_at_uri,
                       is_lexicon_uri)

__all__ = ["validate_record"]

# A field's path, built only as cheap tuples while checking and rendered
# ("Record/embed/images/0") when a problem is reported.
Path = str | tuple[Any, str | int]
Check = Callable[[Any, Path, list[str]], None]


def render(path: Path) -> str:
    """Return a path in the reference's notation, ``Record/embed/images/0``."""
    parts: list[str] = []
    while isinstance(path, tuple):
        path, key = path
        parts.append(str(key))
    parts.append(path)
    return "/".join(reversed(parts))


def validate_record(record: Any) -> list[str]:
    """Return the problems of a record against the lexicon its ``$type`` names.

    Args:
        record: the record in the atproto JSON data model (as :meth:`RepoSnapshot.get`
            returns it, or ``orjson.loads`` of a ``record`` column value).

    Returns:
        One message per problem, each naming the field (``Record/embed/images/0/alt``);
        empty when the record is valid.

    Example:
        >>> import atrepo
        >>> atrepo.validate_record({"$type": "app.bsky.feed.like",
        ...                         "createdAt": "2024-05-01T12:00:00Z"})
        ['Record must have the property "subject"']
        >>> atrepo.validate_record({"$type": "app.bsky.graph.follow",
        ...                         "subject": "did:plc:abc", "createdAt": "yesterday"})
        ['Record/createdAt must be an valid atproto datetime (both RFC-3339 and ISO-8601)']
    """
    if not isinstance(record, dict):
        return ["Record must be an object"]
    record_type = record.get("$type")
    if not isinstance(record_type, str):
        return ["Record/$type must be a string"]
    collection = record_type.removeprefix("lex:").removesuffix("#main")
    if record_definition(collection) is None:
        return [f"no lexicon defines the record type {record_type!r}"]
    problems: list[str] = []
    record_check(collection)(record, "Record", problems)
    return problems


_COMPILED: dict[str, Check] = {}


def record_check(collection: str) -> Check:
    """Return the compiled check of a collection's record object (it must have a lexicon)."""
    key = f"record:{collection}"
    if key not in _COMPILED:
        definition = record_definition(collection)
        assert definition is not None
        _COMPILED[key] = _compile(definition)
    return _COMPILED[key]


_COMPILING: set[str] = set()


def _ref_check(ref: str) -> Check:
    """The check of a referenced definition: compiled now, or, for a reference back into a
    definition being compiled (a recursive lexicon), looked up when first called."""
    if ref in _COMPILED:
        return _COMPILED[ref]
    if ref in _COMPILING:
        def later(value: Any, path: Path, problems: list[str]) -> None:
            _COMPILED[ref](value, path, problems)
        return later
    _COMPILING.add(ref)
    try:
        _COMPILED[ref] = _compile(resolve(ref))
    finally:
        _COMPILING.discard(ref)
    return _COMPILED[ref]


def _compile(node: Def) -> Check:
    kind = node.get("type")
    if kind == "ref":
        return _ref_check(node["ref"])
    if kind == "union":
        return _union(node)
    builder = _BUILDERS.get(str(kind))
    if builder is None:
        message = f"Unexpected lexicon type: {kind}"

        def unexpected(value: Any, path: Path, problems: list[str]) -> None:
            problems.append(message)
        return unexpected
    return builder(node)


def _is_obj(value: Any) -> bool:
    # JavaScript's `typeof v === "object"`: arrays (and CIDs, bytes, blobs) are objects too
    return isinstance(value, (dict, list))


def _object(node: Def) -> Check:
    properties = node.get("properties") or {}
    required = set(node.get("required") or ())
    nullable = set(node.get("nullable") or ())
    checks = {name: _compile(prop) for name, prop in properties.items()}
    # a missing required property is fine when the lexicon gives it a default
    must_have = tuple(name for name, prop in properties.items() if name in required and not (
        prop.get("type") in ("integer", "boolean", "string") and "default" in prop))
    required_here = frozenset(must_have)

    def check(value: Any, path: Path, problems: list[str]) -> None:
        if type(value) is not dict:
            if not _is_obj(value):
                problems.append(f"{render(path)} must be an object")
                return
            value = {}  # an array: an object without properties, as in JavaScript
        # the record's own keys, in its order (fewer than the declared ones, usually)
        for name, item in value.items():
            field_check = checks.get(name)
            if field_check is not None and not (item is None and name in nullable):
                field_check(item, (path, name), problems)
        if not value.keys() >= required_here:
            problems.extend(f'{render(path)} must have the property "{name}"'
                            for name in must_have if name not in value)
    return check


def _array(node: Def) -> Check:
    item_check = _compile(node["items"])
    max_length, min_length = node.get("maxLength"), node.get("minLength")

    def check(value: Any, path: Path, problems: list[str]) -> None:
        if not isinstance(value, list):
            problems.append(f"{render(path)} must be an array")
            return
        if max_length is not None and len(value) > max_length:
            problems.append(f"{render(path)} must not have more than {max_length} elements")
        if min_length is not None and len(value) < min_length:
            problems.append(f"{render(path)} must not have fewer than {min_length} elements")
        for i, item in enumerate(value):
            item_check(item, (path, i), problems)
    return check


def normalize(ref: str) -> str:
    ref = ref if ref.startswith("lex:") else f"lex:{ref}"
    return ref.removesuffix("#main")


def _union(node: Def) -> Check:
    refs = {normalize(ref): ref for ref in node.get("refs", [])}
    closed = bool(node.get("closed"))
    members = {name: _ref_check(ref) for name, ref in refs.items()}
    # every spelling of a member's $type, so that the usual ones need no normalizing
    spellings = {spelling: check for name, check in members.items()
                 for spelling in (name, name + "#main", name[4:], name[4:] + "#main")
                 if "#" not in name or not spelling.endswith("#main")}
    listing = ", ".join(node.get("refs", []))

    def check(value: Any, path: Path, problems: list[str]) -> None:
        if not isinstance(value, dict) or not isinstance(value.get("$type"), str):
            problems.append(f'{render(path)} must be an object which includes the "$type" property')
            return
        member = value["$type"]
        found = spellings.get(member)
        if found is not None:
            found(value, path, problems)
            return
        if member.count("#") > 1:
            problems.append(f"{render(path)}/$type is not a lexicon reference")
            return
        found = members.get(normalize(member))
        if found is None:
            if closed:
                problems.append(f"{render(path)} $type must be one of {listing}")
            return
        found(value, path, problems)
    return check


def _boolean(node: Def) -> Check:
    const = node.get("const")

    def check(value: Any, path: Path, problems: list[str]) -> None:
        if not isinstance(value, bool):
            problems.append(f"{render(path)} must be a boolean")
        elif isinstance(const, bool) and value is not const:
            problems.append(f"{render(path)} must be {str(const).lower()}")
    return check


def _integer(node: Def) -> Check:
    const, enum = node.get("const"), node.get("enum")
    maximum, minimum = node.get("maximum"), node.get("minimum")

    def check(value: Any, path: Path, problems: list[str]) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{render(path)} must be an integer")
            return
        if const is not None and value != const:
            problems.append(f"{render(path)} must be {const}")
        if enum is not None and value not in enum:
            problems.append(f"{render(path)} must be one of ({'|'.join(map(str, enum))})")
        if maximum is not None and value > maximum:
            problems.append(f"{render(path)} can not be greater than {maximum}")
        if minimum is not None and value < minimum:
            problems.append(f"{render(path)} can not be less than {minimum}")
    return check


# the common AT-URI of a record (a did:plc, an NSID of 3+ segments, a TID), accepted
# without splitting it apart
_COMMON_AT_URI = re.compile(r"at://did:plc:[a-z2-7]{24}/[a-z][a-z0-9-]{0,61}[a-z0-9]"
                            r"(?:\.[a-z][a-z0-9-]{0,61}[a-z0-9])+\.[a-zA-Z][a-zA-Z0-9]{0,62}"
                            r"/[2-7a-j][2-7a-z]{12}")
# the common CIDs (v1, base32, dag-cbor or raw, sha2-256) without decoding them
_COMMON_CID = re.compile(r"baf[yk]rei[a-z2-7]{52}")


def _is_cid_string(value: str) -> bool:
    if _COMMON_CID.fullmatch(value):
        return True
    try:
        CID.decode(value)
    except (ValueError, KeyError, TypeError):
        return False
    return True


FORMATS: dict[str, tuple[Callable[[str], bool], str]] = {
    "datetime": (is_iso_datetime,
                 "must be an valid atproto datetime (both RFC-3339 and ISO-8601)"),
    "uri": (is_lexicon_uri, "must be a uri"),
    "at-uri": (lambda v: _COMMON_AT_URI.fullmatch(v) is not None or is_lexicon_at_uri(v),
               "must be a valid at-uri"),
    "did": (syntax.is_did, "must be a valid did"),
    "handle": (syntax.is_handle, "must be a valid handle"),
    "at-identifier": (syntax.is_at_identifier, "must be a valid did or a handle"),
    "nsid": (syntax.is_nsid, "must be a valid nsid"),
    "cid": (_is_cid_string, "must be a cid string"),
    "language": (is_bcp47, "must be a well-formed BCP 47 language tag"),
    "tid": (syntax.is_tid, "must be a valid TID"),
    "record-key": (syntax.is_record_key, "must be a valid Record Key"),
}


def _string(node: Def) -> Check:
    tests = _string_tests(node)

    def check(value: Any, path: Path, problems: list[str]) -> None:
        if type(value) is not str:
            problems.append(f"{render(path)} must be a string")
            return
        for test in tests:
            message = test(value)
            if message is not None:
                problems.append(f"{render(path)} {message}")
    return check


def _string_tests(node: Def) -> list[Callable[[str], str | None]]:
    """The checks a string definition asks for, each returning a problem or None."""
    tests: list[Callable[[str], str | None]] = []
    const, enum = node.get("const"), node.get("enum")
    max_length, min_length = node.get("maxLength"), node.get("minLength")
    max_graphemes, min_graphemes = node.get("maxGraphemes"), node.get("minGraphemes")
    form = FORMATS.get(str(node.get("format")))
    if const is not None:
        tests.append(lambda v: None if v == const else f"must be {const}")
    if enum is not None:
        listing = "|".join(enum)
        tests.append(lambda v: None if v in enum else f"must be one of ({listing})")
    if max_length is not None or min_length is not None:
        def lengths(value: str) -> str | None:
            # a code point is 1-4 UTF-8 bytes: short strings skip the encode
            if (max_length is not None and min_length is None
                    and len(value) * 4 <= max_length):
                return None
            size = len(value.encode("utf-8", "surrogatepass"))
            if max_length is not None and size > max_length:
                return f"must not be longer than {max_length} characters"
            if min_length is not None and size < min_length:
                return f"must not be shorter than {min_length} characters"
            return None
        tests.append(lengths)
    if max_graphemes is not None or min_graphemes is not None:
        def graphemes(value: str) -> str | None:
            # a string has at most as many graphemes as code points
            if min_graphemes is None and len(value) <= max_graphemes:  # type: ignore[operator]
                return None
            count = grapheme_len(value)
            if max_graphemes is not None and count > max_graphemes:
                return f"must not be longer than {max_graphemes} graphemes"
            if min_graphemes is not None and count < min_graphemes:
                return f"must not be shorter than {min_graphemes} graphemes"
            return None
        tests.append(graphemes)
    if form is not None:
        accepts, message = form
        tests.append(lambda v: None if accepts(v) else message)
    return tests


def _link(value: Any) -> str | None:
    """The CID string of a ``{"$link": cid}`` value that parses, else None."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("$link"), str):
        link: str = value["$link"]
        return link if _is_cid_string(link) else None
    return None


def _bytes_value(value: Any) -> bytes | None:
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("$bytes"), str):
        text: str = value["$bytes"]
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def _bytes(node: Def) -> Check:
    max_length, min_length = node.get("maxLength"), node.get("minLength")

    def check(value: Any, path: Path, problems: list[str]) -> None:
        data = _bytes_value(value)
        if data is None:
            problems.append(f"{render(path)} must be a byte array")
            return
        if max_length is not None and len(data) > max_length:
            problems.append(f"{render(path)} must not be larger than {max_length} bytes")
        if min_length is not None and len(data) < min_length:
            problems.append(f"{render(path)} must not be smaller than {min_length} bytes")
    return check


def _cid_link(node: Def) -> Check:
    def check(value: Any, path: Path, problems: list[str]) -> None:
        if _link(value) is None:
            problems.append(f"{render(path)} must be a CID")
    return check


def is_blob(value: Any) -> bool:
    """Whether a JSON value is a blob reference: typed (``$type: blob``) or legacy."""
    if not isinstance(value, dict):
        return False
    if value.get("$type") == "blob":
        size = value.get("size")
        return (len(value) == 4 and _link(value.get("ref")) is not None
                and isinstance(value.get("mimeType"), str)
                and isinstance(size, int) and not isinstance(size, bool))
    cid = value.get("cid")
    return (len(value) == 2 and isinstance(cid, str) and _is_cid_string(cid)
            and isinstance(value.get("mimeType"), str))


def _blob(node: Def) -> Check:
    def check(value: Any, path: Path, problems: list[str]) -> None:
        if not is_blob(value):
            problems.append(f"{render(path)} should be a blob ref")
    return check


def _unknown(node: Def) -> Check:
    def check(value: Any, path: Path, problems: list[str]) -> None:
        if not _is_obj(value):
            problems.append(f"{render(path)} must be an object")
    return check


_BUILDERS: dict[str, Callable[[Def], Check]] = {
    "object": _object, "array": _array, "boolean": _boolean, "integer": _integer,
    "string": _string, "bytes": _bytes, "cid-link": _cid_link, "blob": _blob,
    "unknown": _unknown,
}
