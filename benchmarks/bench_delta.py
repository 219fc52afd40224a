"""Where an export's memory goes on the dataset side, without a network: deltalake's share.

Each measurement runs in a fresh interpreter (``--child``) and reads its own
``/proc/self/status``:

1. ``commits``: an export's dataset side alone (:class:`atrepo.dataset.DatasetExport`) fed
   N synthetic repositories of 20 records (9 posts, 11 likes) in batches of the default
   size, no final merge; anonymous RSS and threads right after the last commit and again
   12 s later (deltalake's runtime lets an idle thread go after 10 s, and the allocators
   return freed pages over about as long). Once as is, once with the Delta writes stubbed
   out (``stubbed``): what is left then is atrepo's own.
2. ``appends``: N appends of the same 900 rows (four string columns) to one Delta table with
   ``write_deltalake``; the same readings.
3. ``loads``: on a dataset the ``commits`` run wrote, the median and minimum of 21 calls of a
   load of its records table, of that table's ``transaction_version``, and of reading the
   batch it holds from its log as ``open_dataset`` does.
4. ``merges``: on the datasets the ``commits`` runs wrote (250, 2,000 and 4,000
   repositories, a file per batch and partition), the merge an export ends with, of the
   records table and of the like table alone, each in a fresh interpreter after a merge of
   a small copy (so deltalake's code is paged in and its runtime started): the peak RSS
   it adds and the anonymous RSS it leaves.

Reproduce: ``.venv/bin/python benchmarks/bench_delta.py`` (about 5 minutes); writes
``benchmarks/results/delta.json``.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "delta.json"
IDLE_S = 12
POST, LIKE = "app.bsky.feed.post", "app.bsky.feed.like"
SUBJECT_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"


def status(key: str) -> float:
    """A ``/proc/self/status`` field in MB."""
    with open("/proc/self/status") as f:
        found = re.search(key + r":\s+(\d+)", f.read())
    assert found is not None
    return int(found.group(1)) / 1024


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def readings() -> dict[str, float]:
    """Anonymous RSS and threads now and after IDLE_S seconds idle."""
    now = {"anon_mb": status("RssAnon"), "threads": threads()}
    time.sleep(IDLE_S)
    return {**now, "idle_anon_mb": status("RssAnon"), "idle_threads": threads()}


def records(n: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for k in range(9):
        out[f"{POST}/3k{n:05d}{k:03d}"] = {"$type": POST, "text": f"post {n} {k} " * 5,
                                          "createdAt": "2024-05-01T12:00:00.000Z"}
    for k in range(11):
        out[f"{LIKE}/3k{n:05d}{k:03d}"] = {
            "$type": LIKE, "createdAt": "2024-05-01T12:00:00.000Z",
            "subject": {"uri": f"at://did:plc:{'c' * 24}/{POST}/3k{k:03d}",
                        "cid": SUBJECT_CID}}
    return out


def commits(n: int, stubbed: bool, out: str) -> dict[str, Any]:
    import atrepo
    from atrepo.dataset import DatasetExport, _delta, _export
    from atrepo.dataset._layout import table_exists
    from atrepo.testing import make_repo_car

    setattr(_export, "compact_tables", lambda *a, **k: {})   # the merge is measured elsewhere
    if stubbed:
        real = _delta.commit

        def first_only(path: Path, frame: Any, **options: Any) -> None:
            if not table_exists(path):   # the tables are created, then never written
                real(path, frame, **options)
        _delta.commit = first_only
    export = DatasetExport(out)
    for i in range(n):
        car, key = make_repo_car(records(i), did=f"did:plc:{i:024d}")
        export.fetched(atrepo.read_car(car, signing_key=key), pds="https://p.test",
                       handle=None)
    export.finish()
    return {"repos": n, "stubbed": stubbed, **readings()}


def appends(n: int) -> dict[str, Any]:
    import polars as pl
    from deltalake import write_deltalake

    frame = pl.DataFrame({name: [f"{name}-{i:06d}" for i in range(900)]
                          for name in ("did", "rkey", "uri", "cid")})
    table = tempfile.mkdtemp() + "/t"
    write_deltalake(table, frame, mode="append")
    time.sleep(IDLE_S)
    base = status("RssAnon")
    for _ in range(n):
        write_deltalake(table, frame, mode="append")
    result = readings()
    return {"appends": n, "anon_before_mb": base, **result}


def loads(dataset: str) -> dict[str, Any]:
    from deltalake import DeltaTable

    from atrepo.dataset import _delta
    from atrepo.dataset._layout import APP_ID

    path = Path(dataset) / "records"
    loaded = DeltaTable(path)

    def timed(call: Callable[[], object]) -> dict[str, float]:
        times = []
        for _ in range(21):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000}

    return {"load": timed(lambda: DeltaTable(path)),
            "transaction_version": timed(lambda: loaded.transaction_version(APP_ID)),
            "from_the_log": timed(lambda: _delta.held_version(path, loaded))}


def merge(dataset: str, table: str, warm: str) -> dict[str, Any]:
    import shutil

    from deltalake import DeltaTable

    from atrepo.dataset._delta import merge_files
    from atrepo.dataset._maintain import TARGET_FILE_BYTES

    def compact(path: str) -> int:   # the merge an export ends with, of one table
        loaded = DeltaTable(path)
        files = len(loaded.file_uris())
        merge_files(Path(path), loaded, target_bytes=TARGET_FILE_BYTES)
        return files

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(warm, f"{tmp}/warm")
        shutil.copytree(dataset, f"{tmp}/ds")
        compact(f"{tmp}/warm/{table}")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")   # resets the peak (VmHWM) to the current RSS
        rss, anon = status("VmRSS"), status("RssAnon")
        files = compact(f"{tmp}/ds/{table}")
        return {"table": table, "files": files, "peak_added_mb": status("VmHWM") - rss,
                "anon_left_mb": status("RssAnon") - anon}


def child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                          capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    print(result, file=sys.stderr, flush=True)
    return result


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        mode, *rest = sys.argv[2:]
        if mode == "commits":
            result = commits(int(rest[0]), rest[1] == "stubbed", rest[2])
        elif mode == "appends":
            result = appends(int(rest[0]))
        elif mode == "merge":
            result = merge(*rest)
        else:
            result = loads(rest[0])
        print(json.dumps(result))
        return
    sys.path.insert(0, str(HERE))
    from bench_read import machine_info

    with tempfile.TemporaryDirectory() as tmp:
        runs = [child("commits", str(n), how, f"{tmp}/{how}{n}")
                for how in ("written", "stubbed") for n in (250, 2000)]
        child("commits", "4000", "written", f"{tmp}/written4000")   # for the merges only
        merges = [{"repos": n, **child("merge", f"{tmp}/written{n}", table,
                                       f"{tmp}/written250")}
                  for table in ("records", f"tables/{LIKE}") for n in (250, 2000, 4000)]
        result = {"commits": runs, "merges": merges,
                  "appends": [child("appends", str(n)) for n in (60, 150, 300)],
                  "loads": child("loads", f"{tmp}/written2000"),
                  "idle_s": IDLE_S, "load_average": os.getloadavg(),
                  "machine": machine_info(sys.executable)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for r in result["commits"]:
        print(f"commits {r['repos']:>5} {'stubbed' if r['stubbed'] else 'written'}: anon "
              f"{r['anon_mb']:.1f} MB / {r['threads']} threads, {IDLE_S} s later "
              f"{r['idle_anon_mb']:.1f} MB / {r['idle_threads']}")
    for r in result["appends"]:
        print(f"appends {r['appends']:>4}: anon {r['anon_before_mb']:.1f} -> "
              f"{r['anon_mb']:.1f} MB / {r['threads']} threads, {IDLE_S} s later "
              f"{r['idle_anon_mb']:.1f} MB / {r['idle_threads']}")
    for r in result["merges"]:
        print(f"merge of {r['table']} at {r['repos']:>5} ({r['files']} files): peak "
              f"+{r['peak_added_mb']:.1f} MB, anon left +{r['anon_left_mb']:.1f} MB")
    for name, t in result["loads"].items():
        print(f"{name}: median {t['median_ms']:.2f} ms, min {t['min_ms']:.2f} ms")


if __name__ == "__main__":
    main()
