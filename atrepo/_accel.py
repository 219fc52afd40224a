"""The one switch between the compiled core (:mod:`atrepo._core`) and the pure Python path.

The core (Rust, built from ``rust/`` when a toolchain is there) does the hot path of reading
a repository: framing and indexing a CAR, hashing each used block against its CID, the MST
walk with every check of :mod:`atrepo.mst`, and record blocks to JSON text in Arrow columns.
The pure Python modules stay the reference: the core accepts and rejects exactly what they
do, and its failures are raised here as the same :class:`~atrepo.AtrepoError` subclasses
with the same message, ``cid`` and ``offset`` (``tests/unit/test_core*.py`` hold the two
paths to that).

The decision is taken once, at import: the core is used when it imports and
``ATREPO_PURE_PYTHON`` is unset, empty or ``0``. :data:`accelerated` says which path is
active; :data:`core` is the extension module, or None.

Errors cross the boundary as data, ``CoreError(kind, message, fields, hint)``, with binary
CIDs and keys left binary so that they are named here exactly as the pure path names them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

from .cid import CID, cid_str
from .errors import AtrepoError, CarError, DecodeError, MstError

__all__ = ["accelerated", "core", "raised"]

T = TypeVar("T")


def _load() -> ModuleType | None:
    if os.environ.get("ATREPO_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _core
    except ImportError:  # installed without a Rust toolchain: the pure Python path
        return None
    module: ModuleType = _core
    return module


core: ModuleType | None = _load()
accelerated: bool = core is not None

_KINDS: dict[str, type[AtrepoError]] = {"car": CarError, "mst": MstError, "decode": DecodeError}


def _block_name(raw: bytes) -> str:
    """A block's CID as the CAR module names it in errors: its string, else its hex."""
    try:
        return str(CID.from_raw(raw))
    except ValueError:
        return raw.hex()[:100]


def _node_name(raw: bytes) -> str:
    """A node's CID as the MST module names it ("?" when empty); may raise DecodeError."""
    return str(CID.from_raw(raw)) if raw else "?"


def _key_text(key: bytes) -> str:
    """An MST key as the MST module shows it: escaped, at most 80 bytes."""
    return repr(key[:80])[2:-1]


_FIELD_TEXT: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "text": str,
    "cid": _block_name,
    "node": _node_name,
    "cidtext": cid_str,
    "key": _key_text,
}


def raised(exc: BaseException) -> AtrepoError:
    """The AtrepoError for a ``CoreError`` (kind, message, [(name, tag, value)], hint)."""
    kind, message, fields, hint = exc.args
    values = {name: _FIELD_TEXT[tag](value) for name, tag, value in fields}
    return _KINDS[kind](message, hint=hint, **values)


def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` of the core, its failures raised as AtrepoErrors."""
    assert core is not None
    try:
        return function(*args, **kwargs)
    except core.CoreError as exc:
        raise raised(exc) from None


def byte_ranges(key_ranges: Sequence[tuple[str, str]] | None) -> list[tuple[bytes, bytes]] | None:
    """MST key ranges as the core takes them: [lo, hi) pairs of bytes."""
    if key_ranges is None:
        return None
    return [(lo.encode(), hi.encode()) for lo, hi in key_ranges]
