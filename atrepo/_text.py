"""Short, printable forms of hostile input for error messages.

Inputs named in an error can be megabytes long or hold control characters and lone
surrogates (which cannot even be written to a UTF-8 terminal), yet a message must stay one
printable line. Only the standard library is used, so every layer may import this.
"""

from __future__ import annotations

__all__ = ["preview"]


def preview(value: object, limit: int = 80) -> str:
    """Return ``value`` as at most ``limit`` printable characters, for an error message.

    A printable string is shown as it is, so an identifier in a message reads as typed;
    anything else (other types, strings with control characters or surrogates) is shown as
    its ``repr``, which escapes them. Longer text is cut and ends in ``...``.

    Example:
        >>> preview("did:plc:abc")
        'did:plc:abc'
        >>> preview("a\\x00b")
        "'a\\\\x00b'"
        >>> preview("x" * 100, limit=10)
        'xxxxxxx...'
    """
    text = value if isinstance(value, str) and value.isprintable() else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
