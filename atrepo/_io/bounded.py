"""Bounded bulk runs: many jobs, a few at a time, their results handled as they finish.

:func:`run_bounded` (threads) and :func:`arun_bounded` (tasks) run ``work(i)`` for every
``i`` in ``range(count)`` and hand each result to ``handle(i, result)`` on the caller's
thread (or task), one at a time, in the order the jobs *finish*: a slow job holds up no
finished one. Memory and open files stay flat however large ``count`` is, since

* at most ``workers`` jobs run at once, and
* at most ``workers + waiting`` jobs are started and not yet handled: finished results
  waiting for the caller are a bounded queue, and no job starts while it is full.

Whoever needs input order back assembles by ``i``. An exception from ``work`` or
``handle`` stops the run: jobs not started are cancelled, running ones are waited for (the
thread pool) or cancelled (tasks), and the exception propagates.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["arun_bounded", "run_bounded"]

T = TypeVar("T")


def _window(workers: int, waiting: int | None) -> int:
    """Jobs started and not yet handled: the running ones plus the finished queue."""
    return workers + (workers if waiting is None else waiting)


def run_bounded(count: int, work: Callable[[int], T], handle: Callable[[int, T], None], *,
                workers: int, waiting: int | None = None) -> None:
    """Run ``work(i)`` for each ``i < count`` in ``workers`` threads; ``handle`` each result.

    Args:
        count: how many jobs.
        work: job ``i``; runs in a pool thread, in a copy of the caller's context.
        handle: called on this thread with ``(i, work(i))`` as each job finishes.
        workers: jobs running at once.
        waiting: finished results that may wait for ``handle`` (default ``workers``).
    """
    window = _window(workers, waiting)
    pending: dict[Future[T], int] = {}
    started = 0
    with ThreadPoolExecutor(workers, thread_name_prefix="atrepo-bulk") as pool:
        try:
            while started < count or pending:
                while started < count and len(pending) < window:
                    context = contextvars.copy_context()
                    pending[pool.submit(context.run, work, started)] = started
                    started += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=pending.__getitem__):
                    handle(pending.pop(future), future.result())
        finally:
            for future in pending:
                future.cancel()


async def arun_bounded(count: int, work: Callable[[int], Awaitable[T]],
                       handle: Callable[[int, T], Awaitable[None]], *, workers: int,
                       waiting: int | None = None) -> None:
    """:func:`run_bounded` with tasks of the running loop: ``work`` and ``handle`` awaited."""
    running = asyncio.Semaphore(workers)

    async def one(i: int) -> T:
        async with running:
            return await work(i)

    window = _window(workers, waiting)
    pending: dict[asyncio.Task[T], int] = {}
    started = 0
    try:
        while started < count or pending:
            while started < count and len(pending) < window:
                pending[asyncio.ensure_future(one(started))] = started
                started += 1
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=pending.__getitem__):
                await handle(pending.pop(task), task.result())
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
