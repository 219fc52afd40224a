"""The retry policy a client follows: :class:`RetryPolicy`, its budgets and delays.

Pass one as ``Client(retry=...)``; the decisions it drives (when to retry, how long to
wait, when to give up) are pure functions in the protocol layer, so every rule is tested
without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy"]


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
