"""Share record batches between this process and a few worker processes.

Decoding a million records is CPU-bound Python; threads would share one core, so the
extra cores are used through worker processes. They are started as ``python -m
atrepo._worker`` and spoken to over pipes (length-prefixed pickles), not through
``multiprocessing``: its "spawn" start method re-runs a user's script that lacks an
``if __name__ == "__main__"`` guard, and "fork" can deadlock a process with threads, such
as a Jupyter kernel. Workers are kept for reuse and stopped at exit.

The calling process works too. Batches are taken from the front of the list by the
workers and from the back by the caller, so everyone finishes at about the same time.
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable

from ._records import Batch, DecodedBatch, decode_batch

__all__ = ["decode_batches", "default_workers", "warm_up"]

_HEADER = struct.Struct("<Q")


def default_workers() -> int:
    """Worker processes to use: ``ATREPO_WORKERS`` if set, else one fewer than the CPUs."""
    configured = os.environ.get("ATREPO_WORKERS")
    if configured is not None:
        return max(0, int(configured))
    return max(0, (os.cpu_count() or 1) - 1)


class _Worker:
    """One ``python -m atrepo._worker`` process: send a batch, receive its result."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "atrepo._worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, batch: Batch) -> DecodedBatch:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(_HEADER.pack(len(payload)) + payload)
        ok, value = pickle.loads(_read_frame(self.proc.stdout))
        if not ok:
            raise value
        result: DecodedBatch = value
        return result

    def stop(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()


def _read_frame(stream: object) -> bytes:
    read = stream.read  # type: ignore[attr-defined]
    head = _read_exactly(read, _HEADER.size)
    return _read_exactly(read, _HEADER.unpack(head)[0])


def _read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    parts = []
    while size:
        part = read(min(size, 1 << 24))
        if not part:
            raise EOFError("worker process ended")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


_workers: list[_Worker] = []
_lock = threading.Lock()


def _take_workers(count: int) -> list[_Worker]:
    with _lock:
        _workers[:] = [w for w in _workers if w.alive()]
        while len(_workers) < count:
            _workers.append(_Worker())
        return _workers[:count]


def warm_up(workers: int) -> None:
    """Start the worker processes now, so their start-up overlaps other work."""
    if workers > 0:
        _take_workers(workers)


@atexit.register
def _stop_all() -> None:
    for worker in _workers:
        worker.stop()


class _Queue:
    """Batch indices handed out from the front (workers) and the back (the caller)."""

    def __init__(self, size: int) -> None:
        self.front, self.back = 0, size - 1
        self.lock = threading.Lock()

    def take(self, from_back: bool) -> int | None:
        with self.lock:
            if self.front > self.back:
                return None
            if from_back:
                self.back -= 1
                return self.back + 1
            self.front += 1
            return self.front - 1


def decode_batches(batches: list[Batch], workers: int,
                   on_done: Callable[[int], None] | None = None) -> list[DecodedBatch]:
    """Return :func:`~atrepo._records.decode_batch` of every batch, in order.

    Args:
        batches: the work, in output order.
        workers: extra processes to use; 0 decodes everything here.
        on_done: called with the record count of each finished batch (progress bars).
    """
    report = on_done or (lambda n: None)
    results: list[DecodedBatch | None] = [None] * len(batches)
    errors: list[BaseException] = []
    queue = _Queue(len(batches))

    def drain(run: Callable[[Batch], DecodedBatch], from_back: bool) -> None:
        while not errors and (i := queue.take(from_back)) is not None:
            try:
                results[i] = run(batches[i])
            except (EOFError, OSError):
                results[i] = decode_batch(batches[i])  # the worker died: do it here
            except BaseException as exc:  # an AtrepoError from the batch: re-raised below
                errors.append(exc)
                return
            report(len(batches[i].cids))

    pool = _take_workers(workers) if workers > 0 and len(batches) > 1 else []
    threads = [threading.Thread(target=drain, args=(w.run, False), daemon=True) for w in pool]
    for thread in threads:
        thread.start()
    drain(decode_batch, True)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]
