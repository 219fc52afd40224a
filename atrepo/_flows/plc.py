"""The PLC directory's operation log (``GET {plc}/export``) as a sans-IO flow, and its parser.

The export is JSON lines, one indexed operation a line, oldest first::

    {"did": "did:plc:...", "operation": {...}, "cid": "bafy...", "nullified": false,
     "createdAt": "2024-01-01T00:00:00.000Z"}

It is paged by ``after`` (a ``createdAt``; the directory answers the operations created
strictly after it) and ``count`` (at most 1000). Rules followed
(https://web.plc.directory/spec/v0.1/did-plc and the reference ``@did-plc/server``):

* An operation is ``plc_operation`` (``alsoKnownAs``, ``services.atproto_pds.endpoint``,
  ``verificationMethods.atproto``), the legacy ``create`` (``handle``, ``service``,
  ``signingKey``) or ``plc_tombstone`` (the DID is deactivated for good).
* The handle is the first ``at://`` entry of ``alsoKnownAs``, as the DID document gives it:
  what the DID claims, not a verified handle.
* A page ends early when it holds fewer operations than asked for; a full page is followed
  by another. Operations created in the same millisecond may straddle two pages, and the
  directory's ``after`` is strict, so the next page is asked ``after`` the last timestamp
  *before* the page's final one: the final millisecond is read again (its operations, known
  by CID, are dropped the second time) and none is lost.
* The reference server ignores ``count`` and always answers up to 1000 operations; a page is
  cut to what was asked, so the cursor after it is exact.

Whatever the directory sends, a page is bounded (its body, each line, the number of lines)
and every malformed line ends in a :class:`TransportError` naming the URL and the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode

from ..errors import TransportError
from ..retry import RetryPolicy
from ..syntax import is_did
from .effects import Flow, HttpGet
from .listing import MAX_PAGES, MAX_ROWS, PageCursor, next_cursor, page_asked
from .xrpc import host_of, request, unexpected

__all__ = ["EXPORT_COUNT", "ExportCursor", "PlcOp", "export_page", "export_url", "parse_export",
           "parse_export_line"]

EXPORT_COUNT: Final = 1000        # the most operations the directory answers per page
_PAGE_BODY: Final = 32 << 20      # a page of 1000 operations is ~1 MB
_MAX_LINE: Final = 64 << 10       # one operation; the directory refuses ops over 7,500 bytes
_CID: Final = re.compile(r"b[a-z2-7]{20,200}")
_TYPES: Final = frozenset({"plc_operation", "create", "plc_tombstone"})
_EXPORT_HEADERS: Final = (("accept", "application/jsonlines, application/json"),)


@dataclass(frozen=True, slots=True)
class PlcOp:
    """One operation of the log, reduced to what a DID's current state needs.

    Attributes:
        did: the DID it belongs to.
        cid: the operation's CID.
        created_at: when the directory accepted it, as the directory wrote it (the cursor).
        created: ``created_at`` as a datetime (UTC).
        nullified: a later operation of a rotation key of higher priority undid it.
        status: ``"active"``, or ``"tombstoned"`` for a ``plc_tombstone``.
        handle: the claimed handle (None when it claims none, and for a tombstone).
        pds: the PDS endpoint (None when it names none).
        signing_key: the ``did:key`` commits are signed with (None when it names none).
    """

    did: str
    cid: str
    created_at: str
    created: datetime
    nullified: bool
    status: str
    handle: str | None
    pds: str | None
    signing_key: str | None


class ExportCursor(PageCursor):
    """An export cursor (an ``after``) that knows the CIDs the next page will repeat."""

    overlap: frozenset[str]


def export_url(plc_url: str, *, after: str | None, count: int) -> str:
    """Return the URL of one export page.

    Example:
        >>> export_url("https://plc.directory/", after="2024-01-01T00:00:00.000Z", count=10)
        'https://plc.directory/export?count=10&after=2024-01-01T00%3A00%3A00.000Z'
    """
    query = {"count": count} | ({"after": after} if after else {})
    return f"{plc_url.rstrip('/')}/export?{urlencode(query)}"


def export_page(plc_url: str, *, after: str | None, limit: int = EXPORT_COUNT,
                policy: RetryPolicy = RetryPolicy(), max_pages: int = MAX_PAGES,
                max_rows: int = MAX_ROWS) -> Flow[tuple[list[PlcOp], str | None]]:
    """Fetch one page of the PLC directory's export.

    Args:
        plc_url: the directory's base URL.
        after: the previous page's cursor (an :class:`ExportCursor` continues its listing
            and drops the operations it repeats), a ``createdAt`` to start after, or None
            for the start of the log.
        limit: operations wanted, clamped to 1..1000.
        policy: the retry budgets and delays.
        max_pages: the most pages one listing may take.
        max_rows: the most operations one listing may hold.

    Returns:
        A flow whose value is ``(operations, cursor)`` (oldest first), the cursor None at the
        end of the log.

    Raises:
        RateLimited: the directory kept answering 429.
        TransportError: an error status, a body or line past its bound, a line that is not
            an operation (naming the URL and the line), more lines than the directory's page
            size, operations out of log order, or a listing past its bounds.
    """
    count = max(1, min(int(limit), EXPORT_COUNT))
    url = export_url(plc_url, after=after, count=count)
    asked = page_asked(url, host=plc_url, cursor=after, limit=EXPORT_COUNT)
    effect = HttpGet(url, headers=_EXPORT_HEADERS, max_bytes=_PAGE_BODY)
    response = yield from request(lambda: effect, host=host_of(plc_url), policy=policy)
    if not response.ok:
        raise unexpected(response, url)
    ops = parse_export(response.body, url=url)
    _check_order(ops, after, url)
    taken = ops[:count]
    cursor = next_cursor(asked, _after(taken, count), len(taken), max_pages=max_pages,
                         max_rows=max_rows)
    repeated = after.overlap if isinstance(after, ExportCursor) else frozenset()
    kept = [op for op in taken if op.cid not in repeated]
    if cursor is None:
        return kept, None
    following = ExportCursor(cursor, cursor.trail)
    following.overlap = frozenset(op.cid for op in taken if op.created_at > cursor)
    return kept, following


def _check_order(ops: list[PlcOp], after: str | None, url: str) -> None:
    """Refuse a page that is not in log order: each operation after ``after``, none older than
    the one before it (a page out of order would send the cursor back).

    Raises:
        TransportError: naming the URL and the operation's place in the page (1-based).
    """
    floor = _instant(after) if after else None
    for number, op in enumerate(ops, start=1):
        if floor is not None and (op.created < floor or (number == 1 and op.created == floor)):
            raise TransportError("PLC export page out of order", url=url, operation=number,
                                 created_at=op.created_at, after=after)
        floor = op.created


def _after(taken: list[PlcOp], count: int) -> str | None:
    """The ``after`` of the page following ``taken`` (``count`` asked), or None when it was
    the last.

    The last timestamp before the final one, so that the final millisecond is asked again
    (see the module docstring); the final one itself when the whole page shares it.
    """
    if len(taken) < count:
        return None
    final = taken[-1].created_at
    earlier = [op.created_at for op in taken if op.created_at != final]
    return earlier[-1] if earlier else final


def parse_export(body: bytes, *, url: str) -> list[PlcOp]:
    """Return the operations of one export page, in order.

    Raises:
        TransportError: a line longer than 64 KiB, more than 1000 lines, or a line that is
            not an operation; it names the URL and the line (1-based).
    """
    ops: list[PlcOp] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        if len(ops) == EXPORT_COUNT:
            raise TransportError("PLC export page longer than the directory's page size",
                                 url=url, line=number, most=EXPORT_COUNT)
        if len(line) > _MAX_LINE:
            raise TransportError("PLC export line too long", url=url, line=number,
                                 bytes=len(line), max_bytes=_MAX_LINE)
        ops.append(parse_export_line(line, url=url, line=number))
    return ops


def parse_export_line(text: bytes, *, url: str, line: int = 1) -> PlcOp:
    """Return the operation of one export line.

    Raises:
        TransportError: not JSON, not an object, or a field of the wrong type or form; it
            names the URL, the line and, when known, the DID.

    Example:
        >>> op = parse_export_line(b'{"did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", '
        ...     b'"cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm", '
        ...     b'"nullified": false, "createdAt": "2024-01-01T00:00:00.000Z", '
        ...     b'"operation": {"type": "plc_tombstone", "prev": "bafy", "sig": "x"}}',
        ...     url="https://plc.directory/export")
        >>> op.status, op.pds
        ('tombstoned', None)
    """
    try:
        entry = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _bad("not JSON", url, line) from exc
    if not isinstance(entry, dict):
        raise _bad("not an object", url, line)
    did = entry.get("did")
    if not is_did(did) or not str(did).startswith("did:plc:"):
        raise _bad("not a did:plc DID", url, line)
    cid, nullified, created_at = entry.get("cid"), entry.get("nullified"), entry.get("createdAt")
    if not isinstance(cid, str) or not _CID.fullmatch(cid):
        raise _bad("cid is not a CID", url, line, did)
    if not isinstance(nullified, bool):
        raise _bad("nullified is not true or false", url, line, did)
    created = _instant(created_at)
    if created is None:
        raise _bad("createdAt is not a UTC datetime", url, line, did)
    operation = entry.get("operation")
    if not isinstance(operation, dict) or operation.get("type") not in _TYPES:
        raise _bad("operation is not a plc_operation, create or plc_tombstone", url, line, did)
    try:
        status, handle, pds, key = _state(operation)
    except (TypeError, ValueError) as exc:
        raise _bad(f"malformed {operation['type']}: {exc}", url, line, did) from exc
    return PlcOp(did=str(did), cid=cid, created_at=str(created_at), created=created,
                 nullified=nullified, status=status, handle=handle, pds=pds, signing_key=key)


def _state(op: dict[str, Any]) -> tuple[str, str | None, str | None, str | None]:
    """``(status, handle, pds, signing_key)`` of an operation.

    Raises:
        TypeError: a field of the wrong type.
    """
    kind = op["type"]
    if kind == "plc_tombstone":
        return "tombstoned", None, None, None
    if kind == "create":  # legacy v1: the same three facts under other names
        handle = _text(op.get("handle"), "handle")
        return ("active", handle.removeprefix("at://") if handle else None,
                _text(op.get("service"), "service"), _text(op.get("signingKey"), "signingKey"))
    aka = op.get("alsoKnownAs", [])
    if not isinstance(aka, list) or not all(isinstance(a, str) for a in aka):
        raise TypeError("alsoKnownAs is not a list of strings")
    handle = next((a.removeprefix("at://") for a in aka if a.startswith("at://")), None)
    pds = _member(_member(op, "services"), "atproto_pds")
    methods = _member(op, "verificationMethods")
    return ("active", handle or None,
            _text(pds.get("endpoint"), "services.atproto_pds.endpoint"),
            _text(methods.get("atproto"), "verificationMethods.atproto"))


def _member(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """``obj[name]``, an object ({} when absent)."""
    value = obj.get(name, {})
    if not isinstance(value, dict):
        raise TypeError(f"{name} is not an object")
    return value


def _text(value: object, name: str) -> str | None:
    """``value``, a string of at most 2 KiB, or None when absent."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 2048:
        raise TypeError(f"{name} is not a string")
    return value


def _instant(value: object) -> datetime | None:
    """``value`` as an aware UTC datetime, or None when it is not an ISO datetime in UTC."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    offset = parsed.utcoffset()
    return parsed if offset is not None and not offset else None


def _bad(what: str, url: str, line: int, did: object = None) -> TransportError:
    return TransportError(f"malformed PLC export line: {what}", url=url, line=line,
                          did=did if isinstance(did, str) and len(did) < 100 else None)
