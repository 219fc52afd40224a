"""RepoRef, the boundary model of one listed repository."""

from __future__ import annotations

import pydantic
import pytest

import atrepo
from atrepo.repos import RepoRef

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


def test_repo_ref_rejects_bad_dids():
    with pytest.raises(ValueError):
        RepoRef(did="alice")


def test_repo_ref_is_frozen_and_public():
    ref = RepoRef(did=DID, active=None, extra="ignored")
    assert ref.active and ref.status is None and not hasattr(ref, "extra")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        ref.did = "did:plc:yk4dd2qkboz2yv6tpubpc6co"  # type: ignore[misc]
    assert atrepo.RepoRef is RepoRef
