"""Commits (:mod:`atrepo.models`): parse_commit directly, and malformed commits in a CAR.

A malformed commit block ends in a CarError naming the block's CID, whether it is parsed on
its own or read as the root of a repository CAR.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from _hostile import DID, HEIGHT0, RECORD, RECORD_CID, expect_error, node_block, read_all
from _hostile import tag42 as _tag42

from atrepo import cbor
from atrepo.cid import CID, cid_for
from atrepo.errors import CarError
from atrepo.models import Commit, parse_commit
from atrepo.testing import encode_car


def _commit_car(commit: Any) -> tuple[bytes, CID]:
    leaf = node_block([HEIGHT0[0]])
    data = cbor2.dumps(commit, canonical=True) if not isinstance(commit, bytes) else commit
    cid = cid_for(data)
    return encode_car([cid], [(bytes(cid), data), (bytes(RECORD_CID), RECORD),
                              (bytes(leaf[0]), leaf[1])]), cid


def _commit(**changes: Any) -> dict[str, Any]:
    leaf = node_block([HEIGHT0[0]])
    commit: dict[str, Any] = {"data": _tag42(leaf[0]), "did": DID, "prev": None,
                              "rev": "3kaaaaaaaaa22", "version": 3, "sig": b"\x00" * 64}
    for key, value in changes.items():
        if value is ...:
            del commit[key]
        else:
            commit[key] = value
    return commit


MALFORMED_COMMITS = {
    "not a map": [1, 2],
    "not cbor": b"\xff\x00",
    "float version": _commit(version=3.0),
    "version 4": _commit(version=4),
    "missing did": _commit(did=...),
    "missing data": _commit(data=...),
    "missing sig": _commit(sig=...),
    "extra field": _commit(extra=1),
    "data not a link": _commit(data="bafy"),
    "prev not a link": _commit(prev="bafy"),
    "did not text": _commit(did=1),
    "sig not bytes": _commit(sig="x"),
}


@pytest.mark.parametrize("commit", list(MALFORMED_COMMITS.values()), ids=list(MALFORMED_COMMITS))
def test_malformed_commit(commit: Any) -> None:
    car, cid = _commit_car(commit)
    err = expect_error(CarError, lambda: read_all(car))
    assert err.cid == str(cid)


@pytest.mark.parametrize("commit", list(MALFORMED_COMMITS.values()), ids=list(MALFORMED_COMMITS))
def test_parse_commit_names_the_block(commit: Any) -> None:
    data = cbor2.dumps(commit, canonical=True) if not isinstance(commit, bytes) else commit
    with pytest.raises(CarError) as info:
        parse_commit(data, cid="bafy-the-block")
    assert info.value.cid == "bafy-the-block"


def test_commit_shape_accepted_when_well_formed() -> None:
    car, _ = _commit_car(_commit())
    assert read_all(car).records.height == 1  # unsigned-checked: no signing_key given


@pytest.mark.parametrize("version", [2, 3])
def test_parse_commit_returns_the_commit_and_the_signed_bytes(version: int) -> None:
    fields = _commit(version=version)
    commit, unsigned = parse_commit(cbor2.dumps(fields, canonical=True))
    assert isinstance(commit, Commit)
    assert (commit.did, commit.version, commit.rev, commit.prev) == (DID, version,
                                                                    "3kaaaaaaaaa22", None)
    assert commit.sig == b"\x00" * 64 and commit.data.startswith("bafy")
    assert cbor.decode(unsigned).keys() == fields.keys() - {"sig"}  # all it has, but sig
    assert repr(commit) == (f"Commit(did={DID!r}, rev='3kaaaaaaaaa22', "
                            f"data={commit.data!r})")
