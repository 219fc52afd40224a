"""Bluesky research views: one flat, typed frame per kind of record, as analyses use them.

Each view takes a :class:`~atrepo.RepoSnapshot`, a ``records`` frame (from
:attr:`RepoSnapshot.records <atrepo.snapshot.RepoSnapshot.records>` or
``client.fetch_records``, any number of repositories), a ``LazyFrame`` of records (only the
view's collection is collected), or anything with a ``records`` attribute (a dataset), and
returns a ``polars.DataFrame`` with a declared schema: the same columns for any input,
also when it holds no such records. Every view starts with ``did, rkey, uri, cid``, and
every row is one record, in the order of the input.

============== ============================== ============================================
view           collection                     one row per
============== ============================== ============================================
posts          app.bsky.feed.post             post (text, langs, reply, quote, embed, ...)
post_facets    app.bsky.feed.post             facet feature, with the text it covers
likes          app.bsky.feed.like             like (subject uri, did, cid)
reposts        app.bsky.feed.repost           repost (subject uri, did, cid)
follows        app.bsky.graph.follow          follow (subject did)
blocks         app.bsky.graph.block           block (subject did)
profiles       app.bsky.actor.profile         profile (display name, description, ...)
lists          app.bsky.graph.list            list (name, purpose, description)
list_items     app.bsky.graph.listitem        list membership (list uri, subject did)
starter_packs  app.bsky.graph.starterpack     starter pack (name, list uri, feeds)
threadgates    app.bsky.feed.threadgate       thread gate (who may reply)
postgates      app.bsky.feed.postgate         post gate (quoting rules, detached quotes)
============== ============================== ============================================

Columns hold what the record says: ``created_at`` is the client's claim (null when it is
not a datetime within 1990-2100); ``tid_time`` is the time encoded in a TID record key
(null for other keys), which the client also chose but which PDSes generate.

Facets mark ranges of a post's text by UTF-8 byte offsets (``byteStart`` inclusive,
``byteEnd`` exclusive; https://atproto.com/specs/lexicon, app.bsky.richtext.facet). A range
out of bounds, reversed, or cutting a multi-byte character is a problem, not a crash: its
text is null in ``post_facets`` (with the reason in its ``problem`` column) and a row of
:func:`problems`. Invalid records are rows of :func:`problems` too (and, for a snapshot,
of its ``problems``).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from .tables import DATETIME_RANGE, Source, table, table_with_problems

__all__ = ["blocks", "follows", "likes", "list_items", "lists", "post_facets", "postgates",
           "posts", "problems", "profiles", "reposts", "slice_utf8", "starter_packs",
           "threadgates", "tid_time"]

POST, LIKE, REPOST = "app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.feed.repost"
FOLLOW, BLOCK = "app.bsky.graph.follow", "app.bsky.graph.block"
PROFILE, LIST, LIST_ITEM = "app.bsky.actor.profile", "app.bsky.graph.list", \
    "app.bsky.graph.listitem"
STARTER_PACK = "app.bsky.graph.starterpack"
THREADGATE, POSTGATE = "app.bsky.feed.threadgate", "app.bsky.feed.postgate"

_FACET = "app.bsky.richtext.facet"
_EMBED_KINDS = {"app.bsky.embed.images": "images", "app.bsky.embed.video": "video",
                "app.bsky.embed.external": "external", "app.bsky.embed.record": "record",
                "app.bsky.embed.recordWithMedia": "record_with_media"}
_KEYS = ["did", "rkey", "uri", "cid"]
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TID = r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$"

# -- shared pieces ----------------------------------------------------------------------

def _did_of(uri: pl.Expr) -> pl.Expr:
    """The authority (the DID) of an ``at://`` URI."""
    return uri.str.extract(r"^at://([^/?#]+)", 1)


def tid_time(rkey: pl.Expr) -> pl.Expr:
    """Return the time a TID record key encodes (UTC), null for keys that are not TIDs.

    A TID is 13 base32-sortable characters of a 64-bit integer: after the top (zero) bit,
    53 bits of microseconds since the Unix epoch, then 10 bits of clock identifier
    (https://atproto.com/specs/tid). Times outside 1990-2100 are null.

    Example:
        >>> import polars as pl
        >>> from atrepo.bluesky import tid_time
        >>> pl.select(tid_time(pl.lit("3jzfcijpj2z2a"))).item()
        datetime.datetime(2023, 6, 30, 15, 3, 1, 887007, tzinfo=zoneinfo.ZoneInfo(key='UTC'))
    """
    value = pl.lit(0, dtype=pl.UInt64)
    for i in range(13):
        digit = rkey.str.slice(i, 1).str.replace_many(
            list(_TID_ALPHABET), [str(n) + "," for n in range(32)])
        value = value * 32 + digit.str.strip_suffix(",").cast(pl.UInt64, strict=False)
    micros = (value // 1024).cast(pl.Int64)
    moment = pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC")
    low, high = (pl.lit(bound) for bound in DATETIME_RANGE)
    return (pl.when(rkey.str.contains(_TID) & moment.is_between(low, high, closed="left"))
            .then(moment).otherwise(None))


def _short_type(expr: pl.Expr, prefix: str) -> pl.Expr:
    """A union member's ``$type`` without its lexicon prefix (``...#mention`` -> mention)."""
    return expr.str.strip_suffix("#main").str.strip_prefix(prefix)


def _select(source: Source, collection: str, columns: list[pl.Expr]) -> pl.DataFrame:
    """The keys and ``columns`` of ``collection``'s declared table in ``source``."""
    return table(source, collection).select(pl.col(_KEYS), *columns)


def problems(source: Source, collection: str = POST) -> pl.DataFrame:
    """Return the problems behind a view: invalid records of ``collection`` and, for posts,
    facet ranges that are not whole-character ranges of the text.

    Columns ``collection, rkey, cid, error`` (as :attr:`RepoSnapshot.problems
    <atrepo.snapshot.RepoSnapshot.problems>`); empty when all is well.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
        collection: the NSID whose problems to return.
    """
    typed, found = table_with_problems(source, collection)
    if collection != POST:
        return found
    facets = _facet_slices(typed).filter(pl.col("problem").is_not_null())
    misaligned = facets.unique(["did", "rkey", "cid", "facet"], keep="first",
                               maintain_order=True)
    return pl.concat([found, misaligned.select(
        pl.lit(POST).alias("collection"), "rkey", "cid", pl.col("problem").alias("error"))])


# -- posts --------------------------------------------------------------------------------

def _features() -> pl.Expr:
    return pl.col("facets").list.eval(
        pl.element().struct.field("features").list.explode(keep_nulls=False,
                                                            empty_as_null=False))


def _feature_values(kind: str, field: str) -> pl.Expr:
    member = f"{_FACET}#{kind}"
    return _features().list.eval(
        pl.element().filter(pl.element().struct.field("$type") == member)
        .struct.field(field))


def _post_columns() -> list[pl.Expr]:
    embed = pl.col("embed")
    kind = embed.struct.field("$type").str.strip_suffix("#main")
    media = embed.struct.field("media")
    images = pl.coalesce(embed.struct.field("images"), media.struct.field("images"))
    video = pl.when(kind == "app.bsky.embed.video").then(embed).otherwise(media)
    external = pl.coalesce(embed.struct.field("external"), media.struct.field("external"))
    quote = (pl.when(kind == "app.bsky.embed.record")
             .then(embed.struct.field("record").struct.field("uri"))
             .when(kind == "app.bsky.embed.recordWithMedia")
             .then(embed.struct.field("record").struct.field("record").struct.field("uri")))
    reply = pl.col("reply")
    root = reply.struct.field("root").struct.field("uri")
    parent = reply.struct.field("parent").struct.field("uri")
    hashtags = pl.concat_list(_feature_values("tag", "tag").fill_null([]),
                              pl.col("tags").fill_null([]))
    return [
        pl.col("text"),
        pl.col("langs"),
        pl.col("createdAt").alias("created_at"),
        tid_time(pl.col("rkey")).alias("tid_time"),
        root.alias("reply_root_uri"), _did_of(root).alias("reply_root_did"),
        parent.alias("reply_parent_uri"), _did_of(parent).alias("reply_parent_did"),
        quote.alias("quote_uri"), _did_of(quote).alias("quote_did"),
        kind.replace(_EMBED_KINDS).alias("embed_type"),
        images.list.len().fill_null(0).alias("image_count"),
        images.list.eval(pl.element().struct.field("alt")).alias("image_alts"),
        video.struct.field("video").struct.field("ref").alias("video_cid"),
        video.struct.field("alt").alias("video_alt"),
        external.struct.field("uri").alias("external_uri"),
        external.struct.field("title").alias("external_title"),
        external.struct.field("description").alias("external_description"),
        _feature_values("mention", "did").fill_null([]).alias("mentions"),
        _feature_values("link", "uri").fill_null([]).alias("links"),
        hashtags.alias("tags"),
        pl.col("labels").struct.field("values")
        .list.eval(pl.element().struct.field("val")).fill_null([]).alias("labels"),
    ]


def posts(source: Source) -> pl.DataFrame:
    """Return one row per post: text, langs, times, reply, quote, embed and facet values.

    Columns: ``did, rkey, uri, cid, text, langs, created_at, tid_time, reply_root_uri,
    reply_root_did, reply_parent_uri, reply_parent_did, quote_uri, quote_did, embed_type``
    (``images``, ``video``, ``external``, ``record``, ``record_with_media``, another
    ``$type``, or null), ``image_count, image_alts, video_cid, video_alt, external_uri,
    external_title, external_description, mentions`` (DIDs), ``links`` (URIs), ``tags``
    (facet hashtags, then the record's ``tags``), ``labels`` (self-label values).
    Media of a quote with media (``record_with_media``) fill the same columns.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.

    Example:
        >>> import atrepo
        >>> from atrepo import bluesky
        >>> snap = atrepo.read_car("examples/data/sample.car")
        >>> frame = bluesky.posts(snap)
        >>> frame.height, frame.columns[4:8]
        (108, ['text', 'langs', 'created_at', 'tid_time'])
    """
    return _select(source, POST, _post_columns())


# -- facets -------------------------------------------------------------------------------

def slice_utf8(data: bytes, start: Any, end: Any) -> str | None:
    """Return ``data[start:end]`` decoded, or None when it is not a whole-character range.

    None when an offset is not an integer, ``start < 0``, ``end > len(data)``,
    ``start > end``, or either offset falls inside a multi-byte UTF-8 character.

    Example:
        >>> from atrepo.bluesky import slice_utf8
        >>> data = "olá #bsky".encode()
        >>> slice_utf8(data, 5, 10), slice_utf8(data, 0, 3)
        ('#bsky', None)
    """
    if (not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool)
            or isinstance(end, bool) or not 0 <= start <= end <= len(data)):
        return None
    # a continuation byte (0b10xxxxxx) at either edge means the range cuts a character
    if (start < len(data) and data[start] & 0xC0 == 0x80) or (
            end < len(data) and data[end] & 0xC0 == 0x80):
        return None
    return data[start:end].decode("utf-8")


FACETS_SCHEMA = pl.Schema({
    "did": pl.String, "rkey": pl.String, "uri": pl.String, "cid": pl.String,
    "facet": pl.UInt32, "byte_start": pl.Int64, "byte_end": pl.Int64, "text": pl.String,
    "feature": pl.String, "value": pl.String, "problem": pl.String,
})


def _facet_slices(table: pl.DataFrame) -> pl.DataFrame:
    """One row per facet feature of a post table, with the text its range covers."""
    rows: list[tuple[Any, ...]] = []
    with_facets = table.filter(pl.col("facets").list.len() > 0)
    for did, rkey, uri, cid, text, facets in with_facets.select(
            *_KEYS, "text", "facets").iter_rows():
        data = (text or "").encode("utf-8")
        for n, facet in enumerate(facets):
            index = facet["index"] or {}
            start, end = index.get("byteStart"), index.get("byteEnd")
            covered = slice_utf8(data, start, end)
            problem = None if covered is not None else (
                f"Record/facets/{n}/index: bytes [{start}, {end}) are not a whole-character "
                f"range of the {len(data)}-byte text")
            for feature in facet["features"] or [{"$type": None}]:
                kind = feature.get("$type")
                short = kind.removeprefix(f"{_FACET}#") if kind else None
                value = feature.get("did") or feature.get("uri") or feature.get("tag")
                rows.append((did, rkey, uri, cid, n, start, end, covered, short, value,
                             problem))
    return pl.DataFrame(rows, schema=FACETS_SCHEMA, orient="row")


def post_facets(source: Source) -> pl.DataFrame:
    """Return one row per facet feature of every post, with the text its range covers.

    Columns: ``did, rkey, uri, cid, facet`` (the facet's position in the post),
    ``byte_start, byte_end, text`` (the covered text), ``feature`` (``mention``, ``link``,
    ``tag``, or another member's ``$type``), ``value`` (the DID, URI or tag), ``problem``
    (null, or why the range is not a whole-character range of the post's UTF-8 text, in
    which case ``text`` is null; :func:`problems` lists these too).

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.

    Example:
        >>> import atrepo
        >>> from atrepo import bluesky
        >>> facets = bluesky.post_facets(atrepo.read_car("examples/data/sample.car"))
        >>> facets.filter(feature="tag").select("text", "value").row(0)
        ('#art', 'art')
    """
    return _facet_slices(table(source, POST))


# -- the other record kinds ---------------------------------------------------------------

def _subject_columns() -> list[pl.Expr]:
    subject = pl.col("subject")
    return [subject.struct.field("uri").alias("subject_uri"),
            _did_of(subject.struct.field("uri")).alias("subject_did"),
            subject.struct.field("cid").alias("subject_cid"),
            pl.col("createdAt").alias("created_at"),
            tid_time(pl.col("rkey")).alias("tid_time"),
            pl.col("via").struct.field("uri").alias("via_uri")]


def _graph_columns() -> list[pl.Expr]:
    return [pl.col("subject").alias("subject_did"), pl.col("createdAt").alias("created_at"),
            tid_time(pl.col("rkey")).alias("tid_time")]


def _profile_columns() -> list[pl.Expr]:
    return [pl.col("displayName").alias("display_name"), pl.col("description"),
            pl.col("pronouns"), pl.col("website"),
            pl.col("avatar").struct.field("ref").alias("avatar_cid"),
            pl.col("banner").struct.field("ref").alias("banner_cid"),
            pl.col("pinnedPost").struct.field("uri").alias("pinned_post_uri"),
            pl.col("joinedViaStarterPack").struct.field("uri")
            .alias("joined_via_starter_pack_uri"),
            pl.col("labels").struct.field("values")
            .list.eval(pl.element().struct.field("val")).alias("labels"),
            pl.col("createdAt").alias("created_at")]


def _list_columns() -> list[pl.Expr]:
    return [pl.col("name"), _short_type(pl.col("purpose"), "app.bsky.graph.defs#")
            .alias("purpose"), pl.col("description"),
            pl.col("avatar").struct.field("ref").alias("avatar_cid"),
            pl.col("createdAt").alias("created_at"),
            tid_time(pl.col("rkey")).alias("tid_time")]


def _list_item_columns() -> list[pl.Expr]:
    return [pl.col("list").alias("list_uri"), _did_of(pl.col("list")).alias("list_did"),
            pl.col("subject").alias("subject_did"), pl.col("createdAt").alias("created_at"),
            tid_time(pl.col("rkey")).alias("tid_time")]


def _starter_pack_columns() -> list[pl.Expr]:
    return [pl.col("name"), pl.col("description"), pl.col("list").alias("list_uri"),
            pl.col("feeds").list.eval(pl.element().struct.field("uri")).alias("feed_uris"),
            pl.col("createdAt").alias("created_at"),
            tid_time(pl.col("rkey")).alias("tid_time")]


def _threadgate_columns() -> list[pl.Expr]:
    allow = pl.col("allow")
    return [pl.col("post").alias("post_uri"),
            allow.list.eval(_short_type(pl.element().struct.field("$type"),
                                        "app.bsky.feed.threadgate#")).alias("allow"),
            allow.list.eval(pl.element().struct.field("list").drop_nulls())
            .alias("allow_lists"),
            pl.col("hiddenReplies").alias("hidden_replies"),
            pl.col("createdAt").alias("created_at")]


def _postgate_columns() -> list[pl.Expr]:
    rules = pl.col("embeddingRules").list.eval(pl.element().struct.field("$type"))
    return [pl.col("post").alias("post_uri"),
            rules.list.contains("app.bsky.feed.postgate#disableRule")
            .alias("embedding_disabled"),
            pl.col("detachedEmbeddingUris").alias("detached_embedding_uris"),
            pl.col("createdAt").alias("created_at")]


def likes(source: Source) -> pl.DataFrame:
    """Return one row per like: ``subject_uri, subject_did, subject_cid, created_at,
    tid_time, via_uri`` (the repost it came through) after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, LIKE, _subject_columns())


def reposts(source: Source) -> pl.DataFrame:
    """Return one row per repost: ``subject_uri, subject_did, subject_cid, created_at,
    tid_time, via_uri`` after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, REPOST, _subject_columns())


def follows(source: Source) -> pl.DataFrame:
    """Return one row per follow: ``subject_did, created_at, tid_time`` after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, FOLLOW, _graph_columns())


def blocks(source: Source) -> pl.DataFrame:
    """Return one row per block: ``subject_did, created_at, tid_time`` after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, BLOCK, _graph_columns())


def profiles(source: Source) -> pl.DataFrame:
    """Return one row per profile record: ``display_name, description, pronouns, website,
    avatar_cid, banner_cid, pinned_post_uri, joined_via_starter_pack_uri, labels,
    created_at`` after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, PROFILE, _profile_columns())


def lists(source: Source) -> pl.DataFrame:
    """Return one row per list: ``name, purpose`` (``modlist``, ``curatelist``,
    ``referencelist``), ``description, avatar_cid, created_at, tid_time`` after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, LIST, _list_columns())


def list_items(source: Source) -> pl.DataFrame:
    """Return one row per list membership: ``list_uri, list_did, subject_did, created_at,
    tid_time`` after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, LIST_ITEM, _list_item_columns())


def starter_packs(source: Source) -> pl.DataFrame:
    """Return one row per starter pack: ``name, description, list_uri, feed_uris,
    created_at, tid_time`` after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, STARTER_PACK, _starter_pack_columns())


def threadgates(source: Source) -> pl.DataFrame:
    """Return one row per thread gate: ``post_uri, allow`` (rule names ``mentionRule``,
    ``followerRule``, ``followingRule``, ``listRule``; null when anyone may reply, empty
    when nobody may), ``allow_lists, hidden_replies, created_at`` after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, THREADGATE, _threadgate_columns())


def postgates(source: Source) -> pl.DataFrame:
    """Return one row per post gate: ``post_uri, embedding_disabled`` (quoting turned
    off), ``detached_embedding_uris, created_at`` after the keys.

    Args:
        source: a snapshot, a records frame or lazy frame, or an object with ``.records``.
    """
    return _select(source, POSTGATE, _postgate_columns())
