"""String checks the lexicon validator needs beyond :mod:`atrepo.syntax`.

``grapheme_len`` counts extended grapheme clusters (Unicode UAX #29) for the cases found in
real text: combining marks, emoji ZWJ sequences, variation selectors, skin-tone modifiers,
tag sequences, regional-indicator flags, Hangul jamo and CR LF. (The reference counts with
``Intl.Segmenter``; Python's standard library has no segmenter.)

``is_iso_datetime`` is the check ``@atproto/lexicon`` applies to ``format: datetime``
(the ``iso-datestring-validator`` package), transcribed so that ``validate_record`` agrees
with the reference on which strings pass; it is looser than the atproto datetime syntax
(:func:`atrepo.syntax.is_datetime`), e.g. it accepts a missing timezone.

``is_bcp47`` is the reference's BCP 47 well-formedness pattern.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["grapheme_len", "is_bcp47", "is_iso_datetime"]

_ZWJ = 0x200D
_EXTEND_CATEGORIES = frozenset({"Mn", "Me", "Mc"})


def _extends(code: int) -> bool:
    """Whether a code point continues the cluster before it (Extend/SpacingMark/ZWJ)."""
    return (code == _ZWJ or 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF
            or 0xE0020 <= code <= 0xE007F or 0xE0100 <= code <= 0xE01EF
            or unicodedata.category(chr(code)) in _EXTEND_CATEGORIES)


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
    regional = 0  # regional indicators in the current run
    for char in text:
        code = ord(char)
        joins = False
        if prev >= 0:
            if prev == 0x0D and code == 0x0A:
                joins = True
            elif _extends(code):
                joins = True
            elif prev == _ZWJ and unicodedata.category(char) == "So":
                joins = True
            elif 0x1F1E6 <= code <= 0x1F1FF and regional % 2 == 1:
                joins = True
            elif (_hangul(prev), _hangul(code)) in _HANGUL_JOINS:
                joins = True
        regional = regional + 1 if 0x1F1E6 <= code <= 0x1F1FF else 0
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
