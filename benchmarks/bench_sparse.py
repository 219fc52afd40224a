"""Sparse against full fetches of one collection from a big repository: bytes, requests, time.

    .venv/bin/python benchmarks/bench_sparse.py [--records 20000] [--runs 3] [--rtt-ms 0 ...]

Against a local sandbox (the reference PLC + PDS, ``atrepo.sandbox``) whose one bulk account
holds ``--records`` records (~45 % posts, ~30 % likes, ~10 % reposts, ~15 % follows) plus a
profile written here, ``get_repo`` of that account into an empty cache:

* in full (``sparse=False``), the whole CAR;
* sparse (``sparse=True``) for ``app.bsky.actor.profile`` (one record),
  ``app.bsky.graph.follow`` and ``app.bsky.feed.post``; the two big collections with
  ``max_per_host=1`` (the getBlocks requests of a round one after another, as before they
  went side by side) and the default 4, without a request rate, and with the default rate
  (the published PDS limit, 3,000 requests per 5 minutes: a burst of 30, then 9 a second).

``--rtt-ms`` holds every request that long before sending it, as a network round trip to a
remote host would (the sandbox is on loopback, where a request waits only for the server);
each value given is one table, on the same sandbox.

Each row is the median of ``--runs`` (by time; a fresh cache every run): seconds, HTTP
requests, ``snap.bytes_downloaded`` (the decoded bodies) and the bytes off the wire (the
PDS gzips its answers), and the sparse bytes as a share of the full fetch's. The requests
include resolving the DID (PLC) and the handle check. Prints a Markdown table and writes
``benchmarks/results/sparse.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from atrepo.client import Client
from atrepo.retry import RateLimit
from atrepo.sandbox import Sandbox
from bench_fetch import LoopbackOnly, NoDns, Traffic, seeding_seconds
from bench_read import machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "sparse.json"
HANDLE = "bulk000.test"
PROFILE = "app.bsky.actor.profile"
FOLLOW, POST = "app.bsky.graph.follow", "app.bsky.feed.post"
# (collections, sparse, max_per_host, default rate limit)
CASES = [(None, False, 4, True), ([PROFILE], True, 4, True),
         *[([big], True, width, rated) for big in (FOLLOW, POST)
           for width, rated in ((1, False), (4, False), (4, True))]]


@dataclass
class Row:
    collection: str
    sparse: bool
    max_per_host: int
    rate_limited: bool
    source: str
    records: int
    seconds: float
    requests: int
    bytes_downloaded: int
    wire_bytes: int


class Distant(LoopbackOnly):
    """:class:`LoopbackOnly`, each request held ``rtt`` seconds first (a round trip)."""

    def __init__(self, rtt: float) -> None:
        super().__init__()
        self.rtt = rtt

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self.rtt)
        return super().handle_request(request)


def fetch(sb: Sandbox, collections: list[str] | None, sparse: bool, max_per_host: int,
          rated: bool, rtt: float = 0.0) -> Row:
    """One get_repo into an empty cache, with its traffic counted."""
    traffic = Traffic()
    with tempfile.TemporaryDirectory() as cache, \
            Client(http=traffic.client(Distant(rtt)), dns=NoDns(), plc_url=sb.plc_url,
                   handle_resolver=sb.pds_url, cache_dir=cache, progress=False,
                   max_per_host=max_per_host,
                   rate_limit=RateLimit() if rated else None) as client:
        start = time.perf_counter()
        snap = client.get_repo(HANDLE, collections, sparse=sparse)
        records = snap.records.height
        seconds = time.perf_counter() - start
    return Row(collections[0] if collections else "(all)", sparse, max_per_host, rated,
               snap.source, records, seconds, traffic.requests, snap.bytes_downloaded,
               traffic.bytes)


def median(rows: list[Row]) -> Row:
    middle = sorted(rows, key=lambda row: row.seconds)[len(rows) // 2]
    return Row(**{**asdict(middle), "seconds": statistics.median(r.seconds for r in rows)})


def table(rows: list[Row]) -> str:
    full = rows[0]
    lines = ["| collections | fetch | max_per_host | rate limit | records | seconds "
             "| HTTP requests | bytes_downloaded | share of full | bytes off the wire |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        rate = "default" if row.rate_limited else "none"
        lines.append(f"| {row.collection} | {row.source} | {row.max_per_host} | {rate} | "
                     f"{row.records:,} | "
                     f"{row.seconds:.3f} | {row.requests} | {row.bytes_downloaded:,} | "
                     f"{row.bytes_downloaded / full.bytes_downloaded:.2%} | "
                     f"{row.wire_bytes:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0.0])
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with Sandbox.start(bulk_accounts=1, bulk_records=args.records, timeout=3600) as sb:
        print(f"sandbox up in {time.perf_counter() - started:.1f} s (seeding "
              f"{seeding_seconds(sb)} s)", file=sys.stderr)
        sb.put_record(HANDLE, PROFILE, "self", {"$type": PROFILE, "displayName": "Bench"})
        tables = {rtt: [median([fetch(sb, *case, rtt=rtt / 1000) for _ in range(args.runs)])
                        for case in CASES] for rtt in args.rtt_ms}
    for rtt, rows in tables.items():
        print(f"### get_repo of one repository of {args.records:,} records (+ a profile), "
              f"median of {args.runs}, round trip {rtt:g} ms\n")
        print(table(rows) + "\n")
    RESULTS.parent.mkdir(exist_ok=True)
    result: dict[str, Any] = {"records": args.records, "runs": args.runs,
                              "machine": machine_info(sys.executable),
                              "tables": [{"rtt_ms": rtt, "rows": [asdict(row) for row in rows]}
                                         for rtt, rows in tables.items()]}
    RESULTS.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
