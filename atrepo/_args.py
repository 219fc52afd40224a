"""Checks of the arguments of the public calls, made before any work starts.

Each check returns the argument in the form the call works with, or raises
:class:`~atrepo.errors.UsageError` naming the argument. Only the types and forms a call
takes are checked here; what the network or the cache says about a value (a handle that
does not resolve, say) is the business of the call itself.

Rules a careful user expects:

* a single string where a call takes names is one name, never its characters;
* a polars DataFrame or LazyFrame with a ``did`` column (``list_repos``, ``list_plc``,
  ``list_repos_by_collection``, or one of the user's own) names its DIDs, each once, in
  order; its ``host`` column, else its ``pds`` column, says where each was listed;
* a host is an ``http://`` or ``https://`` URL; ``"localhost:2583"`` (no scheme) is refused
  with the URL it probably meant rather than taken for a handle;
* a count is an ``int`` (not a ``bool``, not a numeric string).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from ._text import preview
from .errors import UsageError
from .syntax import is_nsid

__all__ = ["Listed", "check_after", "check_collection", "check_collections", "check_flag",
           "check_host", "check_limit", "check_names", "check_out_dir", "check_source",
           "framed_names", "is_host_url"]

_SCHEMES: Final = ("http://", "https://")
_HOST_HINT: Final = "a host is a URL, e.g. https://bsky.network or http://localhost:2583"


def is_host_url(text: str) -> bool:
    """Whether ``text`` is an ``http(s)://`` URL with something after the scheme."""
    return text.startswith(_SCHEMES) and bool(text.split("://", 1)[1].strip("/"))


def check_host(host: object, *, argument: str = "host") -> str:
    """Return ``host``, an ``http(s)://`` URL, without a trailing slash.

    Raises:
        UsageError: not a string, or not an http(s) URL.
    """
    if not isinstance(host, str) or not is_host_url(host.strip()):
        hint = _HOST_HINT
        if isinstance(host, str) and _looks_like_host(host):
            hint = f"did you mean http://{host.strip()}?"
        raise UsageError("host must be a URL", argument=argument,
                         host=preview(host) if isinstance(host, str) else type(host).__name__,
                         hint=hint)
    return host.strip().rstrip("/")


def _looks_like_host(text: str) -> bool:
    """``host:port``, the form a URL without its scheme takes (a handle has no colon)."""
    host, sep, port = text.strip().rpartition(":")
    return bool(sep and host and port.isascii() and port.isdigit()
                and not text.startswith(("did:", "at://")))


def check_names(names: object, *, argument: str) -> list[str]:
    """Return the names a bulk call was given: a string is one name, a frame its DIDs (see
    :func:`framed_names`), else each item.

    Raises:
        UsageError: not a string, a frame with a ``did`` column or an iterable of strings
            (the first offending item is named by its index).
    """
    framed = framed_names(names, argument=argument)
    if framed is not None:
        return framed.names
    return _strings(names, argument, "DIDs or handles, e.g. ['alice.bsky.social']")


@dataclass(frozen=True, slots=True)
class Listed:
    """The repositories a frame names, each once, with what its listing says of each.

    Attributes:
        names: the DIDs, in the frame's order.
        hosts: where each was listed: the ``host`` column, else ``pds`` (``list_plc``).
        heads: the commit CID its host lists (``list_repos``' ``head``), when the frame has it.
        revs: the revision its host lists (``rev``), when the frame has it.
        inactive: why its host lists it as inactive (``list_repos``' ``status`` where
            ``active`` is false, ``"inactive"`` when it gives none), None when active or
            when the frame has no ``active`` column.
    """

    names: list[str]
    hosts: list[str | None]
    heads: list[str | None]
    revs: list[str | None]
    inactive: list[str | None]


_LISTED_BY: Final = ("host", "pds")  # the columns that say where a frame's DIDs were listed


def framed_names(source: object, *, argument: str) -> Listed | None:
    """Return the DIDs of a polars DataFrame or LazyFrame and their listing hosts, or None
    when ``source`` is not a frame.

    The ``did`` column is read in order, and a DID met again is dropped (a frame of several
    hosts' listings names a moved account twice; it is one repository). The listing host
    of each is its ``host`` column, else its ``pds`` column (``list_plc``), else None.
    Polars is only touched when ``source`` is already one of its frames.

    Raises:
        UsageError: the frame has no ``did`` column, it is not a string column, or it holds
            a null (named by its row).
    """
    if type(source).__module__.split(".")[0] != "polars":
        return None
    import polars as pl  # loaded already: source is one of its frames

    if not isinstance(source, (pl.DataFrame, pl.LazyFrame)):
        return None
    schema = source.collect_schema()
    if "did" not in schema:
        raise UsageError("a frame of repositories needs a did column", argument=argument,
                         columns=preview(list(schema.names())),
                         hint="e.g. client.list_repos(host) or client.list_plc()")
    if schema["did"] != pl.String:
        raise UsageError("the did column must hold strings", argument=argument,
                         dtype=str(schema["did"]))
    by = next((name for name in _LISTED_BY if schema.get(name) == pl.String), None)
    status = pl.col("status") if schema.get("status") == pl.String else pl.lit(None, pl.String)
    columns: Any = source.select(
        "did", (pl.col(by) if by else pl.lit(None, pl.String)).alias("host"),
        *(pl.col(name) if schema.get(name) == pl.String else pl.lit(None, pl.String).alias(name)
          for name in ("head", "rev")),
        (pl.when(~pl.col("active")).then(status.fill_null("inactive"))
         if schema.get("active") == pl.Boolean else pl.lit(None, pl.String)).alias("inactive"))
    frame = columns.collect() if isinstance(columns, pl.LazyFrame) else columns
    nulls = frame.get_column("did").is_null()
    if nulls.any():
        raise UsageError("the did column holds a null", argument=argument,
                         row=int(nulls.arg_true()[0]))
    frame = frame.unique("did", keep="first", maintain_order=True)
    return Listed(*(frame.get_column(name).to_list()
                    for name in ("did", "host", "head", "rev", "inactive")))


def _strings(value: object, argument: str, example: str) -> list[str]:
    """``[value]`` for a string, else the items of an iterable of strings."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Iterable) or isinstance(value, (bytes, bytearray)):
        raise UsageError("expected a string or an iterable of strings", argument=argument,
                         type=type(value).__name__, hint=f"pass {example}")
    out = list(value)
    for i, item in enumerate(out):
        if not isinstance(item, str):
            raise UsageError("expected strings", argument=argument, index=i,
                             type=type(item).__name__, hint=f"pass {example}")
    return out


def check_source(source: object, *, argument: str = "source") -> list[str] | str:
    """Return what an export reads: a host URL (str) or the names it lists (list).

    A string is a host when it has a scheme, and one name otherwise; a string of the form
    ``host:port`` is a host without its scheme, and refused as such.

    A polars frame is the DIDs of its ``did`` column (see :func:`framed_names`).

    Raises:
        UsageError: a ``host:port`` or non-http(s) URL, names that are not strings, or a
            frame without a string ``did`` column.
    """
    if isinstance(source, str):
        text = source.strip()
        if "://" in text and not text.startswith("at://") or _looks_like_host(text):
            return check_host(text, argument=argument)
        return [source]
    return check_names(source, argument=argument)


def check_limit(limit: object, *, argument: str = "limit") -> int | None:
    """Return ``limit``: None (no limit) or a whole number >= 0.

    Raises:
        UsageError: anything else (a string, a float, a bool, a negative number).
    """
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UsageError("must be a whole number >= 0 or None", argument=argument,
                         value=_shown(limit))
    return limit


def check_after(after: object, *, argument: str = "after") -> str | None:
    """Return ``after`` as the PLC export writes times (``2024-01-01T00:00:00.000Z``).

    Takes None (the start of the log), an ISO 8601 string with a time zone, or an aware
    datetime (say, the newest ``created_at`` of an earlier ``list_plc`` frame).

    Raises:
        UsageError: anything else, a naive datetime included (its zone would be a guess).
    """
    if after is None:
        return None
    moment = after
    if isinstance(after, str):
        try:
            moment = datetime.fromisoformat(after.strip())
        except ValueError:
            moment = None
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise UsageError("must be None, or a datetime (or ISO 8601 string) with a time zone",
                         argument=argument, value=_shown(after),
                         hint="e.g. '2024-01-01T00:00:00Z' or frame['created_at'].max()")
    utc = moment.astimezone(timezone.utc)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_flag(value: object, *, argument: str) -> bool:
    """Return ``value``, which must be True or False.

    Raises:
        UsageError: anything else (``"no"`` would otherwise count as true).
    """
    if not isinstance(value, bool):
        raise UsageError("must be True or False", argument=argument,
                         value=_shown(value))
    return value


def _shown(value: object) -> str:
    """``value`` for a message, quoted when a string (``'10'`` is not ``10``)."""
    return f"'{preview(value)}'" if isinstance(value, str) else preview(value)


def check_out_dir(out_dir: object, *, argument: str = "out_dir") -> Path:
    """Return ``out_dir`` as a Path: a directory, or a path where one can be created.

    Raises:
        UsageError: not a path, or an existing file (or a file in the way of its parents).
    """
    if not isinstance(out_dir, (str, os.PathLike)):
        raise UsageError("must be a path", argument=argument, type=type(out_dir).__name__)
    path = Path(out_dir)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise UsageError("is a file, not a directory", argument=argument,
                                 path=str(path), file=str(part),
                                 hint="give a directory (it is created when missing)")
            break
    return path


def check_collections(collections: object, *, argument: str = "collections"
                      ) -> Sequence[str] | None:
    """Return ``collections``: None (all) or a list of NSIDs; a string is one collection.

    The NSIDs themselves are checked where the filter is built.

    Raises:
        UsageError: not a string, None or an iterable of strings.
    """
    if collections is None:
        return None
    return _strings(collections, argument, "NSIDs, e.g. ['app.bsky.feed.post']")


def check_collection(collection: object, *, argument: str = "collection") -> str:
    """Return ``collection``, one NSID (``app.bsky.feed.post``).

    Raises:
        UsageError: not a string, or not an NSID.
    """
    if not isinstance(collection, str) or not is_nsid(collection):
        raise UsageError("expected a collection NSID", argument=argument,
                         value=_shown(collection), hint="e.g. 'app.bsky.feed.post'")
    return collection
