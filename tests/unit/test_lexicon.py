"""The checked-in lexicons match the reference's, and their declared schemas are as specified."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

import atrepo
import atrepo.lexicon
from atrepo.lexicon._documents import DOCUMENTS, source

REFERENCE = Path(__file__).resolve().parents[2] / "atrepo" / "_reference"
DT = pl.Datetime("us", "UTC")
BLOB = pl.Struct({"ref": pl.String, "mimeType": pl.String, "size": pl.Int64})
STRONG_REF = pl.Struct({"uri": pl.String, "cid": pl.String})


def test_checked_in_documents_are_what_the_generator_writes(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (REFERENCE / "node_modules" / "@atproto" / "api").exists():
        pytest.fail("the reference implementation is not installed: run `make test`")
    subprocess.run([node, "gen_lexicons.mjs", "--out", str(tmp_path)], cwd=REFERENCE,
                   check=True, capture_output=True, timeout=120)
    fresh = sorted(p.name for p in tmp_path.iterdir())
    checked_in = sorted(p.name for p in DOCUMENTS.iterdir())
    assert fresh == checked_in
    match, mismatch, errors = filecmp.cmpfiles(tmp_path, DOCUMENTS, fresh, shallow=False)
    assert not mismatch and not errors, f"regenerate with gen_lexicons.mjs: {mismatch}"
    assert len(match) > 300
    assert source()["package"] == "@atproto/api"


def test_every_record_type_has_a_schema() -> None:
    types = atrepo.lexicon.record_types()
    assert {"app.bsky.feed.post", "app.bsky.actor.profile", "chat.bsky.actor.declaration",
            "app.bsky.graph.starterpack", "app.bsky.feed.threadgate"} <= set(types)
    for collection in types:
        schema = atrepo.lexicon_schema(collection)
        assert schema is not None
        names = schema.names()
        assert names[:4] == ["did", "rkey", "uri", "cid"] and names[-1] == "extra"
        assert "$type" not in names


def test_post_schema_follows_the_lexicon() -> None:
    schema = atrepo.lexicon_schema("app.bsky.feed.post")
    assert schema is not None
    assert schema.names() == ["did", "rkey", "uri", "cid", "text", "entities", "facets",
                              "reply", "embed", "langs", "labels", "tags", "createdAt",
                              "extra"]
    assert schema["createdAt"] == DT
    assert schema["langs"] == pl.List(pl.String)
    assert schema["reply"] == pl.Struct({"root": STRONG_REF, "parent": STRONG_REF})
    embed = schema["embed"]
    assert isinstance(embed, pl.Struct)
    fields = {f.name: f.dtype for f in embed.fields}
    # a union: $type first, then every member's fields; same-named fields merged
    assert list(fields)[:2] == ["$type", "images"]
    assert fields["images"] == pl.List(pl.Struct({
        "image": BLOB, "alt": pl.String,
        "aspectRatio": pl.Struct({"width": pl.Int64, "height": pl.Int64})}))
    assert fields["video"] == BLOB
    assert fields["record"] == pl.Struct({"uri": pl.String, "cid": pl.String,
                                          "record": STRONG_REF})
    assert {"external", "media"} <= set(fields)


def test_cid_links_and_bytes_are_strings() -> None:
    schema = atrepo.lexicon_schema("com.germnetwork.declaration")
    assert schema is not None
    assert schema["currentKey"] == pl.String
    assert schema["continuityProofs"] == pl.List(pl.String)


def test_unknown_collection_has_no_schema_and_schemas_are_copies() -> None:
    assert atrepo.lexicon_schema("com.example.thing") is None
    assert atrepo.lexicon_schema("app.bsky.feed.defs") is None  # a lexicon, not a record
    first = atrepo.lexicon_schema("app.bsky.feed.like")
    assert first is not None
    first["extra"] = pl.Int64  # the caller's copy; the declared schema is unchanged
    assert atrepo.lexicon_schema("app.bsky.feed.like")["extra"] == pl.String  # type: ignore[index]


def test_recursive_and_unknown_fields_become_json_text() -> None:
    from atrepo.lexicon._shape import record_shape

    looped = {"type": "object", "properties": {
        "next": {"type": "ref", "ref": "lex:app.bsky.feed.post#replyRef"},
        "blob": {"type": "unknown"}}}
    shape = record_shape(looped)
    assert shape.dtype == pl.Struct({"next": pl.Struct({"root": STRONG_REF,
                                                        "parent": STRONG_REF}),
                                     "blob": pl.String})
