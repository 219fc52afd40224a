"""Lexicons: the declared table schema and the validation of every Bluesky record type.

The lexicon documents are checked in under ``atrepo/lexicon/documents/``, generated from
the pinned reference package (``@atproto/api``) by ``atrepo/_reference/gen_lexicons.mjs``.
From them come :func:`lexicon_schema` (the columns :meth:`atrepo.RepoSnapshot.table`
returns for a collection) and :func:`validate_record` (the reference's record validation).

Example:
    >>> import atrepo
    >>> schema = atrepo.lexicon_schema("app.bsky.feed.like")
    >>> list(schema.items())[:5]  # doctest: +NORMALIZE_WHITESPACE
    [('did', String), ('rkey', String), ('uri', String), ('cid', String),
     ('subject', Struct({'uri': String, 'cid': String}))]
    >>> schema["createdAt"]
    Datetime(time_unit='us', time_zone='UTC')
    >>> atrepo.lexicon_schema("com.example.unknown") is None
    True
"""

from __future__ import annotations

from ._documents import record_types
from ._schema import lexicon_schema
from ._validate import validate_record

__all__ = ["lexicon_schema", "record_types", "validate_record"]
