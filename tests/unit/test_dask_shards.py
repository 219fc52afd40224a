"""The parts of a Dask export that need no cluster: host shares, task labels, shards, merges.

A :class:`ShardExport` (a worker's side) makes the same decisions as the dataset's side over
the rows its shard carries; :meth:`DatasetExport.merge` applies a shard's result once and
commits by the export's batch bounds. The cluster itself is in
tests/client/test_export_dask.py.
"""

from __future__ import annotations

import pickle

import polars as pl
import pytest

from atrepo._config import ClientConfig
from atrepo._dask import MAX_HOST_SHARDS, host_share, shard_label
from atrepo.dataset import DatasetExport, Target, open_dataset
from atrepo.dataset._export import ShardExport
from atrepo.errors import RepoUnavailable, TransportError
from atrepo.retry import RateLimit
from test_dataset import PDS, POST, A, B, C, post, snap


@pytest.mark.parametrize("per_host, rate, shards", [
    (4, RateLimit(), MAX_HOST_SHARDS),
    (2, RateLimit(requests=100, per=10.0), 2),
    (8, RateLimit(requests=5, per=1.0, burst=2), 2),   # a RateLimit needs 2 requests
    (1, None, 1),
])
@pytest.mark.parametrize("workers", [1, 2, 64])
def test_shards_of_one_host_together_stay_within_its_limits(per_host, rate, shards, workers):
    config = ClientConfig(max_per_host=per_host, rate_limit=rate, cache_dir=None)
    got, worker = host_share(config, workers=workers)
    assert got == shards
    assert 1 <= worker.max_per_host and got * worker.max_per_host <= per_host
    if rate is None:
        assert worker.rate_limit is None
    else:
        # the L shards of one host, and the P workers' clients asking a server they all
        # ask, together send no more than the caller's window holds, or its burst
        share = worker.rate_limit
        assert share is not None
        parts = max(got, workers)
        assert parts * (share.requests * rate.per / share.per) <= rate.requests
        assert share.capacity <= max(1, rate.capacity // parts)
    assert (worker.cache_dir, worker.progress) == (None, False)


def test_task_labels_name_the_host_and_never_its_userinfo():
    assert shard_label("https://user:secret@pds.example.com/") == "pds.example.com"
    assert shard_label("http://127.0.0.1:2583") == "127.0.0.1:2583"
    assert shard_label(None) == "names"


def _held(tmp_path) -> None:
    """A dataset holding A and B (active, from PDS, handles a.test and b.test)."""
    export = DatasetExport(tmp_path / "ds", hosts=[PDS])
    export.plan([Target(A, host=PDS), Target(B, host=PDS)])
    export.fetched(snap(A, {f"{POST}/3k001": post("a")}), pds=PDS, handle="a.test")
    export.fetched(snap(B, {f"{POST}/3k002": post("b")}), pds=PDS, handle="b.test")
    export.finish()


def test_a_shard_carries_what_the_dataset_holds_of_its_targets(tmp_path):
    _held(tmp_path)
    export = DatasetExport(tmp_path / "ds", hosts=[PDS])
    work = export.plan([Target(A, host=PDS)])   # B: held from PDS, no longer listed
    assert [(t.name, t.host) for t in work] == [(A, PDS), (B, PDS)]
    shard = export.shard("s-0", [Target("b.test"), Target(C)])
    export.close()
    assert set(shard.held) == {B} and shard.pds == {B: PDS}   # by handle; C: nothing held
    assert pickle.loads(pickle.dumps(shard)) == shard


def test_a_worker_decides_as_the_dataset_would_and_cuts_batches_by_the_bounds(tmp_path):
    _held(tmp_path)
    export = DatasetExport(tmp_path / "ds", hosts=[PDS])
    shard = export.shard("s-0", [Target(A), Target(B), Target(C)])
    export.close()
    worker = ShardExport(shard, exclude=frozenset(), batch_repos=2, batch_records=100)
    assert worker.plan(shard.targets) == list(shard.targets)
    worker.fetched(snap(C, {f"{POST}/3k003": post("c")}), pds=PDS, handle="c.test")
    worker.failed(A, RepoUnavailable("repository takendown", did=A, status="takendown"))
    worker.failed(B, TransportError("timed out", url=PDS))
    worker.finish()
    result = worker.result()
    assert [part.repos for part in result.batches] == [2, 1]
    assert (result.written, result.removed, result.records) == (1, 1, 1)
    assert [did for did, _, _ in result.errors] == [A, B]
    assert not (tmp_path / "s-0").exists()   # a worker writes nothing


def test_a_result_is_merged_once_and_committed_by_the_bounds(tmp_path):
    _held(tmp_path)
    export = DatasetExport(tmp_path / "ds", hosts=[PDS], batch_repos=2)
    shard = export.shard("s-0", [Target(A), Target(B), Target(C)])
    worker = ShardExport(shard, exclude=frozenset(), batch_repos=2, batch_records=100)
    for did, text in ((A, "a2"), (B, "b2"), (C, "c")):
        worker.fetched(snap(did, {f"{POST}/3k00{text}": post(text)}, rev="3kbbbbbbbbb22"),
                       pds=PDS, handle=None)
    worker.finish()
    result = pickle.loads(pickle.dumps(worker.result()))   # as it comes from a worker
    assert export.merge(result) and not export.merge(result)
    report = export.finish()
    assert (report.written, report.records, report.commits) == (3, 3, 2)
    records = open_dataset(tmp_path / "ds").records.collect()
    assert records.sort("did").select("did", "rkey").rows() == [
        (A, "3k00a2"), (B, "3k00b2"), (C, "3k00c")]
    assert records.filter(pl.col("did") == A).height == 1


def test_a_name_that_resolves_to_an_excluded_did_leaves_the_dataset(tmp_path):
    _held(tmp_path)
    export = DatasetExport(tmp_path / "ds", exclude=[A])
    assert export.plan([]) == [] and export.report.removed == 1   # A, by DID, here
    shard = export.shard("s-0", [Target("a.test")])
    worker = ShardExport(shard, exclude=frozenset(export.exclude), batch_repos=10,
                         batch_records=100)
    assert worker.is_excluded(A)
    worker.excluded(A)     # what the worker's flow does once a.test resolved to A
    worker.finish()
    assert export.merge(worker.result())
    export.finish()
    assert A not in set(open_dataset(tmp_path / "ds").repos.collect()["did"])
