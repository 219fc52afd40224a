"""Time the phases of one ``atrepo.read_car(path).records`` inside a single process.

    .venv/bin/python benchmarks/phases.py benchmarks/data/1m/repo.car [--workers N]

Prints the time to open (index + verify commit + walk) and to decode, the time to index
the CAR, how many of the parallel jobs (walk subtrees, decode batches) the caller and the
workers did and how long each set took, and the time to build the frame. With
``--workers 0`` everything runs in the calling process. Complements bench_read.py,
which times whole processes.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("car")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: ATREPO_WORKERS or CPUs - 1)")
    args = parser.parse_args()
    if args.workers is not None:
        os.environ["ATREPO_WORKERS"] = str(args.workers)
    start = time.perf_counter()
    import atrepo
    import atrepo.snapshot as snapshot

    phases: list[Any] = []
    run_jobs, records_frame = snapshot.run_jobs, snapshot.records_frame

    def counted_jobs(jobs, local, remote, workers, on_done=None):  # type: ignore[no-untyped-def]
        counts = {"caller": 0, "workers": 0}

        def here(job):  # type: ignore[no-untyped-def]
            counts["caller"] += 1
            return local(job)

        def there(worker, job):  # type: ignore[no-untyped-def]
            counts["workers"] += 1
            return remote(worker, job)

        t = time.perf_counter()
        out = run_jobs(jobs, here, there, workers, on_done)
        phases.append((f"{len(jobs)} jobs", counts, round(time.perf_counter() - t, 2)))
        return out

    def timed_frame(*a):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        frame = records_frame(*a)
        phases.append(("frame", round(time.perf_counter() - t, 2)))
        return frame

    import atrepo.car as car

    read_car = car.read_car

    def timed_read_car(*a, **kw):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        carfile = read_car(*a, **kw)
        phases.append(("index CAR", round(time.perf_counter() - t, 2)))
        return carfile

    car.read_car = timed_read_car
    snapshot.run_jobs, snapshot.records_frame = counted_jobs, timed_frame
    snap = atrepo.read_car(args.car)
    opened = time.perf_counter()
    frame = snap.records
    done = time.perf_counter()
    print(f"{frame.height:,} records: import+open {opened - start:.2f} s, "
          f"decode {done - opened:.2f} s, total {done - start:.2f} s")
    for phase in phases:
        print("  ", *phase)


if __name__ == "__main__":
    main()
