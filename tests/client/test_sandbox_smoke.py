"""Smoke tests of the sandbox (atrepo/sandbox.py): a real PLC + PDS on loopback.

They pin what the pinned reference servers actually answer (DID documents, getRepo CARs,
account states), which atrepo's online client is later tested against.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _loopback import paged

import atrepo
from atrepo.crypto import parse_legacy_key
from atrepo.errors import SandboxError

ADMIN = ("admin", "admin-pass")
NEVER_EXISTED = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # trust_env=False: never route loopback traffic through a proxy from the environment.
    with httpx.Client(timeout=10, trust_env=False) as client:
        yield client


def did_document(http: httpx.Client, sandbox: Any, did: str) -> dict[str, Any]:
    res = http.get(f"{sandbox.plc_url}/{did}")
    assert res.status_code == 200, res.text
    doc: dict[str, Any] = res.json()
    return doc


def signing_key(doc: dict[str, Any]) -> str:
    """The did:key of the DID document's #atproto verification method."""
    (method,) = [m for m in doc["verificationMethod"] if m["id"] in ("#atproto",
                                                                    f"{doc['id']}#atproto")]
    if method["type"] == "Multikey":
        return "did:key:" + method["publicKeyMultibase"]
    # @did-plc/server 0.0.x still serves the legacy form: EcdsaSecp256k1VerificationKey2019
    # with the raw (uncompressed) point, no multicodec prefix.
    return parse_legacy_key(method["type"], method["publicKeyMultibase"]).did_key


def xrpc(http: httpx.Client, sandbox: Any, method: str, **params: Any) -> httpx.Response:
    return http.get(f"{sandbox.pds_url}/xrpc/{method}", params=params)


def list_records(http: httpx.Client, sandbox: Any, did: str,
                 collection: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    prefix = f"at://{did}/{collection}/"
    for rec in paged(http, f"{sandbox.pds_url}/xrpc/com.atproto.repo.listRecords", "records",
                     repo=did, collection=collection, limit=50):
        assert rec["uri"].startswith(prefix)
        out.append((collection, rec["uri"][len(prefix):], rec["cid"]))
    return out


def test_plc_serves_did_documents(sandbox: Any, http: httpx.Client) -> None:
    for acc in sandbox.accounts:  # dave's too: deleting the account does not touch PLC
        doc = did_document(http, sandbox, acc["did"])
        assert doc["id"] == acc["did"]
        assert doc["alsoKnownAs"] == [f"at://{acc['handle']}"]
        (pds,) = [s for s in doc["service"] if s["id"] in ("#atproto_pds",
                                                           f"{acc['did']}#atproto_pds")]
        assert pds["type"] == "AtprotoPersonalDataServer"
        assert pds["serviceEndpoint"] == sandbox.pds_url
        key = signing_key(doc)
        assert key.startswith("did:key:zQ3sh")  # secp256k1, compressed
        # the PLC's own view of the same operation names the same key
        data = http.get(f"{sandbox.plc_url}/{acc['did']}/data").json()
        assert data["verificationMethods"]["atproto"] == key
    res = http.get(f"{sandbox.plc_url}/{NEVER_EXISTED}")
    assert res.status_code == 404


def test_get_repo_verifies_and_matches_list_records(sandbox: Any, http: httpx.Client) -> None:
    alice = sandbox.account("alice.test")
    did = alice["did"]
    key = signing_key(did_document(http, sandbox, did))

    res = xrpc(http, sandbox, "com.atproto.sync.getRepo", did=did)
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/vnd.ipld.car"
    snap = atrepo.read_car(res.content, did=did, signing_key=key, progress=False)
    assert snap.verified is True
    assert snap.did == did
    assert len(snap) == alice["records"]
    assert snap.problems.is_empty()

    latest = xrpc(http, sandbox, "com.atproto.sync.getLatestCommit", did=did).json()
    assert (snap.commit_cid, snap.rev) == (latest["cid"], latest["rev"])

    described = xrpc(http, sandbox, "com.atproto.repo.describeRepo", repo=did).json()
    collections = described["collections"]
    assert sorted(snap.collections["collection"].to_list()) == sorted(collections)
    assert len(collections) >= 5

    listed: set[tuple[str, str, str]] = set()
    for collection in collections:
        rows = list_records(http, sandbox, did, collection)
        assert len(rows) == len(set(rows))
        listed.update(rows)
    in_car = set(snap.records.select("collection", "rkey", "cid").iter_rows())
    assert in_car == listed
    assert len(in_car) == alice["records"]
    assert snap.get("app.bsky.actor.profile", "self")["displayName"] == "Alice (edited)"

    # a different account's key must not verify alice's commit
    bob_key = signing_key(did_document(http, sandbox, sandbox.account("bob.test")["did"]))
    with pytest.raises(atrepo.SignatureError):
        atrepo.read_car(res.content, did=did, signing_key=bob_key, progress=False)


def test_list_repos_reports_account_status(sandbox: Any, http: httpx.Client) -> None:
    repos: dict[str, dict[str, Any]] = {}
    # limit=2 so that the cursor is exercised
    for repo in paged(http, f"{sandbox.pds_url}/xrpc/com.atproto.sync.listRepos", "repos",
                      limit=2):
        assert repo["did"] not in repos
        repos[repo["did"]] = repo

    did = {a["handle"].split(".")[0]: a["did"] for a in sandbox.accounts}
    # the deleted account is simply gone from listRepos
    assert set(repos) == {did["alice"], did["bob"], did["carol"]}
    strip = {"did", "head", "rev"}
    assert {k: v for k, v in repos[did["alice"]].items() if k not in strip} == {"active": True}
    assert {k: v for k, v in repos[did["bob"]].items() if k not in strip} == {
        "active": False, "status": "deactivated"}
    assert {k: v for k, v in repos[did["carol"]].items() if k not in strip} == {
        "active": False, "status": "takendown"}
    for repo in repos.values():
        assert repo["head"].startswith("bafyrei") and len(repo["rev"]) == 13


@pytest.mark.parametrize(("handle", "error", "status"), [
    ("bob.test", "RepoDeactivated", "deactivated"),
    ("carol.test", "RepoTakendown", "takendown"),
    ("dave.test", "RepoNotFound", None),
    (None, "RepoNotFound", None),  # a DID this PDS never hosted
])
def test_unavailable_repos(sandbox: Any, http: httpx.Client, handle: str | None, error: str,
                           status: str | None) -> None:
    did = sandbox.account(handle)["did"] if handle else NEVER_EXISTED
    for method in ("com.atproto.sync.getRepo", "com.atproto.sync.getLatestCommit"):
        res = xrpc(http, sandbox, method, did=did)
        assert res.status_code == 400, (method, res.text)
        assert res.headers["content-type"].startswith("application/json")
        assert res.json()["error"] == error, method

    res = xrpc(http, sandbox, "com.atproto.sync.getRepoStatus", did=did)
    if status is None:
        assert (res.status_code, res.json()["error"]) == (400, "RepoNotFound")
    else:
        assert res.status_code == 200, res.text
        assert res.json() == {"did": did, "active": False, "status": status}

    # the admin still gets deactivated and taken-down repos, with the seeded record count
    res = http.get(f"{sandbox.pds_url}/xrpc/com.atproto.sync.getRepo", params={"did": did},
                   auth=ADMIN)
    if status is None:
        assert (res.status_code, res.json()["error"]) == (400, "RepoNotFound")
    else:
        assert res.status_code == 200, res.text
        snap = atrepo.read_car(res.content, did=did,
                               signing_key=signing_key(did_document(http, sandbox, did)),
                               progress=False)
        assert snap.verified is True
        assert len(snap) == sandbox.account(handle)["records"]


def test_one_pds_sandbox_is_as_before(sandbox: Any, http: httpx.Client) -> None:
    assert sandbox.pds_urls == [sandbox.pds_url]
    assert sandbox.handle_resolver == sandbox.pds_url
    assert sandbox.moved == []
    assert {a["pds"] for a in sandbox.accounts} == {sandbox.pds_url}
    # the relay lists the one PDS, with what its listRepos lists (alice, bob, carol)
    res = http.get(f"{sandbox.relay_url}/xrpc/com.atproto.sync.listHosts")
    assert res.status_code == 200, res.text
    (host,) = res.json()["hosts"]
    assert host["hostname"] == sandbox.pds_url.removeprefix("http://")
    assert (host["accountCount"], host["status"]) == (3, "active")


def test_unknown_account_is_a_sandbox_error(sandbox: Any) -> None:
    with pytest.raises(atrepo.AtrepoError) as caught:
        sandbox.post("nobody.test", "hello")
    assert isinstance(caught.value, SandboxError)
    assert "handle=nobody.test" in str(caught.value)
    assert "alice.test, bob.test, carol.test, dave.test" in str(caught.value)
