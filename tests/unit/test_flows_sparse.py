"""atrepo._flows.sparse: a sparse fetch driven by hand against a PDS in miniature.

The repositories are built with atrepo.testing.make_repo_car; the host (``_sparse_host``)
answers as the reference PDS does, or leaves blocks out, lacks a proof, or moves its head.
What a fetch hands to its sink is compared with a walk of the whole repository over the
same key ranges.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from atrepo import cbor, mst
from atrepo._flows.effects import HttpResponse
from atrepo._flows.repo import MAX_CIDS_PER_REQUEST, BlockMissing
from atrepo._flows.sparse import SPARSE_MIN_RECORDS, estimated_records, fetch_sparse
from atrepo.cid import CID, cid_for
from atrepo.mst._node import encode_node
from atrepo.errors import MstError, ResponseTooLarge
from atrepo.snapshot import collection_ranges
from atrepo.testing import encode_car, make_repo_car

from _sparse_host import Repo, SparseHost, repo_of, run

DID = "did:plc:testtesttesttesttesttest"
PDS = "https://pds.test"
FOLLOW = "app.bsky.graph.follow"
PROFILE = "app.bsky.actor.profile"


def _records(follows: int, posts: int, *, profile: bool = True, tag: str = "") -> dict[str, Any]:
    records: dict[str, Any] = {f"app.bsky.feed.post/p{i:05d}": {"$type": "p", "n": i, "t": tag}
                               for i in range(posts)}
    records.update({f"{FOLLOW}/f{i:05d}": {"$type": FOLLOW, "n": i} for i in range(follows)})
    if profile:
        records[f"{PROFILE}/self"] = {"$type": PROFILE, "displayName": "x" + tag}
    return records


@pytest.fixture(scope="module")
def big() -> Repo:
    return repo_of(make_repo_car(_records(700, 2300))[0])


def _fetch(host: SparseHost, collections: list[str], **options: Any) -> tuple[Any, dict]:
    sunk: dict[bytes, bytes] = {}
    got = run(fetch_sparse(PDS, DID, collection_ranges(collections) or [],
                           sink=sunk.__setitem__, max_bytes=options.pop("max_bytes", 1 << 30),
                           **options), host)
    return got, sunk


def _wanted(repo: Repo, collections: list[str]) -> tuple[set[bytes], list[bytes]]:
    """(the nodes a walk over the ranges reads, the record CIDs it finds)."""
    read: list[bytes] = []

    def fetch(raw: bytes) -> bytes | None:
        read.append(raw)
        return repo.blocks.get(raw)

    _keys, values = mst.collect(fetch, repo.root, collection_ranges(collections))
    return set(read), values


@pytest.mark.parametrize("collections", [[PROFILE], [FOLLOW], [FOLLOW, PROFILE],
                                         ["app.bsky.*"], ["app.bsky.feed.like"]])
def test_the_sink_gets_the_commit_and_exactly_the_ranges_nodes_and_records(big, collections):
    host = SparseHost(big)
    got, sunk = _fetch(host, collections)
    nodes, records = _wanted(big, collections)
    assert got.commit_cid == big.commit
    assert set(sunk) == {big.commit} | nodes | set(records)
    assert all(sunk[raw] == big.blocks[raw] for raw in sunk)
    # a walk over what was sunk finds the same records (nothing is missing)
    assert mst.collect(sunk.get, big.root, collection_ranges(collections))[1] == records
    assert got.requests == len(host.requests)
    assert got.size == host.sent


def test_requests_are_batched_and_rounds_bounded_by_the_depth(big):
    host = SparseHost(big)
    got, _sunk = _fetch(host, [FOLLOW, "app.bsky.feed.post"])
    batches = [parse_qs(urlsplit(url).query)["cids"] for url in host.requests
               if "getBlocks" in url]
    assert all(0 < len(batch) <= MAX_CIDS_PER_REQUEST for batch in batches)
    nodes, records = _wanted(big, [FOLLOW, "app.bsky.feed.post"])
    depth = _depth(big)
    # per layer, one request per 100 nodes; then one per 100 records; plus the proof
    most = depth + len(nodes) // MAX_CIDS_PER_REQUEST + -(-len(records) // 100) + 1
    assert host.calls("com.atproto.sync.getRecord") == 1
    assert len(host.requests) <= most
    assert len(records) == 3000 and len(batches) >= 30


def _depth(repo: Repo) -> int:
    node = mst.decode_node(repo.root, repo.blocks[repo.root])
    return (node.layer or 0) + 1


def test_a_profile_comes_with_the_proof_alone_when_it_is_the_only_key_in_its_range():
    repo = repo_of(make_repo_car(_records(0, 40))[0])
    host = SparseHost(repo)
    got, sunk = _fetch(host, [PROFILE])
    assert host.calls("com.atproto.sync.getBlocks") <= 2
    assert mst.collect(sunk.get, repo.root, collection_ranges([PROFILE]))[0] == [
        f"{PROFILE}/self".encode()]
    assert got.requests == len(host.requests)


def test_decide_gives_up_on_a_small_repository_before_any_get_blocks():
    repo = repo_of(make_repo_car(_records(30, 30))[0])
    root = mst.decode_node(repo.root, repo.blocks[repo.root])
    assert estimated_records(root) < SPARSE_MIN_RECORDS
    host = SparseHost(repo)
    got, _sunk = _fetch(host, [FOLLOW], decide=True)
    assert got is None
    assert host.calls("com.atproto.sync.getBlocks") == 0


def test_decide_goes_on_for_a_big_repository(big):
    root = mst.decode_node(big.root, big.blocks[big.root])
    assert estimated_records(root) >= SPARSE_MIN_RECORDS
    got, sunk = _fetch(SparseHost(big), [FOLLOW], decide=True)
    assert got is not None and len(mst.collect(sunk.get, big.root,
                                               collection_ranges([FOLLOW]))[0]) == 700


def test_a_block_left_out_is_an_error_naming_it_after_one_more_proof(big):
    _nodes, records = _wanted(big, [FOLLOW])
    host = SparseHost(big, omit={records[123]})
    with pytest.raises(BlockMissing, match="left a block out") as caught:
        _fetch(host, [FOLLOW])
    assert isinstance(caught.value, MstError)
    assert caught.value.cid == str(CID.from_raw(records[123]))
    assert host.calls("com.atproto.sync.getRecord") == 2


def test_a_host_that_lost_a_block_at_the_same_head_is_an_error(big):
    nodes, _records = _wanted(big, [FOLLOW])
    lost = sorted(nodes - {big.root})[0]
    host = SparseHost(Repo(big.commit, {k: v for k, v in big.blocks.items() if k != lost}))
    with pytest.raises(BlockMissing, match="does not hold") as caught:
        _fetch(host, [FOLLOW])
    assert caught.value.cid == str(CID.from_raw(lost))


def test_a_head_that_moved_between_rounds_starts_the_fetch_over_once(big):
    newer = repo_of(make_repo_car(_records(701, 2300, tag="2"))[0])
    # the old repository's blocks are gone after the proof: the first getBlocks fails
    host = SparseHost(big, heads=[(1, newer)])
    got, sunk = _fetch(host, [FOLLOW])
    assert got.commit_cid == newer.commit
    assert len(mst.collect(sunk.get, newer.root, collection_ranges([FOLLOW]))[0]) == 701
    assert host.calls("com.atproto.sync.getRecord") == 2
    assert got.requests == len(host.requests)


def test_a_host_without_absence_proofs_is_asked_for_the_commit(big):
    host = SparseHost(big, no_proof=True)
    got, sunk = _fetch(host, [FOLLOW])
    assert got.commit_cid == big.commit and big.commit in sunk
    assert host.calls("com.atproto.sync.getLatestCommit") == 1
    assert len(mst.collect(sunk.get, big.root, collection_ranges([FOLLOW]))[0]) == 700


def test_the_bytes_of_all_answers_are_capped(big):
    with pytest.raises(ResponseTooLarge):
        _fetch(SparseHost(big), [FOLLOW], max_bytes=20_000)


def test_a_link_that_is_no_cid_is_an_error_about_the_tree():
    root_data = encode_node(b"\xff\xfe", [])  # an empty root whose left link is junk
    root = bytes(cid_for(root_data))
    unsigned = {"data": CID.from_raw(root), "did": DID, "prev": None, "rev": "3kaaaaaaaaa22",
                "version": 3}
    commit_data = cbor.encode(dict(unsigned, sig=b"\x00" * 64))
    commit = bytes(cid_for(commit_data))
    proof = HttpResponse(200, {"content-type": "application/vnd.ipld.car"},
                         encode_car([CID.from_raw(commit)],
                                    [(commit, commit_data), (root, root_data)]))
    host = SparseHost(Repo(commit, {commit: commit_data, root: root_data}),
                      answer_for=lambda method: proof if method.endswith("getRecord") else None)
    with pytest.raises(MstError, match="malformed link") as caught:
        _fetch(host, [FOLLOW])
    assert caught.value.fields["link"] == "fffe"


def test_blocks_held_already_are_not_asked_for(big):
    host = SparseHost(big)
    got, sunk = _fetch(host, [FOLLOW], have=big.blocks.get)
    assert host.calls("com.atproto.sync.getBlocks") == 0 and got.requests == 1
    nodes, records = _wanted(big, [FOLLOW])
    assert set(sunk) == {big.commit} | nodes | set(records)
