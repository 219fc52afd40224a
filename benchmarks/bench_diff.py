"""Diffs of two stored snapshots, against atmst, plus what the snapshot store costs on disk.

    .venv/bin/python benchmarks/bench_diff.py [--size 1m] [--repeat 5] [--sandbox-records 3000]

Needs the corpus with a second commit (``make_corpus.py --sizes 1m --changes 1000``):
``repo.car`` (first commit), ``repo2.car`` (second commit, complete), ``since.car`` (what
``getRepo?since=`` returns) and ``diff.json`` (the reference implementation's DataDiff).

In one run it measures (wall and CPU times are the medians of ``--repeat`` runs over the
same opened snapshots; opening is timed once):

* atrepo: the two commits stored as the client stores them (repo.car, then since.car
  appended to the same block pack), both snapshots opened (walked and checked, as after a
  fetch; and as ``client.snapshot`` reopens them, walk deferred); then ``atrepo.mst.diff``
  over the pack (the pure Python building block), the compiled core's diff alone (ops and
  created/deleted nodes, as ``mst.diff`` returns them) and ``atrepo.diff`` of the two
  snapshots (the frame, both records' JSON).
* atrepo's pure Python path (``ATREPO_PURE_PYTHON=1``, a child process reopening the same
  store): ``atrepo.diff`` of the two stored snapshots.
* atmst 0.0.x: ``mst_diff`` + ``record_diff`` over an OverlayBlockStore of the two CARs
  (ReadOnlyCARBlockStore each), the same question answered by the only Python peer that has
  a diff.
* then ``atrepo.diff`` of the stored snapshots and atmst's diff again, alternating, one of
  each per round (``--repeat`` rounds): the ratio under the same load.

Both answers are checked against the reference's ops before any time is reported. Then the
disk used by the pack holding both snapshots vs. the first CAR alone; and, against a local
sandbox PDS, the bytes of a full getRepo vs. the incremental one after 1% of the records
changed.
"""

from __future__ import annotations

import argparse
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

from bench_read import machine_info

SnapshotsStored = tuple[Any, dict[str, Any], dict[str, Any], list[int], int]

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    wall, _cpu, result = median_times(fn, repeat)
    return wall, result


def median_times(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(median wall s, median CPU s of this process, last result) of ``repeat`` calls."""
    wall, cpu, result = [], [], None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return statistics.median(wall), statistics.median(cpu), result


def expected_ops(corpus: Path) -> list[tuple[str, str | None, str | None]]:
    return [tuple(op) for op in json.loads((corpus / "diff.json").read_text())["ops"]]


def store_both(corpus: Path, work: Path) -> SnapshotsStored:
    """Store both commits as the client does; (store, truths, blocks after each, pack bytes)."""
    from atrepo import car
    from atrepo._snapshot_store import SnapshotStore

    truth, truth2 = (json.loads((corpus / n).read_text()) for n in ("truth.json", "truth2.json"))
    store = SnapshotStore(work / "repos", max_bytes=1 << 42)
    blocks = []
    for name, commit in (("repo.car", truth), ("since.car", truth2)):
        download = work / f"download-{name}"
        shutil.copyfile(corpus / name, download)
        stored = store.add(car.read_car(download, 64), did=truth["did"],
                           commit_cid=commit["commit_cid"], signing_key=truth["signing_key"],
                           handle=None, mem_limit_mb=64,
                           source="full" if name == "repo.car" else "incremental")
        blocks.append(len(stored.blocks))
    pack_bytes = next((work / "repos").glob("*/blocks.car")).stat().st_size
    return store, truth, truth2, blocks, pack_bytes


def open_both(store: Any, truth: dict[str, Any], truth2: dict[str, Any],
              walk_now: bool) -> tuple[Any, Any]:
    """Both snapshots from the store's pack (walked now, or as ``client.snapshot`` does)."""
    from atrepo.snapshot import open_snapshot

    pack = store.open_pack(truth["did"], 64)
    return tuple(open_snapshot(pack, root=commit["commit_cid"], signing_key=truth["signing_key"],
                               walk_now=walk_now) for commit in (truth, truth2))


def frame_ops(frame: Any) -> list[tuple[str, str | None, str | None]]:
    rows = frame.select("collection", "rkey", "old_cid", "new_cid").iter_rows()
    return sorted((f"{c}/{r}", o, n) for c, r, o, n in rows)


def check_frame(frame: Any, expected: list[tuple[str, str | None, str | None]]) -> None:
    assert frame_ops(frame) == sorted(expected), "atrepo.diff disagrees with the reference"
    assert frame["record"].null_count() == sum(1 for _, _, n in expected if n is None)


def atrepo_side(corpus: Path, work: Path, repeat: int,
                expected: list[tuple[str, str | None, str | None]]
                ) -> tuple[dict[str, Any], Callable[[], Any]]:
    """atrepo's measurements, and the diff of the two stored snapshots (to time it again,
    alternating with atmst's)."""
    from atrepo import _accel, diff, mst
    from atrepo.cid import CID

    store, truth, truth2, blocks, pack_bytes = store_both(corpus, work)
    # as client.snapshot(did, rev) reopens stored snapshots: the walk deferred
    reopen_s, (old, new) = median_time(lambda: open_both(store, truth, truth2, False), 1)
    mst_s, mst_cpu, result = median_times(
        lambda: mst.diff(new.blocks, old.data_cid, new.data_cid), repeat)
    got = [(k, o and str(o), n and str(n)) for k, o, n in result.record_ops]
    assert got == expected, "atrepo.mst.diff disagrees with the reference"
    core_s = core_cpu = None
    if _accel.core is not None:
        roots = [bytes(CID.decode(snap.data_cid)) for snap in (old, new)]
        cars = [new.blocks.core_car()]
        core_s, core_cpu, found = median_times(
            lambda: _accel.core.diff(cars, *roots, checked=True), repeat)
        assert found.ops() == [(k.encode(), o and bytes(o), n and bytes(n))
                               for k, o, n in result.record_ops]
        assert {CID.from_raw(c) for c in found.created()} == result.created_nodes
        assert {CID.from_raw(c) for c in found.deleted()} == result.deleted_nodes
    stored = (old, new)
    frame_s, frame_cpu, frame = median_times(lambda: diff(*stored), repeat)
    check_frame(frame, expected)
    # as after two fetches: both trees walked (and checked) in this process
    open_s, walked_pair = median_time(lambda: open_both(store, truth, truth2, True), 1)
    walked_s, walked = median_time(lambda: diff(*walked_pair), repeat)
    assert walked.equals(frame), "diffs of walked and of stored snapshots differ"
    return {"accelerated": _accel.accelerated, "open_s": open_s, "reopen_s": reopen_s,
            "mst_diff_s": mst_s, "mst_diff_cpu_s": mst_cpu, "core_diff_s": core_s,
            "core_diff_cpu_s": core_cpu, "diff_frame_s": frame_s, "diff_frame_cpu_s": frame_cpu,
            "diff_walked_s": walked_s, "nodes_created": len(result.created_nodes),
            "nodes_deleted": len(result.deleted_nodes), "blocks_first": blocks[0],
            "blocks_added": blocks[1] - blocks[0],
            "pack_bytes": pack_bytes, "car_bytes": (corpus / "repo.car").stat().st_size
            }, lambda: diff(*stored)


def pure_side(corpus: Path, work: Path, repeat: int) -> dict[str, Any]:
    """``atrepo.diff`` of the snapshots stored under ``work`` on the pure Python path (a
    child process)."""
    env = {**os.environ, "ATREPO_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, __file__, "--pure-child", str(corpus), str(work),
                          str(repeat)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"the pure Python side failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def pure_child(corpus: Path, work: Path, repeat: int) -> None:
    from atrepo import _accel, diff
    from atrepo._snapshot_store import SnapshotStore

    assert not _accel.accelerated
    truth, truth2 = (json.loads((corpus / n).read_text()) for n in ("truth.json", "truth2.json"))
    store = SnapshotStore(work / "repos", max_bytes=1 << 42)
    reopen_s, (old, new) = median_time(lambda: open_both(store, truth, truth2, False), 1)
    frame_s, frame_cpu, frame = median_times(lambda: diff(old, new), repeat)
    check_frame(frame, expected_ops(corpus))
    print(json.dumps({"reopen_s": reopen_s, "diff_frame_s": frame_s,
                      "diff_frame_cpu_s": frame_cpu}))


def atmst_side(corpus: Path, repeat: int, expected: list[tuple[str, str | None, str | None]]
               ) -> tuple[dict[str, Any], Callable[[], Any], Callable[[], None]]:
    """atmst's measurements, its diff (to time it again) and what closes its CARs."""
    from atmst.blockstore import OverlayBlockStore
    from atmst.blockstore.car_file import ReadOnlyCARBlockStore
    from atmst.mst.diff import mst_diff, record_diff
    from atmst.mst.node_store import NodeStore
    from cbrrr import CID, decode_dag_cbor

    truth, truth2 = (json.loads((corpus / n).read_text()) for n in ("truth.json", "truth2.json"))
    old_file, new_file = open(corpus / "repo.car", "rb"), open(corpus / "repo2.car", "rb")
    start = time.perf_counter()
    store = OverlayBlockStore(ReadOnlyCARBlockStore(new_file), ReadOnlyCARBlockStore(old_file))
    open_s = time.perf_counter() - start
    old_root = CID.decode(truth["data_cid"])
    new_root = CID.decode(truth2["data_cid"])

    def run() -> list[tuple[str, str | None, str | None]]:
        ns = NodeStore(store)  # fresh node cache each run
        created, deleted = mst_diff(ns, old_root, new_root)
        ops = [(d.path, d.prior_value and d.prior_value.encode("base32"),
                d.later_value and d.later_value.encode("base32"))
               for d in record_diff(ns, created, deleted)]
        # the frame atrepo builds also decodes both sides' records
        for _, before, after in ops:
            for cid in (before, after):
                if cid is not None:
                    decode_dag_cbor(store.get_block(bytes(CID.decode(cid))))
        return sorted(ops)

    diff_s, diff_cpu, ops = median_times(run, repeat)
    assert ops == expected, "atmst disagrees with the reference"

    def close() -> None:
        old_file.close()
        new_file.close()
    return {"open_s": open_s, "diff_s": diff_s, "diff_cpu_s": diff_cpu}, run, close


def alternating(ours: Callable[[], Any], theirs: Callable[[], Any],
                repeat: int) -> dict[str, float]:
    """Medians of ``repeat`` rounds, each timing ``ours`` then ``theirs``: both under the
    same load, which on a shared machine moves more between phases than within a round."""
    times: dict[str, list[float]] = {"atrepo_s": [], "atrepo_cpu_s": [], "atmst_s": [],
                                     "atmst_cpu_s": []}
    for _ in range(repeat):
        for name, fn in (("atrepo", ours), ("atmst", theirs)):
            wall, cpu, _result = median_times(fn, 1)
            times[f"{name}_s"].append(wall)
            times[f"{name}_cpu_s"].append(cpu)
    return {name: statistics.median(values) for name, values in times.items()}


def incremental_bytes(records: int) -> dict[str, Any]:
    """Full vs incremental getRepo bytes on a sandbox account after 1% of records changed."""
    from atrepo import Client
    from atrepo.sandbox import Sandbox

    with Sandbox.start(bulk_accounts=1, bulk_records=records, timeout=600) as sb, \
            tempfile.TemporaryDirectory() as cache:
        handle = sb.accounts[-1]["handle"]
        with Client(plc_url=sb.plc_url, handle_resolver=sb.pds_url, cache_dir=cache,
                    progress=False) as client:
            first = client.get_repo(handle)
            for i in range(max(1, len(first) // 100)):
                sb.post(handle, f"benchmark change {i}")
            second = client.get_repo(handle)
        assert second.source == "incremental"
        return {"records": len(first), "changes": len(second) - len(first),
                "full_bytes": first.bytes_downloaded, "incremental_bytes": second.bytes_downloaded}


def main() -> None:
    if sys.argv[1:2] == ["--pure-child"]:
        corpus, work, repeat = sys.argv[2:5]
        pure_child(Path(corpus), Path(work), int(repeat))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1m")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--sandbox-records", type=int, default=3000,
                        help="records of the sandbox account for the incremental fetch (0: skip)")
    args = parser.parse_args()
    corpus = DATA / args.size
    if not (corpus / "diff.json").exists():
        sys.exit(f"no {corpus}/diff.json: run benchmarks/make_corpus.py --sizes {args.size} "
                 "--changes 1000")
    expected = expected_ops(corpus)
    machine = machine_info(sys.executable)
    with tempfile.TemporaryDirectory(dir=DATA) as work:
        ours, our_diff = atrepo_side(corpus, Path(work), args.repeat, expected)
        pure = pure_side(corpus, Path(work), args.repeat)
        theirs, their_diff, close = atmst_side(corpus, args.repeat, expected)
        paired = alternating(our_diff, their_diff, args.repeat)
        close()
    online = incremental_bytes(args.sandbox_records) if args.sandbox_records else None
    ms = 1000
    print(f"corpus {args.size}: {len(expected)} record changes; {ours['nodes_created']:,} MST "
          f"nodes created, {ours['nodes_deleted']:,} deleted: the nodes that differ")
    print(f"atrepo  open both snapshots {ours['open_s']:.2f} s (walked), "
          f"{ours['reopen_s']:.2f} s (from the store, walk deferred)")
    print(f"atrepo  atrepo.diff frame {ours['diff_frame_s'] * ms:.1f} ms wall, "
          f"{ours['diff_frame_cpu_s'] * ms:.1f} ms cpu ({ours['diff_walked_s'] * ms:.1f} ms on "
          f"walked snapshots; core={ours['accelerated']})")
    if ours["core_diff_s"] is not None:
        print(f"atrepo  core diff alone (ops + nodes) {ours['core_diff_s'] * ms:.1f} ms wall, "
              f"{ours['core_diff_cpu_s'] * ms:.1f} ms cpu")
    print(f"atrepo  mst.diff (pure Python building block) {ours['mst_diff_s'] * ms:.1f} ms wall, "
          f"{ours['mst_diff_cpu_s'] * ms:.1f} ms cpu")
    print(f"pure    ATREPO_PURE_PYTHON=1 atrepo.diff frame {pure['diff_frame_s'] * ms:.1f} ms wall,"
          f" {pure['diff_frame_cpu_s'] * ms:.1f} ms cpu (reopen {pure['reopen_s']:.2f} s)")
    print(f"atmst   open CARs {theirs['open_s']:.2f} s | mst_diff+record_diff+decode "
          f"{theirs['diff_s'] * ms:.1f} ms wall, {theirs['diff_cpu_s'] * ms:.1f} ms cpu")
    print(f"paired  alternating rounds: atrepo.diff {paired['atrepo_s'] * ms:.1f} ms wall, "
          f"{paired['atrepo_cpu_s'] * ms:.1f} ms cpu; atmst {paired['atmst_s'] * ms:.1f} ms wall, "
          f"{paired['atmst_cpu_s'] * ms:.1f} ms cpu")
    print(f"ratio   atmst / atrepo.diff, alternating = "
          f"{paired['atmst_s'] / paired['atrepo_s']:.1f}x wall, "
          f"{paired['atmst_cpu_s'] / paired['atrepo_cpu_s']:.1f}x cpu; by phase: "
          f"{theirs['diff_s'] / ours['diff_frame_s']:.1f}x wall, "
          f"{theirs['diff_cpu_s'] / ours['diff_frame_cpu_s']:.1f}x cpu (walked: "
          f"{theirs['diff_s'] / ours['diff_walked_s']:.1f}x); atmst / atrepo.mst.diff = "
          f"{theirs['diff_s'] / ours['mst_diff_s']:.1f}x; atmst / pure atrepo.diff = "
          f"{theirs['diff_s'] / pure['diff_frame_s']:.1f}x")
    print(f"disk    pack of both snapshots {ours['pack_bytes']:,} B vs one CAR "
          f"{ours['car_bytes']:,} B = {ours['pack_bytes'] / ours['car_bytes']:.3f}x "
          f"({ours['blocks_added']:,} blocks added to {ours['blocks_first']:,})")
    if online is not None:
        print(f"fetch   {online['records']} records, {online['changes']} new: full "
              f"{online['full_bytes']:,} B, incremental {online['incremental_bytes']:,} B "
              f"({online['incremental_bytes'] / online['full_bytes']:.2%})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"diff-{args.size}.json"
    out.write_text(json.dumps({"machine": machine, "repeat": args.repeat, "atrepo": ours,
                               "atrepo_pure": pure, "atmst": theirs, "alternating": paired,
                               "incremental": online}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
