"""Contender: atrepo.read_car(path).records -- every record decoded to JSON text by atrepo.

atrepo checks every block it uses against its CID (verify_cids=True by default).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atrepo  # noqa: E402

from _common import parse_args, require_path  # noqa: E402
from _frame import report_frame  # noqa: E402


def main() -> None:
    args = parse_args()
    kwargs = {} if args.collection is None else {"collections": [args.collection]}
    snap = atrepo.read_car(args.car, **kwargs)
    df = snap.records
    require_path(atrepo.accelerated)
    report_frame(df)


if __name__ == "__main__":
    main()
