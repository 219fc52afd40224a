"""Retry, backoff and rate-limit decisions, as pure functions of what a request returned.

A driver asks :func:`decide` after every attempt and sleeps for the delay it returns; the
decision itself touches no clock, random source or socket (the caller passes ``now`` and a
``jitter`` in [0, 1)), so every branch is tested without waiting.

Rules (what a polite crawler of atproto hosts does):

* 429: wait for ``Retry-After`` (seconds or an HTTP date) or ``RateLimit-Reset`` (epoch
  seconds), capped at :attr:`RetryPolicy.max_wait`, then retry, under a budget of its own
  (:attr:`RetryPolicy.rate_limit_retries`) so a host that keeps limiting us ends in
  ``RateLimited`` rather than a loop.
* 5xx, timeouts, resets, truncated bodies: exponential backoff with full jitter, at most
  :attr:`RetryPolicy.retries` times, then ``TransportError``.
* Anything else (2xx, 4xx other than 408/425/429) is final: retrying cannot change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

__all__ = ["RETRY_STATUSES", "Decision", "RetryPolicy", "decide", "retry_after"]

Outcome = Literal["ok", "status", "transport"]
RETRY_STATUSES = frozenset({408, 425, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. Every default is a deliberate choice, explained per field."""

    retries: int = 4                 # transient failures retried before giving up
    rate_limit_retries: int = 6      # 429s waited out before raising RateLimited
    base_delay: float = 0.5          # first backoff ceiling, seconds; doubles each attempt
    max_delay: float = 30.0          # backoff ceiling, seconds
    max_wait: float = 300.0          # longest Retry-After we honour, seconds


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to try again, after how long, and why (for logs and error messages)."""

    retry: bool
    delay: float = 0.0
    reason: str = ""
    rate_limited: bool = False


def retry_after(headers: dict[str, str], now: float) -> float | None:
    """Seconds a host asked us to wait, from ``Retry-After`` or ``RateLimit-Reset``.

    Args:
        headers: response headers with lowercase names.
        now: the current time as a Unix timestamp.

    Example:
        >>> retry_after({"retry-after": "7"}, now=0.0)
        7.0
        >>> retry_after({"ratelimit-reset": "1000"}, now=990.0)
        10.0
    """
    value = headers.get("retry-after")
    if value is not None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            return None
    reset = headers.get("ratelimit-reset")
    if reset is not None and reset.strip().isdigit():
        return max(0.0, float(reset) - now)
    return None


def _backoff(policy: RetryPolicy, attempt: int, jitter: float) -> float:
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** attempt)
    return ceiling * jitter  # "full jitter": spreads clients out after a shared failure


def decide(policy: RetryPolicy, *, outcome: Outcome, status: int | None,
           headers: dict[str, str], attempt: int, rate_limited_so_far: int,
           now: float, jitter: float) -> Decision:
    """Return what to do after one attempt.

    Args:
        policy: the budgets and delays.
        outcome: ``"ok"`` (a response arrived), ``"status"`` (an error status) or
            ``"transport"`` (no usable response: timeout, reset, truncated body).
        status: the HTTP status, when there was one.
        headers: response headers with lowercase names.
        attempt: transient failures so far (0 for the first).
        rate_limited_so_far: 429s so far for this request.
        now: current Unix time (for HTTP-date Retry-After values).
        jitter: a number in [0, 1) from the caller's random source.
    """
    if outcome == "ok" and (status is None or status < 400):
        return Decision(False, reason="ok")
    if status == 429:
        if rate_limited_so_far >= policy.rate_limit_retries:
            return Decision(False, reason="rate limited too often", rate_limited=True)
        asked = retry_after(headers, now)
        wait = _backoff(policy, rate_limited_so_far, jitter) if asked is None else asked
        return Decision(True, min(wait, policy.max_wait), "rate limited", rate_limited=True)
    transient = outcome == "transport" or status in RETRY_STATUSES
    if not transient:
        return Decision(False, reason=f"status {status}")
    if attempt >= policy.retries:
        return Decision(False, reason="retries exhausted")
    return Decision(True, _backoff(policy, attempt, jitter), "transient failure")
