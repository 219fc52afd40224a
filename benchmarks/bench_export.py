"""Exporting a host into a dataset: throughput, files, memory, scans, and a refresh.

    .venv/bin/python benchmarks/bench_export.py [--accounts 2000] [--records 20]
                                                [--concurrency 1,4,16] [--rss 250,2000]

Against a local sandbox (the reference PLC + PDS) seeded with ``--accounts`` bulk accounts of
``--records`` records each, every run with a fresh cache and dataset:

1. ``Client.export(host, out)`` at each ``--concurrency`` (``max_per_host`` the same, and
   no request-rate limit: the sandbox is on loopback): seconds, repos/s, records/s, Parquet
   files written, dataset MB;
2. peak RSS of an export of the first N repositories for each N of ``--rss``, each in a
   process of its own: the peak reset after the imports (``/proc/self/clear_refs``), so
   it is the export's own (``VmHWM``, Linux), beside the RSS the export started from and,
   at its end, the anonymous and the file-backed parts of the RSS (``RssAnon``,
   ``RssFile``: mapped files such as the caches' SQLite databases), its threads and its
   open files;
3. ``count`` and ``group_by(collection).len()`` over the dataset (``pl.scan_delta``, and
   ``atrepo.open_dataset(out).records`` with the opening included) and over the same rows
   laid out one file per repository and collection (the layout exports had before
   datasets), median of 5;
4. a refresh after 1% of the repositories changed (one new post each) against the full
   export: seconds and bytes read off the wire.

``--compare 101`` instead exports a host of 101 repositories (100 bulk accounts + alice,
``--records`` each) and compares the files against the one-file-per-repository layout:
how many, and their median size.

``--corpus benchmarks/data/100k/repo.car`` measures only the dataset bytes per record of
that corpus repository, whose records follow Bluesky's mix (added as ``corpus``).
``--rss-batch 250`` measures only the peak RSS, with the default batch and with batches of
250 repositories, each also with polars' allocator returning freed memory at once
(``_RJEM_MALLOC_CONF``), and the largest N exported twice in one process (2N repositories;
added as ``rss_batches``).

``--memory`` measures only the peak RSS of step 2, for each N of ``--rss`` on a sandbox of
max(N) bulk accounts, with the peak just before the export's final merge of the tables'
files and that merge's seconds (added as ``memory``).

Every step records the load average at its start and end (the machine may be shared).
``--keep DIR`` works in DIR and leaves the datasets there; ``--rescan DIR`` then measures
the scans again on them (added to the results as ``rescan``).

Prints Markdown tables and writes ``benchmarks/results/export.json`` (a whole run keeps the
sections the single-purpose options added there).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
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
from atrepo.dataset import Batch, DatasetWriter
from atrepo.export import BATCH_REPOS
from atrepo.sandbox import Sandbox
from bench_fetch import NoDns, Traffic
from bench_read import machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "export.json"

RSS_CHILD = """
import json, os, re, sys, time
sys.path.insert(0, sys.argv[1])
from bench_fetch import NoDns, LoopbackOnly
import httpx
import polars, deltalake, atrepo.dataset
from atrepo.client import Client
from atrepo.dataset import _export
plc, pds, cache, out, batch, passes, IDLE_S, names = (
    *sys.argv[2:6], int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), sys.argv[9:])
def status(key):
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\\s+(\\d+)", f.read()).group(1)) / 1024
merges = []   # the peak just before each final merge of the tables' files, and its seconds
def compact_tables(layout, **options):
    peak, start = status("VmHWM"), time.perf_counter()
    removed = merge(layout, **options)
    merges.append({"peak_before_mb": peak, "seconds": time.perf_counter() - start})
    return removed
merge, _export.compact_tables = _export.compact_tables, compact_tables
ends = []
for n in range(passes):   # each pass: the same names, a fresh client, cache and dataset
    http = httpx.Client(transport=LoopbackOnly(), trust_env=False, timeout=120)
    with Client(http=http, dns=NoDns(), plc_url=plc, handle_resolver=pds,
                cache_dir=f"{cache}{n}", progress=False, max_concurrency=8, max_per_host=8,
                rate_limit=None) as client:
        if n == 0:
            import_peak = status("VmHWM")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")   # resets the peak (VmHWM) to the current RSS: the export's own
            before = status("VmRSS")
        report = client.export(names, f"{out}{n}", batch_repos=batch)
    ends.append({"max_rss_mb": status("VmHWM"), "end_rss_anon_mb": status("RssAnon")})
threads, end_anon = len(os.listdir("/proc/self/task")), status("RssAnon")
# deltalake's runtime lets a thread of its blocking pool go after 10 s idle, and its
# allocator returns freed pages over 10 s: what is left then is what the export holds
time.sleep(IDLE_S)
print(json.dumps({"repos": report.written, "batch_repos": batch, "import_peak_mb": import_peak,
                  "threads": threads, "idle_s": IDLE_S,
                  "idle_threads": len(os.listdir("/proc/self/task")),
                  "idle_rss_anon_mb": status("RssAnon"),
                  "open_files": len(os.listdir("/proc/self/fd")),
                  "rss_before_export_mb": before, "max_rss_mb": status("VmHWM"),
                  "end_rss_anon_mb": end_anon, "end_rss_file_mb": status("RssFile"),
                  "passes": ends, "merges": merges}))
"""

# polars' allocator (jemalloc) returns freed pages only after a decay time (10 s); with
# this in a child's environment it returns them at once, so its RSS is what is in use
NO_DECAY = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0"}
# how long --memory lets an export's child idle before its last reading (see RSS_CHILD)
IDLE_S = 12


def _client(sb: Sandbox, cache: str, traffic: Traffic, concurrency: int) -> Client:
    # rate_limit=None: the loopback sandbox is no PDS to be polite to, and the default
    # (3,000 requests per 5 minutes per host) would cap every run at ~5 repositories/s
    return Client(http=traffic.client(), dns=NoDns(), plc_url=sb.plc_url,
                  handle_resolver=sb.pds_url, cache_dir=cache, progress=False,
                  max_concurrency=concurrency, max_per_host=concurrency, rate_limit=None)


def data_files_of(table: Path) -> list[Path]:
    """The Parquet files of one Delta table's newest version."""
    return [Path(uri.removeprefix("file://")) for uri in DeltaTable(table).file_uris()]


def data_files(out: Path) -> list[Path]:
    """The Parquet files of the dataset's newest version (what its readers open)."""
    files = []
    for table in [out / "records", out / "repos", *sorted((out / "tables").iterdir())]:
        files.extend(data_files_of(table))
    return files


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages now (the machine is shared)."""
    return [round(x, 2) for x in os.getloadavg()]


def export_host(sb: Sandbox, out: Path, cache: str, concurrency: int) -> dict[str, Any]:
    traffic = Traffic()
    load_start = load()
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
            "bytes_read": traffic.bytes, "requests": traffic.requests,
            "requests_per_s": traffic.requests / seconds,
            "load_start": load_start, "load_end": load()}


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


def scans(out: Path, flat: Path) -> dict[str, Any]:
    """count and group_by(collection) over the dataset and over one file per repository.

    The dataset is read three ways: ``pl.scan_delta`` on its records table,
    ``atrepo.open_dataset(out).records`` (opening included, as a fresh notebook cell would),
    and ``ds.records`` of a Dataset opened once before (its first query untimed). Every
    result is checked against the per-repository layout's.
    """
    def delta() -> pl.LazyFrame:
        return pl.scan_delta(str(out / "records"))

    def opened() -> pl.LazyFrame:
        return atrepo.open_dataset(out).records

    held = atrepo.open_dataset(out)

    def per_repo() -> pl.LazyFrame:
        return pl.scan_parquet(flat / "**" / "*.parquet", hive_partitioning=True)

    def count(frame: Callable[[], pl.LazyFrame]) -> int:
        return int(frame().select(pl.len()).collect().item())

    def groups(frame: Callable[[], pl.LazyFrame]) -> pl.DataFrame:
        return frame().group_by("collection").len().sort("collection").collect()

    readers = (("dataset", delta), ("open_dataset", opened),
               ("held_dataset", lambda: held.records), ("per_repo", per_repo))
    if len({count(frame) for _, frame in readers}) != 1:
        raise SystemExit("the layouts disagree on the row count")
    if any(not groups(frame).equals(groups(per_repo)) for _, frame in readers):
        raise SystemExit("the layouts disagree on the rows per collection")
    load_start = load()
    result: dict[str, Any] = {"rows": count(per_repo)}
    for name, frame in readers:
        result[f"count_{name}_s"] = _median_seconds(functools.partial(count, frame))
        result[f"group_by_{name}_s"] = _median_seconds(functools.partial(groups, frame))
    return {**result, "load_start": load_start, "load_end": load()}


def peak_rss(sb: Sandbox, names: list[str], batch_repos: int = BATCH_REPOS, *,
             passes: int = 1, env: dict[str, str] | None = None,
             idle_s: int = 0) -> dict[str, Any]:
    """The peak RSS of exporting ``names`` in a child process, ``passes`` times over (each
    pass with a client, cache and dataset of its own), with ``env`` added to its
    environment; then its threads and anonymous RSS after ``idle_s`` seconds idle."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-c", RSS_CHILD, str(HERE), sb.plc_url,
                               sb.pds_url, f"{tmp}/cache", f"{tmp}/out", str(batch_repos),
                               str(passes), str(idle_s), *names],
                              capture_output=True, text=True, check=True,
                              env={**os.environ, **(env or {})})
    return {"names": len(names), "env": env or {},
            **json.loads(done.stdout.splitlines()[-1])}


def refresh(sb: Sandbox, out: Path, cache: str, bulk: list[dict[str, Any]],
            full: dict[str, Any]) -> dict[str, Any]:
    count = max(1, len(bulk) // 100)
    changed = bulk[:: len(bulk) // count][:count]
    for account in changed:
        sb.post(account["handle"], "a change for the refresh")
    traffic = Traffic()
    load_start = load()
    with _client(sb, cache, traffic, full["concurrency"]) as client:
        start = time.perf_counter()
        report = client.export(sb.pds_url, out)
        seconds = time.perf_counter() - start
    return {"changed": len(changed), "written": report.written, "seconds": seconds,
            "bytes_read": traffic.bytes, "requests": traffic.requests,
            "time_vs_full": seconds / full["seconds"],
            "bytes_vs_full": traffic.bytes / full["bytes_read"],
            "load_start": load_start, "load_end": load()}


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


def workdir(keep: Path | None) -> Any:
    """A temporary directory, or ``keep`` (emptied first, and left behind for ``--rescan``)."""
    if keep is None:
        return tempfile.TemporaryDirectory()
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    return contextlib.nullcontext(str(keep))


def measure(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    with Sandbox.start(bulk_accounts=args.accounts, bulk_records=args.records,
                       timeout=3600) as sb, workdir(args.keep) as tmp:
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
        if args.keep is not None:   # the exported state, for --rescan
            shutil.copytree(out, root / "scanned")
        again = refresh(sb, out, str(root / f"cache{last['concurrency']}"), bulk, last)
        progress(str(again))
    return {"accounts": len(bulk), "records_per_account": args.records, "exports": exports,
            "rss": rss, "scans": scan, "refresh": again,
            "machine": machine_info(sys.executable)}


def corpus_bytes(car: Path) -> dict[str, Any]:
    """Dataset bytes and CPU per record of one corpus repository (``make_corpus.py``).

    CPU seconds (all threads) of the two halves of an export's work on a repository once
    its CAR is in: reading it into a batch (what a Dask worker does: ``read_car``, the
    records, ``Batch.add_snapshot`` with the typed tables) and committing the batch (what
    the process owning the dataset does).
    """
    start = time.process_time()
    snap = atrepo.read_car(car)
    batch = Batch()
    batch.add_snapshot(snap, pds="https://pds.example")
    read_cpu = time.process_time() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds"
        start = time.process_time()
        with DatasetWriter(out) as writer:
            writer.commit(batch)
        commit_cpu = time.process_time() - start
        tables = {table.name: sum(p.stat().st_size for p in data_files_of(table))
                  for table in [out / "records", out / "repos", *(out / "tables").iterdir()]}
    records = snap.records.height
    return {"car": str(car), "records": records, "car_bytes": car.stat().st_size,
            "dataset_bytes": sum(tables.values()), "tables": tables,
            "car_bytes_per_record": car.stat().st_size / records,
            "dataset_bytes_per_record": sum(tables.values()) / records,
            "read_cpu_s": read_cpu, "commit_cpu_s": commit_cpu,
            "read_cpu_us_per_record": read_cpu / records * 1e6,
            "commit_cpu_us_per_record": commit_cpu / records * 1e6, "load": load()}


def rss_batches(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Peak RSS for each N of ``--rss``, with the default batch and with ``--rss-batch``;
    each again with polars' allocator returning freed pages at once (:data:`NO_DECAY`), and
    the largest N exported twice over in one process (2N repositories) both ways."""
    with Sandbox.start(bulk_accounts=args.accounts, bulk_records=args.records,
                       timeout=3600) as sb:
        bulk = [a["did"] for a in sb.accounts if a["handle"].startswith("bulk")]
        runs = []
        for env in (None, NO_DECAY):
            for batch in (BATCH_REPOS, args.rss_batch):
                for n in args.rss:
                    runs.append(peak_rss(sb, bulk[:n], batch, env=env))
                    progress(str(runs[-1]))
                runs.append(peak_rss(sb, bulk[:max(args.rss)], batch, passes=2, env=env))
                progress(str(runs[-1]))
    return {"runs": runs, "records_per_account": args.records, "load": load()}


def memory(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Peak RSS of exporting the first N bulk repositories, for each N of ``--rss``."""
    with Sandbox.start(bulk_accounts=max(args.rss), bulk_records=args.records,
                       timeout=3600) as sb:
        bulk = [a["did"] for a in sb.accounts if a["handle"].startswith("bulk")]
        runs = []
        for n in args.rss:
            load_start = load()
            runs.append({**peak_rss(sb, bulk[:n], idle_s=IDLE_S), "load_start": load_start,
                         "load_end": load()})
            progress(str(runs[-1]))
    return {"runs": runs, "records_per_account": args.records}


def memory_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["| repositories | peak MB | peak before the final merge MB | merge s | "
             "anonymous at the end MB | threads | open files | "
             f"anonymous / threads {IDLE_S} s later | load |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        (merge,) = r["merges"]
        lines.append(f"| {r['repos']:,} | {r['max_rss_mb']:.0f} | "
                     f"{merge['peak_before_mb']:.0f} | {merge['seconds']:.2f} | "
                     f"{r['end_rss_anon_mb']:.0f} | {r['threads']} | {r['open_files']} | "
                     f"{r['idle_rss_anon_mb']:.0f} / {r['idle_threads']} | "
                     f"{r['load_start'][0]}-{r['load_end'][0]} |")
    return lines


def rescan(keep: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """The scans again, on the dataset and per-repository copy a ``--keep`` run left."""
    flat = keep / "flat"
    scan = {**scans(keep / "scanned", flat),
            "per_repo_files": sum(1 for _ in flat.rglob("*.parquet"))}
    progress(str(scan))
    return scan


def scan_table(s: dict[str, Any]) -> list[str]:
    readers = [("dataset", "`pl.scan_delta`"), ("open_dataset", "`open_dataset(...).records`"),
               ("held_dataset", "`ds.records`, ds held")]
    readers = [(key, name) for key, name in readers if f"count_{key}_s" in s]
    lines = [f"| query | one file per repository ({s['per_repo_files']:,} files) ms | "
             + " | ".join(f"{name} ms | speed-up" for _, name in readers) + " |",
             "|---|---:|" + "---:|---:|" * len(readers)]
    for query in ("count", "group_by"):
        p = s[f"{query}_per_repo_s"]
        cells = [f"{s[f'{query}_{key}_s'] * 1e3:.1f} | {p / s[f'{query}_{key}_s']:.0f}x"
                 for key, _ in readers]
        lines.append(f"| {query} | {p * 1e3:.1f} | " + " | ".join(cells) + " |")
    return lines


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
    lines += ["", "| repositories exported | peak RSS of the imports MB | RSS before the "
                  "export MB | peak RSS during the export MB | threads at the end | open "
                  "files at the end |", "|---:|---:|---:|---:|---:|---:|",
              *(f"| {r['names']} | {r['import_peak_mb']:.0f} | {r['rss_before_export_mb']:.0f} "
                f"| {r['max_rss_mb']:.0f} | {r['threads']} | {r['open_files']} |"
                for r in result["rss"])]
    lines += ["", *scan_table(result["scans"])]
    r = result["refresh"]
    lines += ["", f"Refresh after {r['changed']} repositories changed: {r['written']} "
                  f"fetched in {r['seconds']:.2f} s ({r['time_vs_full']:.1%} of the full "
                  f"export's time), {r['bytes_read']:,} bytes read "
                  f"({r['bytes_vs_full']:.1%} of its bytes), {r['requests']} requests."]
    return "\n".join(lines) + "\n"


SECTIONS = ("corpus", "rss_batches", "memory", "rescan")   # what the options add


def _results() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def add_section(key: str, value: dict[str, Any]) -> dict[str, Any]:
    """Add (or replace) one section of the results file, keeping the rest; return it."""
    assert key in SECTIONS
    RESULTS.write_text(json.dumps({**_results(), key: value}, indent=2) + "\n")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--concurrency", default="1,4,16",
                        type=lambda text: [int(part) for part in text.split(",")])
    parser.add_argument("--rss", default="250,2000",
                        type=lambda text: [int(part) for part in text.split(",")])
    parser.add_argument("--compare", type=int, choices=[101],
                        help="the 101-repository file comparison instead")
    parser.add_argument("--keep", type=Path, help="work in this directory and leave it")
    parser.add_argument("--rescan", type=Path,
                        help="only the scans, on what a --keep run left there; they are "
                             "added to the results as `rescan`")
    parser.add_argument("--rss-batch", type=int, metavar="REPOS",
                        help="only the peak RSS, with the default batch and with batches of "
                             "REPOS repositories; added to the results as `rss_batches`")
    parser.add_argument("--memory", action="store_true",
                        help="only the peak RSS of an export of N repositories for each N "
                             "of --rss, with the peak before the final merge; added to the "
                             "results as `memory`")
    parser.add_argument("--corpus", type=Path, metavar="CAR",
                        help="only the dataset bytes per record of one corpus repository "
                             "(benchmarks/data/100k/repo.car); added as `corpus`")
    args = parser.parse_args()

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.corpus:
        added = add_section("corpus", corpus_bytes(args.corpus))
        print(json.dumps(added, indent=2))
        return
    if args.rss_batch:
        added = add_section("rss_batches", {**rss_batches(args, progress),
                                            "machine": machine_info(sys.executable)})
        print("\n".join(f"| {r['repos'] * len(r['passes'])} | {r['batch_repos']} "
                        f"| {'no decay' if r['env'] else 'default'} | {r['max_rss_mb']:.0f} "
                        f"| {r['end_rss_anon_mb']:.0f} |" for r in added["runs"]))
        return
    if args.memory:
        added = add_section("memory", {**memory(args, progress),
                                       "machine": machine_info(sys.executable)})
        print("\n".join(memory_table(added["runs"])))
        return
    if args.rescan:
        added = add_section("rescan", {**rescan(args.rescan, progress),
                                       "machine": machine_info(sys.executable)})
        print("\n".join(scan_table(added)))
        return
    result = compare(args, progress) if args.compare else measure(args, progress)
    print(report(result))
    RESULTS.parent.mkdir(exist_ok=True)
    if args.compare:
        RESULTS.with_name("export-101.json").write_text(json.dumps(result, indent=2) + "\n")
        return
    # a whole run replaces the export's measurements; the sections the single-purpose
    # options added stay, each with its own machine and load
    kept = {key: value for key, value in _results().items() if key in SECTIONS}
    RESULTS.write_text(json.dumps({**result, **kept}, indent=2) + "\n")


if __name__ == "__main__":
    main()
