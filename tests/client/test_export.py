"""export(): repositories into a dataset with provenance, for both clients.

Crash safety (SIGKILL at random moments) is tested in test_export_crash.py; a dataset kept
current through account and record changes in test_dataset_sandbox.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _loopback import client

import atrepo
from atrepo.client import Client


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


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_export_writes_a_dataset_with_provenance(kind, sandbox, tmp_path):
    alice, bob = sandbox.account("alice.test"), sandbox.account("bob.test")
    out = tmp_path / "out"
    report = _export(kind, sandbox, tmp_path / "cache", [alice["did"], bob["did"]], out)
    assert (report.written, report.skipped, report.records) == (1, 0, alice["records"])
    assert (report.version, report.commits) == (0, 1)
    assert report.errors["status"].to_list() == ["deactivated"]
    ds = atrepo.open_dataset(out)
    frame = ds.records.collect()
    assert frame.height == alice["records"]
    assert frame.columns == ["did", "collection", "rkey", "uri", "cid", "record", "rev",
                             "commit_cid", "verified", "pds", "fetched_at"]
    assert frame["verified"].all() and frame["pds"].unique().to_list() == [sandbox.pds_url]
    repos = dict(ds.repos.select("did", "status").collect().rows())
    assert repos == {alice["did"]: "active", bob["did"]: "deactivated"}
    posts = ds.table("app.bsky.feed.post").collect()
    assert posts.schema == atrepo.lexicon_schema("app.bsky.feed.post")
    assert posts.height == frame.filter(pl.col("collection") == "app.bsky.feed.post").height

    again = _export(kind, sandbox, tmp_path / "cache", [alice["did"], bob["did"]], out)
    assert (again.written, again.skipped, again.version, again.commits) == (0, 2, 0, 0)
    assert atrepo.open_dataset(out).records.collect().drop("fetched_at").sort("uri").equals(
        frame.drop("fetched_at").sort("uri"))


def test_export_a_whole_host(sandbox, tmp_path):
    report = _export("sync", sandbox, tmp_path / "cache", sandbox.pds_url, tmp_path / "out",
                     collections=["app.bsky.feed.post"])
    assert report.written == 1 and report.errors.height == 0   # inactive ones: no request
    ds = atrepo.open_dataset(tmp_path / "out")
    assert set(ds.records.collect()["collection"]) == {"app.bsky.feed.post"}
    statuses = dict(ds.repos.select("did", "status").collect().rows())
    assert statuses[sandbox.account("carol.test")["did"]] == "takendown"
    assert ds.versions["operation"].to_list() == ["export"]
    assert ds.meta["hosts"] == [sandbox.pds_url]


def test_a_list_repos_frame_is_a_source_with_its_revs(sandbox, tmp_path):
    with client("sync", sandbox, tmp_path / "cache") as made:
        listing = made.list_repos(sandbox.pds_url)
        first = made.export(listing, tmp_path / "out")
        again = made.export(listing, tmp_path / "out")
    assert first.written == 1 and first.errors.height == 0
    assert (again.written, again.skipped) == (0, listing.height)


def test_bad_sources_and_options_are_usage_errors(sandbox, tmp_path):
    with client("sync", sandbox, tmp_path / "cache") as made:
        with pytest.raises(atrepo.UsageError, match="host must be a URL"):
            made.export("localhost:45315", tmp_path / "out")
        (tmp_path / "taken").write_text("not a dataset")
        with pytest.raises(atrepo.UsageError, match="is a file"):
            made.export([sandbox.account("alice.test")["did"]], tmp_path / "taken")
        with pytest.raises(atrepo.AtrepoError, match="exclude= takes DIDs"):
            made.export(sandbox.pds_url, tmp_path / "out", exclude=["alice.test"])
    assert (tmp_path / "taken").read_text() == "not a dataset"
    assert not (tmp_path / "out").exists()
