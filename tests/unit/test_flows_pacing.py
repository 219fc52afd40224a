"""Per-host pacing decisions (:mod:`atrepo._flows.pacing`): every branch, no clock, no waiting."""

from __future__ import annotations

import pytest

from atrepo._flows.pacing import HostAdvice, advice, refill, response_time, token_wait
from atrepo.retry import RateLimit, RetryPolicy

POLICY = RetryPolicy(base_delay=1.0, max_delay=8.0, max_wait=60.0)


def _advice(status: int = 200, strikes: int = 0, now: float = 1_000.0,
            **headers: str) -> HostAdvice:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return advice(POLICY, status=status, headers=named, now=now, strikes=strikes)


def test_bucket_refills_at_its_rate_up_to_its_capacity():
    assert refill(0.0, capacity=3, rate=2.0, elapsed=0.5) == 1.0
    assert refill(2.5, capacity=3, rate=2.0, elapsed=10.0) == 3.0
    assert refill(1.0, capacity=3, rate=2.0, elapsed=-5.0) == 1.0  # a clock never runs back


def test_token_wait_is_the_time_to_a_whole_token():
    assert token_wait(1.0, rate=4.0) == 0.0
    assert token_wait(0.0, rate=4.0) == 0.25
    assert token_wait(-1.0, rate=4.0) == 0.5


def test_a_greedy_client_never_passes_the_limit_in_any_window():
    """Requests taken as soon as the bucket allows: any window of ``per`` holds <= requests."""
    limit = RateLimit(requests=20, per=2.0, burst=5)
    tokens, now, sent = float(limit.capacity), 0.0, []
    while len(sent) < 200:
        wait = token_wait(tokens, rate=limit.rate)
        now += wait
        tokens = refill(tokens, capacity=limit.capacity, rate=limit.rate, elapsed=wait) - 1.0
        sent.append(now)
    busiest = max(sum(1 for t in sent if start <= t < start + limit.per) for start in sent)
    assert busiest == limit.requests or busiest == limit.requests - 1  # reached, not passed
    assert sent[: limit.capacity] == [0.0] * limit.capacity


def test_429_pauses_for_what_the_host_asks():
    assert _advice(429, retry_after="7") == HostAdvice(pause=7.0)
    assert _advice(429, ratelimit_reset="1030") == HostAdvice(pause=30.0)
    assert _advice(429, retry_after="Thu, 01 Jan 1970 00:17:00 GMT").pause == 20.0


def test_429_pause_is_capped_at_max_wait():
    assert _advice(429, retry_after="100000").pause == POLICY.max_wait
    assert _advice(429, ratelimit_reset="99999999999").pause == POLICY.max_wait


@pytest.mark.parametrize("value", ["\u00b2", "soon", "-1", "1.5", "9" * 40, ""])
def test_429_without_a_usable_header_backs_off_by_strikes(value):
    pauses = [_advice(429, strikes=s, retry_after=value).pause for s in range(5)]
    assert pauses == [1.0, 2.0, 4.0, 8.0, 8.0]  # the ceiling, not jittered: one pause for all


def test_remaining_low_spreads_what_is_left_until_the_reset():
    said = _advice(ratelimit_limit="100", ratelimit_remaining="10", ratelimit_reset="1020")
    assert said == HostAdvice(gap=2.0, gap_for=20.0)


def test_remaining_plenty_says_no_gap_until_the_reset():
    said = _advice(ratelimit_limit="100", ratelimit_remaining="51", ratelimit_reset="1020")
    assert said == HostAdvice(gap=0.0, gap_for=20.0)


def test_remaining_without_limit_is_paced():
    said = _advice(ratelimit_remaining="400", ratelimit_reset="1040")
    assert said == HostAdvice(gap=0.1, gap_for=40.0)


def test_nothing_remaining_pauses_until_the_reset():
    said = _advice(ratelimit_limit="100", ratelimit_remaining="0", ratelimit_reset="1015")
    assert said == HostAdvice(pause=15.0)


@pytest.mark.parametrize("headers", [
    {},
    {"ratelimit_remaining": "5"},                                  # no reset
    {"ratelimit_reset": "1020"},                                   # no remaining
    {"ratelimit_remaining": "\u00b2", "ratelimit_reset": "1020"},  # not ASCII digits
    {"ratelimit_remaining": "5", "ratelimit_reset": "-3"},
    {"ratelimit_remaining": "5", "ratelimit_reset": "9" * 40},
])
def test_unusable_rate_headers_say_nothing(headers):
    assert _advice(**headers) == HostAdvice()


def test_a_reset_in_the_past_is_now():
    said = _advice(ratelimit_limit="100", ratelimit_remaining="0", ratelimit_reset="10")
    assert said == HostAdvice(pause=0.0)


def test_response_time_is_the_hosts_date_or_the_fallback():
    assert response_time({"date": "Thu, 01 Jan 1970 00:00:10 GMT"}, fallback=0.0) == 10.0
    assert response_time({}, fallback=3.0) == 3.0
    assert response_time({"date": "Thu, 99 Foo 1970"}, fallback=3.0) == 3.0
