"""Per-host pacing decisions: the token bucket's arithmetic and what a response says of a host.

Pure functions of numbers and headers: :mod:`atrepo._io.limits` keeps each host's state
(tokens, pause, gap) and does the waiting, for threads and tasks alike; every rule it
follows is decided here, with no clock (callers pass ``now``), so each is tested without
waiting.

Rules (a polite crawler of atproto hosts, https://docs.bsky.app/docs/advanced-guides/rate-limits):

* **Rate.** A bucket of :attr:`~atrepo.retry.RateLimit.capacity` tokens refilled at
  :attr:`~atrepo.retry.RateLimit.rate` per second; a request takes one. So no window of
  ``per`` seconds sees more than ``requests`` requests.
* **429.** The host is paused for *every* task, as long as it asks (``Retry-After`` or
  ``RateLimit-Reset``, parsed strictly by :func:`~atrepo._flows.policy.retry_after`), at
  most :attr:`~atrepo.retry.RetryPolicy.max_wait`; without a usable header, for the backoff
  ceiling of the host's consecutive 429s (no jitter: the pause is shared, not raced).
* **Before a 429.** ``RateLimit-Remaining`` with ``RateLimit-Reset``: once at most half of
  ``RateLimit-Limit`` is left (or when the limit is not said), the requests left are spread
  evenly until the reset; none left pauses the host until the reset. Values that are not
  ASCII digits count as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

from ..retry import RetryPolicy
from .policy import digits, retry_after

__all__ = ["PACE_FROM", "HostAdvice", "advice", "refill", "response_time", "token_wait"]

PACE_FROM: Final = 0.5  # pace once this share of RateLimit-Limit is all that is left
_WHOLE: Final = 1.0 - 1e-9  # a token short of 1 by rounding alone is whole: a wait of
                            # 1e-17 s would not move a clock reading 1e3 s at all


def refill(tokens: float, *, capacity: float, rate: float, elapsed: float) -> float:
    """Return the tokens in a bucket ``elapsed`` seconds later (at most ``capacity``).

    Example:
        >>> refill(0.0, capacity=10, rate=2.0, elapsed=1.5)
        3.0
        >>> refill(9.0, capacity=10, rate=2.0, elapsed=5.0)
        10.0
    """
    return min(float(capacity), tokens + rate * max(0.0, elapsed))


def token_wait(tokens: float, *, rate: float) -> float:
    """Return the seconds until the bucket holds a whole token (0.0: one is there now).

    Example:
        >>> token_wait(1.0, rate=2.0), token_wait(0.5, rate=2.0)
        (0.0, 0.25)
    """
    return 0.0 if tokens >= _WHOLE else (1.0 - tokens) / rate


@dataclass(frozen=True, slots=True)
class HostAdvice:
    """What one response says about the host's pace.

    Attributes:
        pause: seconds no request may go to the host (0.0: none).
        gap: seconds to leave between requests to the host (0.0: no pacing) ...
        gap_for: ... for this long (until the host's window resets); 0.0 when the response
            says nothing of it, so an earlier gap still holds.
    """

    pause: float = 0.0
    gap: float = 0.0
    gap_for: float = 0.0


def advice(policy: RetryPolicy, *, status: int, headers: dict[str, str], now: float,
           strikes: int) -> HostAdvice:
    """Return what a response with ``status`` and ``headers`` says about its host's pace.

    Args:
        policy: the retry policy (its ``base_delay``, ``max_delay`` and ``max_wait``).
        status: the HTTP status.
        headers: response headers with lowercase names.
        now: the current Unix time, as the host sees it (see :func:`response_time`).
        strikes: the host's 429s in a row before this response.

    Example:
        >>> policy = RetryPolicy()
        >>> advice(policy, status=429, headers={"retry-after": "7"}, now=0.0, strikes=0)
        HostAdvice(pause=7.0, gap=0.0, gap_for=0.0)
        >>> advice(policy, status=200, now=100.0, strikes=0, headers={
        ...     "ratelimit-limit": "3000", "ratelimit-remaining": "30",
        ...     "ratelimit-reset": "160"})
        HostAdvice(pause=0.0, gap=2.0, gap_for=60.0)
    """
    if status == 429:
        asked = retry_after(headers, now)
        ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** strikes)
        return HostAdvice(pause=min(policy.max_wait, ceiling if asked is None else asked))
    remaining = digits(headers.get("ratelimit-remaining", ""))
    reset = digits(headers.get("ratelimit-reset", ""))
    if remaining is None or reset is None:
        return HostAdvice()
    reset_in = min(policy.max_wait, max(0.0, reset - now))
    if remaining == 0:
        return HostAdvice(pause=reset_in)
    limit = digits(headers.get("ratelimit-limit", ""))
    if limit is not None and remaining > limit * PACE_FROM:
        return HostAdvice(gap_for=reset_in)  # plenty left: no gap, until the reset
    return HostAdvice(gap=reset_in / remaining, gap_for=reset_in)


def response_time(headers: dict[str, str], fallback: float) -> float:
    """Return the response's ``Date`` as a Unix time, or ``fallback`` when absent or malformed.

    ``RateLimit-Reset`` is a Unix time on the host's clock, so it is measured against the
    host's ``Date`` when there is one.

    Example:
        >>> response_time({"date": "Thu, 01 Jan 1970 00:01:40 GMT"}, fallback=5.0)
        100.0
        >>> response_time({"date": "soon"}, fallback=5.0)
        5.0
    """
    value = headers.get("date")
    if not value:
        return fallback
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return fallback
