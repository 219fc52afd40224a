"""RetryPolicy (:mod:`atrepo.retry`): a public, frozen value with every budget bounded."""

from __future__ import annotations

import dataclasses

import pytest

import atrepo
from atrepo.retry import RetryPolicy


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
