"""The on-disk identity cache: resolved identities and resolution failures, with TTLs.

Backed by diskcache (SQLite), which is safe across threads and processes, so bulk calls
and several notebooks can share one cache directory. Successes live for
:data:`HIT_TTL`, failures for the shorter :data:`ERROR_TTL` (a handle that does not resolve
now may resolve soon, but asking again for every repo of a bulk call is a request storm).
"""

from __future__ import annotations

from pathlib import Path

import diskcache

from ..errors import ResolutionError
from ..identity import Identity

__all__ = ["ERROR_TTL", "HIT_TTL", "IdentityCache"]

HIT_TTL = 3600.0      # one hour: handles and keys change rarely, and a failed signature
                      # check re-resolves anyway
ERROR_TTL = 300.0     # five minutes


class IdentityCache:
    """Identities by the identifier they were resolved from (handle, DID, ...)."""

    def __init__(self, directory: Path, *, hit_ttl: float = HIT_TTL,
                 error_ttl: float = ERROR_TTL) -> None:
        self._cache = diskcache.Cache(str(directory))
        self.hit_ttl = hit_ttl
        self.error_ttl = error_ttl

    def get(self, identifier: str) -> Identity | None:
        """Return the cached identity, or None; raise the cached ResolutionError, if any."""
        entry = self._cache.get(("identity", identifier))
        if entry is None:
            return None
        kind, payload = entry
        if kind == "error":
            raise ResolutionError(payload, identifier=identifier,
                                  hint="cached failure; it is retried after a few minutes")
        return Identity.model_validate_json(payload)

    def put(self, identifier: str, identity: Identity) -> None:
        """Remember a resolved identity (under the identifier and under its DID)."""
        payload = identity.model_dump_json()
        for key in {identifier, identity.did}:
            self._cache.set(("identity", key), ("ok", payload), expire=self.hit_ttl)

    def put_error(self, identifier: str, error: ResolutionError) -> None:
        """Remember that ``identifier`` did not resolve, for a short while."""
        self._cache.set(("identity", identifier), ("error", error.message),
                        expire=self.error_ttl)

    def close(self) -> None:
        """Close the SQLite connections."""
        self._cache.close()
