"""The PLC directory's export: operations parsed purely, pages and their cursors, driven by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from atrepo._flows.effects import HttpGet, HttpResponse
from atrepo._flows.plc import (EXPORT_COUNT, ExportCursor, export_page, parse_export,
                               parse_export_line)
from atrepo.errors import TransportError
from atrepo.testing import drive

PLC = "https://plc.test"
URL = f"{PLC}/export"
KEY = "did:key:zQ3shnVy33XYAf28jGue1iwLyN3dbufGXCayS9n9QPAdeU9ie"


def did(n: int) -> str:
    return "did:plc:" + "abcdefghijklmnopqrstuvwx"[n % 24] * 24


def cid(n: int) -> str:
    return "bafyrei" + f"{n:052d}".translate(str.maketrans("0123456789", "abcdefghij"))


def at(ms: int) -> str:
    return f"2024-01-01T00:00:{ms // 1000:02d}.{ms % 1000:03d}Z"


def operation(pds: str = "https://pds.one", handle: str = "alice.test") -> dict[str, Any]:
    return {"type": "plc_operation", "rotationKeys": [KEY],
            "verificationMethods": {"atproto": KEY}, "alsoKnownAs": [f"at://{handle}"],
            "services": {"atproto_pds": {"type": "AtprotoPersonalDataServer",
                                         "endpoint": pds}},
            "prev": None, "sig": "x"}


def entry(n: int, ms: int, op: dict[str, Any] | None = None, *, who: int | None = None,
          nullified: bool = False) -> dict[str, Any]:
    return {"did": did(n if who is None else who), "operation": op or operation(),
            "cid": cid(n), "nullified": nullified, "createdAt": at(ms)}


def body(*entries: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps(e) for e in entries).encode()


def ok(data: bytes) -> HttpResponse:
    return HttpResponse(200, headers={"content-type": "application/jsonlines"}, body=data)


# -- one operation ------------------------------------------------------------------------------


def test_a_plc_operation_gives_handle_pds_and_key():
    op = parse_export_line(json.dumps(entry(1, 5)).encode(), url=URL)
    assert (op.did, op.cid, op.created_at, op.nullified) == (did(1), cid(1), at(5), False)
    assert (op.status, op.handle, op.pds, op.signing_key) == ("active", "alice.test",
                                                              "https://pds.one", KEY)
    assert op.created.isoformat() == "2024-01-01T00:00:00.005000+00:00"


def test_a_legacy_create_and_a_tombstone():
    legacy = {"type": "create", "signingKey": KEY, "recoveryKey": KEY, "handle": "old.test",
              "service": "https://pds.legacy", "prev": None, "sig": "x"}
    op = parse_export_line(json.dumps(entry(1, 5, legacy)).encode(), url=URL)
    assert (op.status, op.handle, op.pds, op.signing_key) == ("active", "old.test",
                                                              "https://pds.legacy", KEY)
    tomb = {"type": "plc_tombstone", "prev": cid(0), "sig": "x"}
    op = parse_export_line(json.dumps(entry(2, 6, tomb)).encode(), url=URL)
    assert (op.status, op.handle, op.pds, op.signing_key) == ("tombstoned", None, None, None)


def test_an_operation_without_services_names_no_pds():
    op = operation()
    del op["services"]
    op["alsoKnownAs"] = ["https://not-a-handle.example"]
    parsed = parse_export_line(json.dumps(entry(1, 5, op)).encode(), url=URL)
    assert (parsed.handle, parsed.pds, parsed.signing_key) == (None, None, KEY)


def _with(change: dict[str, Any], op_change: dict[str, Any] | None = None) -> bytes:
    e = entry(1, 5)
    e.update(change)
    if op_change:
        e["operation"] = {**e["operation"], **op_change}
    return json.dumps(e).encode()


@pytest.mark.parametrize(("line", "what"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not an object"),
    (b'"did:plc:x"', "not an object"),
    (b"[" * 50_000, "not JSON"),                      # deep, within the line bound
    (_with({"did": "did:web:example.com"}), "not a did:plc DID"),
    (_with({"did": 7}), "not a did:plc DID"),
    (_with({"cid": None}), "cid is not a CID"),
    (_with({"cid": "Qm" + "x" * 44}), "cid is not a CID"),
    (_with({"nullified": "false"}), "nullified"),
    (_with({"createdAt": 1704067200}), "createdAt"),
    (_with({"createdAt": "2024-01-01T00:00:00"}), "createdAt"),      # no zone
    (_with({"createdAt": "2024-01-01T00:00:00+02:00"}), "createdAt"),  # not UTC
    (_with({"createdAt": "yesterday"}), "createdAt"),
    (_with({"operation": "plc_operation"}), "operation is not"),
    (_with({}, {"type": "plc_sneaky"}), "operation is not"),
    (_with({}, {"alsoKnownAs": "at://alice.test"}), "alsoKnownAs"),
    (_with({}, {"alsoKnownAs": [1]}), "alsoKnownAs"),
    (_with({}, {"services": []}), "services"),
    (_with({}, {"services": {"atproto_pds": "https://pds"}}), "atproto_pds"),
    (_with({}, {"services": {"atproto_pds": {"endpoint": 5}}}), "endpoint"),
    (_with({}, {"verificationMethods": {"atproto": ["k"]}}), "verificationMethods.atproto"),
    (_with({}, {"verificationMethods": {"atproto": "k" * 5000}}), "verificationMethods"),
])
def test_a_malformed_line_names_the_url_and_the_line(line, what):
    with pytest.raises(TransportError, match="malformed PLC export line") as info:
        parse_export(b"\n".join([json.dumps(entry(0, 1)).encode(), line]), url=URL)
    assert what in info.value.message
    assert info.value.url == URL and info.value.fields["line"] == 2


def test_a_huge_line_is_refused_before_it_is_parsed():
    huge = json.dumps({**entry(1, 5), "padding": "x" * (1 << 20)}).encode()
    with pytest.raises(TransportError, match="line too long") as info:
        parse_export(huge, url=URL)
    assert info.value.fields["line"] == 1 and info.value.url == URL


def test_more_lines_than_a_page_holds_are_refused():
    lines = body(*(entry(n, n) for n in range(EXPORT_COUNT + 1)))
    with pytest.raises(TransportError, match="longer than the directory's page size"):
        parse_export(lines, url=URL)
    assert len(parse_export(body(*(entry(n, n) for n in range(EXPORT_COUNT))), url=URL)) == \
        EXPORT_COUNT


def test_blank_lines_and_an_empty_body_hold_no_operations():
    assert parse_export(b"", url=URL) == []
    assert [op.cid for op in parse_export(body(entry(1, 1)) + b"\n\n", url=URL)] == [cid(1)]


# -- pages --------------------------------------------------------------------------------------


def test_the_first_page_asks_for_count_and_no_after():
    (ops, cursor), driver = drive(export_page(PLC, after=None), [ok(body(entry(1, 1)))])
    (effect,) = driver.effects
    assert isinstance(effect, HttpGet)
    assert effect.url == f"{URL}?count=1000"
    assert "application/jsonlines" in dict(effect.headers)["accept"]
    assert [op.cid for op in ops] == [cid(1)] and cursor is None   # a short page: the end


def test_a_full_page_reads_its_last_millisecond_again_and_drops_what_it_saw():
    # 4 asked; the last two share 0.003 s, and a third at that millisecond is only on the
    # next page: the directory's after is strict, so asking after 0.003 would lose it
    first = body(entry(1, 1), entry(2, 2), entry(3, 3), entry(4, 3))
    (ops, cursor), _ = drive(export_page(PLC, after=None, limit=4), [ok(first)])
    assert [op.cid for op in ops] == [cid(1), cid(2), cid(3), cid(4)]
    assert cursor == at(2) and isinstance(cursor, ExportCursor)
    assert cursor.overlap == {cid(3), cid(4)}
    second = body(entry(3, 3), entry(4, 3), entry(5, 3), entry(6, 9))
    (ops, cursor2), driver = drive(export_page(PLC, after=cursor, limit=4), [ok(second)])
    assert driver.effects[0].url.endswith("after=2024-01-01T00%3A00%3A00.002Z")
    assert [op.cid for op in ops] == [cid(5), cid(6)]
    assert cursor2 == at(3)


def test_a_page_sharing_one_millisecond_moves_past_it():
    page = body(*(entry(n, 7) for n in range(3)))
    (_, cursor), _ = drive(export_page(PLC, after=None, limit=3), [ok(page)])
    assert cursor == at(7)


def test_a_server_that_ignores_count_is_cut_to_what_was_asked():
    # the reference server reads no count: it answers up to 1000 whatever is asked
    page = body(*(entry(n, n) for n in range(10)))
    (ops, cursor), _ = drive(export_page(PLC, after=None, limit=3), [ok(page)])
    assert [op.cid for op in ops] == [cid(0), cid(1), cid(2)]
    assert cursor == at(1)            # the page after the third, its millisecond again


@pytest.mark.parametrize(("status", "data"), [(404, b"not found"), (400, b'{"message": "x"}')])
def test_an_error_status_names_the_url(status, data):
    with pytest.raises(TransportError, match="unexpected response") as info:
        drive(export_page(PLC, after=None), [HttpResponse(status, body=data)])
    assert info.value.url == f"{URL}?count=1000"
    assert info.value.fields["http_status"] == status


@pytest.mark.parametrize(("after", "times", "place"), [
    (None, [1, 3, 2], 3),                      # older than the one before it
    (at(5), [5, 6], 1),                        # not after `after` (the directory's is strict)
    (at(5), [4], 1),
])
def test_a_page_out_of_log_order_is_refused(after, times, place):
    # in order, every cursor is later than the one before; out of order, it could go back
    page = body(*(entry(n, ms) for n, ms in enumerate(times)))
    with pytest.raises(TransportError, match="out of order") as info:
        drive(export_page(PLC, after=after), [ok(page)])
    assert info.value.fields["operation"] == place


def test_a_listing_past_max_rows_is_refused():
    page = body(*(entry(n, n) for n in range(5)))
    with pytest.raises(TransportError, match="listing too long"):
        drive(export_page(PLC, after=None, limit=5, max_rows=4), [ok(page)])
