"""The ``atrepo`` command line: thin subcommands over the library.

Exit codes tell failure kinds apart: 0 success, 2 usage, 3 malformed input (CAR, MST,
DAG-CBOR), 4 signature, 5 resolution, 6 repository unavailable, 7 network, 1 other
atrepo errors. Tables go to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import (
    AtrepoError,
    CarError,
    DecodeError,
    MstError,
    RateLimited,
    RepoUnavailable,
    ResolutionError,
    SignatureError,
    TransportError,
)

__all__ = ["main"]

EXIT_CODES: tuple[tuple[type[AtrepoError], int], ...] = (
    (CarError, 3), (MstError, 3), (DecodeError, 3), (SignatureError, 4),
    (ResolutionError, 5), (RepoUnavailable, 6), (RateLimited, 7), (TransportError, 7),
)


def _exit_code(error: AtrepoError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return 1


def _inspect(args: argparse.Namespace) -> int:
    """Summarise a repository CAR: commit, verification, collections (or JSON)."""
    from . import read_car

    snap = read_car(args.file, signing_key=args.signing_key, did=args.did,
                    collections=args.collection or None)
    counts = snap.collections
    if args.json:
        summary = {"did": snap.did, "rev": snap.rev, "commit_cid": snap.commit_cid,
                   "data_cid": snap.data_cid, "version": snap.commit.version,
                   "verified": snap.verified, "records": len(snap),
                   "collections": dict(counts.iter_rows())}
        print(json.dumps(summary, indent=2))
        return 0
    print(snap)
    print(counts)
    if args.parquet:
        snap.write_parquet(args.parquet)
        print(f"wrote {len(snap):,} records to {args.parquet}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atrepo",
                                     description="AT Protocol repositories as data.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="summarise a repository CAR file offline",
                                  description=_inspect.__doc__)
    inspect.add_argument("file", help="path to a repository CAR")
    inspect.add_argument("--signing-key", help="did:key to verify the commit signature with")
    inspect.add_argument("--did", help="the DID the commit must belong to")
    inspect.add_argument("--collection", action="append",
                         help="only this collection (NSID or prefix.*); repeatable")
    inspect.add_argument("--json", action="store_true", help="print a JSON summary")
    inspect.add_argument("--parquet", metavar="FILE", help="also write the records to FILE")
    inspect.set_defaults(run=_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except AtrepoError as error:
        print(f"atrepo: {error}", file=sys.stderr)
        return _exit_code(error)
    return code
