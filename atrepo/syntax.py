"""Pure validators for atproto identifier and string-format syntax.

Each ``is_*`` function answers one question, "is this string syntactically valid as X?",
returns a ``bool`` and never raises: non-``str`` input is simply ``False``. The rules follow
the atproto specs (https://atproto.com/specs/...) and are pinned down by the atproto interop
test vectors (bluesky-social/atproto-interop-tests, ``syntax/``); where the prose spec and the
vectors disagree, the vectors win and the function docstring says so.

The two ``parse_*``/``split_*`` helpers raise :class:`atrepo.errors.DecodeError` instead.

Only the standard library is used, so this module is safe to import anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._text import preview as _preview
from .errors import DecodeError

__all__ = [
    "AtUri",
    "is_at_identifier",
    "is_at_uri",
    "is_cid_string",
    "is_datetime",
    "is_did",
    "is_handle",
    "is_language",
    "is_nsid",
    "is_record_key",
    "is_tid",
    "is_uri",
    "parse_at_uri",
    "split_repo_key",
]

# Every pattern below is used with ``fullmatch`` (``$`` would accept a trailing newline) and
# spells character classes out as ASCII ranges (``\d`` and ``\w`` match non-ASCII digits).

_HANDLE_MAX = 253
_HANDLE_RE = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
)

_DID_MAX = 2048
_DID_RE = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")

_NSID_MAX = 317
_NSID_RE = re.compile(
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
    r"\.[a-zA-Z][a-zA-Z0-9]{0,62}"
)

_RECORD_KEY_RE = re.compile(r"[a-zA-Z0-9._:~-]{1,512}")

_TID_RE = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")

_AT_URI_MAX = 8 * 1024
_AT_URI_PREFIX = "at://"

_DATETIME_MAX = 64
_DATETIME_RE = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[01][0-9])-(?P<day>[0-3][0-9])"
    r"T(?P<hour>[0-2][0-9]):(?P<minute>[0-6][0-9]):(?P<second>[0-6][0-9])"
    r"(?:\.[0-9]{1,20})?"
    r"(?:Z|(?P<sign>[+-])(?P<tz_hour>[0-2][0-9]):(?P<tz_minute>[0-5][0-9]))"
)

_CID_RE = re.compile(r"[a-zA-Z0-9+=]{8,256}")
# Multibase prefixes of the text encodings whose alphabets fit the CID charset above. "Q"
# (a bare base58btc CIDv0) and "1" are reserved in the multibase table, so CIDv0 is refused.
_MULTIBASE_PREFIXES = frozenset("0789fFvVtTbBcChkKzZmMuU")

_URI_MAX = 8 * 1024
_URI_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:[!-~]+")

_LANGTAG_RE = re.compile(
    r"""
    (?:[a-z]{2,3}(?:-[a-zA-Z]{3}){0,3}|[a-z]{5,8})        # language (+ extlang)
    (?:-[a-zA-Z]{4})?                                    # script
    (?:-(?:[a-zA-Z]{2}|[0-9]{3}))?                       # region
    (?P<variants>(?:-(?:[a-zA-Z0-9]{5,8}|[0-9][a-zA-Z0-9]{3}))*)
    (?P<extensions>(?:-[0-9a-wyzA-WYZ](?:-[a-zA-Z0-9]{2,8})+)*)
    (?:-[xX](?:-[a-zA-Z0-9]{1,8})+)?                     # private use
    """,
    re.VERBOSE,
)
_PRIVATE_USE_RE = re.compile(r"[xX](?:-[a-zA-Z0-9]{1,8})+")
# RFC 5646 section 2.2.8: grandfathered tags (irregular, then regular), lowercased.
_GRANDFATHERED = frozenset(
    {
        "en-gb-oed", "i-ami", "i-bnn", "i-default", "i-enochian", "i-hak", "i-klingon",
        "i-lux", "i-mingo", "i-navajo", "i-pwn", "i-tao", "i-tay", "i-tsu", "sgn-be-fr",
        "sgn-be-nl", "sgn-ch-de",
        "art-lojban", "cel-gaulish", "no-bok", "no-nyn", "zh-guoyu", "zh-hakka", "zh-min",
        "zh-min-nan", "zh-xiang",
    }
)

def is_handle(value: object) -> bool:
    """Check handle syntax: a DNS hostname of at least two labels.

    At most 253 characters, labels of 1-63 ASCII letters, digits and hyphens that do not
    start or end with a hyphen, and a top-level label that does not start with a digit (so
    IP addresses are refused). Case-insensitive; reserved TLDs such as ``.local`` are a
    resolution concern, not syntax, and are accepted here.
    """
    return (
        isinstance(value, str)
        and len(value) <= _HANDLE_MAX
        and _HANDLE_RE.fullmatch(value) is not None
    )


def is_did(value: object) -> bool:
    """Check atproto DID syntax: ``did:<method>:<identifier>``.

    The method is one or more lowercase ASCII letters; the identifier uses
    ``[A-Za-z0-9._:%-]`` and must not end in ``:`` or ``%``; at most 2048 characters in
    all. Percent-escapes are not decoded or checked further, as the spec allows.
    """
    return (
        isinstance(value, str)
        and len(value) <= _DID_MAX
        and _DID_RE.fullmatch(value) is not None
    )


def is_at_identifier(value: object) -> bool:
    """Check whether ``value`` is a handle or a DID (the lexicon ``at-identifier`` format)."""
    return is_handle(value) or is_did(value)


def is_nsid(value: object) -> bool:
    """Check NSID syntax: a reversed-domain authority followed by a name segment.

    At least three segments and at most 317 characters. Authority segments follow handle
    label rules (the first, the TLD, must start with a letter); the name is 1-63 ASCII
    letters and digits, starting with a letter. The spec's 253-character cap on the
    authority alone is not enforced: the interop vectors accept a 283-character authority.
    """
    return (
        isinstance(value, str)
        and len(value) <= _NSID_MAX
        and _NSID_RE.fullmatch(value) is not None
    )


def is_record_key(value: object) -> bool:
    """Check record key syntax: 1-512 of ``[A-Za-z0-9._:~-]``, and neither ``.`` nor ``..``.

    Why the exclusions: record keys become URL path segments, where dot segments would be
    normalised away.
    """
    return (
        isinstance(value, str)
        and value not in (".", "..")
        and _RECORD_KEY_RE.fullmatch(value) is not None
    )


def is_tid(value: object) -> bool:
    """Check TID syntax: 13 characters of base32-sortable (``234567a-z``).

    The first character is limited to ``234567abcdefghij`` because the top bit of the
    64-bit value must be zero.
    """
    return isinstance(value, str) and _TID_RE.fullmatch(value) is not None


def is_at_uri(value: object) -> bool:
    """Check the restricted AT-URI syntax used in Lexicon: ``at://AUTHORITY[/NSID[/RKEY]]``.

    The authority is a handle or DID, the collection an NSID and the record key a valid
    record key; no query, fragment, trailing slash or extra path segments; at most 8 KiB.
    """
    return _split_at_uri(value) is not None


def _split_at_uri(value: object) -> tuple[str, str | None, str | None] | None:
    """Split a restricted AT-URI into (authority, collection, rkey), or None if invalid."""
    if not isinstance(value, str) or len(value) > _AT_URI_MAX:
        return None
    if not value.startswith(_AT_URI_PREFIX):
        return None
    parts = value[len(_AT_URI_PREFIX):].split("/")
    if len(parts) > 3 or not is_at_identifier(parts[0]):
        return None
    collection = parts[1] if len(parts) > 1 else None
    rkey = parts[2] if len(parts) > 2 else None
    if collection is not None and not is_nsid(collection):
        return None
    if rkey is not None and not is_record_key(rkey):
        return None
    return parts[0], collection, rkey


def is_datetime(value: object) -> bool:
    """Check the Lexicon ``datetime`` format: strict RFC 3339 that is also ISO 8601.

    Syntax: ``YYYY-MM-DDTHH:MM:SS[.frac]`` (1-20 fraction digits) then ``Z`` or
    ``+HH:MM``/``-HH:MM``; uppercase ``T`` and ``Z``; timezone required; ``-00:00``
    refused; at most 64 characters. The value must also be a real instant: month, day,
    hour, minute and second in range (leap second 60 refused, as Python's ``datetime``
    does), offset under 24 hours, and not before year 0 once normalised to UTC.
    """
    if not isinstance(value, str) or len(value) > _DATETIME_MAX:
        return False
    match = _DATETIME_RE.fullmatch(value)
    if match is None or value.endswith("-00:00"):
        return False
    return _is_real_instant(match)


def _is_real_instant(match: re.Match[str]) -> bool:
    """Return True if a syntactically valid datetime names a real, non-negative instant.

    Why the year shift: Python's ``datetime`` starts at year 1 but the vectors accept year
    0. The proleptic Gregorian calendar repeats every 400 years, so year ``y`` is checked
    as ``2000 + y % 400``, which has the same month lengths and leap days.
    """
    year = int(match["year"])
    try:
        local = datetime(
            2000 + year % 400,
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
        )
    except ValueError:
        return False
    if match["sign"] is None:
        return True
    tz_hour, tz_minute = int(match["tz_hour"]), int(match["tz_minute"])
    if tz_hour > 23:
        return False
    offset = timedelta(hours=tz_hour, minutes=tz_minute)
    utc = local - offset if match["sign"] == "+" else local + offset
    return not (year == 0 and utc.year < 2000)


def is_cid_string(value: object) -> bool:
    """Check the Lexicon ``cid`` string format: a multibase-encoded CIDv1.

    8-256 characters of ``[A-Za-z0-9+=]`` starting with a multibase prefix. The bytes are
    not decoded (the format is deliberately loose), but legacy CIDv0 (``Qm...``, no
    multibase prefix) is refused, as atproto requires CIDv1.
    """
    return (
        isinstance(value, str)
        and _CID_RE.fullmatch(value) is not None
        and value[0] in _MULTIBASE_PREFIXES
    )


def is_language(value: object) -> bool:
    """Check the Lexicon ``language`` format: a BCP 47 (RFC 5646) language tag.

    Accepts langtags, private-use tags (``x-...``, either case) and grandfathered tags.
    Beyond RFC well-formedness, as the interop vectors require: the primary language
    subtag must be lowercase, the reserved 4-letter primary subtag is refused, and a
    repeated variant or extension singleton (compared case-insensitively) is refused,
    since such tags are not "valid" (RFC 5646 sections 2.2.5, 2.2.6).
    """
    if not isinstance(value, str) or not value.isascii():
        return False
    if _PRIVATE_USE_RE.fullmatch(value) is not None:
        return True
    if value.lower() in _GRANDFATHERED:
        return value.split("-", 1)[0].islower()
    match = _LANGTAG_RE.fullmatch(value)
    if match is None:
        return False
    variants = match["variants"].lower().split("-")[1:]
    singletons = [s for s in match["extensions"].lower().split("-") if len(s) == 1]
    return len(set(variants)) == len(variants) and len(set(singletons)) == len(singletons)


def is_uri(value: object) -> bool:
    """Check the Lexicon ``uri`` format: a generic absolute URI, RFC 3986-ish.

    An RFC 3986 scheme (a letter, then letters, digits, ``+``, ``-`` or ``.``), a colon,
    then at least one visible ASCII character; no whitespace; at most 8 KiB. Like the
    reference implementations, the rest of the URI is not parsed further.
    """
    return (
        isinstance(value, str)
        and len(value) <= _URI_MAX
        and _URI_RE.fullmatch(value) is not None
    )


@dataclass(frozen=True, slots=True)
class AtUri:
    """A parsed restricted AT-URI: ``at://authority[/collection[/rkey]]``.

    Attributes:
        authority: the handle or DID.
        collection: the collection NSID, if present.
        rkey: the record key, if present (only ever set together with ``collection``).
    """

    authority: str
    collection: str | None = None
    rkey: str | None = None

    def __str__(self) -> str:
        """Return the URI text, ``at://`` followed by the non-empty parts joined by ``/``."""
        parts = [p for p in (self.authority, self.collection, self.rkey) if p is not None]
        return _AT_URI_PREFIX + "/".join(parts)


def parse_at_uri(value: str) -> AtUri:
    """Parse a restricted AT-URI (see :func:`is_at_uri`).

    Args:
        value: text such as ``at://did:plc:abc/app.bsky.feed.post/3jwdwj2ctlk26``.

    Returns:
        The authority, collection and record key.

    Raises:
        DecodeError: if ``value`` is not a valid restricted AT-URI.
    """
    parts = _split_at_uri(value)
    if parts is None:
        raise DecodeError("invalid AT-URI", value=_preview(value))
    return AtUri(*parts)


def split_repo_key(key: str) -> tuple[str, str]:
    """Split a repository MST key ``"collection/rkey"`` into its two parts.

    Args:
        key: the MST key, exactly one ``/`` between an NSID and a record key.

    Returns:
        ``(collection, rkey)``.

    Raises:
        DecodeError: if ``key`` is not a string of that shape.
    """
    if not isinstance(key, str) or key.count("/") != 1:
        raise DecodeError("invalid repo key", key=_preview(key),
                          hint="expected 'collection/rkey'")
    collection, rkey = key.split("/")
    if not is_nsid(collection):
        raise DecodeError("invalid repo key: collection is not an NSID", key=_preview(key))
    if not is_record_key(rkey):
        raise DecodeError("invalid repo key: bad record key", key=_preview(key))
    return collection, rkey
