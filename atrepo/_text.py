"""Short, printable forms of hostile input for error messages.

Inputs named in an error can be megabytes long, nested ten thousand levels deep, integers
Python refuses to print, or strings with control characters and lone surrogates (which
cannot even be written to a UTF-8 terminal), yet a message must stay one printable line and
building it must not fail. Only the standard library is used, so every layer may import this.
"""

from __future__ import annotations

import reprlib

__all__ = ["preview"]

_BIG_INT_BITS = 256  # beyond this an integer is shown by its size, not its digits


def preview(value: object, limit: int = 80) -> str:
    """Return ``value`` as at most ``limit`` printable characters, for an error message.

    A printable string is shown as it is, so an identifier in a message reads as typed;
    anything else (strings with control characters or surrogates, containers, other types)
    is shown as a ``repr`` that escapes them, with containers cut after a few items and
    levels. Longer text is cut and ends in ``...``. The work done is bounded by ``limit``,
    not by the size of ``value``.

    Example:
        >>> preview("did:plc:abc")
        'did:plc:abc'
        >>> preview("a\\x00b")
        "'a\\\\x00b'"
        >>> preview("x" * 100, limit=10)
        'xxxxxxx...'
        >>> preview(2**1000)
        '<1001-bit integer>'
    """
    if isinstance(value, str):
        head = value[:limit + 1]
        text = head if head.isprintable() else repr(head)
    else:
        text = _repr(value, limit)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Shortener(reprlib.Repr):
    """reprlib's bounded repr, with huge integers inside containers shown by their size."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > _BIG_INT_BITS:
            return f"<{x.bit_length()}-bit integer>"
        return super().repr_int(x, level)


def _repr(value: object, limit: int) -> str:
    shortener = _Shortener()
    shortener.maxlevel = 3
    shortener.maxstring = shortener.maxother = shortener.maxlong = limit
    return shortener.repr(value)
