"""Retry and rate-limit decisions: every branch, with no clock and no waiting."""

from __future__ import annotations

import pytest

from atrepo._flows.policy import Decision, RetryPolicy, decide, retry_after

POLICY = RetryPolicy(retries=3, rate_limit_retries=2, base_delay=1.0, max_delay=8.0,
                     max_wait=60.0)


def _decide(**kw) -> Decision:
    args = {"outcome": "status", "status": None, "headers": {}, "attempt": 0,
            "rate_limited_so_far": 0, "now": 1_000.0, "jitter": 0.5}
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
    assert _decide(status=429, headers={"retry-after": "9999"}).delay == 60.0
    final = _decide(status=429, rate_limited_so_far=2)
    assert not final.retry and final.rate_limited


def test_429_without_a_header_backs_off():
    assert _decide(status=429, rate_limited_so_far=1, jitter=1.0).delay == 2.0


def test_retry_after_forms():
    assert retry_after({"retry-after": "Thu, 01 Jan 1970 00:00:30 GMT"}, now=10.0) == 20.0
    assert retry_after({"retry-after": "garbage"}, now=0.0) is None
    assert retry_after({"ratelimit-reset": "5"}, now=10.0) == 0.0
    assert retry_after({}, now=0.0) is None


def test_retry_policy_is_public():
    import atrepo

    assert atrepo.RetryPolicy is RetryPolicy
