"""File names for identifiers: DIDs, hosts, NSIDs, bounded and unique on any file system.

Identifiers arrive from users and from the network: a collection NSID may be 317 characters
long, a host URL longer still, and NSIDs and ``did:web`` hosts differ only in case
(``App.X`` and ``app.x``), which a case-insensitive file system (macOS, Windows) folds into
one file. :func:`file_name` maps each identifier to a name that

* is at most :data:`MAX_NAME` characters, far below every file system's 255-byte limit, so
  a prefix or a suffix (``.json``, ``-xxxxxxxx.part``) still fits;
* holds only ``a-z 0-9 . _ -`` and ``~`` (no separator, nothing a shell or Windows reads
  specially), and never starts with a dot;
* is different for different identifiers even when case is folded.

A *plain* identifier (lowercase letters, digits, ``.``, ``-`` and ``:``, starting with a
letter or digit, at most :data:`MAX_PLAIN` characters, as every ``did:plc`` and nearly
every host is) keeps a readable name: ``:`` becomes ``_`` (``did:plc:abc`` is
``did_plc_abc``, the name earlier versions gave it, so existing caches keep working).
Since ``_`` is not in a plain identifier, that mapping is one-to-one. Any other identifier
is named by its cleaned, cut, lowercased head, ``~``, and a hash of the whole identifier as
given; ``~`` never appears in a plain name, so the two kinds never meet.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

__all__ = ["MAX_NAME", "MAX_PLAIN", "file_name", "legacy_name"]

MAX_PLAIN: Final = 120   # the longest identifier kept readable as it is
MAX_NAME: Final = 150    # the longest name file_name returns
_HEAD: Final = 96        # characters of a hashed name's readable head
_PLAIN: Final = re.compile(r"[a-z0-9][a-z0-9.:-]*").fullmatch
_UNSAFE: Final = re.compile(r"[^a-z0-9.-]+")


def file_name(identifier: str) -> str:
    """Return the file name of ``identifier`` (see the module docstring for the rules).

    Example:
        >>> file_name("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
        'did_plc_ewvi7nxzyoun6zhxrhs64oiz'
        >>> file_name("App.X") == file_name("app.x")
        False
    """
    if len(identifier) <= MAX_PLAIN and _PLAIN(identifier):
        return identifier.replace(":", "_")
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).digest()[:20]
    head = _UNSAFE.sub("_", identifier.lower())[:_HEAD].lstrip(".")
    return f"{head}~{base64.b32encode(digest).decode('ascii').lower()}"


def legacy_name(identifier: str) -> str:
    """The name earlier versions gave ``identifier`` (unbounded, and not one to one).

    Only for finding what they wrote: equal to :func:`file_name` for plain identifiers.
    """
    return identifier.replace(":", "_").replace("%", "_").replace("/", "_")
