"""Listings (listRepos, listReposByCollection) and their cursors, driven by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from atrepo._flows.effects import HttpResponse
from atrepo._flows.listing import list_repos_by_collection_page, list_repos_page, walk_cursor
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
