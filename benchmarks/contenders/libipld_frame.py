"""Contender: libipld_walk's read, then the frame ``atrepo.read_car(path).records`` returns.

What a user comparing like for like writes on top of libipld: the same six columns (did,
collection, rkey, uri, cid, record) in key order, with each record as atproto JSON text
(links, which libipld returns as CID bytes, become ``{"$link": ...}``; other bytes
``{"$bytes": ...}``), built with orjson and polars. No CID is checked against its block.
"""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import libipld  # noqa: E402
import orjson  # noqa: E402
import polars as pl  # noqa: E402

from _common import mst_walk, parse_args, split_key  # noqa: E402
from _frame import report_frame  # noqa: E402

encode_cid = libipld.encode_cid


def json_value(value):
    """The atproto JSON data model form of a value libipld decoded."""
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, bytes):
        if len(value) == 36 and value[0] == 1:  # a CIDv1 link (atproto's only kind)
            return {"$link": encode_cid(value)}
        return {"$bytes": base64.b64encode(value).decode().rstrip("=")}
    return value


def main() -> None:
    args = parse_args()
    with open(args.car, "rb") as f:
        data = f.read()
    header, blocks = libipld.decode_car(data)
    del data
    commit = blocks[header["roots"][0]]
    did = commit["did"]
    want = args.collection
    collections, rkeys, uris, cids, records = [], [], [], [], []
    for key, v in mst_walk(blocks.__getitem__, commit["data"], []):
        collection, rkey = split_key(key)
        if want is not None and collection != want:
            continue
        collections.append(collection)
        rkeys.append(rkey)
        uris.append(f"at://{did}/{collection}/{rkey}")
        cids.append(encode_cid(v))
        records.append(orjson.dumps(json_value(blocks[v])).decode())
    frame = pl.DataFrame({"did": [did] * len(rkeys), "collection": collections, "rkey": rkeys,
                          "uri": uris, "cid": cids, "record": records})
    report_frame(frame)


if __name__ == "__main__":
    main()
