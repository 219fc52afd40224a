"""The on-disk identity cache: resolved identities and resolution failures, with TTLs.

Backed by diskcache (SQLite), which is safe across threads and processes, so bulk calls
and several notebooks can share one cache directory. Successes live for
:data:`HIT_TTL`, failures for the shorter :data:`ERROR_TTL` (a handle that does not resolve
now may resolve soon, but asking again for every repo of a bulk call is a request storm).

Every entry is kept under the *scope* it was resolved in: the resolver configuration
(PLC directory, handle resolver, whether handles were verified). Clients that resolve
differently share a directory without sharing answers: a failure of a client without a
handle resolver is not served to one with a resolver, and an identity whose handle was not
checked both ways is not served to a client that checks (issue 13, items 11 and 12). A
failure is kept whole, with its reason, fields and hint, and raised again as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import diskcache

from ..errors import ResolutionError
from ..identity import Identity

__all__ = ["ERROR_TTL", "HIT_TTL", "IdentityCache"]

HIT_TTL = 3600.0      # one hour: handles and keys change rarely, and a failed signature
                      # check re-resolves anyway
ERROR_TTL = 300.0     # five minutes
_CACHED_HINT = "a cached failure: it is asked again after a few minutes"
_PLAIN = (str, int, float, bool, type(None))


class IdentityCache:
    """Identities by the identifier they were resolved from (handle, DID, ...), per scope.

    ``scope`` is the resolver configuration the answers depend on (any JSON-able values);
    entries of another scope are invisible.
    """

    def __init__(self, directory: Path, *, scope: tuple[object, ...] = (),
                 hit_ttl: float = HIT_TTL, error_ttl: float = ERROR_TTL) -> None:
        self._cache = diskcache.Cache(str(directory))
        self._scope = json.dumps(list(scope))
        self.hit_ttl = hit_ttl
        self.error_ttl = error_ttl

    def _key(self, identifier: str) -> tuple[str, str, str]:
        return ("identity", self._scope, identifier)

    def get(self, identifier: str) -> Identity | None:
        """Return the cached identity, or None; raise the cached ResolutionError, if any."""
        entry = self._cache.get(self._key(identifier))
        if entry is None:
            return None
        kind, payload = entry
        if kind == "error":
            message, hint, fields = payload
            hint = _CACHED_HINT if hint is None else f"{hint} ({_CACHED_HINT})"
            raise ResolutionError(message, hint=hint, **{**fields, "identifier": identifier})
        return Identity.model_validate_json(payload)

    def put(self, identifier: str, identity: Identity) -> None:
        """Remember a resolved identity (under the identifier and under its DID)."""
        payload = identity.model_dump_json()
        for name in {identifier, identity.did}:
            self._cache.set(self._key(name), ("ok", payload), expire=self.hit_ttl)

    def put_error(self, identifier: str, error: ResolutionError) -> None:
        """Remember that ``identifier`` did not resolve, and why, for a short while."""
        fields: dict[str, Any] = {key: value for key, value in error.fields.items()
                                  if isinstance(value, _PLAIN)}
        self._cache.set(self._key(identifier), ("error", (error.message, error.hint, fields)),
                        expire=self.error_ttl)

    def close(self) -> None:
        """Close the SQLite connections."""
        self._cache.close()
