"""The XRPC plumbing: URLs, the one retry loop, and reading error bodies.

Flows are driven by hand with :func:`atrepo.testing.drive`: it sends :class:`HttpResponse`
values or throws ``TransportError`` into the generator and records the :class:`Sleep`
delays it yields, so nothing waits and nothing leaves the process.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from atrepo._flows.effects import HttpGet, HttpResponse
from atrepo.retry import RetryPolicy
from atrepo._flows.repo import get_latest_commit
from atrepo._flows.xrpc import _jitter, host_of, json_body, request, xrpc_error, xrpc_url
from atrepo.errors import RateLimited, ResponseTooLarge, TransportError
from atrepo.testing import FlowDriver, drive

PDS = "https://pds.test"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
ENC_DID = DID.replace(":", "%3A")
LATEST = f"{PDS}/xrpc/com.atproto.sync.getLatestCommit?did={ENC_DID}"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
REV = "3l3qo2vutsw2b"


def ok(obj: Any, **headers: str) -> HttpResponse:
    return HttpResponse(200, headers=headers, body=json.dumps(obj).encode())


def error(status: int, name: str | None = None, message: str | None = None,
          **headers: str) -> HttpResponse:
    obj = {key: value for key, value in (("error", name), ("message", message)) if value}
    return HttpResponse(status, headers=headers, body=json.dumps(obj).encode())


# -- URLs ----------------------------------------------------------------------------------


def test_xrpc_url_encodes_and_drops_none():
    assert xrpc_url(PDS + "/", "a.b.c", x="1 2&3", y=None, n=5) == f"{PDS}/xrpc/a.b.c?x=1+2%263&n=5"
    assert xrpc_url(PDS, "a.b.c") == f"{PDS}/xrpc/a.b.c"


def test_host_of():
    assert host_of("https://pds.test:8443/base") == "pds.test:8443"
    assert host_of("not a url") == "not a url"


# -- the retry loop ------------------------------------------------------------------------


def test_success_first_time():
    value, driver = drive(get_latest_commit(PDS, DID), [ok({"cid": CID, "rev": REV})])
    assert value == (CID, REV)
    assert driver.sleeps == []
    (effect,) = driver.requests
    assert isinstance(effect, HttpGet)
    assert effect.url == LATEST
    assert ("accept", "application/json") in effect.headers


def test_429_with_retry_after_then_success():
    answers = [error(429, "RateLimitExceeded", **{"retry-after": "7"}),
               ok({"cid": CID, "rev": REV})]
    value, driver = drive(get_latest_commit(PDS, DID), answers)
    assert value == (CID, REV)
    assert driver.sleeps == [7.0]


def test_429_with_http_date_uses_the_date_header_as_now():
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT",
               "date": "Wed, 21 Oct 2015 07:28:00 GMT"}
    _, driver = drive(get_latest_commit(PDS, DID),
                      [error(429, **headers), ok({"cid": CID, "rev": REV})])
    assert driver.sleeps == [10.0]


def test_429_without_retry_after_backs_off_deterministically():
    _, driver = drive(get_latest_commit(PDS, DID), [error(429), ok({"cid": CID, "rev": REV})])
    assert driver.sleeps == [RetryPolicy().base_delay * _jitter(LATEST, 0)]


def test_429_beyond_the_budget_raises_rate_limited():
    policy = RetryPolicy(rate_limit_retries=2)
    driver = FlowDriver()
    with pytest.raises(RateLimited) as info:
        driver.run(get_latest_commit(PDS, DID, policy=policy),
                   [error(429, **{"retry-after": "5"})] * 3)
    assert info.value.host == "pds.test"
    assert info.value.retry_after == 5.0
    assert driver.sleeps == [5.0, 5.0]
    assert len(driver.requests) == 3


def test_5xx_then_success_with_exact_backoff():
    answers = [error(500), error(503), ok({"cid": CID, "rev": REV})]
    value, driver = drive(get_latest_commit(PDS, DID), answers)
    assert value == (CID, REV)
    base = RetryPolicy().base_delay
    assert driver.sleeps == [base * _jitter(LATEST, 0), base * 2 * _jitter(LATEST, 1)]
    _, again = drive(get_latest_commit(PDS, DID), answers)
    assert again.sleeps == driver.sleeps  # pure: the same script sleeps the same


def test_5xx_until_exhausted():
    policy = RetryPolicy(retries=2)
    driver = FlowDriver()
    with pytest.raises(TransportError) as info:
        driver.run(get_latest_commit(PDS, DID, policy=policy), [error(503)] * 3)
    assert info.value.url == LATEST
    assert info.value.fields["reason"] == "status 503"
    assert len(driver.sleeps) == 2


def test_transport_errors_until_exhausted():
    policy = RetryPolicy(retries=3)
    failure = TransportError("connection failed", url=LATEST, reason="refused")
    driver = FlowDriver()
    with pytest.raises(TransportError) as info:
        driver.run(get_latest_commit(PDS, DID, policy=policy), [failure] * 4)
    assert info.value.url == LATEST
    assert "connection failed (refused)" in str(info.value)
    assert info.value.__cause__ is failure
    assert len(driver.sleeps) == 3
    assert all(0.0 <= delay < 30.0 for delay in driver.sleeps)


def test_transport_error_then_success():
    failure = TransportError("request timed out", url=LATEST)
    value, driver = drive(get_latest_commit(PDS, DID), [failure, ok({"cid": CID, "rev": REV})])
    assert value == (CID, REV)
    assert len(driver.sleeps) == 1


def test_too_large_is_not_retried():
    failure = ResponseTooLarge(LATEST, max_bytes=10)
    with pytest.raises(TransportError, match="response too large"):
        drive(get_latest_commit(PDS, DID), [failure])


@pytest.mark.parametrize("status", [400, 403, 501])
def test_request_returns_final_statuses_to_the_caller(status):
    effect = HttpGet(f"{PDS}/x")
    value, driver = drive(request(lambda: effect, host="pds.test"), [error(status)])
    assert value.status == status
    assert driver.sleeps == []


def test_request_rejects_a_wrong_answer():
    flow = request(lambda: HttpGet(f"{PDS}/x"), host="pds.test")
    next(flow)
    with pytest.raises(TypeError):
        flow.send(None)


def test_jitter_is_pure_and_in_range():
    values = {_jitter(f"{PDS}/x", attempt) for attempt in range(50)}
    assert len(values) == 50
    assert all(0.0 <= value < 1.0 for value in values)
    assert _jitter(f"{PDS}/x", 3) == _jitter(f"{PDS}/x", 3)


# -- reading replies -----------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"\xff\xfe\x00", b"[" * 100_000, b'"text"', b"[1, 2]",
                                  b'{"error": 5, "message": ["x"]}', b"null", b"{"])
def test_garbage_error_bodies_have_no_error_name(body):
    assert xrpc_error(HttpResponse(400, body=body)) == (None, None)


def test_xrpc_error_cuts_long_text():
    name, message = xrpc_error(error(400, "X" * 10_000, "line\nbreak"))
    assert name is not None and len(name) == 200 and name.endswith("...")
    assert message == "line break"


def test_json_body_never_raises():
    assert json_body(b'{"a": [1]}') == {"a": [1]}
    assert json_body(b"[" * 100_000) is None and json_body(b"\xff") is None


# -- waits: one capped, all of a request capped --------------------------------------------


def test_a_retry_after_beyond_max_wait_is_rate_limited_at_once():
    driver = FlowDriver()
    with pytest.raises(RateLimited, match="longer than max_wait") as info:
        driver.run(get_latest_commit(PDS, DID), [error(429, **{"retry-after": "1000000000"})])
    assert (info.value.host, info.value.retry_after) == ("pds.test", 1e9)
    assert info.value.fields["max_wait"] == RetryPolicy().max_wait
    assert driver.sleeps == []


def test_the_waits_of_one_request_are_capped_in_all():
    policy = RetryPolicy(max_wait=100.0, max_total_wait=250.0)
    driver = FlowDriver()
    with pytest.raises(RateLimited, match="longer than max_total_wait") as info:
        driver.run(get_latest_commit(PDS, DID, policy=policy),
                   [error(429, **{"retry-after": "100"})] * 3)
    assert driver.sleeps == [100.0, 100.0]  # a third would make 300 s
    assert info.value.retry_after == 100.0 and info.value.fields["waited"] == 200.0
    assert info.value.fields["max_total_wait"] == 250.0


def test_backoffs_count_against_the_total_too():
    policy = RetryPolicy(retries=10, base_delay=10.0, max_delay=10.0, max_total_wait=1.0)
    with pytest.raises(TransportError, match="longer than max_total_wait") as info:
        drive(get_latest_commit(PDS, DID, policy=policy), [error(503)] * 11)
    assert info.value.url == LATEST and info.value.fields["waited"] < 1.0


@pytest.mark.parametrize("value", ["\u00b2", "soon", "1e9", "9" * 40])
def test_malformed_retry_after_backs_off_instead_of_failing(value):
    answers = [error(429, **{"retry-after": value}), ok({"cid": CID, "rev": REV})]
    value_, driver = drive(get_latest_commit(PDS, DID), answers)
    assert value_ == (CID, REV)
    assert driver.sleeps == [RetryPolicy().base_delay * _jitter(LATEST, 0)]
