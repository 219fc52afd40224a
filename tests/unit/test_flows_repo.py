"""One repository's endpoints (getRepo, getLatestCommit, describeRepo), driven by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from atrepo._flows.effects import HttpDownload, HttpResponse
from atrepo._flows.repo import describe_repo, get_latest_commit, get_repo
from atrepo.errors import RepoUnavailable, TransportError
from atrepo.testing import drive

PDS = "https://pds.test"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
ENC_DID = DID.replace(":", "%3A")
GET_REPO = f"{PDS}/xrpc/com.atproto.sync.getRepo?did={ENC_DID}"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
REV = "3l3qo2vutsw2b"


def ok(obj: Any) -> HttpResponse:
    return HttpResponse(200, body=json.dumps(obj).encode())


def error(status: int, name: str | None = None, message: str | None = None) -> HttpResponse:
    obj = {key: value for key, value in (("error", name), ("message", message)) if value}
    return HttpResponse(status, body=json.dumps(obj).encode())


def test_get_repo_yields_a_download(tmp_path):
    path = str(tmp_path / "repo.car")
    value, driver = drive(get_repo(PDS + "/", DID, path=path, since="3l3 x&y", max_bytes=99),
                          [HttpResponse(200)])
    assert value is None
    (effect,) = driver.requests
    assert isinstance(effect, HttpDownload)
    assert effect.url == f"{GET_REPO}&since=3l3+x%26y"
    assert (effect.path, effect.max_bytes) == (path, 99)
    assert ("accept", "application/vnd.ipld.car") in effect.headers


UNAVAILABLE = [("RepoNotFound", "not_found"), ("RepoDeactivated", "deactivated"),
               ("RepoTakendown", "takendown"), ("RepoSuspended", "suspended")]


@pytest.mark.parametrize(("name", "status"), UNAVAILABLE)
def test_repo_unavailable_statuses(name, status):
    for flow in (get_repo(PDS, DID, path="unused.car"), get_latest_commit(PDS, DID),
                 describe_repo(PDS, DID)):
        with pytest.raises(RepoUnavailable) as info:
            drive(flow, [error(400, name, f"Repo is {status}")])
        assert (info.value.status, info.value.did) == (status, DID)
        assert info.value.fields["error"] == name


@pytest.mark.parametrize("status", [404, 410])
def test_not_found_status(status):
    with pytest.raises(RepoUnavailable) as info:
        drive(get_repo(PDS, DID, path="unused.car"), [HttpResponse(status, body=b"<html>")])
    assert info.value.status == "not_found"


@pytest.mark.parametrize("body", [b"", b"\xff\xfe\x00", b"[" * 100_000, b'"text"', b"[1, 2]",
                                  b'{"error": 5, "message": ["x"]}', b"null", b"{"])
def test_garbage_error_bodies(body):
    with pytest.raises(TransportError) as info:
        drive(get_repo(PDS, DID, path="unused.car"), [HttpResponse(400, body=body)])
    assert info.value.url == GET_REPO
    assert info.value.fields["http_status"] == 400


def test_other_error_names_the_url_status_and_error():
    with pytest.raises(TransportError) as info:
        drive(get_repo(PDS, DID, path="unused.car"), [error(400, "InvalidRequest", "bad did")])
    assert info.value.url == GET_REPO
    assert (info.value.fields["http_status"], info.value.fields["error"]) == (400,
                                                                             "InvalidRequest")
    assert "bad did" in str(info.value)


def test_unavailable_names_only_count_on_4xx():
    with pytest.raises(TransportError):
        drive(get_repo(PDS, DID, path="unused.car"), [error(501, "RepoTakendown")])


@pytest.mark.parametrize("obj", [{}, {"cid": CID}, {"cid": 1, "rev": REV}, [CID, REV],
                                 {"cid": "", "rev": REV}])
def test_malformed_latest_commit(obj):
    with pytest.raises(TransportError, match="malformed getLatestCommit"):
        drive(get_latest_commit(PDS, DID), [ok(obj)])


def test_describe_repo():
    collections = ["app.bsky.feed.post", "app.bsky.graph.follow"]
    value, driver = drive(describe_repo(PDS, DID),
                          [ok({"did": DID, "collections": collections, "didDoc": {}})])
    assert value == collections
    assert driver.requests[0].url == (f"{PDS}/xrpc/com.atproto.repo.describeRepo"
                                      f"?repo={ENC_DID}")
    with pytest.raises(TransportError, match="malformed describeRepo"):
        drive(describe_repo(PDS, DID), [ok({"collections": [1]})])
