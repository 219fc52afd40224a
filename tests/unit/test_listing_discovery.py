"""Discovery listings driven by hand: a relay's listHosts pages, and the hosts and PLC pagers
(limits, cursor files of their own, the frames they build)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from atrepo._config import ClientConfig
from atrepo._flows.effects import HttpResponse
from atrepo._flows.listing import HostRef, host_url, list_hosts_page
from atrepo._flows.plc import PlcOp, parse_export_line
from atrepo._listing import hosts_pager, pager, plc_pager
from atrepo.errors import TransportError
from atrepo.frames import HOSTS_SCHEMA, PLC_SCHEMA
from atrepo.repos import RepoRef
from atrepo.testing import drive

RELAY = "https://relay.test"
PLC = "https://plc.test"


def ok(obj: Any) -> HttpResponse:
    return HttpResponse(200, body=json.dumps(obj).encode())


def test_list_hosts_page():
    page = {"cursor": "2", "hosts": [
        {"hostname": "pds.one.example", "seq": 94, "accountCount": 8, "status": "active",
         "extra": True},
        {"hostname": "localhost:2583"},
    ]}
    (hosts, cursor), driver = drive(list_hosts_page(RELAY, cursor="1", limit=5000), [ok(page)])
    assert driver.effects[0].url == (f"{RELAY}/xrpc/com.atproto.sync.listHosts"
                                     "?limit=1000&cursor=1")
    assert cursor == "2"
    assert hosts == [HostRef(hostname="pds.one.example", seq=94, accountCount=8,
                             status="active"), HostRef(hostname="localhost:2583")]
    assert (hosts[1].status, hosts[1].account_count, hosts[1].seq) == (None, None, None)


@pytest.mark.parametrize("hosts", [
    [{"hostname": "https://pds.example"}], [{"hostname": "pds example"}], [{"hostname": ""}],
    [{"hostname": "pds.example/xrpc"}], [{"hostname": 7}], [{}],
    [{"hostname": "pds.example", "accountCount": "8"}],
    [{"hostname": "pds.example", "accountCount": -1}],
    [{"hostname": "pds.example", "seq": 1.5}], [{"hostname": "pds.example", "status": 1}],
    [{"hostname": "h" * 300}], {"hostname": "pds.example"},
])
def test_a_malformed_hosts_page_names_the_relay(hosts):
    with pytest.raises(TransportError, match="malformed listHosts response") as info:
        drive(list_hosts_page(RELAY, cursor=None), [ok({"hosts": hosts})])
    assert info.value.fields["host"] == RELAY


def test_a_hosts_page_larger_than_asked_is_refused():
    page = {"hosts": [{"hostname": f"pds{n}.example"} for n in range(3)], "cursor": "3"}
    with pytest.raises(TransportError, match="larger than the limit"):
        drive(list_hosts_page(RELAY, cursor=None, limit=2), [ok(page)])


def test_host_urls():
    assert host_url("pds.example.com") == "https://pds.example.com"
    assert host_url("pds.example.com:8443") == "https://pds.example.com:8443"
    assert host_url("localhost:2583") == "http://localhost:2583"
    assert host_url("pds.localhost") == "http://pds.localhost"
    assert host_url("127.0.0.1:2583") == "http://127.0.0.1:2583"


def test_the_hosts_pager_builds_its_frame_and_keeps_its_own_cursor_file(tmp_path: Path):
    config = ClientConfig(cache_dir=tmp_path)
    listing = hosts_pager(RELAY, config, limit=None, resume=True)
    with listing.collecting():
        listing.take(([HostRef(hostname="localhost:2583", status="active", accountCount=3,
                               seq=9)], "1"))
        listing.take(([HostRef(hostname="pds.example")], None))
    frame = listing.frame()
    assert frame.schema == HOSTS_SCHEMA
    assert frame.rows() == [("http://localhost:2583", "localhost:2583", "active", 3, 9),
                            ("https://pds.example", "pds.example", None, None, None)]
    # a listRepos cursor of the same relay is another file, and is not taken for it
    repos = pager(RELAY, config, limit=None, resume=True)
    repos.take(([RepoRef(did="did:plc:" + "a" * 24)], "repos-cursor"))
    files = sorted(p.name for p in (tmp_path / "cursors").iterdir())
    assert files == ["hosts-relay.test.json", "relay.test.json"]
    assert hosts_pager(RELAY, config, limit=None, resume=True).cursor is None  # it ended
    assert pager(RELAY, config, limit=None, resume=True).cursor == "repos-cursor"
    assert hosts_pager(RELAY, config, limit=0, resume=False).frame().schema == HOSTS_SCHEMA


def _op(did: str, ms: int, pds: str | None, *, nullified: bool = False,
        tombstone: bool = False) -> PlcOp:
    key = "did:key:zQ3shnVy33XYAf28jGue1iwLyN3dbufGXCayS9n9QPAdeU9ie"
    operation: dict[str, Any] = ({"type": "plc_tombstone", "prev": None, "sig": "x"}
                                 if tombstone else
                                 {"type": "plc_operation", "alsoKnownAs": ["at://a.test"],
                                  "verificationMethods": {"atproto": key},
                                  "services": {"atproto_pds": {"endpoint": pds}}})
    line = {"did": did, "operation": operation, "cid": "bafyrei" + "a" * 45 + f"{ms:03d}"
            .translate(str.maketrans("0123456789", "bcdefghijk")),
            "nullified": nullified, "createdAt": f"2024-01-01T00:00:00.{ms:03d}Z"}
    return parse_export_line(json.dumps(line).encode(), url=PLC)


A, B, C = ("did:plc:" + ch * 24 for ch in "abc")


def test_the_plc_pager_gives_each_dids_latest_state(tmp_path: Path):
    config = ClientConfig(cache_dir=tmp_path, plc_url=PLC)
    listing = plc_pager(config, after=None, limit=None, resume=True)
    with listing.collecting():
        listing.take(([_op(A, 1, "https://one"), _op(B, 2, "https://one"),
                       _op(C, 3, "https://one")], "2024-01-01T00:00:00.002Z"))
        listing.take(([_op(A, 4, "https://two"), _op(B, 5, "https://evil", nullified=True),
                       _op(C, 6, None, tombstone=True)], None))
    frame = listing.frame()
    assert frame.schema == PLC_SCHEMA
    assert frame.select("did", "pds", "status").rows() == [
        (B, "https://one", "active"),        # its later operation was nullified
        (A, "https://two", "active"),        # moved
        (C, None, "tombstoned")]
    saved = json.loads((tmp_path / "cursors" / "plc-plc.test.json").read_text())
    # the log was read to its end: resuming reads only what comes after its last operation
    assert saved == {"host": PLC, "cursor": "2024-01-01T00:00:00.006Z"}
    assert plc_pager(config, after=None, limit=None, resume=True).cursor == saved["cursor"]
    nothing_new = plc_pager(config, after=None, limit=None, resume=True)
    nothing_new.take(([], None))                         # an empty page: the cursor stays
    assert plc_pager(config, after=None, limit=None, resume=True).cursor == saved["cursor"]


def test_the_plc_pager_starts_after_and_resumes_a_saved_cursor(tmp_path: Path):
    config = ClientConfig(cache_dir=tmp_path, plc_url=PLC)
    assert plc_pager(config, after="2024-01-01T00:00:00.000Z", limit=None,
                     resume=False).cursor == "2024-01-01T00:00:00.000Z"
    first = plc_pager(config, after=None, limit=2, resume=True)
    first.take(([_op(A, 1, "https://one"), _op(B, 2, "https://one")],
                "2024-01-01T00:00:00.001Z"))
    assert first.exhausted
    again = plc_pager(config, after="2020-01-01T00:00:00.000Z", limit=None, resume=True)
    assert again.cursor == "2024-01-01T00:00:00.001Z"   # the saved cursor wins over after
    effect = next(again.flow())
    assert effect.url == f"{PLC}/export?count=1000&after=2024-01-01T00%3A00%3A00.001Z"
