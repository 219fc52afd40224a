"""Fetching from a PDS: bulk ``fetch_records`` throughput, and what a cached repository costs.

    .venv/bin/python benchmarks/bench_fetch.py [--accounts 50] [--records 2000]
                                               [--concurrency 1,4,16] [--runs 3] [--repeat 5]

In one run, against a local sandbox (the reference PLC + PDS, ``atrepo.sandbox``) seeded
with ``--accounts`` bulk accounts of ``--records`` records each:

1. how long the sandbox took to seed them (``applyWrites``, 200 writes per call);
2. ``Client.fetch_records`` over every bulk account at each ``--concurrency`` (with
   ``max_per_host`` set to the same value, since every request goes to one PLC and one PDS),
   each run with a fresh ``cache_dir`` so that nothing is cached: repos/s, records/s, HTTP
   requests, bytes off the wire, and "HTTP s", the summed time from sending each request to
   the end of its body (the PDS's and PLC's share of the wall time, when run one at a time).
   Median of ``--runs`` (by wall time; the other columns are that run's);
3. ``get_repo`` of one bulk account into an empty cache, then again with nothing changed:
   the second call asks only ``getLatestCommit`` and reads the stored CAR. Median of
   ``--repeat``; requests and bytes counted with httpx event hooks.

Prints a Markdown table per part and writes ``benchmarks/results/fetch.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from atrepo._flows.effects import DnsFailure
from atrepo.client import Client
from atrepo.sandbox import Sandbox
from bench_read import machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "fetch.json"


class NoDns:
    """No DNS: the sandbox's ``.test`` handles verify through the PDS's resolveHandle."""

    def txt(self, name: str) -> list[str]:
        raise DnsFailure(name, "the benchmark uses no DNS")


class LoopbackOnly(httpx.HTTPTransport):
    """Refuses any host but the sandbox's, before a DNS lookup (``https://{handle}/...``)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host not in ("localhost", "127.0.0.1"):
            raise httpx.ConnectError(f"loopback only: {request.url.host}", request=request)
        return super().handle_request(request)


class Traffic:
    """Counts the requests an httpx client sends and the bytes it reads (event hooks)."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []

    def client(self, transport: httpx.HTTPTransport | None = None) -> httpx.Client:
        """A loopback httpx client that reports to this counter.

        Args:
            transport: what sends the requests (default: a :class:`LoopbackOnly`).
        """
        return httpx.Client(transport=transport or LoopbackOnly(), trust_env=False, timeout=120,
                            follow_redirects=True,
                            event_hooks={"response": [self.responses.append]})

    @property
    def requests(self) -> int:
        return len(self.responses)

    @property
    def bytes(self) -> int:
        """Body bytes as they came off the wire (read after the call, once bodies are done)."""
        return sum(response.num_bytes_downloaded for response in self.responses)

    @property
    def http_seconds(self) -> float:
        """Sum over requests of send-to-end-of-body (``Response.elapsed``): the server's
        time plus the transfer, overlapping when requests run in parallel."""
        return sum(response.elapsed.total_seconds() for response in self.responses)

    def paths(self) -> list[str]:
        """What each request asked for: the XRPC method, or "PLC" for a DID document."""
        names = [response.request.url.path.rsplit("/", 1)[-1] for response in self.responses]
        return ["PLC" if name.startswith("did:") else name for name in names]


@dataclass
class Run:
    label: str
    seconds: float
    repos: int
    records: int
    requests: int
    bytes: int
    http_seconds: float

    def row(self) -> str:
        return (f"| {self.label} | {self.seconds:.2f} | {self.repos / self.seconds:,.1f} | "
                f"{self.records / self.seconds:,.0f} | {self.requests} | "
                f"{self.bytes / 1e6:,.2f} | {self.http_seconds:.2f} |")


def fetch_all(sb: Sandbox, dids: list[str], concurrency: int) -> Run:
    """fetch_records over ``dids`` with a fresh cache; returns the timing and traffic."""
    traffic = Traffic()
    with tempfile.TemporaryDirectory() as cache, \
            Client(http=traffic.client(), dns=NoDns(), plc_url=sb.plc_url,
                   handle_resolver=sb.pds_url, cache_dir=cache, progress=False,
                   max_concurrency=concurrency,
                   max_per_host=concurrency) as client:
        start = time.perf_counter()
        frame = client.fetch_records(dids)
        seconds = time.perf_counter() - start
        if not client.last_errors.is_empty():
            raise SystemExit(f"fetch failed: {client.last_errors}")
    return Run(f"max_concurrency={concurrency}", seconds, len(dids), frame.height,
               traffic.requests, traffic.bytes, traffic.http_seconds)


def timed_get_repo(sb: Sandbox, did: str, cache: str) -> tuple[Run, list[str]]:
    """One get_repo of ``did`` with a new Client over ``cache``."""
    traffic = Traffic()
    with Client(http=traffic.client(), dns=NoDns(), plc_url=sb.plc_url,
                handle_resolver=sb.pds_url, cache_dir=cache, progress=False) as client:
        start = time.perf_counter()
        snap = client.get_repo(did)
        seconds = time.perf_counter() - start
    return (Run("", seconds, 1, len(snap), traffic.requests, traffic.bytes,
                traffic.http_seconds), traffic.paths())


def cached_fetch(sb: Sandbox, did: str, repeat: int) -> list[Run]:
    """First fetch into an empty cache, then the same repository again, unchanged."""
    first: list[Run] = []
    second: list[Run] = []
    paths: dict[str, list[str]] = {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as cache:
            run, paths["first"] = timed_get_repo(sb, did, cache)
            first.append(run)
            run, paths["second"] = timed_get_repo(sb, did, cache)
            second.append(run)
    return [_median(first, "first get_repo (empty cache): " + ", ".join(paths["first"])),
            _median(second, "second get_repo (unchanged): " + ", ".join(paths["second"]))]


def _median(runs: list[Run], label: str) -> Run:
    middle = sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]
    return Run(label, statistics.median(run.seconds for run in runs), middle.repos,
               middle.records, middle.requests, middle.bytes,
               statistics.median(run.http_seconds for run in runs))


def seeding_seconds(sb: Sandbox) -> float | None:
    """The bulk seeding time sandbox.mjs logged, if it did."""
    found = re.search(r"bulk accounts x \d+ records in ([\d.]+) s", sb.stderr_tail)
    return float(found.group(1)) if found else None


def table(title: str, runs: list[Run]) -> str:
    head = ("| run | seconds | repos/s | records/s | HTTP requests | MB read | HTTP s |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    return "\n".join([f"### {title}", "", head, *(run.row() for run in runs), ""])


def cached_table(runs: list[Run]) -> str:
    first = runs[0]
    lines = ["### get_repo of one repository, then again unchanged", "",
             "| call | ms | vs first | HTTP requests | bytes read | HTTP ms | records |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        lines.append(f"| {run.label} | {run.seconds * 1000:.1f} | "
                     f"{run.seconds / first.seconds:.2f}x | {run.requests} | {run.bytes:,} | "
                     f"{run.http_seconds * 1000:.1f} | {run.records:,} |")
    return "\n".join([*lines, ""])


def measure(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    with Sandbox.start(bulk_accounts=args.accounts, bulk_records=args.records,
                       timeout=1800) as sb:
        startup = time.perf_counter() - started
        bulk = [a for a in sb.accounts if a["handle"].startswith("bulk")]
        dids = [a["did"] for a in bulk]
        records = sum(a["records"] for a in bulk)
        seeding = seeding_seconds(sb)
        progress(f"sandbox up in {startup:.1f} s ({len(dids)} bulk repos, {records:,} records,"
                 f" seeding {seeding} s)")
        fetches = []
        for concurrency in args.concurrency:
            runs = []
            for _ in range(args.runs):
                runs.append(fetch_all(sb, dids, concurrency))
                progress(runs[-1].row())
            fetches.append(sorted(runs, key=lambda run: run.seconds)[len(runs) // 2])
        cached = cached_fetch(sb, dids[0], args.repeat)
    return {"accounts": len(dids), "records_per_account": args.records,
            "records_total": records, "sandbox_start_s": round(startup, 2),
            "seeding_s": seeding, "fetch_records": [asdict(r) for r in fetches],
            "cached": [asdict(r) for r in cached], "runs": args.runs, "repeat": args.repeat,
            "machine": machine_info(sys.executable)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,4,16",
                        type=lambda text: [int(part) for part in text.split(",")])
    parser.add_argument("--runs", type=int, default=3, help="fetch_records runs per level")
    parser.add_argument("--repeat", type=int, default=5, help="cached get_repo repeats")
    args = parser.parse_args()
    result = measure(args, lambda line: print(line, flush=True))
    print()
    print(f"Sandbox: {result['accounts']} accounts x {result['records_per_account']} records "
          f"({result['records_total']:,}); started and seeded in {result['sandbox_start_s']} s "
          f"(bulk seeding {result['seeding_s']} s)\n")
    print(table(f"fetch_records over {result['accounts']} repositories, nothing cached",
                [Run(**r) for r in result["fetch_records"]]))
    print(cached_table([Run(**r) for r in result["cached"]]))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
