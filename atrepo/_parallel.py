"""Share CPU-bound work (MST walking, record decoding) with a few worker processes.

Reading a million-record repository is CPU-bound Python; threads would share one core, so
the extra cores are used through worker processes. They are started as ``python -m
atrepo._worker`` and spoken to over pipes (length-prefixed pickles), not through
``multiprocessing``: its "spawn" start method re-runs a user's script that lacks an
``if __name__ == "__main__"`` guard, and "fork" can deadlock a process with threads, such
as a Jupyter kernel. Workers are kept for reuse and stopped at exit.

A worker opens (indexes) a CAR file itself, from its path, so blocks never cross the pipe:
only the names of subtrees and batches go out, and keys, CIDs and JSON texts come back.
The calling process works too: jobs are taken from the front of the list by the workers
and from the back by the caller, so everyone finishes at about the same time.
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["Worker", "default_workers", "open_in_workers", "run_jobs", "take_workers"]

J = TypeVar("J")
R = TypeVar("R")
_HEADER = struct.Struct("<Q")
_F_SETPIPE_SZ = 1031  # fcntl command from <linux/fcntl.h>
_PIPE_SIZE = 1 << 20


def default_workers() -> int:
    """Worker processes to use: ``ATREPO_WORKERS`` if set, else one fewer than the CPUs."""
    configured = os.environ.get("ATREPO_WORKERS")
    if configured is not None:
        return max(0, int(configured))
    return max(0, (os.cpu_count() or 1) - 1)


class Worker:
    """One ``python -m atrepo._worker`` process. Requests are answered in order."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "atrepo._worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.pending = 0          # requests sent whose replies were not read yet
        self.lock = threading.Lock()
        assert self.proc.stdout is not None and self.proc.stdin is not None
        for pipe in (self.proc.stdout, self.proc.stdin):
            _widen(pipe.fileno())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, op: str, *args: Any) -> None:
        """Send a request without waiting for its reply."""
        assert self.proc.stdin is not None
        payload = pickle.dumps((op, args), protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(_HEADER.pack(len(payload)) + payload)
        self.pending += 1

    def _next_reply(self) -> tuple[bool, Any]:
        assert self.proc.stdout is not None
        reply: tuple[bool, Any] = pickle.loads(_read_frame(self.proc.stdout))
        self.pending -= 1
        return reply

    def receive(self) -> Any:
        """Return the reply to the oldest pending request (re-raising its error)."""
        ok, value = self._next_reply()
        if not ok:
            raise value
        return value

    def call(self, op: str, *args: Any) -> Any:
        """Send a request and return its reply.

        Replies to earlier fire-and-forget requests (``open``) are read and dropped first,
        errors included: they belonged to a read the caller has already finished (or
        failed on its own, with its own error).
        """
        with self.lock:
            while self.pending:
                self._next_reply()
            self.send(op, *args)
            return self.receive()

    def stop(self) -> None:
        """End the process and close both pipes."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def _widen(fd: int) -> None:
    """Give a pipe a 1 MiB buffer (Linux), where the kernel allows it.

    A reply is megabytes of column data. Through a 64 KiB pipe the worker blocks after each
    64 KiB until this process's reader thread, which must win the GIL back from the decoding
    main thread every time, reads again: the worker spent most of its time waiting.
    """
    if sys.platform.startswith("linux"):
        import fcntl

        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:  # pipe-max-size is lower on this system: keep the default
            return


def _read_frame(stream: Any) -> bytes:
    head = _read_exactly(stream.read, _HEADER.size)
    return _read_exactly(stream.read, _HEADER.unpack(head)[0])


def _read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    parts = []
    while size:
        part = read(min(size, 1 << 24))
        if not part:
            raise EOFError("worker process ended")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


_workers: list[Worker] = []
_lock = threading.Lock()


def take_workers(count: int) -> list[Worker]:
    """Return ``count`` live workers, starting new ones as needed."""
    with _lock:
        for dead in [w for w in _workers if not w.alive()]:
            dead.stop()
        _workers[:] = [w for w in _workers if w.alive()]
        while len(_workers) < count:
            _workers.append(Worker())
        return _workers[:count]


def open_in_workers(path: str, mem_limit_mb: float, verify_cids: bool, count: int) -> None:
    """Ask ``count`` workers to index the CAR at ``path`` now, while the caller does too."""
    for worker in take_workers(count):
        with worker.lock:
            worker.send("open", path, None, mem_limit_mb, verify_cids)


@atexit.register
def _stop_all() -> None:
    for worker in _workers:
        worker.stop()


class _Queue:
    """Job indices handed out from the front (workers) and the back (the caller)."""

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


def run_jobs(jobs: Sequence[J], local: Callable[[J], R],
             remote: Callable[[Worker, J], R], workers: int,
             on_done: Callable[[J], None] | None = None) -> list[R]:
    """Return ``local(job)`` for every job, in order, sharing them with ``workers`` processes.

    Args:
        jobs: the work, in output order.
        local: does one job in this process.
        remote: does one job through a worker (same result as ``local``).
        workers: extra processes to use; 0 does everything here.
        on_done: called after each finished job (progress bars).
    """
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    queue = _Queue(len(jobs))

    def drain(run: Callable[[J], R], from_back: bool) -> None:
        while not errors and (i := queue.take(from_back)) is not None:
            try:
                results[i] = run(jobs[i])
            except (EOFError, OSError):
                results[i] = local(jobs[i])  # the worker died: do the job here
            except BaseException as exc:  # the job's own error: re-raised by the caller
                errors.append(exc)
                return
            if on_done is not None:
                on_done(jobs[i])

    pool = take_workers(workers) if workers > 0 and len(jobs) > 1 else []
    threads = [threading.Thread(target=drain, args=(_bind(remote, w), False), daemon=True)
               for w in pool]
    for thread in threads:
        thread.start()
    drain(local, True)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _bind(remote: Callable[[Worker, J], R], worker: Worker) -> Callable[[J], R]:
    return lambda job: remote(worker, job)
