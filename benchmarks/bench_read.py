#!/usr/bin/env python3
"""Benchmark reading a whole repository CAR: atrepo against its Python peers.

    python benchmarks/bench_read.py --size 100k [--runs 3] [--only a,b] [--python PY]

Each contender is a script in ``benchmarks/contenders/`` doing the full job in a fresh process
(interpreter start, imports, reading the CAR, walking the MST, decoding every record, teardown)
and printing one JSON line ``{"records", "digest", "decoded"}``.  Every contender's script is
run once untimed (warm-up: page cache, ``__pycache__``), then the ``--runs`` timed runs go
round-robin over the contenders, so all of them meet the same machine; the table shows
medians. Every process may cache its bytecode, as an installed package does (the peers' are
compiled when pip installs them): ``PYTHONDONTWRITEBYTECODE`` is not passed on, or each
atrepo process would compile its modules again.

* wall s      -- ``time.perf_counter()`` around ``Popen`` .. ``os.wait4``.
* peak RSS MB -- ``ru_maxrss`` from ``os.wait4`` of exactly that child.  On Linux this is the max
                 over the child and the descendants it waited for (not their sum).
* tree RSS MB -- peak of the *summed* RSS of the child and all its descendants, sampled with
                 psutil every ``--sample-ms`` (atrepo decodes in worker processes, which
                 ``ru_maxrss`` does not add up).  Sampling can miss short peaks.
* cpu s       -- user + system CPU time of the child and its waited-for descendants.
* correct?    -- ``records`` and ``digest`` equal the truth from ``records.tsv`` (the profile
                 contender is checked against the ``app.bsky.actor.profile`` lines only), and
                 every record was decoded.
* vs atrepo   -- contender wall time / ``atrepo_records`` wall time (> 1: atrepo is faster);
                 *cpu vs atrepo* the same for CPU time.

Results go to ``benchmarks/results/read-<size>.json``; a markdown table for
docs/performance.md is printed at the end.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONTENDERS_DIR = HERE / "contenders"
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from make_corpus import corpus_dir, parse_size, size_label  # noqa: E402

PROFILE = "app.bsky.actor.profile"
BASELINE = "atrepo_records"

# name -> (extra args, collection the result is checked against (None: all), description)
CONTENDERS: dict[str, tuple[list[str], str | None, str]] = {
    "atrepo_records": ([], None, "atrepo.read_car(path).records (JSON text per record, CIDs "
                                 "checked; the compiled core when built)"),
    "atrepo_pure": ([], None, "the same with ATREPO_PURE_PYTHON=1 (the pure Python path)"),
    "atrepo_profile": (["--collection", PROFILE], PROFILE,
                       "atrepo.read_car(path, collections=[profile], mem_limit_mb=64).records"),
    "libipld_walk": ([], None, "libipld.decode_car + hand-written MST walk"),
    "libipld_frame": ([], None, "libipld_walk, then the same polars frame as atrepo's records "
                                "(atproto JSON text per record, via orjson)"),
    "atproto_sdk": ([], None, "atproto CAR.from_bytes + hand-written MST walk"),
    "atmst_walk": ([], None, "atmst ReadOnlyCARBlockStore/NodeWalker + cbrrr.decode_dag_cbor"),
}

DEP_PACKAGES = ["atrepo", "polars", "cbor2", "orjson", "multiformats", "cryptography", "pydantic",
                "httpx", "diskcache", "tqdm", "dnspython", "libipld"]
PEER_PACKAGES = ["atproto", "atmst", "cbrrr", "psutil"]
# the environment of every contender: bytecode cached, as for an installed package
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


# ----------------------------------------------------------------------------- truth

def load_truth(data: Path) -> dict[str | None, tuple[int, str]]:
    """{None: (count, digest) of all records, collection: (count, digest), ...}."""
    by_coll: dict[str, list[str]] = {}
    with open(data / "records.tsv", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            coll, rkey, cid = line.split("\t")
            by_coll.setdefault(coll, []).append(f"{coll}/{rkey} {cid}")

    def dig(lines: list[str]) -> tuple[int, str]:
        return len(lines), hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()

    truth: dict[str | None, tuple[int, str]] = {c: dig(v) for c, v in by_coll.items()}
    truth[None] = dig([x for v in by_coll.values() for x in v])
    return truth


def load_truth_isolated(data: Path) -> dict[str | None, tuple[int, str]]:
    """:func:`load_truth` computed in a child process.

    Reading 1M lines makes this process large, and a child started by fork counts its
    pre-exec copy of the parent in ``ru_maxrss``: every contender's peak RSS would include
    this process. Keeping the parent small keeps the measurement honest.
    """
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_read as b; "
            "t = b.load_truth(b.Path(sys.argv[2])); "
            "print(json.dumps({('*' if k is None else k): v for k, v in t.items()}))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(data)],
                         capture_output=True, text=True, check=True).stdout
    return {(None if k == "*" else k): tuple(v) for k, v in json.loads(out).items()}


# ----------------------------------------------------------------------------- running

def _tree_rss(pid: int, stop: threading.Event, interval: float, out: list[int]) -> None:
    try:
        import psutil
    except ImportError:
        return
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    peak = 0
    while not stop.is_set():
        try:
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            break
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        peak = max(peak, total)
        stop.wait(interval)
    out.append(peak)


def run_once(python: str, script: Path, car: Path, extra: list[str],
             sample_ms: float) -> dict:
    """Run one contender process; return wall/rss/cpu and its parsed JSON line."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([python, str(script), str(car), *extra],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env=ENV)
        stop, peak = threading.Event(), []
        sampler = None
        if sample_ms > 0:
            sampler = threading.Thread(target=_tree_rss,
                                       args=(proc.pid, stop, sample_ms / 1000, peak), daemon=True)
            sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)   # keep Popen from re-waiting
        stop.set()
        if sampler is not None:
            sampler.join()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    res = {"wall_s": wall, "maxrss_mb": ru.ru_maxrss / 1024,
           "tree_rss_mb": (peak[0] / 2**20) if peak and peak[0] else None,
           "cpu_s": ru.ru_utime + ru.ru_stime, "exit": proc.returncode, "output": None}
    if proc.returncode != 0:
        res["error"] = (stderr.strip().splitlines()[-5:] if stderr.strip()
                        else [f"exit {proc.returncode}"])
        return res
    lines = [ln for ln in stdout.splitlines() if ln.strip().startswith("{")]
    try:
        res["output"] = json.loads(lines[-1])
    except (IndexError, ValueError):
        res["error"] = [f"no JSON line in output: {stdout[-300:]!r}"]
    return res


def check(output: dict | None, truth: tuple[int, str]) -> tuple[bool, str]:
    if output is None:
        return False, "no output"
    problems = []
    if output.get("records") != truth[0]:
        problems.append(f"records {output.get('records')} != {truth[0]}")
    if output.get("digest") != truth[1]:
        problems.append("digest differs")
    if output.get("decoded") != output.get("records"):
        problems.append(f"decoded {output.get('decoded')} of {output.get('records')}")
    return (not problems), "; ".join(problems)


# ----------------------------------------------------------------------------- machine

def machine_info(python: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    probe = (
        "import json, sys, platform\n"
        "from importlib import metadata\n"
        "v = {}\n"
        f"for p in {DEP_PACKAGES + PEER_PACKAGES!r}:\n"
        "    try: v[p] = metadata.version(p)\n"
        "    except metadata.PackageNotFoundError: v[p] = None\n"
        "print(json.dumps({'python': platform.python_version(),"
        " 'implementation': platform.python_implementation(), 'versions': v}))\n"
    )
    info = json.loads(subprocess.run([python, "-c", probe], capture_output=True, text=True,
                                     check=True).stdout)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": ram_gb,
            "os": f"{platform.system()} {platform.release()}",
            "python": f"{info['implementation']} {info['python']}",
            "atrepo_workers_env": os.environ.get("ATREPO_WORKERS"),
            "loadavg_at_start": load, "packages": info["versions"]}


# ----------------------------------------------------------------------------- output

def fmt_table(rows: list[dict], markdown: bool) -> str:
    head = ["contender", "wall s", "records/s", "peak RSS MB", "tree RSS MB", "cpu s",
            "correct?", "vs atrepo", "cpu vs atrepo"]
    body = []
    for r in rows:
        body.append([
            r["name"],
            f"{r['wall_s']:.2f}" if r["wall_s"] is not None else "–",
            f"{r['records_per_s']:,.0f}" if r["records_per_s"] else "–",
            f"{r['maxrss_mb']:,.0f}" if r["maxrss_mb"] is not None else "–",
            f"{r['tree_rss_mb']:,.0f}" if r["tree_rss_mb"] is not None else "–",
            f"{r['cpu_s']:.2f}" if r["cpu_s"] is not None else "–",
            ("yes" if r["correct"] else "NO") if markdown else ("✓" if r["correct"] else "✗"),
            f"{r['ratio']:.2f}×" if r["ratio"] is not None else "–",
            f"{r['cpu_ratio']:.2f}×" if r["cpu_ratio"] is not None else "–",
        ])
    if markdown:
        lines = ["| " + " | ".join(head) + " |",
                 "|---|" + "|".join(["---:"] * 5 + [":---:", "---:", "---:"]) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in
                     enumerate(zip(head, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for row in body:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                             enumerate(zip(row, widths))))
    return "\n".join(out)


def markdown_report(meta: dict, rows: list[dict]) -> str:
    m, c = meta["machine"], meta["corpus"]
    pk = m["packages"]

    def vers(names: list[str]) -> str:
        return ", ".join(f"{n} {pk.get(n) or '—'}" for n in names)

    return "\n".join([
        f"### Reading a {c['records']:,}-record repository "
        f"({c['car_bytes'] / 1e6:.1f} MB CAR, {c['blocks']:,} blocks)",
        "",
        f"Whole processes (interpreter start, imports and teardown included), median of "
        f"{meta['runs']} run{'s' if meta['runs'] != 1 else ''} after one warm-up run, "
        f"{meta['date']}. "
        "Each run enumerates every record as (collection, rkey, CID string, decoded record); "
        "`atrepo_profile` reads only `app.bsky.actor.profile` with `mem_limit_mb=64`. "
        "Peak RSS is `ru_maxrss` of the process (max over it and its workers); "
        "tree RSS is the sampled sum over the process and its workers.",
        "",
        fmt_table(rows, markdown=True),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['os']}, "
        f"{m['python']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_start'] or [])}.",
        f"atrepo and its dependencies: {vers(DEP_PACKAGES)}.",
        f"Peers: {vers(PEER_PACKAGES)}.",
        f"Corpus: `make_corpus.py` (`gen_repo.mjs --records {c['records']} --seed {c['seed']}`), "
        "blocks in the order the reference PDS serves `getRepo`.",
    ])


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", required=True, help="corpus size label: 10k, 100k, 1m, ...")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per contender (default 3)")
    ap.add_argument("--only", default=None, help="comma-separated contender names")
    default_py = ROOT / ".venv" / "bin" / "python"
    ap.add_argument("--python", default=str(default_py) if default_py.exists() else sys.executable,
                    help="interpreter for the contenders (default: the project's .venv)")
    ap.add_argument("--sample-ms", type=float, default=20,
                    help="tree-RSS sampling interval in ms, 0 to disable (default 20)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run")
    ap.add_argument("--out", default=None,
                    help="results JSON (default benchmarks/results/read-<size>.json; "
                         "read-<size>-only-<names>.json with --only)")
    args = ap.parse_args(argv)

    n = parse_size(args.size)
    label = size_label(n)
    data = corpus_dir(n)
    car = data / "repo.car"
    if not (data / "truth.json").is_file() or not car.is_file():
        print(f"no corpus at {data}: run  python benchmarks/make_corpus.py --sizes {label}",
              file=sys.stderr)
        return 2
    names = list(CONTENDERS)
    if args.only:
        names = [x.strip() for x in args.only.split(",") if x.strip()]
        unknown = [x for x in names if x not in CONTENDERS]
        if unknown:
            ap.error(f"unknown contender(s) {unknown}; known: {', '.join(CONTENDERS)}")
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    truth_json = json.loads((data / "truth.json").read_text())
    truth = load_truth_isolated(data)
    if truth[None][0] != truth_json["record_count"]:
        print(f"records.tsv has {truth[None][0]} lines, truth.json says "
              f"{truth_json['record_count']}", file=sys.stderr)
        return 2
    meta = {
        "benchmark": "read", "size": label,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "runs": args.runs, "warmup": not args.no_warmup, "python_exe": args.python,
        "corpus": {"dir": str(data), "records": truth_json["record_count"],
                   "blocks": truth_json["block_count"], "car_bytes": truth_json["car_bytes"],
                   "seed": truth_json.get("seed"), "commit_cid": truth_json["commit_cid"]},
        "machine": machine_info(args.python),
    }
    print(f"read benchmark: {label} ({meta['corpus']['records']:,} records, "
          f"{meta['corpus']['car_bytes'] / 1e6:.1f} MB), {args.runs} run(s) + "
          f"{'1 warm-up' if not args.no_warmup else 'no warm-up'}; {meta['machine']['cpu']}, "
          f"{meta['machine']['cores']} cores, {meta['machine']['python']}", flush=True)

    # every contender warms up, then the timed runs go round-robin (a, b, c, a, b, c, ...), so
    # a change in the machine's load falls on all contenders alike rather than on one
    if not args.no_warmup:
        for name in names:
            w = run_once(args.python, CONTENDERS_DIR / f"{name}.py", car, CONTENDERS[name][0], 0)
            if w.get("error"):
                print(f"  {name}: warm-up failed: {' | '.join(w['error'])}", flush=True)
    runs_of: dict[str, list[dict]] = {name: [] for name in names}
    for i in range(args.runs):
        for name in names:
            extra, coll, _desc = CONTENDERS[name]
            expected = truth.get(coll, (0, hashlib.sha256(b"").hexdigest()))
            r = run_once(args.python, CONTENDERS_DIR / f"{name}.py", car, extra, args.sample_ms)
            ok, why = check(r["output"], expected)
            r["correct"], r["problem"] = ok, why or r.get("error")
            runs_of[name].append(r)
            print(f"  {name} run {i + 1}: {r['wall_s']:.2f} s, {r['cpu_s']:.2f} s cpu, "
                  f"{r['maxrss_mb']:.0f} MB{'' if ok else '  WRONG: ' + str(r['problem'])}",
                  flush=True)

    results: list[dict] = []
    for name in names:
        extra, coll, desc = CONTENDERS[name]
        expected = truth.get(coll, (0, hashlib.sha256(b"").hexdigest()))
        runs = runs_of[name]
        good = [r for r in runs if r["exit"] == 0]

        def med(key: str) -> float | None:
            vals = [r[key] for r in good if r[key] is not None]
            return statistics.median(vals) if vals else None

        wall = med("wall_s")
        out = good[0]["output"] if good and good[0]["output"] else {}
        results.append({
            "name": name, "description": desc, "collection": coll,
            "expected_records": expected[0], "expected_digest": expected[1],
            "records": out.get("records"), "decoded": out.get("decoded"),
            "wall_s": wall, "maxrss_mb": med("maxrss_mb"), "tree_rss_mb": med("tree_rss_mb"),
            "cpu_s": med("cpu_s"),
            "records_per_s": (expected[0] / wall) if wall else None,
            "correct": bool(runs) and all(r["correct"] for r in runs),
            "problems": sorted({str(r["problem"]) for r in runs if not r["correct"]}),
            "runs": [{k: r[k] for k in ("wall_s", "maxrss_mb", "tree_rss_mb", "cpu_s", "exit",
                                         "output")} for r in runs],
        })

    base = next((r for r in results if r["name"] == BASELINE and r["wall_s"]), None)
    for r in results:
        r["ratio"] = (r["wall_s"] / base["wall_s"]) if base and r["wall_s"] else None
        r["cpu_ratio"] = (r["cpu_s"] / base["cpu_s"]) if base and r["cpu_s"] else None

    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.out:
        out_path = Path(args.out)
    elif names == list(CONTENDERS):
        out_path = RESULTS / f"read-{label}.json"
    else:                       # a partial run must not overwrite the full results
        out_path = RESULTS / f"read-{label}-only-{'+'.join(names)}.json"
    out_path.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")

    print()
    print(fmt_table(results, markdown=False))
    for r in results:
        if not r["correct"]:
            print(f"  {r['name']}: WRONG: {'; '.join(r['problems'])}")
    print(f"\nresults written to {out_path}\n")
    print(markdown_report(meta, results))
    return 0 if all(r["correct"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
