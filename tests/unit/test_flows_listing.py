"""Listings (listRepos, listReposByCollection) and their cursors, driven by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from atrepo._flows.effects import HttpResponse
from atrepo._flows.listing import (
    PageCursor,
    list_repos_by_collection_page,
    list_repos_page,
    walk_cursor,
)
from atrepo.errors import TransportError
from atrepo.repos import RepoRef
from atrepo.testing import drive

PDS = "https://pds.test"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
DID2 = "did:plc:yk4dd2qkboz2yv6tpubpc6co"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
REV = "3l3qo2vutsw2b"


def ok(obj: Any) -> HttpResponse:
    return HttpResponse(200, body=json.dumps(obj).encode())


def error(status: int, name: str | None = None) -> HttpResponse:
    return HttpResponse(status, body=json.dumps({"error": name} if name else {}).encode())


def test_list_repos_page():
    page = {"cursor": "c2", "repos": [
        {"did": DID, "head": CID, "rev": REV, "active": True, "extra": 1},
        {"did": DID2, "head": CID, "rev": REV, "active": False, "status": "takendown"},
        {"did": "did:web:example.com", "head": None, "rev": None, "active": None},
        {"did": "did:web:example.org"},
    ]}
    (repos, cursor), driver = drive(list_repos_page(PDS, cursor="c 1"), [ok(page)])
    assert cursor == "c2"
    assert driver.requests[0].url == (f"{PDS}/xrpc/com.atproto.sync.listRepos"
                                      "?limit=1000&cursor=c+1")
    assert repos[0] == RepoRef(did=DID, head=CID, rev=REV)
    assert (repos[1].active, repos[1].status) == (False, "takendown")
    assert repos[2].active and repos[3].active and repos[3].head is None


def test_list_repos_page_last_page_and_limit_clamp():
    (repos, cursor), driver = drive(list_repos_page(PDS, cursor=None, limit=5000),
                                    [ok({"repos": []})])
    assert (repos, cursor) == ([], None)
    assert driver.requests[0].url.endswith("listRepos?limit=1000")


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"repos": {}}', b'{"cursor": "c"}',
                                  b'{"repos": [{"did": "alice"}]}', b'{"repos": [{}]}',
                                  b'{"repos": [], "cursor": 5}', b'{"repos": [7]}',
                                  b'{"repos": [{"did": "did:plc:x", "active": "maybe"}]}'])
def test_list_repos_page_rejects_malformed_pages(body):
    with pytest.raises(TransportError, match="malformed listRepos") as info:
        drive(list_repos_page(PDS, cursor=None), [HttpResponse(200, body=body)])
    assert info.value.fields["host"] == PDS


def test_list_repos_page_error_status():
    with pytest.raises(TransportError) as info:
        drive(list_repos_page(PDS, cursor=None), [error(400, "InvalidRequest")])
    assert info.value.fields["error"] == "InvalidRequest"


def test_walk_cursor_rules():
    assert walk_cursor(None, "c1", 10) == ("c1", None)
    assert walk_cursor("c1", "c2", 10) == ("c2", None)
    assert walk_cursor("c1", None, 10) == (None, None)
    assert walk_cursor("c1", "", 0) == (None, None)
    cursor, warning = walk_cursor("c1", "c1", 10)
    assert cursor is None and warning is not None and "did not advance" in warning
    cursor, warning = walk_cursor("c1", "c2", 0)
    assert cursor is None and warning is not None and "empty page" in warning


def test_list_repos_by_collection_page():
    page = {"repos": [{"did": DID}, {"did": DID2}], "cursor": "next"}
    value, driver = drive(list_repos_by_collection_page(PDS, "app.bsky.feed.post", cursor=None),
                          [ok(page)])
    assert value == ([DID, DID2], "next")
    assert driver.requests[0].url == (f"{PDS}/xrpc/com.atproto.sync.listReposByCollection"
                                      "?collection=app.bsky.feed.post&limit=1000")


@pytest.mark.parametrize("response", [HttpResponse(404), HttpResponse(501),
                                      error(400, "MethodNotImplemented"),
                                      error(501, "XRPCNotSupported"),
                                      error(400, "XRPCNotSupported"),
                                      error(401, "AuthMissing")])
def test_list_repos_by_collection_not_implemented(response):
    value, _ = drive(list_repos_by_collection_page(PDS, "a.b.c", cursor="x"), [response])
    assert value is None


def test_list_repos_by_collection_other_errors():
    with pytest.raises(TransportError):
        drive(list_repos_by_collection_page(PDS, "a.b.c", cursor=None),
              [error(400, "InvalidRequest")])
    with pytest.raises(TransportError):
        drive(list_repos_by_collection_page(PDS, "a.b.c", cursor=None), [error(401, "Other")])
    with pytest.raises(TransportError, match="malformed listReposByCollection"):
        drive(list_repos_by_collection_page(PDS, "a.b.c", cursor=None),
              [ok({"repos": [{"did": 3}]})])


# -- bounds: repeated cursors, oversized pages, endless listings ---------------------------


def _page(rows: int, cursor: str | None) -> HttpResponse:
    repos = [{"did": DID} for _ in range(rows)]
    return ok({"repos": repos, **({"cursor": cursor} if cursor else {})})


def _walk(cursors: list[str | None], *, rows: int = 3, **bounds: int) -> list[str | None]:
    """Page through a host answering ``cursors`` in turn; return the cursors asked with."""
    asked: list[str | None] = []
    cursor: str | None = None
    for answer in cursors:
        asked.append(cursor)
        (_, cursor), _ = drive(list_repos_page(PDS, cursor=cursor, **bounds),
                               [_page(rows, answer)])
        cursor, _ = walk_cursor(asked[-1], cursor, rows)
        if cursor is None:
            break
    return asked


@pytest.mark.parametrize("cursors", [["A", "B", "A"], ["A", "A"], ["A", "B", "C", "B"]])
def test_any_repeated_cursor_is_refused(cursors):
    with pytest.raises(TransportError, match="listing cursor repeated") as info:
        _walk(cursors)
    assert info.value.fields["host"] == "pds.test"
    assert info.value.fields["cursor"] == cursors[-1]


def test_distinct_cursors_page_on_and_are_plain_strings():
    assert _walk(["A", "B", "C", None]) == [None, "A", "B", "C"]
    (_, cursor), _ = drive(list_repos_page(PDS, cursor=None), [_page(1, "A")])
    assert isinstance(cursor, PageCursor) and cursor == "A" and str(cursor) == "A"
    assert json.loads(json.dumps({"cursor": cursor})) == {"cursor": "A"}  # as saved to resume


def test_a_resumed_plain_cursor_starts_a_listing_that_remembers_it():
    (_, cursor), _ = drive(list_repos_page(PDS, cursor="saved"), [_page(1, "next")])
    with pytest.raises(TransportError, match="cursor repeated"):
        drive(list_repos_page(PDS, cursor=cursor), [_page(1, "saved")])


def test_a_page_larger_than_asked_is_refused():
    with pytest.raises(TransportError, match="larger than the limit asked") as info:
        drive(list_repos_page(PDS, cursor=None, limit=10), [_page(11, "A")])
    assert (info.value.fields["limit"], info.value.fields["rows"]) == (10, 11)
    (repos, _), _ = drive(list_repos_page(PDS, cursor=None, limit=10), [_page(10, None)])
    assert len(repos) == 10


def test_pages_and_rows_per_listing_are_bounded():
    with pytest.raises(TransportError, match="listing too long") as info:
        _walk(["A", "B", "C", "D"], max_pages=3)
    assert info.value.fields["pages"] == 4
    with pytest.raises(TransportError, match="listing too long") as info:
        _walk(["A", "B", "C"], rows=4, max_rows=10)
    assert info.value.fields["rows"] == 12


def test_listing_by_collection_refuses_repeats_too():
    (_, first), _ = drive(list_repos_by_collection_page(PDS, "a.b.c", cursor=None),
                          [ok({"repos": [{"did": DID}], "cursor": "A"})])
    (_, second), _ = drive(list_repos_by_collection_page(PDS, "a.b.c", cursor=first),
                           [ok({"repos": [{"did": DID}], "cursor": "B"})])
    with pytest.raises(TransportError, match="cursor repeated"):
        drive(list_repos_by_collection_page(PDS, "a.b.c", cursor=second),
              [ok({"repos": [{"did": DID}], "cursor": "A"})])
    with pytest.raises(TransportError, match="larger than the limit"):
        drive(list_repos_by_collection_page(PDS, "a.b.c", cursor=None, limit=1),
              [ok({"repos": [{"did": DID}, {"did": DID2}]})])
