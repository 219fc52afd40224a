"""Contender: libipld.decode_car (decodes every block) + a hand-written MST walk.

Records come out as libipld's natural decoded form (dicts; links as raw CID bytes).
No CID is checked against its block.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import libipld  # noqa: E402

from _common import digest, mst_walk, parse_args, report, split_key  # noqa: E402


def main() -> None:
    args = parse_args()
    with open(args.car, "rb") as f:
        data = f.read()
    header, blocks = libipld.decode_car(data)     # {cid bytes: decoded block}
    del data
    commit = blocks[header["roots"][0]]
    entries = mst_walk(blocks.__getitem__, commit["data"], [])
    encode_cid = libipld.encode_cid
    want = args.collection
    rows = []                                     # (collection, rkey, cid string, record)
    for key, v in entries:
        collection, rkey = split_key(key)
        if want is not None and collection != want:
            continue
        rows.append((collection, rkey, encode_cid(v), blocks[v]))
    decoded = sum(1 for r in rows if isinstance(r[3], dict))
    report(len(rows), digest(f"{c}/{k} {cid}" for c, k, cid, _ in rows), decoded)


if __name__ == "__main__":
    main()
