"""`make demo`: atrepo end to end against a local sandbox, then offline.

Starts the sandbox (the atproto reference PLC directory + PDS on loopback, seeded with
sample accounts), and walks through what a researcher does with atrepo:

    resolve -> list_repos -> get_repo -> a table of posts -> new activity, then a diff
    -> an export of the whole host into a dataset -> read back lazily with Polars

and finally reads the bundled sample CAR offline. The sandbox is stopped at the end, also
when something fails. Against the live network the only change is the client:
``atrepo.Client()`` (https://plc.directory, DNS/HTTPS handle resolution) and real handles.
"""

import json
import tempfile
from pathlib import Path

import polars as pl

import atrepo
from atrepo import sandbox

DATA = Path(__file__).parent / "data"


def step(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 76 - len(title)))


def demo(sb: sandbox.Sandbox, work: Path) -> None:
    client = atrepo.Client(
        plc_url=sb.plc_url,          # live network: atrepo.Client() and real handles
        handle_resolver=sb.pds_url,  # `.test` handles have no DNS: the PDS resolves them
        cache_dir=work / "cache",
    )
    with client:
        step("1. resolve a handle")
        ident = client.resolve("alice.test")
        print(f"alice.test -> {ident.did}\n  PDS {ident.pds}\n  signing key {ident.signing_key}")

        step("2. list the repositories of the PDS")
        print(client.list_repos(sb.pds_url).select("did", "rev", "active", "status"))

        step("3. download, verify and walk alice's repository")
        snap = client.get_repo("alice.test")
        print(snap)
        print(snap.collections)

        step("4. her posts as a typed table")
        posts = snap.table("app.bsky.feed.post")
        print(posts.select("createdAt", "langs", "text").sort("createdAt").head(8))
        langs = posts.select(pl.col("langs").list.first().fill_null("(none)").alias("lang"))
        print(langs.group_by("lang").len().sort("len", descending=True))

        step("5. new activity, then a diff against the stored snapshot")
        sb.post("alice.test", "hello from make demo", langs=["en"])
        sb.post("alice.test", "olá do make demo", langs=["pt"])
        oldest = posts.sort("createdAt").row(0, named=True)
        sb.delete_record("alice.test", "app.bsky.feed.post", oldest["rkey"])
        changes = client.diff("alice.test")
        print(changes.select("collection", "rkey", "action", "record"))
        print(client.snapshots("alice.test"))

        step("6. export every repository of the PDS into a dataset (Delta Lake tables)")
        report = client.export(sb.pds_url, work / "dataset")
        print(report)

    step("7. read the dataset back, lazily, with Polars")
    dataset = atrepo.open_dataset(work / "dataset").records
    print(dataset.group_by("collection")
          .agg(pl.len().alias("records"), pl.col("did").n_unique().alias("repos"))
          .sort("records", descending=True).collect())

    step("8. offline: the bundled sample CAR (written by @atproto/repo)")
    truth = json.loads((DATA / "sample.json").read_text())
    sample = atrepo.read_car(DATA / "sample.car", signing_key=truth["signing_key"])
    print(sample)
    print("problems (undecodable records):", sample.problems.height)
    assert sample.verified and len(sample) == truth["record_count"]


def main() -> None:
    print("starting the sandbox (a local PLC directory + PDS; the first run installs it) ...")
    # alice, bob, carol, dave and five generated accounts (bulk000.test, ...) to export
    with tempfile.TemporaryDirectory(prefix="atrepo-demo-") as work, \
            sandbox.start(bulk_accounts=5, bulk_records=60) as sb:
        print(f"PLC {sb.plc_url}   PDS {sb.pds_url}")
        demo(sb, Path(work))
    print("\nsandbox stopped. Next: notebooks/quickstart.ipynb, docs/index.md")


if __name__ == "__main__":
    main()
