"""String checks the lexicon validator needs beyond :mod:`atrepo.syntax`.

``grapheme_len`` counts extended grapheme clusters (Unicode UAX #29) for the cases found in
real text: combining and spacing marks, emoji ZWJ sequences, variation selectors, skin-tone
modifiers, tag sequences, regional-indicator flags, Hangul jamo, Indic conjuncts, prepended
marks, controls and CR LF (emoji are approximated as the "So" category). (The reference counts with
``Intl.Segmenter``; Python's standard library has no segmenter.)

``is_iso_datetime`` is the check ``@atproto/lexicon`` applies to ``format: datetime``
(the ``iso-datestring-validator`` package), transcribed so that ``validate_record`` agrees
with the reference on which strings pass; it is looser than the atproto datetime syntax
(:func:`atrepo.syntax.is_datetime`), e.g. it accepts a missing timezone.

``is_bcp47`` is the reference's BCP 47 well-formedness pattern; ``is_lexicon_uri`` and
``is_lexicon_at_uri`` are the reference's ``uri`` and (non-strict) ``at-uri`` format checks,
which are looser than the atproto syntax of :mod:`atrepo.syntax` (an AT-URI may end in a
slash, a query or a JSON-pointer fragment; a URI may hold any non-space character).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from .. import syntax

__all__ = ["grapheme_len", "is_bcp47", "is_iso_datetime", "is_lexicon_at_uri", "is_lexicon_uri"]

_ZWJ = 0x200D
_EXTEND_CATEGORIES = frozenset({"Mn", "Me", "Mc"})
_CONTROLS = frozenset({"Cc", "Zl", "Zp"})
# Thai and Lao AM are letters by category but SpacingMark by Grapheme_Cluster_Break
_SPACING_LETTERS = frozenset({0x0E33, 0x0EB3})
_PREPEND = frozenset({*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2,
                      0x0D4E, 0x110BD, 0x110CD, 0x111C2, 0x111C3, 0x1193F, 0x11941,
                      0x11A3A, *range(0x11A84, 0x11A8A), 0x11D46, 0x11F02})
# Indic conjuncts (UAX #29 rule GB9c): consonant, virama (the "linker"), consonant
_LINKERS = frozenset({0x094D, 0x09CD, 0x0ACD, 0x0B4D, 0x0C4D, 0x0D4D})
_CONSONANTS = tuple((lo, hi) for lo, hi in (
    (0x0915, 0x0939), (0x0958, 0x095F), (0x0978, 0x097F), (0x0995, 0x09A8),
    (0x09AA, 0x09B0), (0x09B2, 0x09B2), (0x09B6, 0x09B9), (0x09DC, 0x09DD),
    (0x09DF, 0x09DF), (0x09F0, 0x09F1), (0x0A95, 0x0AA8), (0x0AAA, 0x0AB0),
    (0x0AB2, 0x0AB3), (0x0AB5, 0x0AB9), (0x0AF9, 0x0AF9), (0x0B15, 0x0B28),
    (0x0B2A, 0x0B30), (0x0B32, 0x0B33), (0x0B35, 0x0B39), (0x0B5C, 0x0B5D),
    (0x0B5F, 0x0B5F), (0x0B71, 0x0B71), (0x0C15, 0x0C28), (0x0C2A, 0x0C39),
    (0x0C58, 0x0C5A), (0x0D15, 0x0D3A)))


def _extends(code: int) -> bool:
    """Whether a code point continues the cluster before it (Extend/SpacingMark/ZWJ)."""
    return (code == _ZWJ or code == 0x200C or 0xFE00 <= code <= 0xFE0F
            or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F
            or 0xE0100 <= code <= 0xE01EF or 0xFF9E <= code <= 0xFF9F
            or code in _SPACING_LETTERS
            or unicodedata.category(chr(code)) in _EXTEND_CATEGORIES)


def _is_consonant(code: int) -> bool:
    return any(lo <= code <= hi for lo, hi in _CONSONANTS)


def _pictographic(code: int) -> bool:
    # regional indicators are symbols but not Extended_Pictographic
    return (code >= 0x2000 and not 0x1F1E6 <= code <= 0x1F1FF
            and unicodedata.category(chr(code)) == "So")


def _hangul(code: int) -> str:
    if 0x1100 <= code <= 0x115F or 0xA960 <= code <= 0xA97C:
        return "L"
    if 0x1160 <= code <= 0x11A7 or 0xD7B0 <= code <= 0xD7C6:
        return "V"
    if 0x11A8 <= code <= 0x11FF or 0xD7CB <= code <= 0xD7FB:
        return "T"
    if 0xAC00 <= code <= 0xD7A3:
        return "LV" if (code - 0xAC00) % 28 == 0 else "LVT"
    return ""


_HANGUL_JOINS = {("L", "L"), ("L", "V"), ("L", "LV"), ("L", "LVT"), ("LV", "V"),
                 ("LV", "T"), ("V", "V"), ("V", "T"), ("LVT", "T"), ("T", "T")}


def grapheme_len(text: str) -> int:
    """Return the number of user-perceived characters (grapheme clusters) in ``text``."""
    if text.isascii():
        return len(text) - text.count("\r\n")
    count = 0
    prev = -1
    regional = 0        # regional indicators in the current run
    emoji = False       # the cluster so far is a pictograph with Extend* (and maybe a ZWJ)
    conjunct = 0        # 1: after an Indic consonant; 2: after consonant + linker
    for char in text:
        code = ord(char)
        joins = False
        if prev >= 0:
            if prev == 0x0D and code == 0x0A:
                joins = True
            elif unicodedata.category(chr(prev)) in _CONTROLS:
                joins = False  # always a break after a control character
            elif _extends(code):
                joins = True
            elif prev in _PREPEND:
                joins = True
            elif prev == _ZWJ and emoji and _pictographic(code):
                joins = True
            elif 0x1F1E6 <= code <= 0x1F1FF and regional % 2 == 1:
                joins = True
            elif (_hangul(prev), _hangul(code)) in _HANGUL_JOINS:
                joins = True
            elif conjunct == 2 and _is_consonant(code):
                joins = True
        regional = regional + 1 if 0x1F1E6 <= code <= 0x1F1FF else 0
        if _pictographic(code):
            emoji = True
        elif not (emoji and _extends(code)):
            emoji = False
        if _is_consonant(code):
            conjunct = 1
        elif code in _LINKERS and conjunct:
            conjunct = 2
        elif not (conjunct and _extends(code)):
            conjunct = 0
        if not joins:
            count += 1
        prev = code
    return count


def _date_pattern(sep: str) -> re.Pattern[str]:
    t = re.escape(sep)
    return re.compile(
        "^(?!0{4}" + t + "0{2}" + t + "0{2})((?=[0-9]{4}" + t + "(((0[^2])|1[0-2])|02(?=" + t
        + "(([0-1][0-9])|2[0-8])))" + t + "[0-9]{2})|(?=((([13579][26])|([2468][048])|(0[48]))"
        "0{2})|([0-9]{2}((((0|[2468])[48])|[2468][048])|([13579][26])))" + t + "02" + t
        + "29))([0-9]{4})" + t + "(?!((0[469])|11)" + t + "31)((0[1,3-9]|1[0-2])|(02(?!" + t
        + "3)))" + t + "(0[1-9]|[1-2][0-9]|3[0-1])\\Z")


def _time_pattern(sep: str) -> re.Pattern[str]:
    t = re.escape(sep)
    return re.compile("^([0-1]|2(?=([0-3])|4" + t + "00))[0-9]" + t + "[0-5][0-9]("
                      + t + "([0-5]|6(?=0))[0-9])?(.[0-9]{1,9})?\\Z")


def _offset_pattern(plus: bool, sep: str) -> re.Pattern[str]:
    r = re.escape(sep)
    if plus:
        return re.compile(
            "^(0(?!(2" + r + "4)|0" + r + "3)|1(?=([0-1]|2(?=" + r + "[04])|[34](?=" + r
            + "0))))([03469](?=" + r + "[03])|[17](?=" + r + "0)|2(?=" + r + "[04])|5(?="
            + r + "[034])|8(?=" + r + "[04]))" + r + "([03](?=0)|4(?=5))[05]\\Z")
    return re.compile("^(0(?=[^0])|1(?=[0-2]))([39](?=" + r + "[03])|[0-24-8](?=" + r
                      + "00))" + r + "[03]0\\Z")


_date = lru_cache(maxsize=16)(_date_pattern)
_time = lru_cache(maxsize=16)(_time_pattern)
_offset = lru_cache(maxsize=16)(_offset_pattern)


def _first_non_digit(text: str) -> str:
    match = re.search(r"[^0-9]", text)
    return match.group(0) if match else ""


_TIME_SEP = re.compile(r"([^Z+\-0-9])(?=[0-9]+\1)")


# the usual shape of a record's datetime, with no value that needs the full check (days
# past 28, leap seconds, offsets): accepted by every rule below
_PLAIN_DATETIME = re.compile(
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])T(?:[01][0-9]|2[0-3]):[0-5][0-9]"
    r":[0-5][0-9](?:\.[0-9]{1,9})?Z")


def is_iso_datetime(value: str) -> bool:
    """Whether ``iso-datestring-validator``'s ``isValidISODateString`` accepts ``value``."""
    if _PLAIN_DATETIME.fullmatch(value):
        return True
    parts = value.split("T")
    date = parts[0]
    if len(parts) < 2 or not parts[1]:
        return False
    time = parts[1]
    if not _date(_first_non_digit(date)).search(date):
        return False
    found = _TIME_SEP.search(time)
    sep = found.group(0) if found else ""
    pattern = _time(sep)
    if not re.search(r"[Z+\-]", time):
        return pattern.search(time) is not None
    if time.endswith("Z"):
        return pattern.search(time.replace("Z", "", 1)) is not None
    plus = "+" in time
    pieces = re.split(r"[+-]", time)
    if len(pieces) < 2:
        return False  # a "Z" not at the end and no offset: JavaScript tests `undefined`
    local, offset = pieces[0], pieces[1]
    return (pattern.search(local) is not None
            and _offset(plus, _first_non_digit(offset)).search(offset)
            is not None)


_BCP47 = re.compile(
    r"^((?P<grandfathered>(en-GB-oed|i-ami|i-bnn|i-default|i-enochian|i-hak|i-klingon|i-lux|"
    r"i-mingo|i-navajo|i-pwn|i-tao|i-tay|i-tsu|sgn-BE-FR|sgn-BE-NL|sgn-CH-DE)|(art-lojban|"
    r"cel-gaulish|no-bok|no-nyn|zh-guoyu|zh-hakka|zh-min|zh-min-nan|zh-xiang))|((?P<language>"
    r"([A-Za-z]{2,3}(-(?P<extlang>[A-Za-z]{3}(-[A-Za-z]{3}){0,2}))?)|[A-Za-z]{4}|[A-Za-z]{5,8})"
    r"(-(?P<script>[A-Za-z]{4}))?(-(?P<region>[A-Za-z]{2}|[0-9]{3}))?(-(?P<variant>"
    r"[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*(-(?P<extension>[0-9A-WY-Za-wy-z]"
    r"(-[A-Za-z0-9]{2,8})+))*(-(?P<privateUseA>x(-[A-Za-z0-9]{1,8})+))?)|(?P<privateUseB>"
    r"x(-[A-Za-z0-9]{1,8})+))\Z")


def is_bcp47(value: str) -> bool:
    """Whether the reference's BCP 47 pattern accepts ``value`` as a language tag."""
    return _BCP47.match(value) is not None


_URI = re.compile(r"[A-Za-z0-9_]+:(?://)?[^\s/\ufeff][^\s\ufeff]*")
_AT_URI_CHARS = re.compile(r"[a-zA-Z0-9._~:@!$&'()*+,;=%/\\\[\]#?-]*")
_AT_URI = re.compile(r"at://(?P<authority>[^/?#\s]+)(?:/(?P<collection>[^/?#\s]+)"
                     r"(?:/(?P<rkey>[^/?#\s]+))?)?/?(?:\?[^#\s]*)?(?:#(?P<hash>[^\s]*))?")
_JSON_POINTER = re.compile(r"/[a-zA-Z0-9._~:@!$&')(*+,;=%\[\]/-]*")


def is_lexicon_uri(value: str) -> bool:
    """Whether the reference's ``uri`` format check accepts ``value``."""
    return _URI.fullmatch(value) is not None


def is_lexicon_at_uri(value: str) -> bool:
    """Whether the reference's (non-strict) ``at-uri`` format check accepts ``value``."""
    if len(value) > 8192 or _AT_URI_CHARS.fullmatch(value) is None:
        return False
    match = _AT_URI.fullmatch(value)
    if match is None or not syntax.is_at_identifier(match["authority"]):
        return False
    if match["collection"] is not None and not syntax.is_nsid(match["collection"]):
        return False
    return match["hash"] is None or _JSON_POINTER.fullmatch(match["hash"]) is not None
