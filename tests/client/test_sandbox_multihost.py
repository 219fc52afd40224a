"""The multi-host sandbox: three reference PDSes on one PLC, a moved account, the relay.

Pins what ``sandbox.start(pds_count=N)`` promises the discovery and crawling code: every
bulk account is listed by exactly one PDS (the one its ``pds`` names), the moved account's DID
document names its new PDS while the old one still lists it, atrepo's Client fetches it from
where its document points, and the relay's ``listHosts`` pages over the PDSes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from _loopback import KINDS, client, paged

import atrepo
from atrepo.crypto import parse_legacy_key
from atrepo.sandbox import Sandbox


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # trust_env=False: never route loopback traffic through a proxy from the environment.
    with httpx.Client(timeout=10, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def sb(multihost_sandbox: Sandbox) -> Sandbox:
    return multihost_sandbox


@pytest.fixture(scope="module")
def moved(multihost_sandbox: Sandbox) -> dict[str, Any]:
    (account,) = multihost_sandbox.moved
    return account


def listed(http: httpx.Client, pds: str) -> dict[str, dict[str, Any]]:
    """DID -> listRepos entry of one PDS (limit=3, so that the cursor is exercised)."""
    repos: dict[str, dict[str, Any]] = {}
    for repo in paged(http, f"{pds}/xrpc/com.atproto.sync.listRepos", "repos", limit=3):
        assert repo["did"] not in repos
        repos[repo["did"]] = repo
    return repos


def plc_document(http: httpx.Client, sb: Sandbox, did: str) -> dict[str, Any]:
    res = http.get(f"{sb.plc_url}/{did}")
    assert res.status_code == 200, res.text
    doc: dict[str, Any] = res.json()
    return doc


def pds_endpoint(doc: dict[str, Any]) -> str:
    (service,) = [s for s in doc["service"] if s["id"] in ("#atproto_pds",
                                                           f"{doc['id']}#atproto_pds")]
    endpoint: str = service["serviceEndpoint"]
    return endpoint


def signing_key(doc: dict[str, Any]) -> str:
    (method,) = [m for m in doc["verificationMethod"] if m["id"] in ("#atproto",
                                                                    f"{doc['id']}#atproto")]
    if method["type"] == "Multikey":
        return "did:key:" + method["publicKeyMultibase"]
    return parse_legacy_key(method["type"], method["publicKeyMultibase"]).did_key


def get_repo_car(http: httpx.Client, pds: str, did: str) -> bytes:
    res = http.get(f"{pds}/xrpc/com.atproto.sync.getRepo", params={"did": did})
    assert res.status_code == 200, res.text
    return res.content


def list_hosts(http: httpx.Client, sb: Sandbox, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of the relay's listHosts, following the cursor."""
    pages = []
    while True:
        res = http.get(f"{sb.relay_url}/xrpc/com.atproto.sync.listHosts", params=params)
        assert res.status_code == 200, res.text
        body = res.json()
        assert set(body) <= {"hosts", "cursor"}
        pages.append(body["hosts"])
        if "cursor" not in body:
            return pages
        params["cursor"] = body["cursor"]


def on_client(kind: str, sb: Sandbox, cache: Path,
              calls: list[tuple[str, str]]) -> list[Any]:
    """``[client.method(arg) for method, arg in calls]`` on one new loopback-only client
    ("sync" or "async") whose handle resolver is the sandbox's relay."""
    made = client(kind, sb, cache, handle_resolver=sb.handle_resolver)
    if isinstance(made, atrepo.Client):
        with made:
            return [getattr(made, method)(arg) for method, arg in calls]

    async def go() -> list[Any]:
        async with made:
            return [await getattr(made, method)(arg) for method, arg in calls]

    return asyncio.run(go())


# -- hosts and accounts -----------------------------------------------------------------------


def test_urls_and_accounts_name_their_pds(sb: Sandbox, moved: dict[str, Any]) -> None:
    assert len(sb.pds_urls) == 3 and len(set(sb.pds_urls)) == 3
    assert sb.pds_url == sb.pds_urls[0]
    assert sb.handle_resolver == sb.relay_url
    assert {a["pds"] for a in sb.accounts} == set(sb.pds_urls)
    for account in sb.accounts:
        if not account["handle"].startswith("bulk"):
            continue
        index = int(account["handle"][4:7])
        assert account["pds"] == sb.pds_urls[index % 3]
    assert (moved["handle"], moved["status"]) == ("moved.test", "active")
    assert (moved["moved_from"], moved["pds"]) == (sb.pds_urls[0], sb.pds_urls[1])
    assert 0 < moved["records_at_moved_from"] < moved["records"]


def test_every_bulk_account_is_listed_by_exactly_one_pds(sb: Sandbox, http: httpx.Client,
                                                         moved: dict[str, Any]) -> None:
    listings = {pds: listed(http, pds) for pds in sb.pds_urls}
    bulk = [a for a in sb.accounts if a["handle"].startswith("bulk")]
    assert len(bulk) == 12
    for account in bulk:
        hosts = [pds for pds, repos in listings.items() if account["did"] in repos]
        assert hosts == [account["pds"]], account["handle"]
        assert listings[account["pds"]][account["did"]]["active"] is True
    # the moved DID: listed, active, by both its old and its new PDS; by no other
    hosts = [pds for pds, repos in listings.items() if moved["did"] in repos]
    assert hosts == [moved["moved_from"], moved["pds"]]
    assert all(listings[pds][moved["did"]]["active"] is True for pds in hosts)
    # the named accounts stay on the first PDS (dave, deleted, is listed nowhere)
    for handle in ("alice.test", "bob.test", "carol.test"):
        did = sb.account(handle)["did"]
        assert [pds for pds, repos in listings.items() if did in repos] == [sb.pds_url]


# -- the moved account --------------------------------------------------------------------------


def test_moved_did_document_names_the_new_pds(sb: Sandbox, http: httpx.Client,
                                              moved: dict[str, Any]) -> None:
    doc = plc_document(http, sb, moved["did"])
    assert pds_endpoint(doc) == moved["pds"] != moved["moved_from"]
    assert doc["alsoKnownAs"] == ["at://moved.test"]
    # two operations in the PLC log: the creation on the old PDS, the move signed by it
    log = http.get(f"{sb.plc_url}/{moved['did']}/log").json()
    assert [op["services"]["atproto_pds"]["endpoint"] for op in log] == [
        moved["moved_from"], moved["pds"]]


def test_stale_copy_no_longer_verifies(sb: Sandbox, http: httpx.Client,
                                       moved: dict[str, Any]) -> None:
    key = signing_key(plc_document(http, sb, moved["did"]))
    stale = get_repo_car(http, moved["moved_from"], moved["did"])
    unchecked = atrepo.read_car(stale, did=moved["did"], progress=False)
    assert len(unchecked) == moved["records_at_moved_from"]
    with pytest.raises(atrepo.SignatureError):
        atrepo.read_car(stale, did=moved["did"], signing_key=key, progress=False)
    current = atrepo.read_car(get_repo_car(http, moved["pds"], moved["did"]), did=moved["did"],
                              signing_key=key, progress=False)
    assert current.verified and len(current) == moved["records"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("by", ["did", "handle"])
def test_client_fetches_the_moved_repo_from_its_new_pds(sb: Sandbox, http: httpx.Client,
                                                        moved: dict[str, Any], tmp_path: Path,
                                                        kind: str, by: str) -> None:
    name = moved["did"] if by == "did" else moved["handle"]
    ident, snap = on_client(kind, sb, tmp_path, [("resolve", name), ("get_repo", name)])
    assert (ident.did, ident.pds, ident.handle) == (moved["did"], moved["pds"], "moved.test")
    assert ident.handle_verified is True

    assert snap.did == moved["did"] and snap.verified is True
    assert len(snap) == moved["records"]
    current = atrepo.read_car(get_repo_car(http, moved["pds"], moved["did"]), did=moved["did"],
                              progress=False)
    assert snap.rev == current.rev
    assert snap.records["cid"].to_list() == current.records["cid"].to_list()


def test_writes_go_to_the_accounts_current_pds(sb: Sandbox, http: httpx.Client,
                                               moved: dict[str, Any]) -> None:
    uri = sb.post("moved.test", "written where the DID document points")
    rkey = uri.rsplit("/", 1)[1]
    try:
        params = {"repo": moved["did"], "collection": "app.bsky.feed.post", "rkey": rkey}
        new = http.get(f"{moved['pds']}/xrpc/com.atproto.repo.getRecord", params=params)
        assert new.status_code == 200 and new.json()["uri"] == uri
        old = http.get(f"{moved['moved_from']}/xrpc/com.atproto.repo.getRecord", params=params)
        assert old.status_code == 400 and old.json()["error"] == "RecordNotFound"
    finally:
        sb.delete_record("moved.test", "app.bsky.feed.post", rkey)


# -- the relay ----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3, 200])
def test_list_hosts_pages_over_the_pdses(sb: Sandbox, http: httpx.Client, limit: int) -> None:
    pages = list_hosts(http, sb, limit=limit)
    assert all(len(page) <= limit for page in pages)
    # a cursor whenever a page is full, as the reference relay does: 3 hosts at limit 3 end
    # with an empty page
    assert [len(page) for page in pages] == {1: [1, 1, 1, 0], 2: [2, 1], 3: [3, 0],
                                             200: [3]}[limit]
    hosts = [host for page in pages for host in page]
    assert [h["hostname"] for h in hosts] == [urlsplit(u).netloc for u in sb.pds_urls]
    for host, pds in zip(hosts, sb.pds_urls, strict=True):
        assert host["status"] == "active"
        assert host["accountCount"] == len(listed(http, pds))
        assert isinstance(host["seq"], int) and host["seq"] > 0
        status = http.get(f"{sb.relay_url}/xrpc/com.atproto.sync.getHostStatus",
                          params={"hostname": host["hostname"]})
        assert status.status_code == 200 and status.json() == host


@pytest.mark.parametrize(("method", "params", "status", "error"), [
    ("com.atproto.sync.listHosts", {"limit": 0}, 400, "InvalidRequest"),
    ("com.atproto.sync.listHosts", {"limit": 1001}, 400, "InvalidRequest"),
    ("com.atproto.sync.listHosts", {"limit": "two"}, 400, "InvalidRequest"),
    ("com.atproto.sync.listHosts", {"cursor": "-1"}, 400, "InvalidRequest"),
    ("com.atproto.sync.getHostStatus", {"hostname": "pds.example"}, 400, "HostNotFound"),
    ("com.atproto.identity.resolveHandle", {"handle": "nobody.test"}, 400, "InvalidRequest"),
    ("com.atproto.sync.listRepos", {}, 501, "MethodNotImplemented"),
])
def test_relay_errors_are_xrpc_errors(sb: Sandbox, http: httpx.Client, method: str,
                                      params: dict[str, Any], status: int, error: str) -> None:
    res = http.get(f"{sb.relay_url}/xrpc/{method}", params=params)
    assert (res.status_code, res.json()["error"]) == (status, error)
    assert res.headers["content-type"].startswith("application/json")


def test_list_hosts_past_the_end_is_empty(sb: Sandbox, http: httpx.Client) -> None:
    assert list_hosts(http, sb, cursor="3") == [[]]


def test_relay_resolves_the_handles_of_every_pds(sb: Sandbox, http: httpx.Client) -> None:
    on = {pds: [a for a in sb.accounts if a["pds"] == pds and a["status"] == "active"]
          for pds in sb.pds_urls}
    for pds, accounts in on.items():
        assert accounts, pds
        for account in accounts:
            res = http.get(f"{sb.relay_url}/xrpc/com.atproto.identity.resolveHandle",
                           params={"handle": account["handle"]})
            assert res.status_code == 200 and res.json() == {"did": account["did"]}
    # a PDS alone answers only for its own handles: why the relay is the handle resolver
    bulk001 = sb.account("bulk001.test")
    alone = http.get(f"{sb.pds_url}/xrpc/com.atproto.identity.resolveHandle",
                     params={"handle": bulk001["handle"]})
    assert bulk001["pds"] != sb.pds_url and alone.status_code == 400
