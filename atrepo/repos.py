"""Boundary model of a listed repository: :class:`RepoRef`, one entry of a host's listing.

Listings arrive from PDSes and relays (``com.atproto.sync.listRepos``), so entries are
validated with pydantic (frozen, unknown fields ignored), and a DID must be valid DID syntax
(https://atproto.com/specs/did) before it is ever used to build a URL or a file name.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

from .syntax import is_did

__all__ = ["Did", "RepoRef"]


def _check_did(value: str) -> str:
    if not is_did(value):
        raise ValueError("not a DID")
    return value


Did = Annotated[str, AfterValidator(_check_did)]
"""A string field that must be valid DID syntax."""


class RepoRef(BaseModel):
    """One repository as a host lists it (``com.atproto.sync.listRepos``).

    Attributes:
        did: the repository's DID.
        head: CID of the latest commit, when listed.
        rev: revision (TID) of the latest commit, when listed.
        active: False when the host does not serve the repository.
        status: why it is inactive (``takendown``, ``suspended``, ``deleted``,
            ``deactivated``, ``desynchronized``, ``throttled``, ...), or None.

    Example:
        >>> RepoRef(did="did:plc:ewvi7nxzyoun6zhxrhs64oiz", active=None).active
        True
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    did: Did
    head: str | None = None
    rev: str | None = None
    active: bool = True
    status: str | None = None

    @field_validator("active", mode="before")
    @classmethod
    def _null_is_active(cls, value: object) -> object:
        return True if value is None else value  # the lexicon's default when left out
