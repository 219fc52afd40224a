"""export(): a Parquet dataset that survives being killed at any moment (both clients).

The kill tests run the export in a child process and SIGKILL it at a chosen write (the child
waits for the test after each file, so the moment is exact, not timed): once with the
session sandbox's one active repository, once across many repositories of a sandbox of its
own (``bulk_accounts``), where the resumed dataset must hold exactly the rows of a clean
export — no duplicates, no gaps — partition by partition.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _loopback import client

from atrepo.client import Client

ROOT = Path(__file__).resolve().parents[2]


def _export(kind: str, sandbox: Any, cache: Path, *args: Any, **kw: Any) -> Any:
    """Client.export or AsyncClient.export on the sandbox (loopback only, no DNS)."""
    made = client(kind, sandbox, cache)
    if isinstance(made, Client):
        with made:
            return made.export(*args, **kw)

    async def go() -> Any:
        async with made:
            return await made.export(*args, **kw)

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


CHILD = Path(__file__).with_name("_killed_export.py")


def _export_killed_when(sandbox: Any, cache: Path, out: Path, names: list[str],
                        ready: Callable[[], bool], *, concurrency: int = 8) -> None:
    """Run ``_killed_export.py`` in a child process; SIGKILL it at the first write when
    ``ready()``.

    The child stops after every Parquet file it writes until told to go on, so the state
    ``ready`` looks at cannot change under it, and the kill lands exactly there.
    """
    child = subprocess.Popen([sys.executable, str(CHILD), str(concurrency),
                              sandbox.plc_url, sandbox.pds_url, str(cache), str(out), *names],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        for line in child.stdout:
            assert line == "wrote\n", f"the export ended before the moment came: {line!r}"
            if ready():
                os.kill(child.pid, signal.SIGKILL)
                break
            child.stdin.write("go\n")
            child.stdin.flush()
        else:
            raise AssertionError("the export ended before the moment came")
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def test_export_killed_midway_resumes_to_the_same_rows(sandbox, tmp_path):
    alice, bob = sandbox.account("alice.test"), sandbox.account("bob.test")
    names = [alice["did"], bob["did"]]
    clean = _export("sync", sandbox, tmp_path / "cache", names, tmp_path / "clean")
    out = tmp_path / "killed"
    _export_killed_when(sandbox, tmp_path / "cache2", out, names,
                        lambda: len(list(out.glob("collection=*/*.parquet"))) == 2)
    # two files of alice's written, no manifest line yet
    assert not (out / "_manifest.jsonl").exists() or \
        (out / "_manifest.jsonl").read_text() == ""
    resumed = _export("sync", sandbox, tmp_path / "cache3", names, out)
    assert not list(out.glob("collection=*/.*.tmp"))   # leftovers of the kill are gone
    assert resumed.written == 1 and resumed.records == clean.records
    drop = ["fetched_at"]
    assert _dataset(out).drop(drop).equals(_dataset(tmp_path / "clean").drop(drop))


def _keys_by_partition(out: Path) -> dict[str, list[tuple[str, str, str, str]]]:
    """collection -> every (did, collection, rkey, cid) row of its partition, duplicates kept."""
    frame = pl.read_parquet(out / "**" / "*.parquet", hive_partitioning=True)
    rows: dict[str, list[tuple[str, str, str, str]]] = {}
    for did, collection, rkey, cid in frame.select("did", "collection", "rkey", "cid").rows():
        rows.setdefault(collection, []).append((did, collection, rkey, cid))
    return rows


def _manifest_dids(out: Path) -> list[str]:
    manifest = out / "_manifest.jsonl"
    if not manifest.exists():
        return []
    return [json.loads(line)["did"] for line in manifest.read_text().splitlines()
            if line.endswith("}")]


def _half_written(out: Path) -> set[str]:
    """File stems of repositories with files in place but no manifest line yet."""
    stems = {path.stem for path in out.glob("collection=*/*.parquet")}  # before the manifest:
    return stems - {did.replace(":", "_") for did in _manifest_dids(out)}  # no false positive


def test_export_killed_across_many_repos_resumes_without_duplicates_or_gaps(bulk_sandbox,
                                                                            tmp_path):
    sb = bulk_sandbox
    names = [a["did"] for a in sb.accounts if a["status"] == "active"]
    assert len(names) > 10   # alice and the bulk accounts
    clean = _export("sync", sb, tmp_path / "cache", names, tmp_path / "clean")
    assert clean.written == len(names) and clean.errors.height == 0
    expected = _keys_by_partition(tmp_path / "clean")
    assert {"app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.feed.repost",
            "app.bsky.graph.follow"} <= set(expected)

    out = tmp_path / "killed"
    # mid-run, and inside a repository's writes
    _export_killed_when(sb, tmp_path / "cache2", out, names,
                        lambda: len(_manifest_dids(out)) >= 3 and bool(_half_written(out)),
                        concurrency=2)
    finished = _manifest_dids(out)
    assert 3 <= len(finished) < len(names) and _half_written(out)

    resumed = _export("async", sb, tmp_path / "cache3", names, out)
    assert (resumed.skipped, resumed.written) == (len(finished), len(names) - len(finished))
    assert sorted(_manifest_dids(out)) == sorted(names)   # each repository once
    assert not list(out.glob("collection=*/.*.tmp"))
    got = _keys_by_partition(out)
    assert set(got) == set(expected)
    for collection, rows in got.items():
        assert len(rows) == len(set(rows)), f"duplicate rows in {collection}"
        assert set(rows) == set(expected[collection]), f"rows differ in {collection}"
    assert sum(map(len, got.values())) == clean.records
