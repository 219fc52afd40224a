"""Watch a repository: keep a snapshot, then print what changed, every so often.

    python examples/watch_diff.py atproto.com --every 600       # every 10 minutes, forever
    python examples/watch_diff.py atproto.com --times 0         # just take a snapshot ...
    python examples/watch_diff.py atproto.com --times 1 --every 0   # ... and diff it later
    (add --plc-url/--handle-resolver for a sandbox, as in resolve.py)

Snapshots live in atrepo's cache (--cache-dir), so runs can be hours or days apart.
"""

import argparse
import itertools
import time

import atrepo

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("name", help="a handle, DID or at:// URI")
parser.add_argument("--every", type=float, default=60, help="seconds between checks")
parser.add_argument("--times", type=int, default=None, help="checks to make (default: forever)")
parser.add_argument("--plc-url", default="https://plc.directory", help="the PLC directory")
parser.add_argument("--handle-resolver", default=None,
                    help="XRPC service for handles DNS/HTTPS do not resolve (a sandbox's PDS)")
parser.add_argument("--cache-dir", default=None, help="atrepo's cache (default: user cache)")
args = parser.parse_args()

with atrepo.Client(plc_url=args.plc_url, handle_resolver=args.handle_resolver,
                   cache_dir=args.cache_dir) as client:
    did = client.resolve(args.name).did
    stored = client.snapshots(did)
    if stored.is_empty():
        snap = client.get_repo(did)
        print(f"first snapshot of {args.name}: rev {snap.rev}, {len(snap):,} records", flush=True)
    else:
        print(f"{args.name}: snapshots in the cache: {stored.height}, newest rev "
              f"{stored['rev'].max()}", flush=True)
    for _ in itertools.count() if args.times is None else range(args.times):
        time.sleep(args.every)
        changes = client.diff(did)
        newest = client.snapshots(did)["rev"].max()
        if changes.is_empty():
            print(f"rev {newest}: no changes", flush=True)
            continue
        counts = changes.group_by("action").len().sort("action").iter_rows()
        print(f"rev {newest}: " + ", ".join(f"{n} {action}" for action, n in counts), flush=True)
        for row in changes.select("action", "collection", "rkey").iter_rows():
            print("  " + "  ".join(row), flush=True)
