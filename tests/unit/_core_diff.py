"""The differential harness: one input through the pure Python reference and the core.

Each ``*_outcome`` function returns a plain, comparable value: what a path produced, or the
error it raised as (class, message, cid, offset, text). Two paths agree on an input when
the outcomes are equal, so a test is one ``assert core == reference`` per input.

The reference always runs pure: :func:`pure` hides the core from the hooks for its
duration, which is how one process can run both paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import polars as pl

import atrepo
from atrepo import _accel, car, cbor, mst
from atrepo._records import decode_batch
from atrepo.car._framing import parse_header
from atrepo.datamodel import record_json
from atrepo.errors import AtrepoError
from atrepo.snapshot import check_commit, collection_ranges

Outcome = tuple[Any, ...]


@contextmanager
def pure() -> Iterator[None]:
    """Run the block with the core switched off (the reference path)."""
    saved = _accel.core, _accel.accelerated
    _accel.core, _accel.accelerated = None, False
    try:
        yield
    finally:
        _accel.core, _accel.accelerated = saved


@dataclass(frozen=True)
class Failed:
    """An AtrepoError as data: class, message, cid, offset and the whole text."""

    kind: str
    message: str
    cid: str | None
    offset: int | None
    text: str


def without_detail(text: str) -> str:
    """An error text without its ``detail=`` field.

    ``detail`` carries a third party's words (cbor2's, orjson's, Python's own for a failed
    lookup); the two paths agree on everything else, the detail only in what it is about.
    """
    parts = text.split("; ")
    return "; ".join(p for p in parts if not p.startswith("detail="))


def failure(exc: AtrepoError) -> Failed:
    return Failed(type(exc).__name__, exc.message, getattr(exc, "cid", None),
                  getattr(exc, "offset", None), without_detail(str(exc)))


def run(function: Callable[[], Any]) -> Any:
    """``function()``, or the failure() of the AtrepoError it raised."""
    try:
        return function()
    except AtrepoError as exc:
        return failure(exc)


# --- CAR: framing, index, verified blocks -------------------------------------------------

def reference_car(data: bytes, verify_cids: bool = True) -> Any:
    with pure():
        return run(lambda: car.read_car(data, verify_cids=verify_cids))


def core_car(data: bytes, verify_cids: bool = True) -> Any:
    def index() -> Any:
        _roots, start = parse_header(data, len(data))
        assert _accel.core is not None
        return _accel.call(_accel.core.Car, data, start, verify_cids=verify_cids)
    return run(index)


def block_outcomes(get: Callable[[bytes], bytes | None], cids: Sequence[bytes]) -> list[Any]:
    return [run(lambda raw=raw: get(raw)) for raw in cids]


def car_outcome(data: bytes, probe: Sequence[bytes] = ()) -> tuple[Outcome, Outcome]:
    """(reference, core) outcomes of indexing ``data`` and fetching every block in it."""
    ref, got = reference_car(data), core_car(data)
    if isinstance(ref, Failed) or isinstance(got, Failed):
        return (ref if isinstance(ref, Failed) else ("ok",),
                got if isinstance(got, Failed) else ("ok",))
    cids = [raw for raw, _data, _offset in ref.iter_raw()] + list(probe)
    with pure():
        ref_blocks = block_outcomes(ref.get_raw, cids)
    got_blocks = block_outcomes(lambda raw: _accel.call(got.get, raw), cids)
    spans = [(offset, len(block)) for _raw, block, offset in ref.iter_raw()]
    return (("ok", len(ref), spans, ref_blocks), ("ok", len(got), got.spans(), got_blocks))


# --- MST walk -----------------------------------------------------------------------------

def walk_outcome(data: bytes, collections: Sequence[str] | None = None
                 ) -> tuple[Outcome, Outcome]:
    """(reference, core) outcomes of walking the tree of ``data``'s commit."""
    ref = reference_car(data)
    if isinstance(ref, Failed):
        return ref, ref
    with pure():
        commit = run(lambda: check_commit(ref))
    if isinstance(commit, Failed):
        return commit, commit
    root = bytes(atrepo.CID.decode(commit[1].data))
    ranges = collection_ranges(collections)
    with pure():
        expected = run(lambda: ("ok",) + mst.collect(ref.get_raw, root, ranges))
    got = core_car(data)

    def walk() -> Outcome:
        tree = _accel.call(got.walk, root, _accel.byte_ranges(ranges))
        return ("ok", [k.encode() for k in tree.keys()], tree.values())
    return expected, run(walk)


# --- records ------------------------------------------------------------------------------

def record_outcome(data: bytes) -> tuple[Outcome, Outcome]:
    """(reference, core) of one record block: ("json", text) or ("problem", text)."""
    try:
        ref: Outcome = ("json", record_json(data))
    except AtrepoError as exc:
        ref = ("problem", without_detail(str(exc)))
    assert _accel.core is not None
    text, problem = _accel.core.record_json(data)
    got: Outcome = (("json", text) if problem is None
                    else ("problem", without_detail(str(_accel.error(problem)))))
    return ref, got


def records_outcome(data: bytes, collections: Sequence[str] | None = None
                    ) -> tuple[Outcome, Outcome]:
    """(reference, core) outcomes of decoding every record the walk of ``data`` lists."""
    ref = reference_car(data)
    if isinstance(ref, Failed):
        return ref, ref
    with pure():
        commit = run(lambda: check_commit(ref))
    if isinstance(commit, Failed):
        return commit, commit
    root = bytes(atrepo.CID.decode(commit[1].data))
    ranges = collection_ranges(collections)
    with pure():
        walked = run(lambda: mst.collect(ref.get_raw, root, ranges))
    if isinstance(walked, Failed):
        return walked, walked

    def reference() -> Outcome:
        batch = decode_batch(walked[1], ref.get_raw)
        problems = [(i, without_detail(text)) for i, text in batch.problems]
        return ("ok", batch.records, batch.cids, problems)

    with pure():
        expected = run(reference)
    got = core_car(data)

    def decode() -> Outcome:
        tree = _accel.call(got.walk, root, _accel.byte_ranges(ranges))
        columns, problems = _accel.call(got.records, commit[1].did, *tree.views())
        frame = pl.DataFrame(columns)
        return ("ok", frame["record"].to_list(), frame["cid"].to_list(),
                [(i, without_detail(text)) for i, text in _accel.problems(problems)])
    return expected, run(decode)


def encode(value: Any) -> bytes:
    """Canonical DAG-CBOR of a value (for building inputs)."""
    return cbor.encode(value)
