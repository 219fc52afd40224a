"""AsyncClient.export keeps the event loop running while it works on the dataset.

The planning (``DatasetExport.plan``, which commits when a listing fills batches) and the
dataset's last commit (``DatasetExport.finish``: the final Delta commit and the compaction)
are each held until a task on the loop has run: a task that can only run while the loop is
free. Were either on the loop, that task could not run and the wait would end unmet (after
``WAIT`` seconds, a deadlock's bound, not a measure of speed).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from _loopback import client

import atrepo
from atrepo.client import AsyncClient
from atrepo.dataset import DatasetExport

WAIT = 10.0  # seconds before a missing event counts as a deadlock


@pytest.mark.parametrize("step", ["plan", "finish"])
def test_the_async_export_works_off_the_event_loop(step, sandbox, tmp_path, monkeypatch):
    alice = sandbox.account("alice.test")
    original = getattr(DatasetExport, step)
    entered, ticked = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def held(self: DatasetExport, *args: Any) -> Any:
        seen["thread"] = threading.current_thread()
        entered.set()
        seen["loop ran"] = ticked.wait(WAIT)
        return original(self, *args)

    monkeypatch.setattr(DatasetExport, step, held)

    async def go() -> Any:
        made = client("async", sandbox, tmp_path / "cache")
        assert isinstance(made, AsyncClient)

        async def on_the_loop() -> None:
            await asyncio.to_thread(entered.wait, WAIT)
            ticked.set()   # runs only once the loop is free again

        ticker = asyncio.ensure_future(on_the_loop())
        async with made:
            report = await made.export([alice["did"]], tmp_path / "ds")
        await ticker
        return report, threading.current_thread()

    report, loop_thread = asyncio.run(go())
    assert seen["loop ran"] and seen["thread"] is not loop_thread
    assert (report.written, report.records) == (1, alice["records"])
    assert atrepo.open_dataset(tmp_path / "ds").records.collect().height == alice["records"]
