"""Retry and rate-limit decisions: every branch, with no clock and no waiting."""

from __future__ import annotations

import pytest

from atrepo._flows.policy import ASKED_TOO_LONG, WAITED_TOO_LONG, Decision, decide, retry_after
from atrepo.retry import RetryPolicy

POLICY = RetryPolicy(retries=3, rate_limit_retries=2, base_delay=1.0, max_delay=8.0,
                     max_wait=60.0, max_total_wait=100.0)


def _decide(**kw) -> Decision:
    args = {"outcome": "status", "status": None, "headers": {}, "attempt": 0,
            "rate_limited_so_far": 0, "now": 1_000.0, "jitter": 0.5, "waited": 0.0}
    args.update(kw)
    return decide(POLICY, **args)


def test_success_is_final():
    assert _decide(outcome="ok", status=200) == Decision(False, reason="ok")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 501])
def test_client_errors_are_final(status):
    assert not _decide(status=status).retry


@pytest.mark.parametrize("status", [408, 425, 500, 502, 503, 504])
def test_transient_statuses_back_off_exponentially(status):
    delays = [_decide(status=status, attempt=a, jitter=1.0).delay for a in range(3)]
    assert delays == [1.0, 2.0, 4.0]
    assert not _decide(status=status, attempt=3).retry


def test_backoff_is_capped_and_jittered():
    assert _decide(outcome="transport", attempt=2, jitter=0.25).delay == 1.0
    capped = RetryPolicy(retries=10, base_delay=1.0, max_delay=8.0)
    assert decide(capped, outcome="transport", status=None, headers={}, attempt=9,
                  rate_limited_so_far=0, now=0.0, jitter=0.999).delay < 8.0


def test_429_waits_for_retry_after_then_gives_up():
    first = _decide(status=429, headers={"retry-after": "12"})
    assert first.retry and first.delay == 12.0 and first.rate_limited
    final = _decide(status=429, rate_limited_so_far=2)
    assert not final.retry and final.rate_limited


def test_429_asking_for_more_than_max_wait_is_not_waited_for():
    # waiting max_wait and asking again would only be refused again
    assert _decide(status=429, headers={"retry-after": "60"}).delay == 60.0
    for asked in ("61", "9999", "1000000000"):
        decision = _decide(status=429, headers={"retry-after": asked})
        assert decision == Decision(False, reason=ASKED_TOO_LONG, rate_limited=True)


def test_waits_stop_at_max_total_wait():
    assert _decide(status=429, headers={"retry-after": "50"}, waited=50.0).retry
    over = _decide(status=429, headers={"retry-after": "50"}, waited=51.0)
    assert (over.retry, over.reason, over.rate_limited) == (False, WAITED_TOO_LONG, True)
    backoff = _decide(status=503, attempt=1, jitter=1.0, waited=99.0)
    assert (backoff.retry, backoff.reason, backoff.rate_limited) == (False, WAITED_TOO_LONG,
                                                                      False)


def test_429_without_a_header_backs_off():
    assert _decide(status=429, rate_limited_so_far=1, jitter=1.0).delay == 2.0


def test_retry_after_forms():
    assert retry_after({"retry-after": "Thu, 01 Jan 1970 00:00:30 GMT"}, now=10.0) == 20.0
    assert retry_after({"retry-after": "garbage"}, now=0.0) is None
    assert retry_after({"ratelimit-reset": "5"}, now=10.0) == 0.0
    assert retry_after({"retry-after": " 7 "}, now=0.0) == 7.0
    assert retry_after({}, now=0.0) is None


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "\uff17", "1\u00b2", "-5", "1.5", "1e3",
                                   "9" * 16, "", "Thu, 99 Jan 1970 00:00:30 GMT",
                                   "Thu, 01 Jan 99999999 00:00:30 GMT", "\x00", "\u00ff" * 50])
def test_retry_after_parsing_is_strict(value):
    # "²".isdigit() is True, and float("²") raised a bare ValueError before
    assert retry_after({"retry-after": value}, now=0.0) is None
    assert retry_after({"ratelimit-reset": value}, now=0.0) is None
    assert _decide(status=429, headers={"retry-after": value}).retry  # backs off instead
