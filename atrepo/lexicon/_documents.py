"""The checked-in lexicon documents, and lookup of their definitions by reference.

The documents under ``documents/`` are written by ``atrepo/_reference/gen_lexicons.mjs``
from the pinned ``@atproto/api`` (one JSON file per NSID), so schemas and validation follow
exactly the lexicons the reference implementation ships. References in them are already
absolute (``lex:app.bsky.richtext.facet`` or ``lex:app.bsky.feed.post#replyRef``); a
reference without ``#`` names the ``main`` definition.

Documents are read on first use and kept: a process that only asks for posts reads the
post lexicon and the few it refers to.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import AtrepoError

__all__ = ["DOCUMENTS", "Def", "definition", "record_types", "resolve", "source"]

DOCUMENTS = Path(__file__).resolve().parent / "documents"

Def = dict[str, Any]  # one lexicon definition, as in the document's JSON


@cache
def _document(nsid: str) -> dict[str, Any] | None:
    path = DOCUMENTS / f"{nsid}.json"
    if "/" in nsid or not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def split_ref(ref: str) -> tuple[str, str]:
    """Return (NSID, definition name) of ``lex:nsid#name``, ``nsid#name`` or ``nsid``."""
    ref = ref.removeprefix("lex:")
    nsid, _, name = ref.partition("#")
    return nsid, name or "main"


def definition(ref: str) -> Def | None:
    """Return the definition a reference names, or None when no document has it."""
    nsid, name = split_ref(ref)
    doc = _document(nsid)
    if doc is None:
        return None
    found: Def | None = doc.get("defs", {}).get(name)
    return found


def resolve(ref: str) -> Def:
    """Return the definition a reference names.

    Raises:
        AtrepoError: when no checked-in document defines it (a broken lexicon).
    """
    found = definition(ref)
    if found is None:
        raise AtrepoError("lexicon reference does not resolve", ref=ref)
    return found


def record_definition(collection: str) -> Def | None:
    """Return the ``record`` object definition of a collection, or None without a lexicon."""
    main = definition(collection) if "#" not in collection else None
    if main is None or main.get("type") != "record":
        return None
    record: Def = main["record"]
    return record


@cache
def record_types() -> tuple[str, ...]:
    """Return the NSIDs of every record type the checked-in lexicons define, sorted."""
    found = []
    for path in sorted(DOCUMENTS.glob("*.json")):
        main = definition(path.stem) if not path.stem.startswith("_") else None
        if main is not None and main.get("type") == "record":
            found.append(path.stem)
    return tuple(found)


@cache
def source() -> dict[str, Any]:
    """Return which package (and version) the documents were generated from."""
    info: dict[str, Any] = json.loads((DOCUMENTS / "_source.json").read_text(encoding="utf-8"))
    return info
