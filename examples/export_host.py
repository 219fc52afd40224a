"""Export every repository of a host (a PDS) into a dataset, then query it; re-run to refresh.

    python examples/export_host.py https://morel.us-east.host.bsky.network bsky-dataset --limit 50
    python examples/export_host.py http://localhost:PDS_PORT dataset \\
        --plc-url http://localhost:PORT                      # a sandbox (`atrepo sandbox`)

Re-running brings the dataset up to date: unchanged repositories cost no download, changed
ones are replaced, and ones the host stopped serving are removed.
"""

import argparse
from pathlib import Path

import polars as pl

import atrepo

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("host", help="the host's URL (a PDS)")
parser.add_argument("out_dir", type=Path, help="the dataset directory")
parser.add_argument("--limit", type=int, default=None, help="only the first N repositories")
parser.add_argument("--collection", action="append",
                    help="only this collection (NSID or prefix.*); repeatable")
parser.add_argument("--plc-url", default="https://plc.directory", help="the PLC directory")
parser.add_argument("--cache-dir", default=None, help="atrepo's cache (default: user cache)")
args = parser.parse_args()

with atrepo.Client(plc_url=args.plc_url, cache_dir=args.cache_dir) as client:
    repos = client.list_repos(args.host, limit=args.limit)
    print(f"{args.host} lists {repos.height} repositories, "
          f"{repos.filter(pl.col('active')).height} active")
    # the listing frame is the source: its revs tell which repositories changed since
    report = client.export(repos, args.out_dir, collections=args.collection)
    print(report)
    if not report.errors.is_empty():
        print(report.errors)

ds = atrepo.open_dataset(args.out_dir)
summary = (ds.records.group_by("collection")
           .agg(pl.len().alias("records"), pl.col("did").n_unique().alias("repos"))
           .sort("records", descending=True)
           .collect())
print(summary)
print(ds.versions.tail(3))
print(f"{summary['records'].sum():,} records in {args.out_dir}")
