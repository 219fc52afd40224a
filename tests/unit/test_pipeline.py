"""atrepo._pipeline: one repository's steps, driven by hand (no transport), and the store offline.

The store is filled from ``ref_small`` (two commits written by the reference), the way a
fetch fills it; the network steps are run with :func:`atrepo.testing.drive`, or, for sparse
fetches, against a PDS in miniature serving ``ref_small`` (``_sparse_host``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import atrepo
from atrepo import car
from atrepo._config import ClientConfig
from atrepo._flows.effects import HttpGet, HttpResponse
from atrepo._pipeline import Pipeline
from atrepo.frames import SNAPSHOTS_SCHEMA
from atrepo.identity import DidDocument, Identity
from atrepo.testing import drive, make_repo_car

from _sparse_host import SparseHost, repo_of, run

PDS = "http://127.0.0.1:2583"


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    made = Pipeline(ClientConfig(cache_dir=tmp_path / "cache", progress=False))
    yield made
    made.close()


def _identity(ref) -> Identity:
    did = ref.truth["did"]
    return Identity(did=did, handle="small.test", handle_verified=True, pds=PDS,
                    signing_key=ref.truth["signing_key"], doc=DidDocument(id=did))


def _stored(pipeline: Pipeline, ref, tmp_path: Path, which: str = "car", *,
            verified: bool = True, handle: str = "small.test") -> atrepo.RepoSnapshot:
    """Store ``ref``'s first CAR (or ``since`` on top) as a download would be stored
    (``verified=False``: as a client with ``verify=False`` stores it)."""
    download = tmp_path / f"download-{which}.car"
    shutil.copyfile(getattr(ref, which), download)
    truth = ref.truth if which == "car" else ref.truth2
    return pipeline.store.add(car.read_car(download, 64), did=truth["did"],
                              commit_cid=truth["commit_cid"],
                              signing_key=truth["signing_key"] if verified else None,
                              handle=handle, handle_verified=verified,
                              source="full" if which == "car" else "incremental",
                              mem_limit_mb=64)


def _latest(cid: str, rev: str) -> HttpResponse:
    return HttpResponse(200, {"content-type": "application/json"},
                        json.dumps({"cid": cid, "rev": rev}).encode())


def test_an_unchanged_repository_is_reopened_after_one_request(pipeline, ref_small, tmp_path):
    _stored(pipeline, ref_small, tmp_path)
    newest = pipeline.store.newest(ref_small.truth["did"])
    snap, driver = drive(pipeline.fetch(_identity(ref_small), None, newest),
                         [_latest(ref_small.truth["commit_cid"], ref_small.truth["rev"])])
    (request,) = driver.requests
    assert isinstance(request, HttpGet) and "getLatestCommit" in request.url
    assert snap.source == "cache" and snap.rev == ref_small.truth["rev"] and snap.verified
    assert len(snap) == ref_small.truth["record_count"]


def test_a_changed_repository_is_asked_for_since_the_stored_rev(pipeline, ref_small, tmp_path):
    _stored(pipeline, ref_small, tmp_path)
    newest = pipeline.store.newest(ref_small.truth["did"])
    flow = pipeline.fetch(_identity(ref_small), None, newest)
    next(flow)
    download = flow.send(_latest(ref_small.truth2["commit_cid"], ref_small.truth2["rev"]))
    assert "getRepo" in download.url and f"since={ref_small.truth['rev']}" in download.url
    flow.close()
    assert not list((tmp_path / "cache" / "downloads").iterdir())  # the part file is gone


def test_stored_entries_offline_by_did_and_by_handle(pipeline, ref_small, tmp_path):
    first = _stored(pipeline, ref_small, tmp_path)
    second = _stored(pipeline, ref_small, tmp_path, "since")
    did = ref_small.truth["did"]
    assert pipeline.stored_did(did) == did
    assert pipeline.stored_did("small.test") == did            # from the store's index
    frame = pipeline.entries_frame("small.test")
    assert frame.schema == SNAPSHOTS_SCHEMA
    assert frame.select("rev", "records").rows() == [(first.rev, len(first)),
                                                      (second.rev, len(second))]
    newest = pipeline.open_stored(did, None, None)
    assert newest.rev == second.rev and newest.source == "cache"
    older = pipeline.open_stored(did, first.rev, ["app.bsky.feed.like"])
    assert older.rev == first.rev and set(older.records["collection"]) == {"app.bsky.feed.like"}


def test_what_is_not_stored_says_so(pipeline, ref_small, tmp_path):
    with pytest.raises(atrepo.ResolutionError, match="no stored snapshot") as info:
        pipeline.stored_did("never-seen.test")
    assert "get_repo it once" in str(info.value)
    _stored(pipeline, ref_small, tmp_path)
    with pytest.raises(atrepo.AtrepoError, match="no stored snapshot") as unknown:
        pipeline.open_stored(ref_small.truth["did"], "2222222222222", None)
    assert unknown.value.fields["rev"] == "2222222222222"
    assert "client.snapshots" in str(unknown.value)
    assert pipeline.entries_frame("did:plc:" + "a" * 24).height == 0


def test_an_identity_without_a_pds_is_a_resolution_error(pipeline, ref_small):
    bare = _identity(ref_small).model_copy(update={"pds": None})
    with pytest.raises(atrepo.ResolutionError, match="names no PDS") as info:
        drive(pipeline.fetch(bare, None, None), [])
    assert info.value.identifier == ref_small.truth["did"]


def test_a_failure_without_a_resolver_is_not_served_to_a_client_with_one(tmp_path, ref_small):
    cache_dir = tmp_path / "cache"
    before = Pipeline(ClientConfig(cache_dir=cache_dir, progress=False))
    after = Pipeline(ClientConfig(cache_dir=cache_dir, progress=False, handle_resolver=PDS))
    try:
        before.identities.put_error("small.test", atrepo.ResolutionError(
            "handle does not resolve", identifier="small.test", hint="pass handle_resolver="))
        with pytest.raises(atrepo.ResolutionError, match="pass handle_resolver="):
            drive(before.resolve("small.test"), [])           # cached: no request made
        assert after.identities.get("small.test") is None    # asked again, with the resolver
        before.identities.put("small.test", _identity(ref_small))
        assert after.identities.get("small.test") is None
    finally:
        before.close()
        after.close()


# -- a cache shared by a verifying and a non-verifying client (issue 13, item 11) -------------

def _did_document(did: str, key: str) -> HttpResponse:
    doc = {"id": did,
           "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey",
                                   "controller": did,
                                   "publicKeyMultibase": key.removeprefix("did:key:")}],
           "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                        "serviceEndpoint": PDS}]}
    return HttpResponse(200, {"content-type": "application/json"}, json.dumps(doc).encode())


@pytest.fixture
def unverifying(tmp_path: Path) -> Iterator[Pipeline]:
    made = Pipeline(ClientConfig(cache_dir=tmp_path / "cache", progress=False, verify=False))
    yield made
    made.close()


def test_an_unverified_entry_with_a_bad_signature_is_a_signature_error(
        pipeline, unverifying, ref_small, ref_p256, tmp_path):
    _stored(unverifying, ref_small, tmp_path, verified=False, handle="evil.test")
    did, other_key = ref_small.truth["did"], ref_p256.truth["signing_key"]
    wrong = _identity(ref_small).model_copy(update={"signing_key": other_key})
    newest = pipeline.store.newest(did)
    assert newest is not None and not newest.verified
    latest = _latest(ref_small.truth["commit_cid"], ref_small.truth["rev"])
    with pytest.raises(atrepo.SignatureError):   # was: verified=False, no error
        drive(pipeline.fetch(wrong, None, newest), [latest, _did_document(did, other_key)])


def test_an_unverified_entry_is_verified_before_a_verifying_client_gets_it(
        pipeline, unverifying, ref_small, tmp_path):
    _stored(unverifying, ref_small, tmp_path, verified=False, handle="evil.test")
    did = ref_small.truth["did"]
    newest = pipeline.store.newest(did)
    latest = _latest(ref_small.truth["commit_cid"], ref_small.truth["rev"])
    snap, driver = drive(pipeline.fetch(_identity(ref_small), None, newest), [latest])
    assert snap.verified and snap.source == "cache" and len(driver.requests) == 1
    assert snap.handle == "small.test"          # the handle this client checked, not "evil.test"
    offline = pipeline.open_stored(did, None, None)
    assert offline.handle is None and not offline.verified   # nothing checked to show
    assert unverifying.open_stored(did, None, None).handle == "evil.test"
    with pytest.raises(atrepo.ResolutionError, match="no stored snapshot"):
        pipeline.stored_did("evil.test")     # an unchecked handle names no DID for it
    assert unverifying.stored_did("evil.test") == did


def test_an_unverified_write_keeps_what_older_entries_were_verified_with(
        pipeline, unverifying, ref_small, tmp_path):
    first = _stored(pipeline, ref_small, tmp_path)
    _stored(unverifying, ref_small, tmp_path, "since", verified=False, handle="evil.test")
    did = ref_small.truth["did"]
    assert pipeline.open_stored(did, first.rev, None).verified
    assert not pipeline.open_stored(did, None, None).verified


def test_a_new_client_cleans_the_parts_killed_downloads_left(tmp_path):
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    stale, young = downloads / "did_plc_a-x1.part", downloads / "did_plc_b-x2.part"
    for path in (stale, young):
        path.write_bytes(b"p" * 100)
    os.utime(stale, (1_000_000_000, 1_000_000_000))      # long ago, and no live lock
    made = Pipeline(ClientConfig(cache_dir=tmp_path / "cache", progress=False))
    made.close()
    assert not stale.exists() and young.exists()


# -- sparse fetches (against a PDS in miniature, tests/unit/_sparse_host.py) ------------------

FOLLOW, PROFILE = "app.bsky.graph.follow", "app.bsky.actor.profile"


def _host(ref) -> SparseHost:
    return SparseHost(repo_of(ref.car.read_bytes()))


def _rows(ref, collections: list[str]):
    return atrepo.read_car(ref.car, collections=collections).records


def test_a_sparse_fetch_is_stored_with_the_collections_it_holds(pipeline, ref_small):
    host = _host(ref_small)
    snap = run(pipeline.fetch(_identity(ref_small), [FOLLOW], None, sparse=True), host)
    assert snap.source == "sparse" and snap.verified and snap.collections_filter == [FOLLOW]
    assert snap.records.equals(_rows(ref_small, [FOLLOW]))
    assert snap.bytes_downloaded == host.sent < ref_small.car.stat().st_size / 2
    assert host.calls("com.atproto.sync.getRepo") == 0
    (entry,) = pipeline.store.entries(ref_small.truth["did"])
    assert (entry.source, entry.held, entry.records) == ("sparse", [FOLLOW], 426)
    assert entry.collections == {FOLLOW: 426}


def test_a_sparse_entry_is_reopened_only_for_what_it_holds(pipeline, ref_small):
    ident = _identity(ref_small)
    run(pipeline.fetch(ident, [FOLLOW], None, sparse=True), _host(ref_small))
    did = ref_small.truth["did"]
    offline = pipeline.open_stored(did, None, None)
    assert offline.collections_filter == [FOLLOW] and len(offline) == 426
    assert offline.records.equals(_rows(ref_small, [FOLLOW]))
    with pytest.raises(atrepo.AtrepoError, match="holds only some collections") as info:
        pipeline.open_stored(did, None, [PROFILE])
    assert info.value.fields["held"] == FOLLOW
    host = _host(ref_small)
    again = run(pipeline.fetch(ident, [FOLLOW], pipeline.store.newest(did)), host)
    assert again.source == "cache" and host.calls("com.atproto.sync.getBlocks") == 0


def test_another_collection_of_the_same_commit_joins_the_entry(pipeline, ref_small):
    ident = _identity(ref_small)
    did = ref_small.truth["did"]
    run(pipeline.fetch(ident, [FOLLOW], None, sparse=True), _host(ref_small))
    snap = run(pipeline.fetch(ident, [PROFILE], pipeline.store.newest(did), sparse=True),
               _host(ref_small))
    assert snap.source == "sparse" and snap.records.equals(_rows(ref_small, [PROFILE]))
    (entry,) = pipeline.store.entries(did)
    assert entry.held == [PROFILE, FOLLOW] and entry.records == 427
    both = pipeline.open_stored(did, None, [FOLLOW, PROFILE])
    assert both.records.equals(_rows(ref_small, [FOLLOW, PROFILE]))


def test_a_whole_fetch_after_a_sparse_one_is_full_not_incremental(pipeline, ref_small):
    ident = _identity(ref_small)
    did = ref_small.truth["did"]
    run(pipeline.fetch(ident, [FOLLOW], None, sparse=True), _host(ref_small))
    host = _host(ref_small)
    whole = run(pipeline.fetch(ident, None, pipeline.store.newest(did)), host)
    assert whole.source == "full" and len(whole) == ref_small.truth["record_count"]
    (download,) = [url for url in host.requests if "getRepo" in url]
    assert "since=" not in download
    (entry,) = pipeline.store.entries(did)  # the same revision: the whole entry replaces it
    assert entry.held is None and entry.records == ref_small.truth["record_count"]


def test_sparse_none_fetches_a_tiny_repository_in_full(pipeline):
    records = {f"{FOLLOW}/f{i:03d}": {"$type": FOLLOW, "n": i} for i in range(20)}
    car_bytes, key = make_repo_car(records, did="did:plc:tinytinytinytinytinytiny")
    host = SparseHost(repo_of(car_bytes))
    ident = Identity(did="did:plc:tinytinytinytinytinytiny", handle=None,
                     handle_verified=False, pds=PDS, signing_key=key,
                     doc=DidDocument(id="did:plc:tinytinytinytinytinytiny"))
    snap = run(pipeline.fetch(ident, [FOLLOW], None, sparse=None), host)
    assert snap.source == "full" and len(snap) == 20
    assert host.calls("com.atproto.sync.getRecord") == 1
    assert host.calls("com.atproto.sync.getBlocks") == 0


def test_sparse_none_fetches_a_big_one_sparse(pipeline, ref_small):
    snap = run(pipeline.fetch(_identity(ref_small), [FOLLOW], None, sparse=None),
               _host(ref_small))
    assert snap.source == "sparse"


def test_a_host_without_get_blocks_is_fetched_in_full(pipeline, ref_small):
    host = _host(ref_small)
    host.answer_for = lambda method: HttpResponse(501) if "getBlocks" in method else None
    snap = run(pipeline.fetch(_identity(ref_small), [FOLLOW], None, sparse=True), host)
    assert snap.source == "full" and snap.records.equals(_rows(ref_small, [FOLLOW]))
    (entry,) = pipeline.store.entries(ref_small.truth["did"])
    assert entry.held is None


def test_a_sparse_fetch_that_fails_stores_nothing(pipeline, ref_small):
    host = _host(ref_small)
    follows = [cid for collection, _rkey, cid in ref_small.records if collection == FOLLOW]
    host.omit = {bytes(atrepo.CID.decode(follows[200]))}
    with pytest.raises(atrepo.MstError, match="left a block out"):
        run(pipeline.fetch(_identity(ref_small), [FOLLOW], None, sparse=True), host)
    assert pipeline.store.entries(ref_small.truth["did"]) == []


def test_sparse_true_needs_collections(pipeline):
    with pytest.raises(atrepo.UsageError, match="needs collections"):
        next(pipeline.get_repo("did:plc:x", None, sparse=True))
    with pytest.raises(atrepo.UsageError):
        next(pipeline.get_repo("did:plc:x", [FOLLOW], sparse="yes"))  # type: ignore[arg-type]


def test_a_sparse_fetch_of_a_stored_repository_asks_only_for_what_changed(pipeline, ref_small):
    ident = _identity(ref_small)
    did = ref_small.truth["did"]
    first = _host(ref_small)
    run(pipeline.fetch(ident, [FOLLOW], None, sparse=True), first)
    second = SparseHost(repo_of(ref_small.car2.read_bytes()))
    snap = run(pipeline.fetch(ident, [FOLLOW], pipeline.store.newest(did), sparse=True), second)
    assert snap.source == "sparse" and snap.rev == ref_small.truth2["rev"]
    assert snap.records.equals(atrepo.read_car(ref_small.car2, collections=[FOLLOW]).records)
    # 60 changes over 2,000 records: the unchanged nodes and follows came from the store
    # (measured: 19,631 bytes against the first fetch's 102,655)
    assert snap.bytes_downloaded == second.sent < first.sent / 3
    assert [e.rev for e in pipeline.store.entries(did)] == [ref_small.truth["rev"],
                                                            ref_small.truth2["rev"]]
