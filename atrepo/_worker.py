"""Worker process for :mod:`atrepo._parallel`: walk subtrees and decode record batches.

Protocol: each message is an 8-byte little-endian length and a pickle. Requests are
``(op, args)``; replies are ``(True, value)`` or ``(False, exception)``, one per request,
in order. The process ends when stdin closes.

Ops:
    ``open (path, size, mem_limit_mb, verify_cids)``: index a CAR file and keep it open.
    ``walk (path, size, mem_limit_mb, verify_cids, subtree)``: collect one subtree.
    ``decode (path, size, mem_limit_mb, verify_cids, cids)``: decode one batch of records.

``size`` is how much of the file the caller indexed (None: all of it): a store pack may
have grown since, and only its first ``size`` bytes are known complete.
"""

from __future__ import annotations

import gc
import os
import pickle
import struct
import sys
from typing import Any

from . import car, mst
from ._records import decode_batch

_HEADER = struct.Struct("<Q")
_KEEP = 2  # CAR files kept open at once
_open: dict[tuple[str, int, int], car.CarFile] = {}


def _car(path: str, size: int | None, mem_limit_mb: float, verify_cids: bool) -> car.CarFile:
    stat = os.stat(path)
    size = stat.st_size if size is None else size
    key = (path, stat.st_ino, size)
    if key not in _open:
        while len(_open) >= _KEEP:
            _open.pop(next(iter(_open))).close()
        _open[key] = car.read_car(path, mem_limit_mb, verify_cids=verify_cids, length=size)
    return _open[key]


def _walk(path: str, size: int | None, mem_limit_mb: float, verify_cids: bool,
          piece: mst.Subtree) -> tuple[list[bytes], list[bytes]]:
    carfile = _car(path, size, mem_limit_mb, verify_cids)
    return mst.collect_subtree(carfile.get_raw, piece)


def _handle(op: str, args: tuple[Any, ...]) -> Any:
    if op == "open":
        _car(*args)
        return None
    if op == "walk":
        return _walk(*args)
    if op == "decode":
        *source, cids = args
        return decode_batch(cids, _car(*source).get_raw)
    raise ValueError(f"unknown worker op {op!r}")


def main() -> None:
    gc.disable()  # the work builds no reference cycles; see _records.gc_paused
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while head := stdin.read(_HEADER.size):
        op, args = pickle.loads(stdin.read(_HEADER.unpack(head)[0]))
        try:
            reply = (True, _handle(op, args))
        except Exception as exc:  # sent back to the caller, which re-raises it
            reply = (False, exc)
        payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_HEADER.pack(len(payload)) + payload)
        stdout.flush()


if __name__ == "__main__":
    main()
