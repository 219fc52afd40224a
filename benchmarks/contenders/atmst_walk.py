"""Contender: atmst (ReadOnlyCARBlockStore + NodeStore + NodeWalker) and cbrrr.

The block store indexes the CAR once and reads blocks from the file on demand, checking each
block it reads against its CID (``validate_hashes=True``, the default).  Records are decoded with
``cbrrr.decode_dag_cbor`` (dicts; links as ``cbrrr.CID``).  With ``--collection`` only that key
range of the MST is walked (``NodeWalker.iter_kv_range``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from atmst.blockstore.car_file import ReadOnlyCARBlockStore  # noqa: E402
from atmst.mst.node_store import NodeStore  # noqa: E402
from atmst.mst.node_walker import NodeWalker  # noqa: E402
from cbrrr import decode_dag_cbor  # noqa: E402

from _common import digest, parse_args, report  # noqa: E402


def main() -> None:
    args = parse_args()
    with open(args.car, "rb") as f:
        bs = ReadOnlyCARBlockStore(f)
        commit = decode_dag_cbor(bs.get_block(bytes(bs.car_root)))
        walker = NodeWalker(NodeStore(bs), commit["data"])
        if args.collection is None:
            kvs = walker.iter_kv()
        else:
            kvs = walker.iter_kv_range(args.collection + "/", args.collection + "0")
        rows = []                                 # (collection, rkey, cid string, record)
        get_block = bs.get_block
        for key, cid in kvs:
            collection, _, rkey = key.partition("/")
            rows.append((collection, rkey, cid.encode("base32"),
                         decode_dag_cbor(get_block(bytes(cid)))))
    decoded = sum(1 for r in rows if isinstance(r[3], dict))
    report(len(rows), digest(f"{c}/{k} {cid}" for c, k, cid, _ in rows), decoded)


if __name__ == "__main__":
    main()
