"""Bulk calls at growing sizes: peak RSS and open files must not grow with the repositories.

    .venv/bin/python benchmarks/bench_bulk.py [--sizes 250,2000] [--records 20]
                                              [--modes tally,export] [--kinds sync,async]
                                              [--concurrency 8]

A loopback server process plays PLC and PDS for ``max(sizes)`` DIDs: a DID document each,
and a signed repository of ``--records`` posts each (made on request, not kept, so the
server's memory is its own). For every size and mode a fresh client process with a fresh
cache runs one bulk call over the first ``size`` DIDs, with ``Client`` (sync) or
``AsyncClient`` (async), and reports:

* peak RSS (``ru_maxrss``), and the growth over the RSS before the call;
* peak open file descriptors (``/proc/self/fd``, sampled every 2 ms by a thread);
* seconds and repositories per second.

Modes: ``tally`` is the bulk engine and the per-repository pipeline with a run that keeps
only counts (what a streaming consumer pays); ``export`` is ``Client.export`` into a fresh
directory; ``fetch`` is ``fetch_records``, whose result frame holds every record and so
grows with the size by design (listed for comparison).

Prints a Markdown table and writes ``benchmarks/results/bulk.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bulk.json"


def did_of(i: int) -> str:
    """The i-th benchmark DID (did:plc: and 24 base32 characters)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    tail = "".join(alphabet[(i >> (5 * k)) & 31] for k in range(6))
    return "did:plc:bulkbench" + "a" * 9 + tail[::-1]


# -- the server (its own process) ----------------------------------------------------------


def serve(records: int) -> None:
    """Answer DID documents and getRepo for any benchmark DID; print the port, then serve."""
    from atrepo.testing import SigningKey, make_repo_car

    key = SigningKey()
    multibase = key.did_key.removeprefix("did:key:")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            if parts.path == "/xrpc/com.atproto.sync.getRepo":
                did = parse_qs(parts.query)["did"][0]
                body = make_repo_car({f"app.bsky.feed.post/3kbbbbbbbb{j:03d}": {
                    "$type": "app.bsky.feed.post", "text": f"post {j} of {did}",
                    "createdAt": "2024-01-01T00:00:00Z"} for j in range(records)},
                    did=did, key=key)[0]
                kind = "application/vnd.ipld.car"
            else:
                did = parts.path.lstrip("/")
                body = json.dumps({
                    "id": did, "alsoKnownAs": [],
                    "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey",
                                            "controller": did,
                                            "publicKeyMultibase": multibase}],
                    "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                 "serviceEndpoint": url}]}).encode()
                kind = "application/json"
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    url = f"http://127.0.0.1:{server.server_address[1]}"
    print(url, flush=True)
    server.serve_forever()


# -- one measured bulk call (its own process) ----------------------------------------------


class _FdPeak:
    """The most file descriptors open at once while it runs (a sampling thread)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, len(os.listdir("/proc/self/fd")))

    def __enter__(self) -> _FdPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(url: str, size: int, mode: str, kind: str, concurrency: int) -> dict[str, Any]:
    """Run one bulk call of ``mode`` over ``size`` DIDs with a ``kind`` client; its numbers."""
    import asyncio

    import httpx

    from atrepo._bulk import FetchRun
    from atrepo._flows.effects import DnsFailure
    from atrepo.client import AsyncClient, Client
    from atrepo.snapshot import RepoSnapshot

    class NoDns:
        def txt(self, name: str) -> Sequence[str]:
            raise DnsFailure(name, "the benchmark uses no DNS")

    class AsyncNoDns:
        async def txt(self, name: str) -> Sequence[str]:
            raise DnsFailure(name, "the benchmark uses no DNS")

    class TallyRun(FetchRun):
        """fetch_records' flows, keeping only how many records each repository had."""

        def record(self, i: int, outcome: RepoSnapshot | BaseException) -> None:
            if isinstance(outcome, RepoSnapshot):
                self.records += len(outcome.records)
            else:
                self._failed(i, outcome)

        def result(self) -> Any:
            return self.records

    def call(client: Client | AsyncClient, out: Path) -> Any:
        """The bulk call of ``mode`` (awaitable for an AsyncClient); its record count."""
        if mode == "tally":
            run = TallyRun(client._pipeline, dids, None)
            run.records = 0
            return client._each(run)
        if mode == "export":
            return client.export(dids, out)
        return client.fetch_records(dids)

    def count(result: Any) -> int:
        """Records of a tally (int), a fetch_records frame or an ExportReport."""
        if isinstance(result, int):
            return result
        return int(result.height if hasattr(result, "height") else result.records)

    dids = [did_of(i) for i in range(size)]
    options: dict[str, Any] = {"plc_url": url, "progress": False, "rate_limit": None,
                               "max_concurrency": concurrency, "max_per_host": concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        options["cache_dir"] = Path(tmp) / "cache"
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        with _FdPeak() as fds:
            if kind == "sync":
                with Client(http=httpx.Client(trust_env=False, timeout=120), dns=NoDns(),
                            **options) as client:
                    records = count(call(client, Path(tmp) / "out"))
                    errors = client.last_errors.height
            else:
                async def go() -> tuple[int, int]:
                    async with AsyncClient(http=httpx.AsyncClient(trust_env=False, timeout=120),
                                           dns=AsyncNoDns(), **options) as aclient:
                        return (count(await call(aclient, Path(tmp) / "out")),
                                aclient.last_errors.height)

                records, errors = asyncio.run(go())
        seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "mode": mode, "repos": size, "records": records, "errors": errors,
            "seconds": round(seconds, 2), "repos_per_s": round(size / seconds, 1),
            "peak_rss_mb": round(rss / 1024, 1),
            "rss_growth_mb": round((rss - rss_before) / 1024, 1), "peak_fds": fds.peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,2000")
    parser.add_argument("--modes", default="tally,export")
    parser.add_argument("--kinds", default="sync,async")
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, metavar=("URL", "SIZE", "MODE", "KIND"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.records)
        return
    if args.child:
        url, size, mode, kind = args.child
        print(json.dumps(measure(url, int(size), mode, kind, args.concurrency)))
        return
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--records",
                               str(args.records)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        rows = []
        for kind in args.kinds.split(","):
            for mode in args.modes.split(","):
                for size in (int(s) for s in args.sizes.split(",")):
                    out = subprocess.run([sys.executable, __file__, "--child", url, str(size),
                                          mode, kind, "--concurrency", str(args.concurrency)],
                                         capture_output=True, text=True, check=True).stdout
                    rows.append(json.loads(out.strip().splitlines()[-1]))
                    print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
    columns = ["kind", "mode", "repos", "records", "errors", "seconds", "repos_per_s",
               "peak_rss_mb", "rss_growth_mb", "peak_fds"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"records_per_repo": args.records,
                                   "concurrency": args.concurrency, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
