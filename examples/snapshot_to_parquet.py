"""Download one repository, verify it, and write its records to a Parquet file.

    python examples/snapshot_to_parquet.py atproto.com atproto.parquet
    python examples/snapshot_to_parquet.py atproto.com posts.parquet --collection app.bsky.feed.post
    python examples/snapshot_to_parquet.py alice.test alice.parquet \\
        --plc-url http://localhost:PORT --handle-resolver http://localhost:PDS_PORT   # a sandbox
"""

import argparse

import polars as pl

import atrepo

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("name", help="a handle, DID or at:// URI")
parser.add_argument("out", help="the Parquet file to write")
parser.add_argument("--collection", action="append",
                    help="only this collection (NSID or prefix.*); repeatable")
parser.add_argument("--plc-url", default="https://plc.directory", help="the PLC directory")
parser.add_argument("--handle-resolver", default=None,
                    help="XRPC service for handles DNS/HTTPS do not resolve (a sandbox's PDS)")
parser.add_argument("--cache-dir", default=None, help="atrepo's cache (default: user cache)")
args = parser.parse_args()

with atrepo.Client(plc_url=args.plc_url, handle_resolver=args.handle_resolver,
                   cache_dir=args.cache_dir) as client:
    snap = client.get_repo(args.name, collections=args.collection)

print(snap)
print(snap.collections)
if not snap.problems.is_empty():
    print(f"{snap.problems.height} records could not be decoded:")
    print(snap.problems)
snap.write_parquet(args.out)

back = pl.read_parquet(args.out)  # any Parquet reader works from here
print(f"wrote {back.height:,} records of {snap.did} at rev {snap.rev} "
      f"(signature verified: {snap.verified}) to {args.out}")
