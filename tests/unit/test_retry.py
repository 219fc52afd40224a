"""RetryPolicy and RateLimit (:mod:`atrepo.retry`): public, frozen values, every bound checked."""

from __future__ import annotations

import dataclasses

import pytest

import atrepo
from atrepo._config import ClientConfig
from atrepo.errors import UsageError
from atrepo.retry import RateLimit, RetryPolicy


def test_retry_policy_is_public_and_frozen():
    assert atrepo.RetryPolicy is RetryPolicy
    policy = RetryPolicy(retries=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.retries = 2  # type: ignore[misc]
    assert dataclasses.replace(policy, max_wait=1.0).max_wait == 1.0


def test_defaults_bound_every_wait():
    policy = RetryPolicy()
    assert policy.max_wait <= policy.max_total_wait
    assert policy.max_delay <= policy.max_wait
    assert policy.retries * policy.max_delay <= policy.max_total_wait


def test_rate_limit_defaults_are_the_published_pds_limit():
    limit = RateLimit()
    assert (limit.requests, limit.per) == (3000, 300.0)
    assert limit.capacity == 30
    assert limit.capacity + limit.rate * limit.per == limit.requests


@pytest.mark.parametrize("requests, per, burst", [(1000, 60.0, None), (2, 1.0, 1),
                                                   (100, 10.0, 99), (7, 0.5, None)])
def test_rate_limit_never_allows_more_than_requests_per_window(requests, per, burst):
    limit = RateLimit(requests=requests, per=per, burst=burst)
    assert 1 <= limit.capacity < requests and limit.rate > 0
    assert limit.capacity + limit.rate * limit.per == pytest.approx(requests)


@pytest.mark.parametrize("kwargs", [{"requests": 1}, {"requests": 0}, {"requests": True},
                                    {"requests": 10.5}, {"per": 0.0}, {"per": -1.0},
                                    {"per": float("nan")}, {"burst": 0},
                                    {"requests": 10, "burst": 10}])
def test_rate_limit_refuses_what_cannot_be_paced(kwargs):
    with pytest.raises(UsageError) as caught:
        RateLimit(**kwargs)
    assert caught.value.argument == "rate_limit"


def test_client_takes_a_rate_limit_or_none():
    assert ClientConfig().rate_limit == RateLimit()
    assert ClientConfig(rate_limit=None).rate_limit is None
    with pytest.raises(UsageError):
        ClientConfig(rate_limit=(3000, 300))  # type: ignore[arg-type]
