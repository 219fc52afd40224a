"""Every default of the client in one place, each with the reason for its value.

Four defaults can be set from the environment, for every client not given the option (the
module shortcuts' client, which nobody constructs, included):

=========================== ===================== ========================================
variable                    option                when unset
=========================== ===================== ========================================
``ATREPO_PLC_URL``          ``plc_url``           ``https://plc.directory``
``ATREPO_HANDLE_RESOLVER``  ``handle_resolver``   none asked
``ATREPO_CACHE_DIR``        ``cache_dir``         ``$XDG_CACHE_HOME/atrepo``, ``~/.cache/atrepo``
``ATREPO_PROGRESS``         ``progress``          bars when a person is watching
=========================== ===================== ========================================

An option given to the client always wins (``handle_resolver=""``: none, whatever the
environment says). Empty variables count as unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._args import check_flag, check_host, check_out_dir
from .retry import RateLimit, RetryPolicy
from .errors import UsageError

__all__ = ["DEFAULTS", "ENV_CACHE_DIR", "ENV_HANDLE_RESOLVER", "ENV_PLC_URL", "ENV_PROGRESS",
           "ClientConfig", "client_config", "default_cache_dir", "env_progress"]

DEFAULT_PLC_URL: Final = "https://plc.directory"  # the public PLC directory
ENV_PLC_URL: Final = "ATREPO_PLC_URL"
ENV_HANDLE_RESOLVER: Final = "ATREPO_HANDLE_RESOLVER"
ENV_CACHE_DIR: Final = "ATREPO_CACHE_DIR"
ENV_PROGRESS: Final = "ATREPO_PROGRESS"
_OFF: Final = frozenset({"0", "false", "no", "off"})


def _env(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    return os.environ.get(name, "").strip() or None


def env_progress() -> bool | None:
    """``$ATREPO_PROGRESS`` as a choice: False for 0/false/no/off, True otherwise, None unset."""
    setting = _env(ENV_PROGRESS)
    return None if setting is None else setting.lower() not in _OFF


def default_cache_dir() -> Path:
    """``$ATREPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/atrepo``, else ``~/.cache/atrepo``."""
    configured = _env(ENV_CACHE_DIR)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "atrepo"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The settings of a Client, validated once."""

    plc_url: str = DEFAULT_PLC_URL           # the public PLC directory
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
        check_flag(self.verify, argument="verify")
        if self.progress is not None:
            check_flag(self.progress, argument="progress")
        if not isinstance(self.retry, RetryPolicy):
            raise UsageError("retry must be an atrepo.RetryPolicy", argument="retry",
                             got=type(self.retry).__name__)
        for name, low, above, whole in _BOUNDS:
            value = getattr(self, name)
            number = isinstance(value, int if whole else (int, float)) \
                and not isinstance(value, bool)
            if not number or value < low or (above and value == low):
                raise UsageError("invalid client settings", argument=name,
                                 value=repr(value)[:40], hint=_BOUNDS_HINT)

    @property
    def cache_path(self) -> Path:
        """The cache directory in use (created on first write, not here)."""
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()


# (option, bound, strictly above it, whole number): the numeric settings and their bounds
_BOUNDS: Final = (("timeout", 0, True, False), ("body_timeout", 0, True, False),
                  ("max_concurrency", 1, False, True), ("max_per_host", 1, False, True),
                  ("mem_limit_mb", 0, False, False), ("max_repo_bytes", 1, False, True),
                  ("max_cache_bytes", 0, False, True))
_BOUNDS_HINT: Final = ("timeout > 0, body_timeout > 0, max_concurrency >= 1, "
                       "max_per_host >= 1, mem_limit_mb >= 0, max_repo_bytes >= 1, "
                       "max_cache_bytes >= 0")

DEFAULTS: Final = ClientConfig()  # the defaults the clients' signatures show


def client_config(*, plc_url: str | None = None, handle_resolver: str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None,
                  retry: RetryPolicy | None = None, **options: Any) -> ClientConfig:
    """The settings of a new client: what it was given, else the environment, else defaults.

    Raises:
        UsageError: a URL that is not http(s) (naming the option, or the variable it came
            from), a ``cache_dir`` that is a file, or a setting of the wrong type or out of
            bounds.
    """
    if plc_url is None:
        plc_url, plc_argument = _env(ENV_PLC_URL) or DEFAULT_PLC_URL, ENV_PLC_URL
    else:
        plc_argument = "plc_url"
    if handle_resolver is None:
        handle_resolver, resolver_argument = _env(ENV_HANDLE_RESOLVER), ENV_HANDLE_RESOLVER
    else:
        resolver_argument = "handle_resolver"
    return ClientConfig(
        plc_url=check_host(plc_url, argument=plc_argument),
        handle_resolver=check_host(handle_resolver, argument=resolver_argument)
        if handle_resolver else None,
        cache_dir=None if cache_dir is None else check_out_dir(cache_dir, argument="cache_dir"),
        retry=RetryPolicy() if retry is None else retry, **options)
