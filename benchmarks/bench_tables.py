#!/usr/bin/env python3
"""Benchmark ``snap.table("app.bsky.feed.post")`` against what a user would write instead.

    python benchmarks/bench_tables.py --size 1m [--runs 3] [--collection app.bsky.feed.post]

The alternative, measured in the same run on the same corpus::

    snap.records.filter(pl.col("collection") == C)
        .select(pl.col("record").str.json_decode(dtype=dtype))

where ``dtype`` is the collection's declared lexicon schema as ``json_decode`` can read it:
``atrepo.lexicon_schema`` itself cannot be used (``json_decode`` refuses a CID link
``{"$link": ...}`` for a String field), so CID links, bytes and blobs keep their JSON
wrappers and datetimes stay ``Datetime("us", "UTC")`` (``json_decode`` parses those).
That alternative does less than ``table()``: no validation, no problem rows, no ``extra``,
and one bad record makes it raise.

Every case runs in a fresh process, ``--runs`` times (medians), after one untimed warm-up:

* cold -- from ``atrepo.read_car(path)`` to the finished table: what a notebook does.
  ``table()`` decodes only the collection's records; the alternative decodes all of them
  to get ``records`` first.
* warm -- ``records`` already decoded (timed on its own, not counted): the table step alone;
  ``check_pass_warm`` times only the core's pass of ``table()`` (checking every record from
  its CBOR block and writing the typed columns, with the key columns), ``pycheck_pass_warm``
  the checking pass in the Python reference (what ``table()`` runs without the core, before
  its ``json_decode``), for comparison.

cpu s is the process's user + system CPU time over the same span (less disturbed than wall
time by other work on a shared machine; polars may use more than one core); peak RSS is
``ru_maxrss`` of that process (for cold, the process holds nothing else).
Results go to ``benchmarks/results/tables-<size>.json``; a markdown table is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from make_corpus import corpus_dir, parse_size, size_label  # noqa: E402

CASES = {
    "table_cold": "snap.table(C), from read_car",
    "json_decode_cold": "records.filter(C).select(json_decode(dtype)), from read_car",
    "table_warm": "snap.table(C), records already decoded",
    "json_decode_warm": "records.filter(C).select(json_decode(dtype)), records already decoded",
    "check_pass_warm": "table()'s pass in the compiled core alone (checks, typed columns)",
    "pycheck_pass_warm": "the checking pass in the Python reference, records decoded",
}

CHILD = r"""
import json, resource, sys, time
import polars as pl
import atrepo
from atrepo.lexicon._schema import collection_shape

case, path, collection = sys.argv[1:4]
shape = collection_shape(collection)
dtype = pl.Struct({name: (pl.Datetime("us", "UTC") if field.kind == "datetime" else field.raw)
                   for name, field in shape.fields})

def alternative(snap):
    records = snap.records.filter(pl.col("collection") == collection)
    return records.select(pl.col("record").str.json_decode(dtype=dtype)).unnest("record")

def ours(snap):
    return snap.table(collection)

def check_pass(snap):
    import bisect
    from atrepo._table_check import core_check
    keys, values = snap._walk()
    start = bisect.bisect_left(keys, collection + "/")
    end = bisect.bisect_left(keys, collection + "0", start)
    checked = core_check(snap.blocks, snap.did, keys, values, (start, end), shape, collection,
                         verify_cids=False)
    return checked.keys

def pycheck_pass(snap):
    from atrepo._table_check import Checker
    texts = snap.records.filter(pl.col("collection") == collection)["record"]
    Checker(shape, collection).run(texts)
    return texts.to_frame()

build = {"table": ours, "json": alternative, "check": check_pass,
         "pycheck": pycheck_pass}[case.split("_")[0]]

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

start, cpu_start = time.perf_counter(), cpu()
snap = atrepo.read_car(path)
records_s = None
if case.endswith("warm"):
    snap.records
    records_s = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), cpu()
frame = build(snap)
seconds, cpu_s = time.perf_counter() - start, cpu() - cpu_start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "records_s": records_s,
                  "rows": frame.height,
                  "columns": frame.width, "peak_mb": peak, "worker_peak_mb": children}))
"""


def run_case(case: str, path: Path, collection: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, case, str(path), collection],
                          capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1m", type=parse_size)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--collection", default="app.bsky.feed.post")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default: benchmarks/results/tables-<size>.json)")
    args = parser.parse_args()
    data = corpus_dir(args.size)
    car = data / "repo.car"
    if not car.is_file():
        raise SystemExit(f"no corpus at {data}: run benchmarks/make_corpus.py "
                         f"--sizes {size_label(args.size)}")
    results: dict[str, list[dict[str, float]]] = {}
    cases = [case for case in args.cases.split(",") if case]
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    for case in cases:
        run_case(case, car, args.collection)  # warm-up: page cache, __pycache__
        results[case] = [run_case(case, car, args.collection) for _ in range(args.runs)]
        print(f"{case}: {[round(r['seconds'], 2) for r in results[case]]}", file=sys.stderr)
    rows = {case: {key: statistics.median(r[key] for r in runs)
                   for key in ("seconds", "cpu_s", "peak_mb", "worker_peak_mb", "rows")}
            for case, runs in results.items()}
    warm = [r["records_s"] for case in results if case.endswith("warm")
            for r in results[case]]
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"tables-{size_label(args.size)}.json"
    out.write_text(json.dumps({
        "size": args.size, "collection": args.collection, "runs": args.runs,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results}, indent=2))
    print(f"\n`{args.collection}` of the {size_label(args.size)} corpus "
          f"({int(next(iter(rows.values()))['rows']):,} rows), median of {args.runs} runs"
          + (f"; decoding `records` first (warm cases) took {statistics.median(warm):.1f} s"
             if warm else "") + "\n")
    print("| case | what | wall s | cpu s | peak RSS MB | workers' peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    for case in cases:
        row = rows[case]
        print(f"| {case} | {CASES[case]} | {row['seconds']:.2f} | {row['cpu_s']:.2f} | "
              f"{row['peak_mb']:,.0f} | {row['worker_peak_mb']:,.0f} |")
    for kind in ("cold", "warm"):
        if f"json_decode_{kind}" in rows and f"table_{kind}" in rows:
            ratio = rows[f"json_decode_{kind}"]["seconds"] / rows[f"table_{kind}"]["seconds"]
            cpu = rows[f"json_decode_{kind}"]["cpu_s"] / rows[f"table_{kind}"]["cpu_s"]
            print(f"\n{kind}: json_decode / table() = {ratio:.2f} in wall time, {cpu:.2f} in "
                  "CPU time (> 1: table() faster)")
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
