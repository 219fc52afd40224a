#!/usr/bin/env python3
"""Measure the compiled core: peak memory of a read, the pruned read against one sha-256,
and where the time of a read goes.

    python benchmarks/bench_core.py --size 1m [--runs 3] [--pruned-only] [--against DIR]

Three measurements, each in fresh processes, run alternately so that all of them meet the
same machine:

* ``read``: ``atrepo.read_car(path).records`` alone (no digest): wall, CPU, peak RSS
  (``ru_maxrss``) and the frame's ``estimated_size()``; the issue's bound is peak RSS <=
  frame + 256 MB.
* ``pruned``: ``read_car(path, collections=["app.bsky.actor.profile"],
  mem_limit_mb=64).records`` against ``sha256``: a process that hashes the file once with
  ``hashlib`` (read in 1 MiB pieces). Both are whole processes; the pruned read's own time
  (after imports) is printed too.
* ``phases``: in one process, the CPU and wall time of indexing, walking and decoding.
* ``imports``: what the read's imports cost, from ``python -X importtime`` of ``import
  atrepo; atrepo.read_car(path).records`` on the 10k corpus (best of the runs, per package:
  its cumulative time where it was first imported), and which of the modules that a read
  should not need were loaded.

``--pruned-only`` runs just the pruned read against the sha-256 (and the imports), for more
alternating rounds in less time. ``--against DIR`` times the pruned read, a whole read of the
10k corpus and the imports of another tree too, against this one's, in the same rounds:
``DIR`` holds an ``atrepo/`` package, say an earlier revision (``git archive REV atrepo |
tar -x -C DIR`` and a copy of the built ``atrepo/_core.abi3.so``); its processes start in
``DIR``, so that package is the one imported.

Every process may cache its bytecode, as an installed
package does: with ``PYTHONDONTWRITEBYTECODE`` set, each one would compile atrepo's modules
again (about 40 ms of a read's imports), so the variable is not passed on.

Results go to ``benchmarks/results/core-<size>.json`` (``core-<size>-pruned.json``) and a
markdown summary is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_read import machine_info  # noqa: E402
from make_corpus import corpus_dir, parse_size, size_label  # noqa: E402

READ = """
import json, sys, time
t = time.perf_counter()
import atrepo
snap = atrepo.read_car(sys.argv[1])
frame = snap.records
inner = time.perf_counter() - t
print(json.dumps({"frame_mb": frame.estimated_size() / 2**20, "rows": frame.height,
                  "inner_s": inner, "accelerated": atrepo.accelerated}))
"""
PRUNED = """
import json, sys, time
t = time.perf_counter()
import atrepo
import atrepo.snapshot
imported = time.perf_counter()
snap = atrepo.read_car(sys.argv[1], collections=["app.bsky.actor.profile"], mem_limit_mb=64)
frame = snap.records
print(json.dumps({"rows": frame.height, "inner_s": time.perf_counter() - imported,
                  "imports_s": imported - t}))
"""
SHA256 = """
import hashlib, json, sys, time
t = time.perf_counter()
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    while block := f.read(1 << 20):
        h.update(block)
print(json.dumps({"inner_s": time.perf_counter() - t, "digest": h.hexdigest()[:16]}))
"""
PHASES = """
import json, sys, time
import polars as pl
import atrepo
from atrepo.cid import raw_cid
from atrepo.snapshot import check_commit
marks = [(time.perf_counter(), time.process_time())]
car = atrepo.car.read_car(sys.argv[1])
marks.append((time.perf_counter(), time.process_time()))
_cid, commit, _ = check_commit(car)
tree = car.core_car().walk(raw_cid(commit.data))
marks.append((time.perf_counter(), time.process_time()))
columns, _problems = car.core_car().records(commit.did, *tree.views())
frame = pl.DataFrame(columns)
marks.append((time.perf_counter(), time.process_time()))
names = ["index", "walk", "records"]
print(json.dumps({name: {"wall_s": b[0] - a[0], "cpu_s": b[1] - a[1]}
                  for name, a, b in zip(names, marks, marks[1:])}))
"""


IMPORTED = """
import sys, atrepo
atrepo.read_car(sys.argv[1]).records
print(__import__("json").dumps(sorted(sys.modules)))
"""
# the modules whose import time is reported, and those a read should never load
IMPORT_COSTS = ["polars", "multiformats", "atrepo.tables", "atrepo.mst", "atrepo.mst._walk",
                "cbor2", "orjson", "libipld", "atrepo._parallel", "atrepo._progress",
                "cryptography"]
NOT_LOADED = ["cryptography", "tqdm", "pydantic", "httpx", "diskcache", "dns", "deltalake",
              "multiformats", "atrepo.mst._walk", "atrepo._parallel", "atrepo._progress",
              "orjson"]
# the environment of every measured process: bytecode cached, as for an installed package
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def import_times(python: str, car: Path, runs: int, cwd: Path = ROOT) -> dict:
    """Best-of-``runs`` import times (s) of a read, per package of :data:`IMPORT_COSTS` and
    in all (the sum over the top-level imports), and the :data:`NOT_LOADED` packages seen."""
    best: dict[str, float] = {}
    loaded: set[str] = set()
    for _ in range(runs):
        proc = subprocess.run([python, "-X", "importtime", "-c", IMPORTED, str(car)],
                              capture_output=True, text=True, check=True, cwd=cwd, env=ENV)
        loaded |= set(json.loads(proc.stdout.strip().splitlines()[-1]))
        seen: dict[str, float] = {"all": 0.0}
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "[us]" in line:
                continue
            _self, cumulative, name = line[len("import time:"):].split("|")
            if not name.startswith("  "):  # a top-level import (no indent past the one space)
                seen["all"] += int(cumulative) / 1e6
            seen.setdefault(name.strip(), int(cumulative) / 1e6)
        for name in [*IMPORT_COSTS, "all"]:
            best[name] = min(best.get(name, float("inf")), seen.get(name, 0.0))
    return {"seconds": best, "unwanted_loaded": sorted(loaded & set(NOT_LOADED))}


def timed(python: str, code: str, path: Path, cwd: Path = ROOT) -> dict:
    """One process: the dict it prints, with its wall, CPU and peak RSS (wait4 of it)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-c", code, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=ENV)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark process failed: {err.decode()[-500:]}")
    result: dict = json.loads(out.decode().strip().splitlines()[-1])
    result.update(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
                  maxrss_mb=usage.ru_maxrss / 1024)
    return result


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1m")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pruned-only", action="store_true",
                    help="only the pruned read against the sha-256, and the imports")
    ap.add_argument("--against", type=Path, default=None,
                    help="a directory holding another atrepo/ to time the pruned read of too")
    default_py = ROOT / ".venv" / "bin" / "python"
    ap.add_argument("--python", default=str(default_py) if default_py.exists() else sys.executable)
    args = ap.parse_args()
    label = size_label(parse_size(args.size))
    car = corpus_dir(label) / "repo.car"
    if not car.is_file():
        print(f"no corpus: run benchmarks/make_corpus.py --sizes {label}", file=sys.stderr)
        return 2
    machine = machine_info(args.python)
    small = corpus_dir("10k") / "repo.car"
    cases = {"pruned": (PRUNED, ROOT, car), "sha256": (SHA256, ROOT, car)}
    if not args.pruned_only:
        cases = {"read": (READ, ROOT, car), **cases}
    if args.against:
        against = args.against.resolve()
        cases.update(pruned_against=(PRUNED, against, car), read_10k=(READ, ROOT, small),
                     read_10k_against=(READ, against, small))
    for code, cwd, path in cases.values():  # warm-up: page cache, __pycache__
        timed(args.python, code, path, cwd)
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (code, cwd, path) in cases.items():
            runs[name].append(timed(args.python, code, path, cwd))
    pruned, sha = runs["pruned"], runs["sha256"]
    summary: dict = {
        "size": label, "car_bytes": car.stat().st_size, "machine": machine,
        "pruned": {key: median(pruned, key)
                   for key in ("wall_s", "cpu_s", "maxrss_mb", "inner_s", "imports_s")},
        "sha256": {key: median(sha, key) for key in ("wall_s", "cpu_s", "inner_s")},
        "runs": runs,
    }
    if not args.pruned_only:
        reads = runs["read"]
        phases = [timed(args.python, PHASES, car) for _ in range(args.runs)]
        summary["read"] = {"wall_s": median(reads, "wall_s"), "cpu_s": median(reads, "cpu_s"),
                           "maxrss_mb": median(reads, "maxrss_mb"),
                           "frame_mb": reads[0]["frame_mb"],
                           "accelerated": reads[0]["accelerated"]}
        summary["phases"] = {name: {k: statistics.median(p[name][k] for p in phases)
                                    for k in ("wall_s", "cpu_s")}
                             for name in ("index", "walk", "records")}
        runs["phases"] = phases
    imports = import_times(args.python, small, max(args.runs, 5))
    summary["imports"] = imports
    if args.against:
        summary["read_10k"] = {key: median(runs["read_10k"], key) for key in ("wall_s", "cpu_s")}
        summary["against"] = {
            "tree": str(against),
            "pruned": {key: median(runs["pruned_against"], key)
                       for key in ("wall_s", "cpu_s", "maxrss_mb", "inner_s", "imports_s")},
            "read_10k": {key: median(runs["read_10k_against"], key)
                         for key in ("wall_s", "cpu_s")},
            "imports": import_times(args.python, small, max(args.runs, 5), against)}
    suffix = "-pruned" if args.pruned_only else ""
    out = HERE / "results" / f"core-{label}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    p, s = summary["pruned"], summary["sha256"]
    print(f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['python']}; load "
          f"average at start {', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'] or [])}"
          f"; median of {args.runs} alternating runs.\n")
    print("| measurement | wall s | cpu s | peak RSS MB | notes |")
    print("|---|---:|---:|---:|---|")
    if "read" in summary:
        r = summary["read"]
        print(f"| read + records ({label}) | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
              f"{r['maxrss_mb']:.0f} | frame {r['frame_mb']:.0f} MB; bound frame + 256 = "
              f"{r['frame_mb'] + 256:.0f} MB |")
    print(f"| pruned read (profile, mem_limit_mb=64) | {p['wall_s']:.2f} | {p['cpu_s']:.2f} | "
          f"{p['maxrss_mb']:.0f} | {p['inner_s']:.2f} s after {p['imports_s']:.2f} s of imports |")
    print(f"| sha-256 of the file (hashlib) | {s['wall_s']:.2f} | {s['cpu_s']:.2f} | – | "
          f"{s['inner_s']:.2f} s hashing |")
    for name, v in summary.get("phases", {}).items():
        print(f"| phase: {name} | {v['wall_s']:.2f} | {v['cpu_s']:.2f} | – | in one process |")
    if args.against:
        a, r, ra = summary["against"]["pruned"], summary["read_10k"], summary["against"]["read_10k"]
        print(f"| pruned read of {args.against} | {a['wall_s']:.2f} | {a['cpu_s']:.2f} | "
              f"{a['maxrss_mb']:.0f} | {a['inner_s']:.2f} s after {a['imports_s']:.2f} s of "
              f"imports; imports of its 10k read "
              f"{summary['against']['imports']['seconds']['all'] * 1000:.0f} ms in all |")
        print(f"| read + records (10k) | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | – | "
              "whole process |")
        print(f"| read + records (10k) of {args.against} | {ra['wall_s']:.2f} | "
              f"{ra['cpu_s']:.2f} | – | whole process |")
    rounds = ", ".join(f"{a['wall_s']:.2f}/{b['wall_s']:.2f}" for a, b in zip(pruned, sha))
    wins = sum(a["wall_s"] <= b["wall_s"] for a, b in zip(pruned, sha))
    print(f"\npruned/sha-256 wall s, round by round: {rounds} (pruned <= sha-256 in {wins} of "
          f"{len(pruned)})")
    costs = ", ".join(f"{name} {seconds * 1000:.0f} ms"
                      for name, seconds in imports["seconds"].items() if name != "all")
    print(f"\nimports of a 10k read (best of {max(args.runs, 5)}): "
          f"{imports['seconds']['all'] * 1000:.0f} ms in all; {costs}; loaded of "
          f"{', '.join(NOT_LOADED)}: {', '.join(imports['unwanted_loaded']) or 'none'}")
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
