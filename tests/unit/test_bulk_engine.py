"""The bulk engine (:mod:`atrepo._io.bounded`): bounds on jobs in flight and results waiting.

Every bound is checked by counting, and the worst case is forced with events: the caller's
``handle`` blocks until the finished queue is full, so without the bound every job would
run; with it, the count of jobs started stops at the window. Completion order is shown by
a first job that can only finish once a later one was handled (in input order that would
never happen: the wait ends in a failed assertion, not a hang).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from atrepo._io.bounded import arun_bounded, run_bounded

WAIT = 10.0  # seconds before a missing event counts as a deadlock


class Tally:
    """Counts of jobs started, running, finished and handled, and the most seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.started = self.running = self.finished = 0
        self.handled: list[int] = []
        self.most_running = self.most_waiting = 0

    def start(self) -> None:
        with self.lock:
            self.started += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)

    def finish(self) -> None:
        with self.changed:
            self.running -= 1
            self.finished += 1
            self.most_waiting = max(self.most_waiting, self.finished - len(self.handled))
            self.changed.notify_all()

    def handle(self, i: int) -> None:
        with self.lock:
            self.handled.append(i)


@pytest.mark.parametrize("workers, waiting", [(1, 1), (3, 2), (4, None)])
def test_threads_keep_jobs_in_flight_and_results_waiting_bounded(workers, waiting):
    tally = Tally()
    window = workers + (workers if waiting is None else waiting)
    started_when_full: list[int] = []

    def work(i: int) -> int:
        tally.start()
        tally.finish()
        return i * 10

    def handle(i: int, result: int) -> None:
        assert result == i * 10
        if not tally.handled:  # the first result: hold the caller until the queue is full
            with tally.changed:
                assert tally.changed.wait_for(lambda: tally.finished == window, WAIT)
                started_when_full.append(tally.started)
        tally.handle(i)

    run_bounded(50, work, handle, workers=workers, waiting=waiting)
    assert started_when_full == [window]  # nothing more started while the caller was busy
    assert sorted(tally.handled) == list(range(50))
    assert tally.most_running <= workers
    assert tally.most_waiting == window


def test_threads_reach_their_concurrency():
    gate = threading.Barrier(4, timeout=WAIT)  # opens only with 4 jobs running together
    run_bounded(8, lambda i: gate.wait(), lambda i, r: None, workers=4)
    assert not gate.broken


def test_threads_handle_results_in_the_order_they_finish():
    later_handled = threading.Event()
    handled: list[int] = []

    def work(i: int) -> bool:
        return later_handled.wait(WAIT) if i == 0 else True

    def handle(i: int, result: bool) -> None:
        assert result, "job 0 never saw job 1 handled: results were taken in input order"
        handled.append(i)
        if i == 1:
            later_handled.set()

    run_bounded(3, work, handle, workers=2)
    assert handled[0] == 1 and sorted(handled) == [0, 1, 2]


def test_threads_run_every_job_in_a_copy_of_the_callers_context():
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    seen: list[str] = []
    run_bounded(4, lambda i: var.get(), lambda i, r: seen.append(r), workers=2)
    assert seen == ["caller"] * 4


def test_a_failing_job_stops_the_run_and_starts_no_more():
    tally = Tally()

    def work(i: int) -> None:
        tally.start()
        tally.finish()
        if i == 3:
            raise RuntimeError("a bug, not a repository's failure")

    with pytest.raises(RuntimeError, match="a bug"):
        run_bounded(1000, work, lambda i, r: tally.handle(i), workers=2, waiting=2)
    assert tally.started <= 3 + 1 + 4  # up to job 3, and at most a window past it


def test_async_keeps_jobs_in_flight_and_results_waiting_bounded():
    tally = Tally()
    workers, waiting = 3, 2
    window = workers + waiting
    started_when_full: list[int] = []

    async def go() -> None:
        full = asyncio.Event()

        async def work(i: int) -> int:
            tally.start()
            await asyncio.sleep(0)  # let the others start too
            tally.finish()
            if tally.finished == window:
                full.set()
            return i * 10

        async def handle(i: int, result: int) -> None:
            assert result == i * 10
            if not tally.handled:
                await asyncio.wait_for(full.wait(), WAIT)
                for _ in range(10):  # give any job the engine wrongly started its turns
                    await asyncio.sleep(0)
                started_when_full.append(tally.started)
            tally.handle(i)

        await arun_bounded(40, work, handle, workers=workers, waiting=waiting)

    asyncio.run(go())
    assert started_when_full == [window]
    assert sorted(tally.handled) == list(range(40))
    assert tally.most_running == workers  # reached, never passed
    assert tally.most_waiting == window


def test_async_handles_results_in_the_order_they_finish():
    handled: list[int] = []

    async def go() -> None:
        later_handled = asyncio.Event()

        async def work(i: int) -> bool:
            if i == 0:
                await asyncio.wait_for(later_handled.wait(), WAIT)
            return True

        async def handle(i: int, result: bool) -> None:
            handled.append(i)
            if i == 1:
                later_handled.set()

        await arun_bounded(3, work, handle, workers=2)

    asyncio.run(go())
    assert handled[0] == 1 and sorted(handled) == [0, 1, 2]


def test_async_failure_cancels_the_rest():
    cancelled: list[int] = []

    async def go() -> None:
        async def work(i: int) -> None:
            if i == 0:
                raise RuntimeError("a bug")
            try:
                await asyncio.Event().wait()  # never set: only cancellation ends it
            except asyncio.CancelledError:
                cancelled.append(i)
                raise

        async def handle(i: int, result: None) -> None:
            return None

        await arun_bounded(100, work, handle, workers=3, waiting=1)

    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(go())
    # the two others running, and the one the window let in when job 0 ended; none after
    assert {1, 2} <= set(cancelled) <= {1, 2, 3}
