"""The ``atrepo`` command line: thin subcommands over the library.

One small function per command, each a thin call into :class:`atrepo.Client` (or
:func:`atrepo.read_car`, :mod:`atrepo.sandbox`). Output conventions, the same everywhere:

* stdout carries the result: readable tables by default, JSON with ``--json``. Row results
  (``repo``, ``ls``, ``hosts``, ``plc``, ``diff``) are JSON lines, one object per row, with
  ``record`` and ``old_record`` embedded as JSON objects; summaries (``resolve``,
  ``export``, ``inspect``, ``sandbox``) are one JSON document.
* ``--parquet FILE`` also writes the rows to a Parquet file (records as JSON strings, the
  frame's own schema).
* progress bars, notes and errors go to stderr, so stdout can be piped; a reader that
  stops early (``atrepo ls HOST | head``) ends the command quietly, with exit code 0.

Exit codes tell failure kinds apart: 0 success, 2 usage (argparse, and argument values
checked here before any work: ranges, URLs, collection filters, keys), 3 malformed input
(CAR, MST, DAG-CBOR), 4 signature, 5 resolution, 6 repository unavailable, 7 network, 1
other atrepo errors (and ``export`` when some repositories failed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from . import __version__
from .errors import (
    AtrepoError,
    CarError,
    DecodeError,
    MstError,
    RateLimited,
    RepoUnavailable,
    ResolutionError,
    SandboxError,
    SignatureError,
    TransportError,
)
from .sandbox import MAX_BULK_ACCOUNTS, MAX_PDS_COUNT, MIN_BULK_RECORDS, Sandbox

if TYPE_CHECKING:
    import polars as pl

    from .client import Client

__all__ = ["main"]

EXIT_CODES: tuple[tuple[type[AtrepoError], int], ...] = (
    (CarError, 3), (MstError, 3), (DecodeError, 3), (SignatureError, 4),
    (ResolutionError, 5), (RepoUnavailable, 6), (RateLimited, 7), (TransportError, 7),
)
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT
TABLE_ROWS = 40         # rows shown in a terminal table; --json or --parquet give them all
CELL_CHARS = 40         # longer strings are cut in tables (a did:plc is 32 characters)
JSON_COLUMNS = ("record", "old_record")  # JSON strings in frames, objects in JSON lines
# Repository statuses a host gives for good (or until its owner or moderators act): running
# the export again does not fetch them. Other failures (network, rate limits, a throttled or
# desynchronized host) may go through on another run.
UNAVAILABLE = frozenset({"not_found", "deleted", "deactivated", "takendown", "suspended"})

Command = Callable[[argparse.Namespace], int]


def _exit_code(error: AtrepoError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return 1


# -- output ---------------------------------------------------------------------------------


def _print_table(frame: pl.DataFrame, file: TextIO | None = None) -> None:
    """Print ``frame`` for a person: a Markdown table, long strings cut, no dtype or shape line.

    Cells are cut rather than wrapped, so a DID or CID stays on one line and can be copied.
    """
    import polars as pl

    with pl.Config(tbl_rows=TABLE_ROWS, tbl_cols=-1, tbl_width_chars=-1,
                   fmt_str_lengths=CELL_CHARS, tbl_hide_column_data_types=True,
                   tbl_hide_dataframe_shape=True, tbl_formatting="ASCII_MARKDOWN"):
        print(frame, file=file)


def _print_json_lines(frame: pl.DataFrame) -> None:
    """Print one JSON object per row, with record columns embedded as objects."""
    for row in frame.iter_rows(named=True):
        for column in JSON_COLUMNS:
            if row.get(column) is not None:
                row[column] = json.loads(row[column])
        print(json.dumps(row, ensure_ascii=False, default=str))


def _save_parquet(frame: pl.DataFrame, path: str | None) -> None:
    """Write ``frame`` to ``path`` when ``--parquet`` was given, and say so on stderr."""
    if path:
        frame.write_parquet(path)
        print(f"wrote {frame.height:,} rows to {path}", file=sys.stderr)


def _print_fields(fields: dict[str, Any]) -> None:
    """Print ``name  value`` lines with the names aligned."""
    width = max(map(len, fields))
    for name, value in fields.items():
        print(f"{name:<{width}}  {value}")


# -- commands -------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    """A Client with the command's client options (unset ones keep the library defaults)."""
    from .client import Client

    given = {"plc_url": args.plc_url, "handle_resolver": args.handle_resolver,
             "cache_dir": args.cache_dir}
    return Client(**{k: v for k, v in given.items() if v is not None},
                  verify=not args.no_verify, progress=args.progress)


def _resolve(args: argparse.Namespace) -> int:
    """Resolve a handle, DID or AT-URI: DID, handle (verified both ways?), PDS, signing key."""
    with _client(args) as client:
        ident = client.resolve(args.name)
    fields = {"did": ident.did, "handle": ident.handle, "handle_verified": ident.handle_verified,
              "pds": ident.pds, "signing_key": ident.signing_key}
    if args.json:
        print(json.dumps(fields))
    else:
        _print_fields(fields)
    return 0


def _repo(args: argparse.Namespace) -> int:
    """Fetch and verify one repository: its summary and records per collection, or its rows."""
    with _client(args) as client:
        snap = client.get_repo(args.name, collections=args.collection)
        if args.json:
            return _print_rows(snap.records, args)
        _save_parquet(snap.records, args.parquet)
        print(snap)
        _print_table(snap.collections)
    return 0


def _print_rows(frame: pl.DataFrame, args: argparse.Namespace) -> int:
    """``--parquet``, then the rows as JSON lines (``--json``) or a table."""
    _save_parquet(frame, args.parquet)
    if args.json:
        _print_json_lines(frame)
    else:
        _print_table(frame)
    return 0


def _ls(args: argparse.Namespace) -> int:
    """List the repositories a PDS or relay hosts: did, head, rev, active, status."""
    with _client(args) as client:
        repos = client.list_repos(args.host, limit=args.limit)
    return _print_rows(repos, args)


def _hosts(args: argparse.Namespace) -> int:
    """List the hosts a relay crawls: host, hostname, status, account_count, seq."""
    with _client(args) as client:
        hosts = client.list_hosts(args.relay_url, limit=args.limit, resume=args.resume)
    return _print_rows(hosts, args)


def _plc(args: argparse.Namespace) -> int:
    """Each DID's current state from the PLC directory's log: did, handle, pds, signing_key,
    status, created_at, cid."""
    with _client(args) as client:
        dids = client.list_plc(after=args.after, limit=args.limit, resume=args.resume)
    return _print_rows(dids, args)


def _diff(args: argparse.Namespace) -> int:
    """What changed in a repository since its newest stored snapshot (and store the new one)."""
    with _client(args) as client:
        changes = client.diff(args.name, collections=args.collection)
    _save_parquet(changes, args.parquet)
    if args.json:
        _print_json_lines(changes)
    elif changes.is_empty():
        print("no changes since the newest stored snapshot")
    else:
        _print_table(changes.select("action", "collection", "rkey", "new_cid", "record"))
    return 0


def _export(args: argparse.Namespace) -> int:
    """Write repositories (or every active one of a host) to a dataset, or bring it up to date."""
    names: str | list[str] = args.names[0] if len(args.names) == 1 else args.names
    with _client(args) as client:
        report = client.export(names, args.out_dir, collections=args.collection,
                               resume=not args.no_resume)
    summary = {"out_dir": str(report.out_dir), "written": report.written,
               "skipped": report.skipped, "records": report.records,
               "failed": report.errors.height}
    errors = _with_retry(report.errors)
    if args.json:
        print(json.dumps({**summary, "errors": errors.to_dicts()}, default=str))
    else:
        _print_fields(summary)
    if errors.is_empty():
        return 0
    print(f"atrepo: {_failure_summary(errors)}:", file=sys.stderr)
    _print_table(errors, file=sys.stderr)
    return 1


def _with_retry(errors: pl.DataFrame) -> pl.DataFrame:
    """``errors`` with a ``retry`` column: whether running the export again may fetch it."""
    import polars as pl

    status = pl.col("status")
    return errors.with_columns(retry=status.is_null() | ~status.is_in(sorted(UNAVAILABLE)))


def _failure_summary(errors: pl.DataFrame) -> str:
    """The failure line: how many failed, which a second run retries, which it cannot change."""
    failed = f"{errors.height:,} {'repository' if errors.height == 1 else 'repositories'} failed"
    permanent = errors.filter(~errors["retry"])
    retry = errors.height - permanent.height
    parts = []
    if permanent.height:
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(
            permanent["status"].value_counts().iter_rows()))
        parts.append(f"{permanent.height} unavailable ({statuses}), which running again will "
                     "not change")
    if retry:
        parts.append(f"{retry} other (retry=true), which running the same command again "
                     "retries")
    return f"{failed}: " + "; ".join(parts)


def _inspect(args: argparse.Namespace) -> int:
    """Summarise a repository CAR offline: commit, verification, collections (or JSON)."""
    from . import read_car

    snap = read_car(args.file, signing_key=args.signing_key, did=args.did,
                    collections=args.collection, progress=args.progress)
    _save_parquet(snap.records, args.parquet)
    counts = snap.collections
    if args.json:
        summary = {"did": snap.did, "rev": snap.rev, "commit_cid": snap.commit_cid,
                   "data_cid": snap.data_cid, "version": snap.commit.version,
                   "verified": snap.verified, "records": len(snap),
                   "collections": dict(counts.iter_rows())}
        print(json.dumps(summary, indent=2))
    else:
        print(snap)
        _print_table(counts)
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    """Run the local reference PLC + PDS in the foreground until Ctrl-C or SIGTERM."""
    from . import sandbox

    sb = sandbox.start(cache_dir=args.cache_dir, plc_port=args.plc_port,
                       pds_port=args.pds_port, relay_port=args.relay_port,
                       pds_count=args.pds_count, bulk_accounts=args.bulk_accounts,
                       bulk_records=args.bulk_records, timeout=args.timeout)
    try:
        _announce(sb, as_json=args.json)
        _serve(sb)
    finally:
        print("atrepo: stopping the sandbox", file=sys.stderr)
        code = sb.stop()
    if code != 0:
        print(f"atrepo: node exited with code {code}; it said:\n{sb.stderr_tail[-2000:]}",
              file=sys.stderr)
        return 1
    return 0


def _serve(sb: Sandbox) -> None:
    """Return on SIGINT or SIGTERM; raise SandboxError if node exits first."""
    stop = threading.Event()
    with _signals_set(stop, signal.SIGINT, signal.SIGTERM):
        while not stop.wait(0.5):
            if sb.proc.poll() is not None:
                raise SandboxError("the sandbox stopped by itself", code=sb.proc.returncode,
                                   hint="node said:\n" + sb.stderr_tail[-2000:])


def _announce(sb: Sandbox, *, as_json: bool) -> None:
    """Print the sandbox's URLs, accounts and how to use them (one JSON line for scripts)."""
    if as_json:
        info = {"plc_url": sb.plc_url, "pds_url": sb.pds_url, "pds_urls": sb.pds_urls,
                "relay_url": sb.relay_url, "handle_resolver": sb.handle_resolver,
                "admin_password": sb.admin_password, "accounts": sb.accounts}
        print(json.dumps(info), flush=True)
        return
    import polars as pl

    several = len(sb.pds_urls) > 1
    print("atrepo sandbox: a local PLC directory + "
          + (f"{len(sb.pds_urls)} PDSes" if several else "PDS")
          + " (the atproto reference implementation)\n")
    _print_fields({"PLC": sb.plc_url,
                   **{f"PDS {i + 1}" if several else "PDS": url
                      for i, url in enumerate(sb.pds_urls)},
                   "relay (listHosts)": sb.relay_url, "admin password": sb.admin_password})
    print()
    columns = ["handle", "did", "status", "records", "password"] + (["pds"] if several else [])
    _print_table(pl.DataFrame([{c: a.get(c) for c in columns} for a in sb.accounts]))
    for account in sb.moved:
        print(f"\n{account['handle']} moved from {account['moved_from']} to {account['pds']}; "
              "the first still lists it, with its repository as it was before the move.")
    # .test handles have no DNS: a PDS (or, with several, the relay) resolves them
    resolver = sb.handle_resolver
    print("\nPython:\n"
          f'    client = atrepo.Client(plc_url="{sb.plc_url}", handle_resolver="{resolver}")\n'
          '    snap = client.get_repo("alice.test")\n'
          "Command line:\n"
          f"    atrepo repo alice.test --plc-url {sb.plc_url} --handle-resolver {resolver}\n"
          + "".join(f"    atrepo ls {url}\n" for url in sb.pds_urls)
          + "\nServing until Ctrl-C.", flush=True)


@contextmanager
def _signals_set(event: threading.Event, *signals: signal.Signals) -> Iterator[None]:
    """Make ``signals`` set ``event`` instead of their default action, for the block."""
    def handler(signum: int, frame: FrameType | None) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- argument values (argparse calls these; a refusal is a usage error, exit code 2) -------


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"{low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}: {text}")
        return value
    return parse


def _instant(text: str) -> str:
    """An argparse type: an ISO 8601 time with a zone, as the PLC directory writes times."""
    from ._args import check_after
    from .errors import UsageError

    try:
        return str(check_after(text, argument="--after"))
    except UsageError:
        raise argparse.ArgumentTypeError(
            f"not a time with a zone (e.g. 2024-06-01T00:00:00Z): {text!r}") from None


def _seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text}")
    return value


def _url(text: str) -> str:
    """An argparse type: an http(s) URL with a host (a PDS, relay, PLC or resolver)."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r} (e.g. "
                                         "https://pds.example)")
    return text


def _collection(text: str) -> str:
    """An argparse type: an NSID or a prefix ending in ``.*``, as ``collections=`` takes."""
    from .snapshot import collection_ranges

    return _library_check(text, lambda: collection_ranges([text]))


def _did_key(text: str) -> str:
    """An argparse type: a ``did:key`` that parses as a P-256 or K-256 key."""
    from .crypto import parse_did_key

    return _library_check(text, lambda: parse_did_key(text))


def _did(text: str) -> str:
    """An argparse type: a DID."""
    from .syntax import is_did

    if not is_did(text):
        raise argparse.ArgumentTypeError(f"not a DID: {text!r} (e.g. did:plc:...)")
    return text


def _library_check(text: str, check: Callable[[], object]) -> str:
    """``text``, once the library's own ``check`` of it passed; its refusal becomes argparse's."""
    try:
        check()
    except AtrepoError as error:
        hint = f" ({error.hint})" if error.hint else ""
        raise argparse.ArgumentTypeError(f"{error.message}: {text!r}{hint}") from error
    return text


# -- the parser -----------------------------------------------------------------------------


def _client_options() -> argparse.ArgumentParser:
    """Options every network command takes, as an argparse parent."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("client options")
    group.add_argument("--plc-url", metavar="URL", type=_url,
                       help="PLC directory for did:plc (default: https://plc.directory)")
    group.add_argument("--handle-resolver", metavar="URL", type=_url,
                       help="XRPC service asked to resolve handles that DNS and HTTPS do "
                            "not (e.g. a PDS, for the sandbox's .test handles)")
    group.add_argument("--cache-dir", metavar="DIR",
                       help="cache of repositories and identities (default: "
                            "$ATREPO_CACHE_DIR, $XDG_CACHE_HOME/atrepo or ~/.cache/atrepo)")
    group.add_argument("--no-verify", action="store_true",
                       help="do not check commit signatures and handles")
    _progress_option(group)
    return parent


def _progress_option(group: argparse._ActionsContainer) -> None:
    group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bars on stderr (default: when stderr is a terminal)")


def _rows_options(parser: argparse.ArgumentParser, *, collections: bool) -> None:
    """``--json``, ``--parquet`` and (for repository commands) ``--collection``."""
    if collections:
        _collection_option(parser)
    parser.add_argument("--json", action="store_true",
                        help="print JSON lines (one object per row) instead of a table")
    parser.add_argument("--parquet", metavar="FILE", help="also write the rows to FILE")


def _collection_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", action="append", metavar="NSID", type=_collection,
                        help="only this collection (an NSID or a prefix ending in .*); "
                             "repeatable")


def _command(commands: Any, name: str, run: Command, summary: str, examples: str,
             parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add subcommand ``name`` running ``run``, its docstring as description, with examples."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=run.__doc__, parents=list(parents),
        epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atrepo", description="AT Protocol repositories as data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 ok, 2 usage, 3 malformed CAR/MST/CBOR, 4 signature, "
               "5 resolution,\n6 repository unavailable, 7 network, 1 other, 130 interrupted.\n"
               "`atrepo COMMAND --help` shows each command's options and examples.")
    parser.add_argument("--version", action="version", version=f"atrepo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client = [_client_options()]

    cmd = _command(commands, "resolve", _resolve, "resolve a handle, DID or AT-URI",
                   "  atrepo resolve alice.bsky.social\n"
                   "  atrepo resolve did:plc:ewvi7nxzyoun6zhxrhs64oiz --json", client)
    cmd.add_argument("name", help="handle, DID or at:// URI")
    cmd.add_argument("--json", action="store_true", help="print one JSON document")

    cmd = _command(commands, "repo", _repo, "fetch and verify one repository",
                   "  atrepo repo alice.bsky.social\n"
                   "  atrepo repo alice.bsky.social --collection app.bsky.feed.post "
                   "--parquet posts.parquet\n"
                   "  atrepo repo did:plc:... --json | jq -r .record.text", client)
    cmd.add_argument("name", help="handle, DID or at:// URI")
    _rows_options(cmd, collections=True)

    cmd = _command(commands, "ls", _ls, "list the repositories a PDS or relay hosts",
                   "  atrepo ls https://pds.example\n"
                   "  atrepo ls https://bsky.network --limit 1000 --parquet repos.parquet",
                   client)
    cmd.add_argument("host", type=_url, help="the host's base URL")
    cmd.add_argument("--limit", type=_int_in(1), metavar="N", help="stop after N repositories")
    _rows_options(cmd, collections=False)

    cmd = _command(commands, "hosts", _hosts, "list the hosts a relay crawls",
                   "  atrepo hosts https://bsky.network\n"
                   "  atrepo hosts https://bsky.network --json | jq -r 'select(.status==\"active\")"
                   " | .host'", client)
    cmd.add_argument("relay_url", metavar="RELAY_URL", type=_url, help="the relay's base URL")
    cmd.add_argument("--limit", type=_int_in(1), metavar="N", help="stop after N hosts")
    cmd.add_argument("--resume", action="store_true",
                     help="continue an interrupted listing from its saved cursor")
    _rows_options(cmd, collections=False)

    cmd = _command(commands, "plc", _plc,
                   "each DID's current PDS, handle and key from the PLC directory's log",
                   "  atrepo plc --limit 10000 --parquet plc.parquet\n"
                   "  atrepo plc --after 2024-06-01T00:00:00Z --json\n"
                   "  atrepo plc --plc-url http://localhost:2582   # the sandbox's directory",
                   client)
    cmd.add_argument("--after", metavar="TIME", type=_instant,
                     help="only operations after TIME (ISO 8601 with a zone, e.g. "
                          "2024-06-01T00:00:00Z)")
    cmd.add_argument("--limit", type=_int_in(1), metavar="N", help="stop after N operations")
    cmd.add_argument("--resume", action="store_true",
                     help="continue an interrupted listing from its saved cursor")
    _rows_options(cmd, collections=False)

    cmd = _command(commands, "diff", _diff, "what changed since the newest stored snapshot",
                   "  atrepo repo alice.bsky.social     # stores a snapshot\n"
                   "  atrepo diff alice.bsky.social     # later: creates, updates, deletes\n"
                   "  atrepo diff alice.bsky.social --json | jq -c 'select(.action==\"create\")'",
                   client)
    cmd.add_argument("name", help="handle, DID or at:// URI")
    _rows_options(cmd, collections=True)

    cmd = _command(commands, "export", _export,
                   "write repositories to a Delta Lake dataset, or bring one up to date",
                   "  atrepo export alice.bsky.social bob.bsky.social out/\n"
                   "  atrepo export https://pds.example out/ --collection app.bsky.feed.post\n"
                   "  # read it: pl.scan_parquet('out/**/*.parquet', hive_partitioning=True)",
                   client)
    cmd.add_argument("names", nargs="+", metavar="NAME_OR_HOST",
                     help="handles or DIDs, or one host URL (all its active repositories)")
    cmd.add_argument("out_dir", metavar="OUT_DIR", help="the dataset directory")
    _collection_option(cmd)
    cmd.add_argument("--no-resume", action="store_true",
                     help="start the dataset afresh instead of skipping finished repositories")
    cmd.add_argument("--json", action="store_true", help="print one JSON document")

    cmd = _command(commands, "inspect", _inspect, "summarise a repository CAR file offline",
                   "  atrepo inspect alice.car\n"
                   "  atrepo inspect alice.car --signing-key did:key:zQ3sh... --json\n"
                   "  atrepo inspect alice.car --collection app.bsky.* --parquet bsky.parquet")
    cmd.add_argument("file", help="path to a repository CAR")
    cmd.add_argument("--signing-key", type=_did_key,
                     help="did:key to verify the commit signature with")
    cmd.add_argument("--did", type=_did, help="the DID the commit must belong to")
    _collection_option(cmd)
    cmd.add_argument("--json", action="store_true", help="print one JSON document")
    cmd.add_argument("--parquet", metavar="FILE", help="also write the records to FILE")
    _progress_option(cmd)

    cmd = _command(commands, "sandbox", _sandbox,
                   "start a local reference PLC + PDS with sample accounts",
                   "  atrepo sandbox\n"
                   "  atrepo sandbox --plc-port 2582 --pds-port 2583\n"
                   "  atrepo sandbox --pds-count 3 --bulk-accounts 30   # three hosts, a moved "
                   "account\n"
                   "  atrepo sandbox --json      # one line: plc_url, pds_url, accounts")
    port = _int_in(0, 65535)
    cmd.add_argument("--plc-port", type=port, default=0, metavar="N",
                     help="PLC port (default: any free port)")
    cmd.add_argument("--pds-port", type=port, default=0, metavar="N",
                     help="the first PDS's port (default: any free port)")
    cmd.add_argument("--relay-port", type=port, default=0, metavar="N",
                     help="the relay's port (listHosts; default: any free port)")
    cmd.add_argument("--pds-count", type=_int_in(1, MAX_PDS_COUNT), default=1, metavar="N",
                     help="PDSes on the one PLC; with 2 or more, moved.test moves from the "
                          "first to the second (default: 1)")
    cmd.add_argument("--bulk-accounts", type=_int_in(0, MAX_BULK_ACCOUNTS), default=0,
                     metavar="N", help="more active accounts, bulk000.test ..., spread over "
                                       "the PDSes (default: 0)")
    cmd.add_argument("--bulk-records", type=_int_in(MIN_BULK_RECORDS), default=100,
                     metavar="M", help="records of each bulk account (default: 100)")
    cmd.add_argument("--json", action="store_true",
                     help="print one JSON line (plc_url, pds_url, pds_urls, relay_url, "
                          "handle_resolver, admin_password, accounts)")
    cmd.add_argument("--cache-dir", metavar="DIR",
                     help="where to install the node project if atrepo's copy is read-only")
    cmd.add_argument("--timeout", type=_seconds, default=120, metavar="SECONDS",
                     help="how long to wait for the servers to come up (default: 120)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()  # a reader gone early shows here, not in the interpreter's last flush
    except BrokenPipeError:
        # The reader stopped early (`atrepo ls HOST | head`): it has what it wanted, so this
        # is not a failure (the Python docs' recipe exits 1, which here would read as an
        # atrepo error). Output left in the buffer goes nowhere.
        _stdout_to_devnull()
        return 0
    except AtrepoError as error:
        print(f"atrepo: {error}", file=sys.stderr)
        return _exit_code(error)
    except OSError as error:  # e.g. an unwritable --parquet path or OUT_DIR
        print(f"atrepo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("atrepo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _stdout_to_devnull() -> None:
    """Point the stdout file descriptor at devnull, so that flushing at exit cannot fail.

    The recipe of the Python docs for SIGPIPE (the ``signal`` module's notes). A stdout that
    is not a file (captured, in tests) has nothing to flush at exit and is left alone.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
