"""Strict DAG-CBOR, as atproto uses it, on top of cbor2's C decoder and encoder.

Rules enforced by :func:`decode` (https://atproto.com/specs/data-model and the DAG-CBOR spec):

* the only tag is 42 (a CID link, whose bytes start with the 0x00 multibase prefix);
* map keys are text strings, unique, in canonical order (shorter first, then bytewise);
* lengths are definite and every integer uses its shortest encoding;
* no floats (the atproto data model forbids them), no ``undefined`` or other simple values;
* integers fit in 64 bits, signed;
* nothing follows the single top-level item.

Canonical form is checked by re-encoding the decoded value and comparing bytes: cbor2's
``canonical=True`` output is exactly DAG-CBOR's canonical form once the types above are
enforced, so a mismatch means the input was not canonical.

Internal variants return links as :class:`Link` (the raw binary CID) instead of building
:class:`~atrepo.cid.CID` objects, so that reading a repository never imports multiformats:
:func:`decode_raw` with every check of :func:`decode` (the CAR header and the commit), and
:func:`decode_fast` without the canonical re-encode, for blocks whose bytes were already
checked against their CID.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import cbor2

from ._text import preview
from .cid import is_blessed, is_cid
from .errors import DecodeError

if TYPE_CHECKING:
    from .cid import CID

__all__ = ["Link", "check_int", "check_value", "decode", "decode_fast", "decode_raw", "encode",
           "loads", "reject_float"]

MAX_DEPTH = 128  # nesting deeper than any real record; bounds recursion in checks and cbor2
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
# what cbor2 raises on hostile input (besides our own DecodeError from inside a hook)
CBOR_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError)


class Link(bytes):
    """A CID link as its raw binary form; what :func:`decode_fast` returns for tag 42."""

    __slots__ = ()


def link_bytes(tag: cbor2.CBORTag) -> bytes:
    """Return the binary CID inside a tag-42 item, or raise DecodeError for any other tag."""
    value = tag.value
    if tag.tag != 42:
        raise DecodeError("unsupported CBOR tag", tag=tag.tag,
                          hint="DAG-CBOR allows only tag 42 (CID)")
    if type(value) is not bytes or len(value) < 2 or value[0] != 0:
        raise DecodeError("malformed CID link (tag 42 needs bytes with a 0x00 prefix)")
    return value[1:]


def _reject_tag(*args: Any) -> None:
    raise DecodeError("unsupported CBOR tag", hint="DAG-CBOR allows only tag 42 (CID)")


# cbor2 decodes these tags itself (dates, bignums, decimals, sets, ...) and never shows them
# to tag_hook; overriding them makes them errors, as DAG-CBOR requires.
STRICT_TAGS = {tag: _reject_tag for tag in
               (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 100, 256, 258, 260, 261,
                1004, 55799)}


def loads(data: bytes, tag_hook: Any = None) -> Any:
    """cbor2.loads with every DAG-CBOR restriction cbor2 can enforce while decoding."""
    return cbor2.loads(data, tag_hook=tag_hook, semantic_decoders=STRICT_TAGS,
                       allow_indefinite=False, allow_duplicate_keys=False,
                       strict_hashable_types=True, max_depth=MAX_DEPTH)


def _strict_tag(tag: cbor2.CBORTag, immutable: bool) -> CID:
    from .cid import CID

    return CID.decode(link_bytes(tag))


def _checked_tag(tag: cbor2.CBORTag, immutable: bool) -> Link:
    """The link as a :class:`Link`, refused (DecodeError) where :func:`_strict_tag` would be."""
    raw = link_bytes(tag)
    if not is_blessed(raw):
        _strict_tag(tag, immutable)  # another CID form: checked as a CID object is
    return Link(raw)


def _fast_tag(tag: cbor2.CBORTag, immutable: bool) -> Link:
    return Link(link_bytes(tag))


def decode_error(exc: BaseException, summary: str = "invalid DAG-CBOR") -> DecodeError:
    """The DecodeError for a cbor2 failure; our own tag-hook errors arrive wrapped by cbor2."""
    for err in (exc, exc.__cause__, exc.__context__):
        if isinstance(err, DecodeError):
            return err
    return DecodeError(summary, detail=str(exc)[:200])


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Return the value of one strict DAG-CBOR item; links come back as :class:`~atrepo.CID`.

    Raises:
        DecodeError: on anything that is not canonical atproto DAG-CBOR (see module doc).

    Example:
        >>> decode(bytes.fromhex("a2616101616282f5f6"))
        {'a': 1, 'b': [True, None]}
    """
    return _decode_strict(data, _strict_tag)


def decode_raw(data: bytes | bytearray | memoryview) -> Any:
    """Return the value of one strict DAG-CBOR item; links come back as :class:`Link`.

    The checks of :func:`decode`, a link's CID included; only no CID object is built.

    Raises:
        DecodeError: on anything that is not canonical atproto DAG-CBOR (see module doc).
    """
    return _decode_strict(data, _checked_tag)


def _decode_strict(data: bytes | bytearray | memoryview,
                   tag_hook: Callable[[cbor2.CBORTag, bool], Any]) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("DAG-CBOR input is not bytes", type=type(data).__name__)
    data = bytes(data)
    try:
        value = loads(data, tag_hook)
    except CBOR_ERRORS as exc:
        raise decode_error(exc) from exc
    if encode(value) != data:
        raise DecodeError("DAG-CBOR is not in canonical form, or has trailing bytes",
                          hint="keys must be sorted, lengths and integers minimal")
    return value


def decode_fast(data: bytes) -> Any:
    """Return the value of a DAG-CBOR item without the canonical-form re-check.

    Links come back as :class:`Link`. Types are still restricted by cbor2's strict flags;
    callers validate the shape they expect.

    Raises:
        DecodeError: when the bytes are not CBOR or use a forbidden tag.
    """
    try:
        return loads(data, _fast_tag)
    except CBOR_ERRORS as exc:
        raise decode_error(exc) from exc


def check_int(value: int) -> int:
    """Return ``value`` if it is a signed 64-bit integer, as the data model requires.

    Raises:
        DecodeError: when it is out of range.
    """
    if not INT_MIN <= value <= INT_MAX:
        raise DecodeError("integer outside the signed 64-bit range", value=preview(value))
    return value


def reject_float(value: float) -> NoReturn:
    """Raise the DecodeError for a float, which the atproto data model does not allow."""
    raise DecodeError("floats are not allowed in the atproto data model", value=value)


def check_value(value: Any, depth: int = 0) -> None:
    """Raise DecodeError unless ``value`` holds only data-model types (no floats, 64-bit ints)."""
    if depth > MAX_DEPTH:
        raise DecodeError("value nested too deeply", max_depth=MAX_DEPTH)
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise DecodeError("map key is not a string", key=preview(key, 50))
            check_value(item, depth + 1)
    elif kind is list:
        for item in value:
            check_value(item, depth + 1)
    elif kind is int:
        check_int(value)
    elif kind is float:
        reject_float(value)
    elif value is None or kind in (str, bytes, bool, Link) or is_cid(value):
        return
    else:
        raise DecodeError("type not allowed in DAG-CBOR", type=kind.__name__)


def _encode_link(encoder: cbor2.CBOREncoder, value: Any) -> None:
    if is_cid(value):
        encoder.encode(cbor2.CBORTag(42, b"\x00" + bytes(value)))
    elif isinstance(value, Link):
        encoder.encode(cbor2.CBORTag(42, b"\x00" + bytes(value)))
    else:
        raise DecodeError("type not allowed in DAG-CBOR", type=type(value).__name__)


# Named by exact type: a type cbor2 does not find here sends it through its own deferred
# encoders (dates, decimals, MIME messages, ...), which it imports on that first miss: 5-12 ms
# (``email.mime``, ``fractions``, ...) added to a read that only re-encodes a header and commit.
# The CID classes join once multiformats is imported (before that no CID object exists).
_ENCODERS: dict[type, Callable[[cbor2.CBOREncoder, Any], Any]] = {Link: _encode_link}


def _encoders() -> dict[type, Callable[[cbor2.CBOREncoder, Any], Any]]:
    if len(_ENCODERS) == 1 and "multiformats" in sys.modules:
        import multiformats

        from .cid import CID

        _ENCODERS.update({CID: _encode_link, multiformats.CID: _encode_link})
    return _ENCODERS


def encode(value: Any) -> bytes:
    """Return the canonical DAG-CBOR encoding of ``value``.

    Accepts ``None``, ``bool``, 64-bit ``int``, ``str``, ``bytes``, ``list``, ``dict`` with
    ``str`` keys, and CIDs (:class:`~atrepo.CID` or any ``multiformats.CID``). Map keys are
    written in canonical order, so ``encode(decode(b)) == b`` for every valid ``b``.

    Raises:
        DecodeError: on floats or any other type outside the data model.

    Example:
        >>> encode({"b": [True, None], "a": 1}).hex()
        'a2616101616282f5f6'
    """
    check_value(value)
    # Link subclasses bytes, so it must be named in `encoders` to beat the bytes encoder
    return cbor2.dumps(value, canonical=True, default=_encode_link, encoders=_encoders())
