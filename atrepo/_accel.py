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
A panic of the core (a bug) is a failure of kind ``internal``, caught at the entry point it
happened under (on any of the core's threads, with or without the GIL), which the core
raises through :func:`error` itself, so that it is an AtrepoError also where the call does
not come through :func:`call` (a sequence's item, polars taking columns): a
:class:`~atrepo.CarError` ("internal error in the compiled core", with the
``call``, the ``panic`` message and the CIDs the call was given), since every operation of
the core reads a CAR or what was read from one, so code that handles a bad CAR handles it
too; its hint says to set ``ATREPO_PURE_PYTHON=1`` and report the input.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from ._text import preview
from .cid import cid_str, cid_text
from .errors import AtrepoError, CarError, DecodeError, MstError
from .mst._ranges import byte_ranges  # MST key ranges as the core takes them: [lo, hi) bytes

if TYPE_CHECKING:
    from ._corecar import CoreCarFile

__all__ = ["accelerated", "byte_ranges", "call", "core", "error", "mapped_car", "memory_car",
           "problems", "raised", "records", "serves", "walk"]

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
"""True when the compiled core is in use (``atrepo.accelerated``)."""

_KINDS: dict[str, type[AtrepoError]] = {"car": CarError, "mst": MstError, "decode": DecodeError,
                                         "internal": CarError}


def _node_name(raw: bytes) -> str:
    """A node's CID as the MST module names it (its codec is imported to name a failure)."""
    from .mst._node import name

    return name(raw)


def _show_key(key: bytes) -> str:
    """A key as the MST module shows it in errors."""
    from .mst._node import show

    return show(key)


_FIELD_TEXT: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "text": str,
    "float": float,
    "cid": cid_text,  # as the CAR module names a block: its string, else its hex
    "node": _node_name,  # as the MST module names a node (any bytes, never failing)
    "cidtext": cid_str,
    "key": _show_key,
    "preview": preview,
    "preview50": lambda value: preview(value, 50),
}

Failure = tuple[str, str, list[tuple[str, str, Any]], "str | None"]


def error(failure: Failure) -> AtrepoError:
    """The AtrepoError of a core failure (kind, message, [(name, tag, value)], hint)."""
    kind, message, fields, hint = failure
    values = {name: _FIELD_TEXT[tag](value) for name, tag, value in fields}
    return _KINDS[kind](message, hint=hint, **values)


def raised(exc: BaseException) -> AtrepoError:
    """The AtrepoError for a raised ``CoreError`` (its args are the failure)."""
    failure: Failure = exc.args
    return error(failure)


def problems(found: list[tuple[int, Failure]]) -> list[tuple[int, str]]:
    """Record problems as (row, text), in the reference's words."""
    return [(row, str(error(failure))) for row, failure in found]


def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` of the core, its failures raised as AtrepoErrors."""
    assert core is not None
    try:
        return function(*args, **kwargs)
    except core.CoreError as exc:
        raise raised(exc) from None


# --- CAR files: the hooks of atrepo.car ----------------------------------------------------
# (the adapter subclasses CarFile, whose module calls these, hence the imports inside)

def memory_car(roots: list[bytes], buf: bytes, start: int, *, verify_cids: bool) -> CoreCarFile:
    """A CarFile over ``buf`` (header parsed, blocks from ``start``), indexed by the core."""
    from ._corecar import CoreCarFile

    assert core is not None
    blocks = call(core.Car, buf, start, verify_cids=verify_cids)
    return CoreCarFile(roots, blocks, buffer=buf, verify_cids=verify_cids, size=len(buf))


def mapped_car(fd: int, path: str, size: int, *, verify_cids: bool, temp: bool) -> CoreCarFile:
    """A CarFile over the first ``size`` bytes of the file open as ``fd``, mapped and
    indexed by the core."""
    from ._corecar import CoreCarFile
    from .car._framing import MAX_HEADER_SIZE, parse_raw_header

    assert core is not None
    head = os.pread(fd, min(size, MAX_HEADER_SIZE + 10), 0)
    roots, start = parse_raw_header(head, len(head))
    blocks = call(core.Car, path, start, verify_cids=verify_cids, length=size)
    mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    return CoreCarFile(roots, blocks, buffer=mapped, path=path, temp=temp,
                       verify_cids=verify_cids, size=size)


# --- snapshots: the hooks of atrepo.snapshot -----------------------------------------------

def serves(car: object) -> bool:
    """Whether ``car`` is read through the core (what a snapshot's repr shows)."""
    from ._corecar import CoreCarFile

    return isinstance(car, CoreCarFile)


def walk(car: object, root: bytes, key_ranges: Sequence[tuple[str, str]] | None
         ) -> tuple[Sequence[str], Sequence[bytes]] | None:
    """(keys, record CIDs) of the tree at ``root``, walked by the core; None if ``car`` is
    not the core's.

    The two sequences are views over the core's copy of the leaves: a key or CID becomes
    a Python object only when it is asked for.

    Raises:
        MstError, CarError: as :func:`atrepo.mst.walk` raises them.
    """
    from ._corecar import CoreCarFile

    if not isinstance(car, CoreCarFile):
        return None
    tree = call(car.core_car().walk, root, byte_ranges(key_ranges))
    views: tuple[Sequence[str], Sequence[bytes]] = tree.views()
    return views


def records(car: object, did: str, keys: Sequence[str], values: Sequence[bytes]
            ) -> tuple[Any, list[tuple[int, str]]] | None:
    """(record columns, [(row, problem text)]) decoded by the core; None if ``car`` is not
    the core's. The columns are an Arrow PyCapsule object: ``polars.DataFrame(columns)``.

    Raises:
        CarError, MstError: a record block does not match its CID, or is missing.
    """
    from ._corecar import CoreCarFile

    if not isinstance(car, CoreCarFile):
        return None
    columns, found = call(car.core_car().records, did, keys, values)
    return columns, problems(found)
