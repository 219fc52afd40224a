"""Typed stub of the compiled core, the extension module ``atrepo._core`` (built from rust/).

Use it through :mod:`atrepo._accel`, which decides whether it is used and raises its
failures as :class:`~atrepo.AtrepoError` subclasses.
"""

from collections.abc import Sequence
from os import PathLike
from typing import Any, overload

MAX_BLOCK_SIZE: int

Failure = tuple[str, str, list[tuple[str, str, Any]], str | None]

class CoreError(Exception):
    """A failure: ``args`` are (kind, message, [(name, tag, value)], hint); kind ``internal``
    is a panic, caught where it crossed out of an entry point."""

class Car:
    """The indexed blocks of one CAR (its bytes, or a mapped file)."""

    def __init__(self, source: bytes | str | PathLike[str], start: int, *,
                 verify_cids: bool = True, length: int | None = None) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def verify_cids(self) -> bool: ...
    def __len__(self) -> int: ...
    def locate(self, cid: bytes) -> tuple[int, int] | None: ...
    def get(self, cid: bytes) -> bytes | None: ...
    def spans(self) -> list[tuple[int, int]]: ...
    def extended(self, source: bytes | str | PathLike[str], *,
                 length: int | None = None) -> Car: ...
    def walk(self, root: bytes,
             ranges: Sequence[tuple[bytes, bytes]] | None = None) -> Tree: ...
    def records(self, did: str, keys: Sequence[str], values: Sequence[bytes]
                ) -> tuple[ArrowColumns, list[tuple[int, Failure]]]: ...

class Tree:
    """The leaves of one walk, in key order."""

    def __len__(self) -> int: ...
    def views(self) -> tuple[Keys, Values]: ...
    def keys(self) -> list[str]: ...
    def values(self) -> list[bytes]: ...

class Keys(Sequence[str]):
    """A walk's keys, made into str one by one when asked for."""

    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

class Values(Sequence[bytes]):
    """A walk's value (record) CIDs, binary."""

    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

class ArrowColumns:
    """Arrow data taken once through the Arrow PyCapsule interface: a ``records`` frame's
    columns, a table's did, rkey, uri and cid columns, or one part of a table's checked rows
    (its fields' typed columns, ``extra`` and ``row``)."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]: ...

def record_json(data: bytes) -> tuple[str | None, Failure | None]: ...

def _panic_for_tests(message: str, *, in_thread: bool = False,
                     wait: str | PathLike[str] | None = None) -> None:
    """Panic in the core with ``message`` (GIL released; ``in_thread``: on a worker thread of
    a pass), after reading the FIFO ``wait`` to its end: it exists only to test that a panic
    leaves as a ``CoreError`` of kind ``internal``."""

class Diff:
    """What changed between two trees, with the CARs it read (for the records' blocks)."""

    def __len__(self) -> int: ...
    def ops(self) -> list[tuple[bytes, bytes | None, bytes | None]]: ...
    def created(self) -> list[bytes]: ...
    def deleted(self) -> list[bytes]: ...
    def rows(self, did: str) -> list[tuple[str, str, str, str, str | None, str | None,
                                           str | None, str | None]]: ...

def diff(cars: Sequence[Car], old_root: bytes, new_root: bytes, *,
         ranges: Sequence[tuple[bytes, bytes]] | None = None, checked: bool = False) -> Diff: ...

class TableChecker:
    """A collection's compiled table checks, from its descriptor (``_table_check.descriptor``)."""

    def __init__(self, descriptor: str) -> None: ...

# (key columns or None, parts, problems (row, kind, text), deferred rows,
#  lost datetimes (row, field number, the field's string or None))
TableChecked = tuple[ArrowColumns | None, list[ArrowColumns], list[tuple[int, int, str]],
                     list[int], list[tuple[int, int, str | None]]]

def check_table(checker: TableChecker, car: Car, did: str | None, keys: Sequence[str],
                values: Sequence[bytes], *, start: int = 0, end: int | None = None,
                verify_cids: bool = True) -> TableChecked: ...

def check_texts_table(checker: TableChecker, texts: Sequence[str | None]) -> TableChecked: ...
