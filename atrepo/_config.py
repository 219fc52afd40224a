"""Every default of the client in one place, each with the reason for its value."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .retry import RateLimit, RetryPolicy
from .errors import AtrepoError, UsageError

__all__ = ["ClientConfig", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$ATREPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/atrepo``, else ``~/.cache/atrepo``."""
    configured = os.environ.get("ATREPO_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "atrepo"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The settings of a Client, validated once."""

    plc_url: str = "https://plc.directory"   # the public PLC directory
    handle_resolver: str | None = None       # XRPC resolveHandle service, asked last
    cache_dir: Path | None = None            # None: default_cache_dir(), created on demand
    timeout: float = 30.0                    # seconds per connect/read (httpx semantics)
    body_timeout: float = 900.0              # seconds one whole response may take: a host
                                             # trickling bytes just within `timeout` is cut
                                             # off; a 4 GiB repository at 5 MB/s fits
    max_concurrency: int = 8                 # parallel requests in bulk calls
    max_per_host: int = 4                    # parallel requests to any one host: a PDS is
                                             # somebody's server, and bulk calls hit few hosts
    mem_limit_mb: float = 64                 # CAR bytes held in memory before using disk
    verify: bool = True                      # check commit signatures and handles
    progress: bool | None = None             # None: bars when a person is watching
    max_repo_bytes: int = 4 << 30            # 4 GiB: a cap on one decoded getRepo body
    retry: RetryPolicy = RetryPolicy()       # budgets and delays for 429s and failures
    rate_limit: RateLimit | None = RateLimit()  # requests per host: the published PDS
                                             # limit, 3,000 per 5 minutes; None: no rate
    max_cache_bytes: int = 20 << 30          # 20 GiB of stored repositories; least recently
                                             # used repositories are evicted past it

    def __post_init__(self) -> None:
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise UsageError("rate_limit must be an atrepo.retry.RateLimit or None",
                             argument="rate_limit", got=type(self.rate_limit).__name__)
        if (self.timeout <= 0 or self.body_timeout <= 0 or self.max_concurrency < 1
                or self.max_per_host < 1 or self.mem_limit_mb < 0 or self.max_cache_bytes < 0):
            raise AtrepoError("invalid client settings", timeout=self.timeout,
                              body_timeout=self.body_timeout,
                              max_concurrency=self.max_concurrency,
                              max_per_host=self.max_per_host,
                              mem_limit_mb=self.mem_limit_mb,
                              max_cache_bytes=self.max_cache_bytes,
                              hint="timeout > 0, body_timeout > 0, max_concurrency >= 1, "
                                   "max_per_host >= 1, mem_limit_mb >= 0, max_cache_bytes >= 0")

    @property
    def cache_path(self) -> Path:
        """The cache directory in use (created on first write, not here)."""
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()
