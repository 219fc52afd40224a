"""One repository's endpoints (getRepo, getLatestCommit, describeRepo, getBlocks, getRecord),
driven by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from atrepo._flows.effects import HttpDownload, HttpGet, HttpResponse
from atrepo._flows.repo import (MAX_CIDS_PER_REQUEST, BlockMissing, MethodMissing, NoProof,
                                describe_repo, get_blocks, get_latest_commit, get_record_proof,
                                get_repo)
from atrepo.cid import cid_for
from atrepo.errors import CarError, MstError, RepoUnavailable, TransportError
from atrepo.testing import drive, encode_car

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


# -- getBlocks and getRecord (the sparse fetch's requests) ----------------------------------

def _car(roots: list[Any], blocks: list[tuple[bytes, bytes]]) -> HttpResponse:
    return HttpResponse(200, {"content-type": "application/vnd.ipld.car"},
                        encode_car(roots, blocks))


BLOCK = b"\xa1aa\x01"
BLOCK_CID = cid_for(BLOCK)


def test_get_blocks_asks_for_every_cid_and_returns_the_checked_blocks():
    other = cid_for(b"\xa0")
    value, driver = drive(get_blocks(PDS, DID, [str(BLOCK_CID), str(other)], max_bytes=999),
                          [_car([], [(bytes(BLOCK_CID), BLOCK)])])
    (effect,) = driver.requests
    assert isinstance(effect, HttpGet) and effect.max_bytes == 999
    assert effect.url == (f"{PDS}/xrpc/com.atproto.sync.getBlocks?did={ENC_DID}"
                          f"&cids={BLOCK_CID}&cids={other}")
    assert ("accept", "application/vnd.ipld.car") in effect.headers
    # what the host left out is the caller's to notice
    assert value.blocks == {bytes(BLOCK_CID): BLOCK} and value.roots == []
    assert value.size == len(encode_car([], [(bytes(BLOCK_CID), BLOCK)]))


def test_get_blocks_takes_at_most_a_bounded_number_of_cids():
    for cids in ([], [str(BLOCK_CID)] * (MAX_CIDS_PER_REQUEST + 1)):
        with pytest.raises(ValueError):
            drive(get_blocks(PDS, DID, cids), [])


def test_a_block_that_does_not_match_its_cid_is_a_car_error():
    with pytest.raises(CarError) as info:
        drive(get_blocks(PDS, DID, [str(BLOCK_CID)]),
              [_car([], [(bytes(BLOCK_CID), b"\xa1ab\x01")])])
    assert "getBlocks" in (info.value.fields["url"] or "")
    with pytest.raises(CarError, match="malformed CAR answer"):
        drive(get_blocks(PDS, DID, [str(BLOCK_CID)]), [HttpResponse(200, body=b"\x05abc")])


def test_a_host_without_the_block_says_which():
    other = cid_for(b"\xa0")
    answer = error(400, "InvalidRequest", f"Could not find cids: {other}")
    with pytest.raises(BlockMissing) as info:
        drive(get_blocks(PDS, DID, [str(BLOCK_CID), str(other)]), [answer])
    assert isinstance(info.value, MstError) and info.value.cid == str(other)
    with pytest.raises(BlockMissing):
        drive(get_blocks(PDS, DID, [str(BLOCK_CID)]), [error(400, "BlockNotFound")])
    with pytest.raises(TransportError) as other_error:  # any other 400 is not about blocks
        drive(get_blocks(PDS, DID, [str(BLOCK_CID)]), [error(400, "InvalidRequest", "bad")])
    assert not isinstance(other_error.value, BlockMissing | MethodMissing)


@pytest.mark.parametrize("answer", [error(501, "MethodNotImplemented"), HttpResponse(501),
                                    HttpResponse(404, body=b"<html>Not Found</html>"),
                                    error(400, "MethodNotImplemented")])
def test_a_host_without_the_method_is_method_missing(answer):
    for flow in (get_blocks(PDS, DID, [str(BLOCK_CID)]),
                 get_record_proof(PDS, DID, "app.bsky.actor.profile", "self")):
        with pytest.raises(MethodMissing) as info:
            drive(flow, [answer])
        assert isinstance(info.value, TransportError)
        assert info.value.fields["http_status"] == answer.status


@pytest.mark.parametrize(("name", "status"), UNAVAILABLE)
def test_block_requests_for_an_unavailable_repository(name, status):
    for flow in (get_blocks(PDS, DID, [str(BLOCK_CID)]),
                 get_record_proof(PDS, DID, "app.bsky.actor.profile", "self")):
        with pytest.raises(RepoUnavailable) as info:
            drive(flow, [error(404 if name == "RepoNotFound" else 400, name)])
        assert info.value.status == status


def test_get_record_proof_is_a_car_rooted_at_the_commit():
    value, driver = drive(get_record_proof(PDS, DID, "app.bsky.actor.profile", "self"),
                          [_car([BLOCK_CID], [(bytes(BLOCK_CID), BLOCK)])])
    assert driver.requests[0].url == (f"{PDS}/xrpc/com.atproto.sync.getRecord?did={ENC_DID}"
                                      "&collection=app.bsky.actor.profile&rkey=self")
    assert value.roots == [bytes(BLOCK_CID)] and bytes(BLOCK_CID) in value.blocks
    with pytest.raises(CarError, match="exactly one root"):
        drive(get_record_proof(PDS, DID, "app.bsky.actor.profile", "self"),
              [_car([BLOCK_CID, BLOCK_CID], [(bytes(BLOCK_CID), BLOCK)])])


def test_a_host_without_absence_proofs_is_no_proof():
    for status in (400, 404):
        with pytest.raises(NoProof):
            drive(get_record_proof(PDS, DID, "app.bsky.actor.profile", "self"),
                  [error(status, "RecordNotFound", "Could not locate record")])
