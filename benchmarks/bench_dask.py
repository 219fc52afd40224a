"""Export of the multi-host sandbox on Dask: local against LocalCluster with 1 and 2 workers.

    .venv/bin/python benchmarks/bench_dask.py [--accounts 600] [--records 20]
                                              [--workers 1,2] [--threads 1]
                                              [--shard-repos 50] [--capped-workers 2]

A local sandbox with three reference PDSes on one PLC (``atrepo.sandbox.start(pds_count=3,
...)``) is seeded with ``--accounts`` bulk accounts of ``--records`` records (account *i* on
PDS *i* mod 3, plus the named accounts and one that moved between PDSes). The source is what
a crawl of the sandbox relay finds: ``list_hosts``, then ``list_repos`` of every host, with a
``host`` column, concatenated (the moved account is listed twice, and exported once).

Each run exports that source into a fresh dataset with fresh caches (no snapshot and no
identity cached, on the driver or on any worker): ``Client.export(frame, out)`` in this
process, then ``Client.export(frame, out, dask=...)`` on a ``distributed.LocalCluster`` of
N worker processes (``threads_per_worker=--threads``) for each N of ``--workers``. Every
client has the default ``max_concurrency`` (8) and ``max_per_host`` (4); the runs are made
twice:

* **uncapped**, ``rate_limit=None`` (the sandbox is on loopback): what the client and the
  cluster can do;
* **capped**, the default ``rate_limit`` (3,000 requests per 5 minutes per host, bursts of
  30): where the per-host limits cap it, locally and on ``--capped-workers`` workers.

Every request is counted where it is sent (``httpx.HTTPTransport.handle_request`` wrapped in
this process and, through ``client.run``, in every worker), by origin: the PLC, each PDS,
the relay (the sandbox's handle resolver). Reported per run: seconds, repos/s, records/s,
requests per origin and each origin's peak rate over any 10 s window, and CPU seconds of
the driver, the workers and the sandbox's node process. Every Dask run's dataset is checked
against the local run's, row for row (did, collection, rkey, cid).

``--shard-repos`` is smaller than the export's default (250) because the sandbox's hosts
are small (about ``--accounts``/3 repositories each): at 250, each host would be one task.

Prints Markdown tables and writes ``benchmarks/results/dask.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import distributed
import polars as pl

import atrepo
from atrepo.client import Client
from atrepo.retry import RateLimit
from atrepo.sandbox import Sandbox
from bench_read import machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "dask.json"
WINDOW_S = 10.0   # the window of the peak request rate per origin
TICKS = os.sysconf("SC_CLK_TCK")


def instrument(cache_root: str, dask_worker: Any = None) -> str:
    """Count every request this process sends; give it a cache directory of its own.

    Runs in the driver and, through ``client.run``, in each worker (before the export makes
    the worker's client, so the cache directory applies). The log is a list on the httpx
    module: ``(unix time, host:port, method)`` per request.
    """
    import httpx

    name = "driver" if dask_worker is None else f"worker-{dask_worker.name}"
    os.environ["ATREPO_CACHE_DIR"] = f"{cache_root}/{name}"
    transport: Any = httpx.HTTPTransport
    if not hasattr(transport, "bench_original"):
        transport.bench_original = transport.handle_request
    original = transport.bench_original
    log: list[tuple[float, str, str]] = []

    def counted(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        log.append((time.time(), f"{request.url.host}:{request.url.port}",
                    request.url.path.rsplit("/", 1)[-1]))
        return original(self, request)

    transport.handle_request = counted
    httpx.bench_log = log   # type: ignore[attr-defined]
    return name


def collect_log() -> list[tuple[float, str, str]]:
    """This process's request log (see :func:`instrument`), emptied."""
    import httpx

    log: list[tuple[float, str, str]] = httpx.bench_log   # type: ignore[attr-defined]
    taken = list(log)
    log.clear()
    return taken


def cpu_seconds() -> float:
    """CPU seconds this process has used (user + system)."""
    return time.process_time()


def node_cpu_seconds(pid: int) -> float:
    """CPU seconds of the sandbox's node process and the children it waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICKS


def origins(sb: Sandbox) -> dict[str, str]:
    """Port -> a name: PLC, PDS1.., relay (all on loopback, as localhost or 127.0.0.1)."""
    def port(url: str) -> str:
        return url.rstrip("/").rsplit(":", 1)[1]

    names = {port(sb.plc_url): "PLC", port(sb.relay_url): "relay"}
    names.update({port(url): f"PDS{i + 1}" for i, url in enumerate(sb.pds_urls)})
    return names


def traffic(log: list[tuple[float, str, str]], names: dict[str, str]) -> dict[str, Any]:
    """Requests per origin, their methods, and each origin's peak rate over WINDOW_S."""
    by_origin: dict[str, list[float]] = {}
    methods: dict[str, Counter[str]] = {}
    for when, origin, method in log:
        name = names.get(origin.rsplit(":", 1)[1], origin)
        by_origin.setdefault(name, []).append(when)
        methods.setdefault(name, Counter())["PLC" if method.startswith("did:") else method] += 1
    out: dict[str, Any] = {}
    for name, times in sorted(by_origin.items()):
        times.sort()
        peak, start = 0, 0
        for end, t in enumerate(times):   # the most requests in any WINDOW_S window
            while t - times[start] > WINDOW_S:
                start += 1
            peak = max(peak, end - start + 1)
        out[name] = {"requests": len(times), "methods": dict(methods[name]),
                     "peak_per_s": peak / WINDOW_S,
                     "mean_per_s": len(times) / max(times[-1] - times[0], 1e-9)}
    return out


def source(sb: Sandbox, settings: dict[str, Any], cache: str) -> pl.DataFrame:
    """What a crawl of the relay finds: every listed host's listing, with a host column."""
    with Client(cache_dir=cache, **settings) as client:
        hosts = client.list_hosts(sb.relay_url)
        frames = [client.list_repos(host).with_columns(host=pl.lit(host))
                  for host in hosts.get_column("host")]
    return pl.concat(frames)


def rows(out: Path) -> pl.DataFrame:
    """The dataset's records, by key and CID, sorted (to compare two runs)."""
    return (atrepo.open_dataset(out).records.select("did", "collection", "rkey", "cid")
            .sort("did", "collection", "rkey").collect())


def one_run(sb: Sandbox, frame: pl.DataFrame, root: Path, label: str, workers: int,
            threads: int, settings: dict[str, Any], shard_repos: int) -> dict[str, Any]:
    """One export of ``frame`` into a fresh dataset: here (workers 0) or on a LocalCluster."""
    out, caches = root / f"ds-{label}", str(root / f"cache-{label}")
    names = origins(sb)
    load_start = [round(x, 2) for x in os.getloadavg()]
    instrument(caches)
    collect_log()
    if workers == 0:
        cluster = dask = None
    else:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=threads,
                                           processes=True, dashboard_address=None)
        dask = distributed.Client(cluster)
        dask.run(instrument, caches)
        dask.run(collect_log)
    node0, driver0 = node_cpu_seconds(sb.proc.pid), cpu_seconds()
    workers0 = dask.run(cpu_seconds) if dask else {}
    try:
        with Client(handle_resolver=sb.handle_resolver, plc_url=sb.plc_url, progress=False,
                    **settings) as client:
            start = time.perf_counter()
            report = client.export(frame, out, dask=dask, shard_repos=shard_repos)
            seconds = time.perf_counter() - start
        log = collect_log()
        worker_cpu = 0.0
        if dask is not None:
            worker_cpu = sum(dask.run(cpu_seconds)[w] - workers0[w] for w in workers0)
            for part in dask.run(collect_log).values():
                log.extend(part)
    finally:
        if dask is not None and cluster is not None:
            dask.close()
            cluster.close()
    if report.errors.height:
        raise SystemExit(f"{label}: export failed: {report.errors}")
    return {"label": label, "workers": workers, "threads_per_worker": threads if workers else 0,
            "seconds": seconds, "repos": report.written, "records": report.records,
            "repos_per_s": report.written / seconds, "records_per_s": report.records / seconds,
            "cpu_driver_s": cpu_seconds() - driver0, "cpu_workers_s": worker_cpu,
            "cpu_sandbox_s": node_cpu_seconds(sb.proc.pid) - node0,
            "traffic": traffic(log, names), "load_start": load_start,
            "load_end": [round(x, 2) for x in os.getloadavg()], "out": str(out)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # workers (spawned processes) start from this sys.path: with the checkout on it, they
    # import atrepo even while a rebuild of the compiled core reinstalls the package
    sys.path.insert(0, str(HERE.parent))
    runs: list[dict[str, Any]] = []
    with Sandbox.start(pds_count=3, bulk_accounts=args.accounts, bulk_records=args.records,
                       timeout=3600) as sb, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        progress(f"sandbox: 3 PDSes, {len(sb.accounts)} accounts")
        uncapped = {"rate_limit": None}
        frame = source(sb, uncapped, str(root / "cache-source"))
        plan = [("local", 0, uncapped)]
        plan += [(f"dask-{n}", n, uncapped) for n in args.workers]
        plan += [("local-capped", 0, {}), (f"dask-{args.capped_workers}-capped",
                                             args.capped_workers, {})]
        expected = None
        for label, workers, settings in plan:
            run = one_run(sb, frame, root, label, workers, args.threads, settings,
                          args.shard_repos)
            got = rows(Path(run.pop("out")))
            if expected is None:
                expected = got
            run["same_rows_as_local"] = got.equals(expected)
            if not run["same_rows_as_local"]:
                raise SystemExit(f"{label}: the dataset differs from the local export's")
            runs.append(run)
            progress(json.dumps({k: v for k, v in run.items() if k != "traffic"}))
        listed = frame.height
    limit = RateLimit()
    return {"accounts": args.accounts, "records_per_account": args.records, "pds_count": 3,
            "listed": listed, "shard_repos": args.shard_repos,
            "rate_limit": {"requests": limit.requests, "per": limit.per,
                           "burst": limit.capacity},
            "runs": runs, "machine": machine_info(sys.executable)}


def report(result: dict[str, Any]) -> str:
    lines = [f"### Export of {result['runs'][0]['repos']} repositories on 3 PDSes "
             f"({result['records_per_account']} records each; shards of "
             f"{result['shard_repos']})", "",
             "| run | workers x threads | rate limit | seconds | repos/s | records/s | "
             "CPU s driver / workers / sandbox |", "|---|---|---|---:|---:|---:|---|"]
    for r in result["runs"]:
        where = "here" if not r["workers"] else f"{r['workers']} x {r['threads_per_worker']}"
        capped = "default" if r["label"].endswith("capped") else "none"
        lines.append(f"| {r['label']} | {where} | {capped} | {r['seconds']:.1f} | "
                     f"{r['repos_per_s']:.1f} | {r['records_per_s']:,.0f} | "
                     f"{r['cpu_driver_s']:.0f} / {r['cpu_workers_s']:.0f} / "
                     f"{r['cpu_sandbox_s']:.0f} |")
    origin_names = sorted({o for r in result["runs"] for o in r["traffic"]})
    lines += ["", "Requests per origin (peak requests/s over any 10 s window):", "",
              "| run | " + " | ".join(origin_names) + " |",
              "|---|" + "---:|" * len(origin_names)]
    for r in result["runs"]:
        cells = []
        for o in origin_names:
            t = r["traffic"].get(o)
            cells.append("-" if t is None else f"{t['requests']:,} ({t['peak_per_s']:.1f}/s)")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    def numbers(text: str) -> list[int]:
        return [int(part) for part in text.split(",")]

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=600)
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--workers", type=numbers, default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--shard-repos", type=int, default=50)
    parser.add_argument("--capped-workers", type=int, default=2)
    args = parser.parse_args()
    result = measure(args)
    print(report(result))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
