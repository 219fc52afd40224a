"""Contender: the memory-bounded case -- one collection, at most 64 MB of CAR in memory.

``atrepo.read_car(path, collections=["app.bsky.actor.profile"], mem_limit_mb=64).records``.
Target: peak RSS < 256 MB on the 1M CAR.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atrepo  # noqa: E402

from _common import parse_args, require_path  # noqa: E402
from _frame import report_frame  # noqa: E402

PROFILE = "app.bsky.actor.profile"


def main() -> None:
    args = parse_args(default_collection=PROFILE)
    snap = atrepo.read_car(args.car, collections=[args.collection], mem_limit_mb=64)
    df = snap.records
    require_path(atrepo.accelerated)
    report_frame(df)


if __name__ == "__main__":
    main()
