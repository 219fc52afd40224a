"""Retry, backoff and rate-limit decisions, as pure functions of what a request returned.

A driver asks :func:`decide` after every attempt and sleeps for the delay it returns; the
decision itself touches no clock, random source or socket (the caller passes ``now`` and a
``jitter`` in [0, 1)), so every branch is tested without waiting.

Rules (what a polite crawler of atproto hosts does):

* 429: wait for ``Retry-After`` (ASCII digits or an HTTP date) or ``RateLimit-Reset`` (ASCII
  digits, epoch seconds), then retry, under a budget of its own
  (:attr:`RetryPolicy.rate_limit_retries`) so a host that keeps limiting us ends in
  ``RateLimited`` rather than a loop. A host asking for more than
  :attr:`RetryPolicy.max_wait` is not waited for at all: that is ``RateLimited`` at once. A
  value that is neither form (``"²"``, ``"soon"``, a 40-digit number) counts as absent.
* Every wait of one request (429s and backoffs) counts against
  :attr:`RetryPolicy.max_total_wait`; a wait that would pass it is not started, and the
  request ends in ``RateLimited`` (or ``TransportError``) saying so.
* 5xx, timeouts, resets, truncated bodies: exponential backoff with full jitter, at most
  :attr:`RetryPolicy.retries` times, then ``TransportError``.
* Anything else (2xx, 4xx other than 408/425/429) is final: retrying cannot change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final, Literal

from ..retry import RetryPolicy

__all__ = ["ASKED_TOO_LONG", "RETRY_STATUSES", "WAITED_TOO_LONG", "Decision", "decide",
           "digits", "retry_after"]

Outcome = Literal["ok", "status", "transport"]
RETRY_STATUSES = frozenset({408, 425, 500, 502, 503, 504})
ASKED_TOO_LONG: Final = "asked to wait longer than max_wait"      # a Decision.reason
WAITED_TOO_LONG: Final = "waited longer than max_total_wait"      # a Decision.reason
_MAX_DIGITS: Final = 15  # seconds as digits: 15 is 30 million years, more is not a number

@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to try again, after how long, and why (for logs and error messages)."""

    retry: bool
    delay: float = 0.0
    reason: str = ""
    rate_limited: bool = False


def retry_after(headers: dict[str, str], now: float) -> float | None:
    """Seconds a host asked us to wait, from ``Retry-After`` or ``RateLimit-Reset``.

    Parsing is strict: ``Retry-After`` is ASCII digits (seconds) or an HTTP date
    (https://www.rfc-editor.org/rfc/rfc9110#name-retry-after), ``RateLimit-Reset`` is ASCII
    digits (a Unix time); anything else counts as absent.

    Args:
        headers: response headers with lowercase names.
        now: the current time as a Unix timestamp.

    Example:
        >>> retry_after({"retry-after": "7"}, now=0.0)
        7.0
        >>> retry_after({"ratelimit-reset": "1000"}, now=990.0)
        10.0
        >>> retry_after({"retry-after": "\u00b2"}, now=0.0) is None
        True
    """
    value = headers.get("retry-after")
    if value is not None:
        seconds = digits(value)
        return seconds if seconds is not None else _date(value, now)
    reset = digits(headers.get("ratelimit-reset", ""))
    return None if reset is None else max(0.0, reset - now)


def digits(value: str) -> float | None:
    """Return ``value`` as a number when it is 1 to 15 ASCII digits, else None.

    The one parser of numeric rate-limit headers: ``"\u00b2"``, ``"-1"``, ``"1.5"`` and
    40-digit numbers count as absent.

    Example:
        >>> digits(" 42 "), digits("\u00b2"), digits("1" * 16)
        (42.0, None, None)
    """
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS):
        return None
    return float(value)


def _date(value: str, now: float) -> float | None:
    """Return the seconds from ``now`` to the HTTP date ``value`` (0 if past), else None."""
    try:
        return max(0.0, parsedate_to_datetime(value.strip()).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _backoff(policy: RetryPolicy, attempt: int, jitter: float) -> float:
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** attempt)
    return ceiling * jitter  # "full jitter": spreads clients out after a shared failure


def decide(policy: RetryPolicy, *, outcome: Outcome, status: int | None,
           headers: dict[str, str], attempt: int, rate_limited_so_far: int,
           now: float, jitter: float, waited: float = 0.0) -> Decision:
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
        waited: seconds this request has already waited (429s and backoffs).
    """
    if outcome == "ok" and (status is None or status < 400):
        return Decision(False, reason="ok")
    if status == 429:
        if rate_limited_so_far >= policy.rate_limit_retries:
            return Decision(False, reason="rate limited too often", rate_limited=True)
        asked = retry_after(headers, now)
        if asked is not None and asked > policy.max_wait:
            return Decision(False, reason=ASKED_TOO_LONG, rate_limited=True)
        wait = _backoff(policy, rate_limited_so_far, jitter) if asked is None else asked
        return _within_total(policy, Decision(True, wait, "rate limited", rate_limited=True),
                             waited)
    transient = outcome == "transport" or status in RETRY_STATUSES
    if not transient:
        return Decision(False, reason=f"status {status}")
    if attempt >= policy.retries:
        return Decision(False, reason="retries exhausted")
    return _within_total(policy, Decision(True, _backoff(policy, attempt, jitter),
                                          "transient failure"), waited)


def _within_total(policy: RetryPolicy, decision: Decision, waited: float) -> Decision:
    """Return ``decision``, or a refusal when its wait would pass ``max_total_wait``."""
    if waited + decision.delay <= policy.max_total_wait:
        return decision
    return Decision(False, decision.delay, WAITED_TOO_LONG, rate_limited=decision.rate_limited)
