"""Tiny helpers shared by the benchmark contenders (benchmark code, not library code).

* :func:`parse_args` -- the common command line ``X.py CAR_PATH [--collection NSID]``.
* :func:`digest` -- sha256 hex of the sorted, newline-joined ``"collection/rkey cid"`` strings.
* :func:`mst_walk` -- a small hand-written MST walk over already-decoded nodes, as a user of a
  plain DAG-CBOR/CAR library (libipld, atproto) would write it.
* :func:`report` -- print the one-line JSON result.
* :func:`require_path` -- fail the run unless atrepo ran on the path it was meant to.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Any, Callable, Iterable


def parse_args(argv: list[str] | None = None, default_collection: str | None = None):
    ap = argparse.ArgumentParser()
    ap.add_argument("car", help="path to a repository CAR file")
    ap.add_argument("--collection", default=default_collection,
                    help="only records of this collection (NSID)")
    return ap.parse_args(argv)


def digest(lines: Iterable[str]) -> str:
    """sha256 hex of ``"\\n".join(sorted(lines))`` (UTF-8, no trailing newline)."""
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def report(records: int, dig: str, decoded: int) -> None:
    sys.stdout.write(json.dumps({"records": records, "digest": dig, "decoded": decoded}) + "\n")
    sys.stdout.flush()


def require_path(accelerated: bool) -> None:
    """Exit with an error when atrepo ran pure Python without ``ATREPO_PURE_PYTHON`` asking.

    The compiled core is missing while it is being rebuilt (its old library is moved aside);
    a run then would time the pure path under the core's name.
    """
    if not accelerated and os.environ.get("ATREPO_PURE_PYTHON", "") in ("", "0"):
        sys.exit("atrepo ran without its compiled core (being rebuilt?): run discarded")


def mst_walk(get_node: Callable[[Any], dict], root: Any, out: list) -> list:
    """Append ``(key_bytes, value_link)`` for every MST entry below ``root``, in key order.

    ``get_node(link)`` returns the decoded node ``{"l": link|None, "e": [{p, k, v, t}]}``;
    keys are prefix-compressed against the previous key *of the same node*.
    Recursion depth is the tree height (~4-6 for a million records).
    """
    node = get_node(root)
    left = node["l"]
    if left is not None:
        mst_walk(get_node, left, out)
    prev = b""
    append = out.append
    for e in node["e"]:
        key = prev[: e["p"]] + e["k"]
        append((key, e["v"]))
        prev = key
        sub = e["t"]
        if sub is not None:
            mst_walk(get_node, sub, out)
    return out


def split_key(key: bytes) -> tuple[str, str]:
    collection, _, rkey = key.decode().partition("/")
    return collection, rkey
