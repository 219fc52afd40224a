#!/usr/bin/env python3
"""Generate the signed reference repositories the benchmarks read.

    python benchmarks/make_corpus.py [--sizes 10k,100k,1m] [--changes 1000] [--seed bench]

Each size is written to ``benchmarks/data/<label>/`` (e.g. ``benchmarks/data/100k/``) by the
project's node generator ``atrepo/_reference/gen_repo.mjs`` (run with that directory as cwd):
``repo.car``, ``truth.json`` and ``records.tsv`` (see atrepo/_reference/README.md).  With
``--changes K`` the generator also applies K random writes as a second commit and writes
``repo2.car``, ``records2.tsv``, ``truth2.json``, ``since.car`` and ``diff.json`` (used by the diff
benchmark).  Outputs are deterministic for a given seed; ``repo.car`` does not depend on
``--changes``.

A size is skipped when its ``truth.json`` (and, with ``--changes``, its ``truth2.json``) already
exists.  Output goes to a temporary sibling directory first and is moved in place when the
generator succeeded, so an interrupted run never leaves a half-written corpus behind.

Rough cost (2 vCPUs): 10k ~4 s, 100k ~30 s (1 GB RAM), 1m 5+ min and ~7-14 GB RAM.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REFERENCE = ROOT / "atrepo" / "_reference"
DATA = HERE / "data"
DEFAULT_SIZES = "10k,100k,1m"
NODE_HEAP_MB = 14000


def parse_size(label: str) -> int:
    """'10k' -> 10000, '1m' -> 1000000, '2500' -> 2500."""
    s = label.strip().lower()
    mult = 1
    if s.endswith("k"):
        mult, s = 1000, s[:-1]
    elif s.endswith("m"):
        mult, s = 1_000_000, s[:-1]
    try:
        n = int(float(s) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {label!r} (use e.g. 10k, 100k, 1m)") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"size must be >= 1: {label!r}")
    return n


def size_label(n: int) -> str:
    """Canonical directory name: 10000 -> '10k', 1000000 -> '1m', 2500 -> '2500'."""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def corpus_dir(label_or_n: str | int) -> Path:
    n = parse_size(label_or_n) if isinstance(label_or_n, str) else label_or_n
    return DATA / size_label(n)


def is_complete(out: Path, changes: int) -> bool:
    if not (out / "truth.json").is_file() or not (out / "repo.car").is_file():
        return False
    if changes:
        t2 = out / "truth2.json"
        if not t2.is_file():
            return False
        try:
            counts = json.loads(t2.read_text()).get("change_counts", {})
        except (OSError, ValueError):
            return False
        if sum(counts.values()) != changes:
            return False
    return True


def generate(n: int, seed: str, changes: int) -> Path:
    out = corpus_dir(n)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    cmd = ["node", f"--max-old-space-size={NODE_HEAP_MB}", "gen_repo.mjs",
           "--records", str(n), "--seed", seed, "--out", str(tmp)]
    if changes:
        cmd += ["--changes", str(changes)]
    print(f"[make_corpus] {size_label(n)}: {' '.join(cmd)}  (cwd {REFERENCE})", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REFERENCE)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"[make_corpus] gen_repo.mjs failed for {n} records "
                         f"(exit {proc.returncode})")
    out.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():          # replace file by file: truth*.json last
        if not f.name.startswith("truth"):
            os.replace(f, out / f.name)
    for f in tmp.iterdir():
        os.replace(f, out / f.name)
    tmp.rmdir()
    truth = json.loads((out / "truth.json").read_text())
    print(f"[make_corpus] {size_label(n)}: done in {time.perf_counter() - t0:.1f} s -> {out} "
          f"({truth['record_count']} records, {truth['block_count']} blocks, "
          f"{truth['car_bytes'] / 1e6:.1f} MB)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES,
                    help="comma-separated record counts, e.g. 10k,100k,1m "
                         f"(default {DEFAULT_SIZES})")
    ap.add_argument("--changes", type=int, default=0,
                    help="also write a second commit with K random writes (repo2.car, diff.json)")
    ap.add_argument("--seed", default="bench", help="generator seed (default: bench)")
    ap.add_argument("--force", action="store_true", help="regenerate even if truth.json exists")
    args = ap.parse_args(argv)
    if args.changes < 0:
        ap.error("--changes must be >= 0")
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if not (REFERENCE / "node_modules").is_dir():
        print(f"[make_corpus] {REFERENCE}/node_modules is missing: run `npm ci` there first",
              file=sys.stderr)
        return 2
    DATA.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        out = corpus_dir(n)
        if not args.force and is_complete(out, args.changes):
            done = "truth.json" + (" and truth2.json" if args.changes else "")
            print(f"[make_corpus] {size_label(n)}: {out} has {done}, skipping", flush=True)
            continue
        generate(n, args.seed, args.changes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
