"""Exporting a host into a dataset: throughput, files, memory, scans, and a refresh.

    .venv/bin/python benchmarks/bench_export.py [--accounts 1000] [--records 20]
                                                [--concurrency 1,4,16] [--rss 250,1000]

Against a local sandbox (the reference PLC + PDS) seeded with ``--accounts`` bulk accounts of
``--records`` records each, every run with a fresh cache and dataset:

1. ``Client.export(host, out)`` at each ``--concurrency`` (``max_per_host`` the same, and
   no request-rate limit: the sandbox is on loopback): seconds, repos/s, records/s, Parquet
   files written, dataset MB;
2. peak RSS of an export of the first N repositories for each N of ``--rss``, each in a
   process of its own (``ru_maxrss``);
3. ``count`` and ``group_by(collection).len()`` over the dataset (``pl.scan_delta``) and
   over the same rows laid out one file per repository and collection (the layout exports
   had before datasets), median of 5;
4. a refresh after 1% of the repositories changed (one new post each) against the full
   export: seconds and bytes read off the wire.

``--compare 101`` instead exports a host of 101 repositories (100 bulk accounts + alice,
``--records`` each) and compares the files against the one-file-per-repository layout:
how many, and their median size.

Prints Markdown tables and writes ``benchmarks/results/export.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable

import atrepo
from atrepo.client import Client
from atrepo.sandbox import Sandbox
from bench_fetch import NoDns, Traffic
from bench_read import machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "export.json"

RSS_CHILD = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from bench_fetch import NoDns, LoopbackOnly
import httpx
from atrepo.client import Client
plc, pds, cache, out, names = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
http = httpx.Client(transport=LoopbackOnly(), trust_env=False, timeout=120)
with Client(http=http, dns=NoDns(), plc_url=plc, handle_resolver=pds, cache_dir=cache,
            progress=False, max_concurrency=8, max_per_host=8, rate_limit=None) as client:
    report = client.export(names, out)
print(json.dumps({"repos": report.written,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _client(sb: Sandbox, cache: str, traffic: Traffic, concurrency: int) -> Client:
    # rate_limit=None: the loopback sandbox is no PDS to be polite to, and the default
    # (3,000 requests per 5 minutes per host) would cap every run at ~5 repositories/s
    return Client(http=traffic.client(), dns=NoDns(), plc_url=sb.plc_url,
                  handle_resolver=sb.pds_url, cache_dir=cache, progress=False,
                  max_concurrency=concurrency, max_per_host=concurrency, rate_limit=None)


def data_files(out: Path) -> list[Path]:
    """The Parquet files of the dataset's newest version (what its readers open)."""
    files = []
    for table in [out / "records", out / "repos", *sorted((out / "tables").iterdir())]:
        files.extend(Path(uri.removeprefix("file://")) for uri in DeltaTable(table).file_uris())
    return files


def export_host(sb: Sandbox, out: Path, cache: str, concurrency: int) -> dict[str, Any]:
    traffic = Traffic()
    with _client(sb, cache, traffic, concurrency) as client:
        start = time.perf_counter()
        report = client.export(sb.pds_url, out)
        seconds = time.perf_counter() - start
    if report.errors.height:
        raise SystemExit(f"export failed: {report.errors}")
    files = data_files(out)
    return {"concurrency": concurrency, "seconds": seconds, "repos": report.written,
            "records": report.records, "files": len(files), "commits": report.commits,
            "dataset_mb": sum(p.stat().st_size for p in files) / 1e6,
            "bytes_read": traffic.bytes, "requests": traffic.requests}


def per_repo_layout(out: Path, target: Path) -> list[Path]:
    """The same rows as before datasets: one file per repository and collection."""
    records = atrepo.open_dataset(out).records.collect()
    written = []
    for (collection, did), part in records.group_by("collection", "did"):
        folder = target / f"collection={collection}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{str(did).replace(':', '_')}.parquet"
        part.drop("collection").write_parquet(path)
        written.append(path)
    return written


def _median_seconds(call: Callable[[], Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scans(out: Path, flat: Path) -> dict[str, float]:
    """count and group_by(collection) over the dataset and over one file per repository."""
    def dataset() -> pl.LazyFrame:
        return pl.scan_delta(str(out / "records"))

    def per_repo() -> pl.LazyFrame:
        return pl.scan_parquet(flat / "**" / "*.parquet", hive_partitioning=True)

    return {
        "count_dataset_s": _median_seconds(lambda: dataset().select(pl.len()).collect()),
        "count_per_repo_s": _median_seconds(lambda: per_repo().select(pl.len()).collect()),
        "group_by_dataset_s": _median_seconds(
            lambda: dataset().group_by("collection").len().collect()),
        "group_by_per_repo_s": _median_seconds(
            lambda: per_repo().group_by("collection").len().collect()),
    }


def peak_rss(sb: Sandbox, names: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-c", RSS_CHILD, str(HERE), sb.plc_url,
                               sb.pds_url, f"{tmp}/cache", f"{tmp}/out", *names],
                              capture_output=True, text=True, check=True)
    return {"names": len(names), **json.loads(done.stdout.splitlines()[-1])}


def refresh(sb: Sandbox, out: Path, cache: str, bulk: list[dict[str, Any]],
            full: dict[str, Any]) -> dict[str, Any]:
    count = max(1, len(bulk) // 100)
    changed = bulk[:: len(bulk) // count][:count]
    for account in changed:
        sb.post(account["handle"], "a change for the refresh")
    traffic = Traffic()
    with _client(sb, cache, traffic, full["concurrency"]) as client:
        start = time.perf_counter()
        report = client.export(sb.pds_url, out)
        seconds = time.perf_counter() - start
    return {"changed": len(changed), "written": report.written, "seconds": seconds,
            "bytes_read": traffic.bytes, "requests": traffic.requests,
            "time_vs_full": seconds / full["seconds"],
            "bytes_vs_full": traffic.bytes / full["bytes_read"]}


def file_sizes(paths: list[Path]) -> dict[str, Any]:
    sizes = [p.stat().st_size for p in paths]
    return {"files": len(sizes), "median_kb": statistics.median(sizes) / 1024,
            "total_mb": sum(sizes) / 1e6}


def compare(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    with Sandbox.start(bulk_accounts=100, bulk_records=args.records, timeout=1800) as sb, \
            tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = export_host(sb, root / "ds", str(root / "cache"), 8)
        progress(f"exported {run['repos']} repositories, {run['records']:,} records")
        new = file_sizes(data_files(root / "ds"))
        old = file_sizes(per_repo_layout(root / "ds", root / "flat"))
        return {"repos": run["repos"], "records": run["records"], "dataset": new,
                "per_repository": old, "machine": machine_info(sys.executable)}


def measure(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    with Sandbox.start(bulk_accounts=args.accounts, bulk_records=args.records,
                       timeout=3600) as sb, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bulk = [a for a in sb.accounts if a["handle"].startswith("bulk")]
        progress(f"sandbox: {len(bulk)} bulk accounts x {args.records} records")
        exports = []
        for concurrency in args.concurrency:
            exports.append(export_host(sb, root / f"ds{concurrency}",
                                       str(root / f"cache{concurrency}"), concurrency))
            progress(str(exports[-1]))
        rss = [peak_rss(sb, [a["did"] for a in bulk[:n]]) for n in args.rss]
        progress(str(rss))
        last = exports[-1]
        out = root / f"ds{last['concurrency']}"
        flat = per_repo_layout(out, root / "flat")
        scan = {**scans(out, root / "flat"), "per_repo_files": len(flat)}
        progress(str(scan))
        again = refresh(sb, out, str(root / f"cache{last['concurrency']}"), bulk, last)
        progress(str(again))
    return {"accounts": len(bulk), "records_per_account": args.records, "exports": exports,
            "rss": rss, "scans": scan, "refresh": again,
            "machine": machine_info(sys.executable)}


def report(result: dict[str, Any]) -> str:
    if "per_repository" in result:
        lines = [f"### {result['repos']} repositories, {result['records']:,} records", "",
                 "| layout | files | median file KB | total MB |", "|---|---:|---:|---:|"]
        for name, key in (("dataset", "dataset"), ("one file per repository and collection",
                                                    "per_repository")):
            f = result[key]
            lines.append(f"| {name} | {f['files']:,} | {f['median_kb']:.1f} | "
                         f"{f['total_mb']:.2f} |")
        return "\n".join(lines) + "\n"
    lines = [f"### Export of {result['accounts']} repositories", "",
             "| max_concurrency | seconds | repos/s | records/s | files | commits | dataset MB |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for e in result["exports"]:
        lines.append(f"| {e['concurrency']} | {e['seconds']:.1f} | "
                     f"{e['repos'] / e['seconds']:.1f} | {e['records'] / e['seconds']:,.0f} | "
                     f"{e['files']} | {e['commits']} | {e['dataset_mb']:.2f} |")
    lines += ["", "| repositories exported | peak RSS MB |", "|---:|---:|",
              *(f"| {r['names']} | {r['max_rss_mb']:.0f} |" for r in result["rss"])]
    s = result["scans"]
    lines += ["", f"| query | dataset s | one file per repository ({s['per_repo_files']:,} "
                  "files) s | speed-up |", "|---|---:|---:|---:|"]
    for name in ("count", "group_by"):
        d, p = s[f"{name}_dataset_s"], s[f"{name}_per_repo_s"]
        lines.append(f"| {name} | {d:.4f} | {p:.4f} | {p / d:.0f}x |")
    r = result["refresh"]
    lines += ["", f"Refresh after {r['changed']} repositories changed: {r['written']} "
                  f"fetched in {r['seconds']:.2f} s ({r['time_vs_full']:.1%} of the full "
                  f"export's time), {r['bytes_read']:,} bytes read "
                  f"({r['bytes_vs_full']:.1%} of its bytes), {r['requests']} requests."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--concurrency", default="1,4,16",
                        type=lambda text: [int(part) for part in text.split(",")])
    parser.add_argument("--rss", default="250,1000",
                        type=lambda text: [int(part) for part in text.split(",")])
    parser.add_argument("--compare", type=int, choices=[101],
                        help="the 101-repository file comparison instead")
    args = parser.parse_args()

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = compare(args, progress) if args.compare else measure(args, progress)
    print(report(result))
    RESULTS.parent.mkdir(exist_ok=True)
    name = RESULTS.with_name("export-101.json") if args.compare else RESULTS
    name.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
