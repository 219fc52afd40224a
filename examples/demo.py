"""`make demo`: read the bundled sample repository end to end and show what atrepo gives.

The sample CAR was written by the atproto reference implementation (@atproto/repo); its
signing key is in sample.json, so the commit signature is checked too.
"""

import json
from pathlib import Path

import polars as pl

import atrepo

DATA = Path(__file__).parent / "data"

truth = json.loads((DATA / "sample.json").read_text())
snap = atrepo.read_car(DATA / "sample.car", signing_key=truth["signing_key"])
print(snap)
print("\nRecords per collection:")
print(snap.collections)
print("\nEvery record (did, collection, rkey, uri, cid, record as JSON):")
print(snap.records.select("collection", "rkey", "cid", "record").head(5))
posts = snap.table("app.bsky.feed.post")
print(f"\nPosts as a typed table ({posts.height} rows, columns: {', '.join(posts.columns)}):")
print(posts.select("rkey", "createdAt", "langs", "text").head(5))
langs = posts.select(pl.col("langs").list.first().alias("lang")).group_by("lang").len()
print("\nPost languages:")
print(langs.sort("len", descending=True))
print("\nProblems (undecodable records):", snap.problems.height)
assert snap.verified and snap.records.height == truth["record_count"]
