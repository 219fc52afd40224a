"""export(): a Parquet dataset that survives being killed at any moment (both clients)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from atrepo.client import AsyncClient, Client

ROOT = Path(__file__).resolve().parents[2]


def _options(sandbox: Any, cache: Path) -> dict[str, Any]:
    return {"plc_url": sandbox.plc_url, "handle_resolver": sandbox.pds_url, "cache_dir": cache,
            "progress": False}


def _export(kind: str, sandbox: Any, cache: Path, *args: Any, **kw: Any) -> Any:
    """Client.export or AsyncClient.export (loopback only: the sandbox is on localhost)."""
    if kind == "sync":
        with Client(http=httpx.Client(trust_env=False), **_options(sandbox, cache)) as client:
            return client.export(*args, **kw)

    async def go() -> Any:
        async with AsyncClient(http=httpx.AsyncClient(trust_env=False),
                               **_options(sandbox, cache)) as client:
            return await client.export(*args, **kw)

    return asyncio.run(go())


def _dataset(out: Path) -> pl.DataFrame:
    frame = pl.read_parquet(out / "**" / "*.parquet", hive_partitioning=True)
    return frame.sort("collection", "rkey")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_export_writes_a_partitioned_dataset_with_provenance(kind, sandbox, tmp_path):
    alice, bob = sandbox.account("alice.test"), sandbox.account("bob.test")
    out = tmp_path / "out"
    report = _export(kind, sandbox, tmp_path / "cache", [alice["did"], bob["did"]], out)
    assert (report.written, report.skipped, report.records) == (1, 0, alice["records"])
    assert report.errors["status"].to_list() == ["deactivated"]
    frame = _dataset(out)
    assert frame.height == alice["records"]
    assert {"did", "collection", "rkey", "uri", "cid", "record", "rev", "commit_cid",
            "verified", "pds", "fetched_at"} <= set(frame.columns)
    assert frame["verified"].all() and frame["pds"].unique().to_list() == [sandbox.pds_url]
    assert (out / "_manifest.jsonl").read_text().count("\n") == 1
    again = _export(kind, sandbox, tmp_path / "cache", [alice["did"], bob["did"]], out)
    assert (again.written, again.skipped) == (0, 1)
    assert _dataset(out).equals(frame)


def test_export_a_whole_host(sandbox, tmp_path):
    report = _export("sync", sandbox, tmp_path / "cache", sandbox.pds_url, tmp_path / "out",
                     collections=["app.bsky.feed.post"])
    assert report.written == 1 and report.errors.height == 0   # inactive repos are not listed
    assert set(_dataset(tmp_path / "out")["collection"]) == {"app.bsky.feed.post"}


KILLED_EXPORT = """
import sys, time, httpx, polars as pl
import atrepo
from atrepo.client import Client
write = pl.DataFrame.write_parquet
def slow_write(self, *a, **kw):           # widen the window in which a kill lands mid-repo
    write(self, *a, **kw)
    time.sleep(0.4)
pl.DataFrame.write_parquet = slow_write
plc, pds, cache, out, *names = sys.argv[1:]
with Client(http=httpx.Client(trust_env=False), plc_url=plc, handle_resolver=pds,
            cache_dir=cache, progress=False) as client:
    client.export(names, out)
"""


def test_export_killed_midway_resumes_to_the_same_rows(sandbox, tmp_path):
    alice, bob = sandbox.account("alice.test"), sandbox.account("bob.test")
    names = [alice["did"], bob["did"]]
    clean = _export("sync", sandbox, tmp_path / "cache", names, tmp_path / "clean")
    out = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, sandbox.plc_url,
                              sandbox.pds_url, str(tmp_path / "cache2"), str(out), *names],
                             cwd=ROOT)
    deadline = time.monotonic() + 60
    while len(list(out.glob("collection=*/*.parquet"))) < 2:
        assert time.monotonic() < deadline and child.poll() is None, "export never got going"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)   # two files of six written, no manifest line yet
    child.wait()
    assert not (out / "_manifest.jsonl").exists() or \
        (out / "_manifest.jsonl").read_text() == ""
    resumed = _export("sync", sandbox, tmp_path / "cache3", names, out)
    assert not list(out.glob("collection=*/.*.tmp"))   # leftovers of the kill are gone
    assert resumed.written == 1 and resumed.records == clean.records
    drop = ["fetched_at"]
    assert _dataset(out).drop(drop).equals(_dataset(tmp_path / "clean").drop(drop))
