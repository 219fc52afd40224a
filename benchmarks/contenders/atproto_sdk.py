"""Contender: the MarshalX atproto SDK: ``CAR.from_bytes`` + a hand-written MST walk.

``CAR.from_bytes`` decodes every block (via libipld) and keys the blocks by ``atproto`` ``CID``
objects; links inside decoded blocks are raw CID bytes, wrapped with
``CID.from_decoded_bytes`` to look them up.  No CID is checked against its block.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from atproto import CAR, CID  # noqa: E402

from _common import digest, mst_walk, parse_args, report, split_key  # noqa: E402


def main() -> None:
    args = parse_args()
    with open(args.car, "rb") as f:
        data = f.read()
    car = CAR.from_bytes(data)
    del data
    blocks = car.blocks                           # {CID: decoded block}
    wrap = CID.from_decoded_bytes

    def get_node(link):
        return blocks[wrap(link)]

    commit = blocks[car.root]
    entries = mst_walk(get_node, commit["data"], [])
    want = args.collection
    rows = []                                     # (collection, rkey, cid string, record)
    for key, v in entries:
        collection, rkey = split_key(key)
        if want is not None and collection != want:
            continue
        cid = wrap(v)
        rows.append((collection, rkey, str(cid), blocks[cid]))
    decoded = sum(1 for r in rows if isinstance(r[3], dict))
    report(len(rows), digest(f"{c}/{k} {cid}" for c, k, cid, _ in rows), decoded)


if __name__ == "__main__":
    main()
