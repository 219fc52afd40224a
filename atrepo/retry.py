"""How a client treats hosts: :class:`RetryPolicy` (retries) and :class:`RateLimit` (pace).

Pass them as ``Client(retry=...)`` and ``Client(rate_limit=...)``; the decisions they drive
(when to retry, how long to wait, when to give up, when the next request to a host may go)
are pure functions in the protocol layer, so every rule is tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

__all__ = ["RateLimit", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. Every default is a deliberate choice, explained per field.

    Example:
        >>> from atrepo import RetryPolicy
        >>> RetryPolicy(retries=2).max_total_wait
        600.0
    """

    retries: int = 4                 # transient failures retried before giving up
    rate_limit_retries: int = 6      # 429s waited out before raising RateLimited
    base_delay: float = 0.5          # first backoff ceiling, seconds; doubles each attempt
    max_delay: float = 30.0          # backoff ceiling, seconds
    max_wait: float = 300.0          # longest Retry-After we wait for, seconds; a host asking
                                     # for more gets RateLimited at once
    max_total_wait: float = 600.0    # all the waits of one request together, seconds


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``requests`` requests to one host in any ``per`` seconds, from one client.

    A token bucket per host (scheme, host, port), shared by every thread or task of the
    client: up to :attr:`capacity` requests go at once after a quiet spell, the rest are
    spread evenly at :attr:`rate` per second, so that no window of ``per`` seconds holds
    more than ``requests`` (``capacity + rate * per == requests``). The defaults are the
    published limit of a Bluesky PDS: 3,000 requests per 5 minutes per IP address.

    Args:
        requests: requests allowed per window; at least 2.
        per: the window, seconds.
        burst: requests sent at once after a quiet spell; None: a tenth of ``requests``,
            at most 30. Must be below ``requests``.

    Raises:
        UsageError: a value outside those bounds.

    Example:
        >>> from atrepo.retry import RateLimit
        >>> limit = RateLimit(requests=100, per=10.0)
        >>> limit.capacity, limit.rate
        (10, 9.0)
    """

    requests: int = 3000             # the PDS limit per IP: 3,000 requests ...
    per: float = 300.0               # ... per 5 minutes
    burst: int | None = None         # None: requests // 10, at most 30 (a gentle start)

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int) \
                or self.requests < 2:
            raise UsageError("rate limit needs at least 2 requests per window",
                             argument="rate_limit", requests=self.requests)
        if not self.per > 0:
            raise UsageError("rate limit window must be positive seconds",
                             argument="rate_limit", per=self.per)
        if self.burst is not None and not 1 <= self.burst < self.requests:
            raise UsageError("rate limit burst must be at least 1 and below requests",
                             argument="rate_limit", burst=self.burst,
                             requests=self.requests)

    @property
    def capacity(self) -> int:
        """Requests that may go at once: the bucket's size."""
        if self.burst is not None:
            return self.burst
        return max(1, min(30, self.requests // 10))

    @property
    def rate(self) -> float:
        """Requests per second once the burst is spent: the bucket's refill."""
        return (self.requests - self.capacity) / self.per
