"""Discovery against the multi-host sandbox: a relay's hosts, the PLC log, frames as sources.

The PLC directory, its ``/export`` included, and the relay are the sandbox's; every repository
comes from a real PDS. What the export should hold is read from another of the PLC's
endpoints: each DID's ``/{did}/log/audit`` lists its indexed operations with the fields an
export line has. Pages that end inside one millisecond, which the sandbox cannot be made to
produce on demand, are driven by hand in ``tests/unit/test_flows_plc.py``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import polars as pl
import pytest
from _loopback import KINDS, LoopbackTransport, NoDns, client
from _servers import LoopbackServer, Reply

import atrepo
from atrepo import client as client_module
from atrepo.cli import main
from atrepo.crypto import parse_legacy_key
from atrepo.frames import FETCHED_SCHEMA, HOSTS_SCHEMA, PLC_SCHEMA
from atrepo.sandbox import Sandbox


@pytest.fixture(scope="module")
def sb(multihost_sandbox: Sandbox) -> Sandbox:
    return multihost_sandbox


@pytest.fixture(scope="module")
def audit(sb: Sandbox) -> list[dict[str, Any]]:
    """Every operation of the sandbox's DIDs from their audit logs, oldest first (a stable
    sort: one DID's operations keep their log's order)."""
    ops: list[dict[str, Any]] = []
    with httpx.Client(timeout=10, trust_env=False) as http:
        for did in sorted({a["did"] for a in sb.accounts}):
            res = http.get(f"{sb.plc_url}/{did}/log/audit")
            assert res.status_code == 200, res.text
            ops.extend(res.json())
    return sorted(ops, key=lambda op: op["createdAt"])


@pytest.fixture(scope="module")
def moved(sb: Sandbox) -> dict[str, Any]:
    (account,) = sb.moved
    return account


def calls(kind: str, sb: Sandbox, cache: Path, steps: list[tuple[str, tuple[Any, ...],
                                                             dict[str, Any]]],
          **options: Any) -> tuple[list[Any], atrepo.Client | atrepo.AsyncClient]:
    """Run ``client.method(*args, **kwargs)`` for each step on one new client; return the
    results and the (closed) client, whose ``last_*`` attributes stay readable."""
    made = client(kind, sb, cache, handle_resolver=sb.handle_resolver, **options)
    if isinstance(made, atrepo.Client):
        with made:
            return [getattr(made, m)(*a, **k) for m, a, k in steps], made

    async def go() -> list[Any]:
        async with made:
            return [await getattr(made, m)(*a, **k) for m, a, k in steps]

    return asyncio.run(go()), made


def one(kind: str, sb: Sandbox, cache: Path, method: str, *args: Any,
        options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """``client.method(*args, **kwargs)`` on a new client with ``options``."""
    return calls(kind, sb, cache, [(method, args, kwargs)], **(options or {}))[0][0]


# -- the PLC log ---------------------------------------------------------------------------------


def _export(plc_url: str, **params: str) -> list[dict[str, Any]]:
    with httpx.Client(timeout=10, trust_env=False) as http:
        res = http.get(f"{plc_url}/export", params=params)
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("application/jsonlines")
    return [json.loads(line) for line in res.text.splitlines()]


def _key(op: dict[str, Any]) -> str:
    return json.dumps(op, sort_keys=True)


def test_the_sandbox_plc_exports_every_audited_operation_in_log_order(
        sb: Sandbox, audit: list[dict[str, Any]]) -> None:
    exported = _export(sb.plc_url)
    assert sorted(map(_key, exported)) == sorted(map(_key, audit))
    assert [list(op) for op in exported] == [["did", "operation", "cid", "nullified",
                                              "createdAt"]] * len(audit)
    times = [op["createdAt"] for op in exported]
    assert times == sorted(times)
    after = audit[len(audit) // 2]["createdAt"]           # strictly after it
    assert sorted(map(_key, _export(sb.plc_url, after=after))) == sorted(
        _key(op) for op in audit if op["createdAt"] > after)
    assert _export(sb.plc_url, after=audit[-1]["createdAt"]) == []


@pytest.mark.parametrize("kind", KINDS)
def test_list_plc_finds_every_account_once_with_its_current_pds(
        sb: Sandbox, audit: list[dict[str, Any]], moved: dict[str, Any], tmp_path: Path,
        kind: str) -> None:
    frame = one(kind, sb, tmp_path, "list_plc")
    assert frame.schema == PLC_SCHEMA
    assert frame["did"].n_unique() == frame.height == len({a["did"] for a in sb.accounts})
    assert frame["created_at"].is_sorted()
    rows = {row["did"]: row for row in frame.iter_rows(named=True)}
    http = httpx.Client(timeout=10, trust_env=False)
    for account in sb.accounts:
        row = rows[account["did"]]
        assert (row["handle"], row["pds"], row["status"]) == (account["handle"],
                                                              account["pds"], "active")
        log = http.get(f"{sb.plc_url}/{account['did']}/log/audit").json()
        assert row["cid"] == log[-1]["cid"]     # the latest operation
        doc = http.get(f"{sb.plc_url}/{account['did']}").json()
        (method,) = [m for m in doc["verificationMethod"] if m["id"].endswith("#atproto")]
        assert row["signing_key"] == parse_legacy_key(method["type"],
                                                      method["publicKeyMultibase"]).did_key
    http.close()
    # the moved account has two operations in the log; its row is the second, on PDS 2
    assert rows[moved["did"]]["pds"] == moved["pds"] == sb.pds_urls[1]
    assert len([op for op in audit if op["did"] == moved["did"]]) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_list_plc_resumes_where_an_interrupted_listing_stopped(
        sb: Sandbox, audit: list[dict[str, Any]], tmp_path: Path, kind: str) -> None:
    (whole, first, rest, nothing_new, after), _ = calls(kind, sb, tmp_path, [
        ("list_plc", (), {}),
        ("list_plc", (), {"limit": 5, "resume": True}),
        ("list_plc", (), {"resume": True}),
        ("list_plc", (), {"resume": True}),   # the log was read to its end: nothing new
        ("list_plc", (), {"after": audit[-2]["createdAt"]}),
    ])
    assert first.height <= 5
    assert nothing_new.height == 0 and nothing_new.schema == PLC_SCHEMA
    joined = pl.concat([first, rest]).unique("did", keep="last").sort("created_at", "did")
    assert joined.equals(whole)
    later = {op["did"] for op in audit if op["createdAt"] > audit[-2]["createdAt"]}
    assert set(after["did"]) == later


# -- a relay's hosts -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_list_hosts_names_every_pds_with_what_the_relay_reports(
        sb: Sandbox, tmp_path: Path, kind: str) -> None:
    hosts = one(kind, sb, tmp_path, "list_hosts", sb.relay_url)
    assert hosts.schema == HOSTS_SCHEMA
    assert hosts["host"].to_list() == sb.pds_urls
    assert hosts["hostname"].to_list() == [urlsplit(u).netloc for u in sb.pds_urls]
    assert set(hosts["status"]) == {"active"}
    http = httpx.Client(timeout=10, trust_env=False)
    for row in hosts.iter_rows(named=True):
        reported = http.get(f"{sb.relay_url}/xrpc/com.atproto.sync.getHostStatus",
                            params={"hostname": row["hostname"]}).json()
        assert (row["account_count"], row["seq"]) == (reported["accountCount"],
                                                      reported["seq"])
    http.close()


@pytest.mark.parametrize("kind", KINDS)
def test_list_hosts_pages_and_resumes(sb: Sandbox, tmp_path: Path, kind: str) -> None:
    (first, rest, again), _ = calls(kind, sb, tmp_path, [
        ("list_hosts", (sb.relay_url,), {"limit": 1, "resume": True}),
        ("list_hosts", (sb.relay_url,), {"resume": True}),
        ("list_hosts", (sb.relay_url,), {"limit": 2}),
    ])
    assert first["host"].to_list() == sb.pds_urls[:1]
    assert rest["host"].to_list() == sb.pds_urls[1:]      # from the saved cursor
    assert again["host"].to_list() == sb.pds_urls[:2]     # without resume: from the start


# -- moved accounts: fetched where the DID document points, and said so -----------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_frame_from_the_old_pds_fetches_the_moved_repo_from_the_new_one(
        sb: Sandbox, moved: dict[str, Any], tmp_path: Path, kind: str) -> None:
    old = sb.pds_urls[0]
    listing = one(kind, sb, tmp_path / "list", "list_repos", old)
    assert moved["did"] in listing["did"].to_list()      # the stale host still lists it
    active = listing.filter(pl.col("active")).with_columns(host=pl.lit(old))
    (records,), made = calls(kind, sb, tmp_path / "fetch", [("fetch_records", (active,), {})])
    fetched = made.last_fetched
    assert fetched.schema == FETCHED_SCHEMA
    assert made.last_errors.height == 0
    assert fetched["did"].to_list() == listing.filter(pl.col("active"))["did"].to_list()
    row = fetched.filter(pl.col("did") == moved["did"]).row(0, named=True)
    assert (row["listed_host"], row["pds"]) == (old, moved["pds"])
    assert (row["records"], row["source"], row["error"]) == (moved["records"], "full", None)
    assert records.filter(pl.col("did") == moved["did"]).height == moved["records"]
    stayed = fetched.filter(pl.col("did") != moved["did"])
    assert set(stayed["pds"]) == {old} and set(stayed["listed_host"]) == {old}
    assert fetched["records"].sum() == records.height


@pytest.mark.parametrize("kind", KINDS)
def test_fetch_records_over_list_plc_fetches_every_active_account(
        sb: Sandbox, tmp_path: Path, kind: str) -> None:
    plc = one(kind, sb, tmp_path / "plc", "list_plc")
    (records,), made = calls(kind, sb, tmp_path / "fetch", [("fetch_records", (plc,), {})])
    fetched = made.last_fetched
    assert fetched["did"].to_list() == plc["did"].to_list()
    assert fetched["listed_host"].to_list() == plc["pds"].to_list()
    assert (fetched["pds"] == fetched["listed_host"]).all()   # the PLC names where they are
    by_did = {a["did"]: a for a in sb.accounts}
    ok = fetched.filter(pl.col("error").is_null())
    assert {by_did[d]["status"] for d in ok["did"]} == {"active"}
    assert ok.height == len([a for a in sb.accounts if a["status"] == "active"])
    failed = set(made.last_errors["did"])
    assert failed == {a["did"] for a in sb.accounts if a["status"] != "active"}
    assert records.height == sum(by_did[d]["records"] for d in ok["did"])


# -- hostile answers -----------------------------------------------------------------------------


def _jsonl(*lines: bytes) -> Reply:
    return 200, {"content-type": "application/jsonlines"}, b"\n".join(lines)


GOOD = json.dumps({"did": "did:plc:" + "a" * 24, "cid": "bafyrei" + "a" * 52,
                   "nullified": False, "createdAt": "2024-01-01T00:00:00.000Z",
                   "operation": {"type": "plc_tombstone", "prev": None, "sig": "x"}}).encode()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("reply", "line", "message"), [
    (_jsonl(GOOD, GOOD, b"<html>oops</html>"), 3, "not JSON"),
    (_jsonl(GOOD, b'{"did": "did:plc:' + b"a" * 24 + b'", "cid": 5}'), 2, "cid"),
    (_jsonl(b"[" * 10), 1, "not JSON"),
    (_jsonl(GOOD, b'"' + b"x" * (200 << 10) + b'"'), 2, "line too long"),
])
def test_a_hostile_plc_export_ends_in_an_error_naming_the_url_and_line(
        sb: Sandbox, tmp_path: Path, kind: str, reply: Reply, line: int,
        message: str) -> None:
    with LoopbackServer(lambda path: reply) as plc:
        with pytest.raises(atrepo.TransportError, match=message) as info:
            one(kind, sb, tmp_path, "list_plc", options={"plc_url": plc.url})
    assert info.value.url is not None and info.value.url.startswith(f"{plc.url}/export?")
    assert info.value.fields["line"] == line


def _hosts(body: Any, cursor: str | None = None) -> Reply:
    page = {"hosts": body} | ({"cursor": cursor} if cursor else {})
    return 200, {"content-type": "application/json"}, json.dumps(page).encode()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("route", "message"), [
    (lambda path: _hosts([{"hostname": "https://pds.example"}]), "malformed listHosts"),
    (lambda path: _hosts([{"hostname": "pds.example", "accountCount": "many"}]),
     "malformed listHosts"),
    (lambda path: _hosts({"hostname": "pds.example"}), "malformed listHosts"),
    (lambda path: _hosts([{"hostname": "pds.example"}],
                         "B" if "cursor=A" in path else "A"), "cursor repeated"),
    (lambda path: (200, {"content-type": "text/html"}, b"<html></html>"),
     "malformed listHosts"),
])
def test_a_hostile_relay_ends_in_an_error_naming_it(sb: Sandbox, tmp_path: Path, kind: str,
                                                    route: Any, message: str) -> None:
    with LoopbackServer(route) as relay:
        with pytest.raises(atrepo.TransportError, match=message) as info:
            one(kind, sb, tmp_path, "list_hosts", relay.url)
    assert relay.url.split("://")[1] in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_export_takes_a_frame_and_writes_the_moved_repo_from_its_new_pds(
        sb: Sandbox, moved: dict[str, Any], tmp_path: Path, kind: str) -> None:
    old = sb.pds_urls[0]
    listing = one(kind, sb, tmp_path / "list", "list_repos", old).filter(pl.col("active"))
    report = one(kind, sb, tmp_path / "export", "export", listing, tmp_path / "out")
    assert report.errors.height == 0 and report.written == listing.height
    # the moved repository's rows are its current ones (PDS 2), not the old PDS's stale copy
    by_did = {a["did"]: a for a in sb.accounts}
    assert moved["records"] != moved["records_at_moved_from"]
    assert report.records == sum(by_did[d]["records"] for d in listing["did"])


# -- the command line ----------------------------------------------------------------------------


class _LoopbackClient(atrepo.Client):
    def __init__(self, **options: Any) -> None:
        http = httpx.Client(transport=LoopbackTransport(), trust_env=False, timeout=20)
        super().__init__(http=http, dns=NoDns(), **options)


def test_the_hosts_and_plc_commands_print_the_frames_rows(
        sb: Sandbox, moved: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(client_module, "Client", _LoopbackClient)
    common = ["--cache-dir", str(tmp_path), "--no-progress", "--json"]
    assert main(["hosts", sb.relay_url, *common]) == 0
    hosts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["host"] for h in hosts] == sb.pds_urls
    assert main(["plc", "--plc-url", sb.plc_url, "--parquet", str(tmp_path / "plc.parquet"),
                 *common]) == 0
    rows = {r["did"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows[moved["did"]]["pds"] == moved["pds"]
    assert pl.read_parquet(tmp_path / "plc.parquet").schema == PLC_SCHEMA
    with pytest.raises(SystemExit) as exited:
        main(["plc", "--after", "yesterday", *common])
    assert exited.value.code == 2 and "--after" in capsys.readouterr().err
