"""Declared tables over many real repositories from the reference PDS stack without `how=`.

A sandbox of its own: alice (posts with replies and facets, likes, reposts, follows, blocks,
a profile, ...) and 50 bulk accounts (posts, likes, reposts, follows), so that tables of
more than 50 repositories, written by the reference implementation, are concatenated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _loopback import client

import atrepo
from atrepo import bluesky
from atrepo.sandbox import REFERENCE, Sandbox, SandboxError
from atrepo.tables import records_table

BULK = 50


@pytest.fixture(scope="module")
def many() -> Any:
    if not (REFERENCE / "node_modules" / "@atproto" / "dev-env").exists():
        pytest.fail("the reference implementation is not installed: run `make test`")
    try:
        sb = Sandbox.start(REFERENCE, timeout=300, bulk_accounts=BULK, bulk_records=20)
    except SandboxError as exc:
        pytest.fail(str(exc))
    yield sb
    sb.stop()


@pytest.fixture(scope="module")
def snapshots(many: Any, tmp_path_factory: pytest.TempPathFactory) -> list[atrepo.RepoSnapshot]:
    active = [a["did"] for a in many.accounts if a["status"] == "active"]
    assert len(active) > BULK
    # rate_limit=None: a host's default bucket (30 at once, then ~10 a second) would hold
    # the ~110 requests of a pass over all of them ~7 s on its clock
    with client("sync", many, tmp_path_factory.mktemp("cache"), rate_limit=None) as c:
        return [c.get_repo(did) for did in active]


def test_tables_of_every_collection_stack_with_plain_concat(
        snapshots: list[atrepo.RepoSnapshot]) -> None:
    collections = sorted({c for s in snapshots for c in s.collections["collection"]})
    assert {"app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow",
            "app.bsky.graph.block", "app.bsky.actor.profile"} <= set(collections)
    for collection in collections:
        tables = [s.table(collection) for s in snapshots]  # empty where a repo has none
        stacked = pl.concat(tables)
        assert stacked.schema == atrepo.lexicon_schema(collection), collection
        assert stacked.height == sum(
            s.collections.filter(collection=collection)["count"].sum() for s in snapshots)
        assert stacked["did"].n_unique() == sum(t.height > 0 for t in tables)
        assert all(s.problems.is_empty() for s in snapshots), collection


def test_the_same_snapshot_gives_the_identical_schema_100_times(
        snapshots: list[atrepo.RepoSnapshot]) -> None:
    alice = max(snapshots, key=len)
    assert {tuple(alice.table("app.bsky.feed.post").schema.items()) for _ in range(100)} == {
        tuple(atrepo.lexicon_schema("app.bsky.feed.post").items())}  # type: ignore[union-attr]


def test_fetch_records_gives_the_same_rows_as_the_snapshots(
        many: Any, snapshots: list[atrepo.RepoSnapshot], tmp_path: Path) -> None:
    dids = [s.did for s in snapshots]
    with client("sync", many, tmp_path / "cache", rate_limit=None) as c:   # as above
        records = c.fetch_records(dids)
        likes = c.fetch_records(dids, table="app.bsky.feed.like")
    assert likes.schema == atrepo.lexicon_schema("app.bsky.feed.like")
    assert likes.sort("uri").equals(records_table(records, "app.bsky.feed.like")[0].sort("uri"))
    for collection in ("app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow"):
        table, problems = records_table(records, collection)
        assert problems.is_empty()
        one_by_one = pl.concat([s.table(collection) for s in snapshots])
        assert table.sort("uri").equals(one_by_one.sort("uri"))


def test_views_over_many_repositories(snapshots: list[atrepo.RepoSnapshot]) -> None:
    records = pl.concat([s.records for s in snapshots])
    posts = bluesky.posts(records)
    assert posts.height == records.filter(collection="app.bsky.feed.post").height
    assert posts["created_at"].null_count() == 0
    replies = posts.filter(pl.col("reply_parent_uri").is_not_null())
    assert replies.height > 0
    assert (replies["reply_parent_did"] == replies["reply_parent_uri"].str.split("/")
            .list.get(2)).all()
    likes = bluesky.likes(records)
    assert likes["subject_did"].null_count() == 0
    follows = bluesky.follows(records)
    assert follows.height > 0 and follows["subject_did"].str.starts_with("did:").all()
    assert bluesky.problems(records).is_empty()
