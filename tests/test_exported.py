"""The public surface: atrepo.__all__ is exactly the documented names, all importable."""

from __future__ import annotations

import atrepo

EXPECTED = {
    "AtrepoError", "CID", "CarError", "Commit", "DecodeError", "MstError", "RateLimited",
    "RepoRef", "RepoSnapshot", "RepoUnavailable", "ResolutionError", "RetryPolicy",
    "SandboxError", "SignatureError", "TransportError", "ClientClosed", "UsageError",
    "car", "cbor", "cid_for", "crypto", "datamodel", "mst", "read_car", "syntax",
    "AsyncClient", "Client", "DidDocument", "Identity", "get_repo", "list_repos", "resolve",
    "configure",
    "diff", "lexicon", "lexicon_schema", "validate_record", "Dataset", "dataset",
    "open_dataset", "accelerated",
}


def test_all_is_the_public_surface():
    assert set(atrepo.__all__) == EXPECTED
    assert atrepo.__all__ == sorted(atrepo.__all__)


def test_every_public_name_resolves():
    for name in atrepo.__all__:
        assert getattr(atrepo, name) is not None


def test_every_error_is_an_atrepo_error():
    for name in ("CarError", "DecodeError", "MstError", "RateLimited", "RepoUnavailable",
                 "ResolutionError", "SandboxError", "SignatureError", "TransportError",
                 "ClientClosed", "UsageError"):
        assert issubclass(getattr(atrepo, name), atrepo.AtrepoError)


def test_cid_is_multiformats_cid():
    import multiformats

    cid = atrepo.cid_for(b"x")
    assert isinstance(cid, multiformats.CID)
    assert str(cid).startswith("bafyrei")
