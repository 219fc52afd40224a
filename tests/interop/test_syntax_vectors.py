"""Run every atproto syntax interop vector against :mod:`atrepo.syntax`.

The vectors are the ``syntax/`` files of the public atproto interop tests
(bluesky-social/atproto-interop-tests), read from :data:`INTEROP_DIR`
(``tests/_interop.py``). Files are named
``<kind>_syntax_valid.txt``, ``<kind>_syntax_invalid.txt`` or ``<kind>_parse_invalid.txt``;
each non-blank line not starting with ``#`` is one vector and one test. Only the newline is
stripped: leading and trailing spaces are part of several vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from atrepo import syntax
from _interop import INTEROP_DIR

SYNTAX_DIR = INTEROP_DIR / "syntax"

VALIDATORS: dict[str, Callable[[object], bool]] = {
    "atidentifier": syntax.is_at_identifier,
    "aturi": syntax.is_at_uri,
    "cid": syntax.is_cid_string,
    "datetime": syntax.is_datetime,
    "did": syntax.is_did,
    "handle": syntax.is_handle,
    "language": syntax.is_language,
    "nsid": syntax.is_nsid,
    "recordkey": syntax.is_record_key,
    "tid": syntax.is_tid,
    "uri": syntax.is_uri,
}

SUFFIXES: dict[str, bool] = {
    "_syntax_valid": True,
    "_syntax_invalid": False,
    "_parse_invalid": False,
}


class Vector(NamedTuple):
    kind: str
    value: str
    expected: bool


def _split_name(stem: str) -> tuple[str, bool] | None:
    """Return (kind, expected) for a vector file stem, or None if the name is unknown."""
    for suffix, expected in SUFFIXES.items():
        if stem.endswith(suffix):
            return stem[: -len(suffix)], expected
    return None


def _vector_files() -> list[Path]:
    return sorted(SYNTAX_DIR.glob("*.txt")) if SYNTAX_DIR.is_dir() else []


def _load_vectors() -> list[pytest.ParameterSet]:
    params: list[pytest.ParameterSet] = []
    for path in _vector_files():
        named = _split_name(path.stem)
        if named is None:
            continue  # reported by test_every_file_is_mapped
        kind, expected = named
        text = path.read_text(encoding="utf-8")
        # split("\n"), not splitlines(): the latter would also break on U+2028 and friends.
        for lineno, line in enumerate(text.split("\n"), start=1):
            line = line.removesuffix("\r")
            if not line or line.startswith("#"):
                continue
            params.append(
                pytest.param(Vector(kind, line, expected), id=f"{path.stem}:{lineno}")
            )
    return params


VECTORS = _load_vectors()


def test_vector_directory_present() -> None:
    assert SYNTAX_DIR.is_dir(), f"interop syntax vectors not found at {SYNTAX_DIR}"
    assert VECTORS, f"no vectors loaded from {SYNTAX_DIR}"


@pytest.mark.parametrize("path", _vector_files(), ids=lambda p: p.name)
def test_every_file_is_mapped(path: Path) -> None:
    named = _split_name(path.stem)
    assert named is not None, f"unrecognised vector file name: {path.name}"
    assert named[0] in VALIDATORS, f"no validator mapped for kind {named[0]!r}"


@pytest.mark.parametrize("vector", VECTORS)
def test_syntax_vector(vector: Vector) -> None:
    validator = VALIDATORS[vector.kind]
    shown = vector.value if len(vector.value) <= 80 else vector.value[:77] + "..."
    assert validator(vector.value) is vector.expected, (
        f"{validator.__name__}({shown!r}) should be {vector.expected}"
    )
