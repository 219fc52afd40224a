"""The one error tree of atrepo.

Every exception atrepo raises on purpose derives from :class:`AtrepoError`. Messages follow
one format, ``"what failed; key=value; key=value[; hint]"``, and the same values are kept as
attributes so programs need not parse text. Decoding errors (CAR, MST, CBOR and data-model
problems) also derive from :class:`ValueError`, so ``except ValueError`` code keeps working.

See ``docs/errors.md`` for what to do about each one.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AtrepoError",
    "CarError",
    "ClientClosed",
    "DecodeError",
    "MstError",
    "RateLimited",
    "RepoUnavailable",
    "ResolutionError",
    "ResponseTooLarge",
    "SandboxError",
    "SignatureError",
    "TransportError",
    "UsageError",
]


def _format(summary: str, fields: dict[str, Any], hint: str | None) -> str:
    parts = [summary]
    parts.extend(f"{key}={value}" for key, value in fields.items() if value is not None)
    if hint:
        parts.append(hint)
    return "; ".join(parts)


class AtrepoError(Exception):
    """Base class of every error atrepo raises.

    Attributes:
        message: the summary, without the ``key=value`` details.
        hint: what to do next, when there is something useful to say.
    """

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        self.message = message
        self.hint = hint
        self.fields = fields
        super().__init__(_format(message, fields, hint))

    def __reduce__(self) -> tuple[Any, ...]:
        # keep attributes across pickling (errors travel back from worker processes)
        return (_rebuild, (type(self), self.message, self.hint, self.fields))


def _rebuild(cls: type[AtrepoError], message: str, hint: str | None,
             fields: dict[str, Any]) -> AtrepoError:
    return cls(message, hint=hint, **fields)


class UsageError(AtrepoError, ValueError):
    """A public call was given an argument of the wrong type or value.

    Raised before any work is done. Also a :class:`ValueError`, so ``except ValueError``
    code keeps working.

    Attributes:
        argument: the name of the argument, as the call spells it.
    """

    def __init__(self, message: str, *, argument: str, hint: str | None = None,
                 **fields: Any) -> None:
        self.argument = argument
        super().__init__(message, argument=argument, hint=hint, **fields)


class ClientClosed(AtrepoError):
    """The client was closed (``close()``, or the end of its ``with`` block) before this call.

    A closed client holds no connections or open cache; create a new one.
    """


class DecodeError(AtrepoError, ValueError):
    """Bytes or JSON that are not valid DAG-CBOR / atproto data model.

    Attributes:
        cid: the block being decoded, when known.
    """

    def __init__(self, message: str, *, cid: object = None, hint: str | None = None,
                 **fields: Any) -> None:
        self.cid = None if cid is None else str(cid)
        super().__init__(message, cid=self.cid, hint=hint, **fields)


class CarError(AtrepoError, ValueError):
    """A CAR file is truncated, malformed, oversized, or a block does not match its CID.

    Attributes:
        offset: byte offset in the CAR where the problem was found, when known.
        cid: the block concerned, when known.
    """

    def __init__(self, message: str, *, offset: int | None = None, cid: object = None,
                 hint: str | None = None, **fields: Any) -> None:
        self.offset = offset
        self.cid = None if cid is None else str(cid)
        super().__init__(message, offset=offset, cid=self.cid, hint=hint, **fields)


class MstError(AtrepoError, ValueError):
    """A Merkle Search Tree is incomplete or breaks the spec's invariants.

    Attributes:
        cid: the MST node (or missing block) concerned.
    """

    def __init__(self, message: str, *, cid: object = None, hint: str | None = None,
                 **fields: Any) -> None:
        self.cid = None if cid is None else str(cid)
        super().__init__(message, cid=self.cid, hint=hint, **fields)


class SignatureError(AtrepoError):
    """A commit signature does not verify, or what it is checked with cannot be used.

    That covers a key that does not parse, and a message or signature that is not bytes.

    Attributes:
        did: the repository's DID, when known.
        key: the did:key that was tried, when known.
    """

    def __init__(self, message: str, *, did: str | None = None, key: str | None = None,
                 hint: str | None = None, **fields: Any) -> None:
        self.did = did
        self.key = key
        super().__init__(message, did=did, key=key, hint=hint, **fields)


class ResolutionError(AtrepoError):
    """A handle or DID does not resolve, or the handle and DID do not match.

    Attributes:
        identifier: the handle, DID or AT-URI that was being resolved.
    """

    def __init__(self, message: str, *, identifier: str | None = None,
                 hint: str | None = None, **fields: Any) -> None:
        self.identifier = identifier
        super().__init__(message, identifier=identifier, hint=hint, **fields)


class RepoUnavailable(AtrepoError):
    """The host will not serve the repository.

    Attributes:
        did: the repository's DID.
        status: one of ``"not_found"``, ``"deactivated"``, ``"takendown"``, ``"suspended"``.
    """

    def __init__(self, message: str, *, did: str | None = None, status: str = "not_found",
                 hint: str | None = None, **fields: Any) -> None:
        self.did = did
        self.status = status
        super().__init__(message, did=did, status=status, hint=hint, **fields)


class RateLimited(AtrepoError):
    """A host kept answering 429 beyond the retry budget.

    Attributes:
        host: the host that limited us.
        retry_after: seconds the host asked us to wait, when it said.
    """

    def __init__(self, message: str, *, host: str | None = None,
                 retry_after: float | None = None, hint: str | None = None,
                 **fields: Any) -> None:
        self.host = host
        self.retry_after = retry_after
        super().__init__(message, host=host, retry_after=retry_after, hint=hint, **fields)


class TransportError(AtrepoError):
    """The network failed: connection refused or reset, timeout, truncated or oversized body.

    Attributes:
        url: the URL being fetched.
    """

    def __init__(self, message: str, *, url: str | None = None, hint: str | None = None,
                 **fields: Any) -> None:
        self.url = url
        super().__init__(message, url=url, hint=hint, **fields)


class ResponseTooLarge(TransportError):
    """A response passed its size cap: asking again would get the same, so it is not retried.

    Attributes:
        url: the URL being fetched.
    """

    def __init__(self, url: str, *, max_bytes: int) -> None:
        super().__init__("response too large", url=url, max_bytes=max_bytes,
                         hint="raise max_repo_bytes if you mean to fetch a repository "
                              "this big")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_too_large, (self.url, self.fields["max_bytes"]))


def _too_large(url: str, max_bytes: int) -> ResponseTooLarge:
    return ResponseTooLarge(url, max_bytes=max_bytes)


class SandboxError(AtrepoError):
    """The local reference sandbox (:mod:`atrepo.sandbox`) failed to install, start or answer.

    Attributes:
        method: the XRPC method the sandbox's PDS refused, when the failure was a request.
        status: that request's HTTP status, when there was one.
    """

    def __init__(self, message: str, *, method: str | None = None, status: int | None = None,
                 hint: str | None = None, **fields: Any) -> None:
        self.method = method
        self.status = status
        super().__init__(message, method=method, status=status, hint=hint, **fields)
