"""SnapshotStore (atrepo/_snapshot_store.py): downloads in as entries, snapshots out.

``ref_small`` (gen_repo.mjs) holds a first commit, a second commit with creates, updates and
deletes made by ``@atproto/repo``, and the ``getRepo?since=`` CAR of the second commit.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import atrepo
from atrepo import car, mst
from atrepo._io.store import PACK, StoreEntry
from atrepo._snapshot_store import SnapshotStore
from atrepo.snapshot import RepoSnapshot, open_snapshot
from atrepo.testing import encode_car


def _store_file(store: SnapshotStore, did: str, download: Path, commit_cid: str,
                key: str | None, source: str) -> atrepo.RepoSnapshot:
    """What the client does with a download once its commit checked out."""
    return store.add(car.read_car(download, 64), did=did, commit_cid=commit_cid,
                     signing_key=key, handle=None, source=source, mem_limit_mb=64)


def _copy(path: Path, tmp_path: Path) -> Path:
    target = tmp_path / f"download-{path.name}"
    shutil.copyfile(path, target)
    return target


def test_store_assembles_a_since_car_into_the_new_tree(ref_small, tmp_path):
    store = SnapshotStore(tmp_path / "repos", max_bytes=1 << 40)
    did, key = ref_small.truth["did"], ref_small.truth["signing_key"]
    first = _store_file(store, did, _copy(ref_small.car, tmp_path),
                        ref_small.truth["commit_cid"], key, "full")
    second = _store_file(store, did, _copy(ref_small.since, tmp_path),
                         ref_small.truth2["commit_cid"], key, "incremental")
    assert second.verified and second.source == "incremental"
    assert [tuple(r) for r in second.records.select("collection", "rkey", "cid").rows()] == \
        ref_small.records2
    assert [e.rev for e in store.entries(did)] == [first.rev, second.rev]
    pack = tmp_path / "repos" / next(p.name for p in (tmp_path / "repos").iterdir()) / PACK
    # shared blocks are stored once: less than the two full CARs, at most first + since
    assert pack.stat().st_size <= ref_small.car.stat().st_size + ref_small.since.stat().st_size
    assert pack.stat().st_size < ref_small.car.stat().st_size + ref_small.car2.stat().st_size
    reopened = [open_snapshot(store.open_pack(did, 64), root=e.commit_cid)
                for e in store.entries(did)]
    assert atrepo.diff(*reopened).equals(
        atrepo.diff(atrepo.read_car(ref_small.car), atrepo.read_car(ref_small.car2)))


def _without_one_record_block(ref_small, tmp_path: Path) -> tuple[Path, str]:
    """The since CAR minus one block that is a record of the new commit (not a node)."""
    since = car.read_car(ref_small.since)
    new_leaves = {cid for _, cid in mst.walk(car.read_car(ref_small.car2),
                                              ref_small.truth2["data_cid"])}
    dropped = next(cid for cid, _ in since if cid in new_leaves)
    blocks = [(bytes(cid), data) for cid, data in since if cid != dropped]
    path = tmp_path / "partial-since.car"
    path.write_bytes(encode_car(since.roots, blocks))
    return path, str(dropped)


def test_an_incomplete_since_car_is_not_recorded(ref_small, tmp_path):
    store = SnapshotStore(tmp_path / "repos", max_bytes=1 << 40)
    did = ref_small.truth["did"]
    _store_file(store, did, _copy(ref_small.car, tmp_path), ref_small.truth["commit_cid"],
                None, "full")
    committed = store._index(did)["pack_bytes"]
    partial, dropped = _without_one_record_block(ref_small, tmp_path)
    with pytest.raises(atrepo.MstError, match="record block missing") as info:
        _store_file(store, did, partial, ref_small.truth2["commit_cid"], None, "incremental")
    assert info.value.cid == dropped and info.value.fields["did"] == did
    assert [e.rev for e in store.entries(did)] == [ref_small.truth["rev"]]
    assert store._index(did)["pack_bytes"] == committed
    # the next writer cuts off what the failed one appended, then completes the tree
    second = _store_file(store, did, _copy(ref_small.since, tmp_path),
                         ref_small.truth2["commit_cid"], None, "incremental")
    assert len(second) == len(ref_small.records2)


def test_an_entry_records_the_counts_per_collection(ref_small, tmp_path):
    store = SnapshotStore(tmp_path / "repos", max_bytes=1 << 40)
    did = ref_small.truth["did"]
    snap = _store_file(store, did, _copy(ref_small.car, tmp_path),
                       ref_small.truth["commit_cid"], ref_small.truth["signing_key"], "full")
    (entry,) = store.entries(did)
    assert entry.collections == ref_small.truth["collections"]
    assert (entry.rev, entry.data_cid, entry.records, entry.verified) == \
        (snap.rev, snap.data_cid, len(snap), True)


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The DIDs of every tree walk from here on (RepoSnapshot._walk doing the walk)."""
    walked: list[str] = []
    walk = RepoSnapshot._walk

    def counted(self: RepoSnapshot) -> tuple[list[str], list[bytes]]:
        if self._tree is None:
            walked.append(self.did)
        return walk(self)

    monkeypatch.setattr(RepoSnapshot, "_walk", counted)
    return walked


@pytest.fixture
def stored(ref_small, tmp_path) -> tuple[SnapshotStore, StoreEntry]:
    """A store holding ref_small's first commit, and its entry."""
    store = SnapshotStore(tmp_path / "repos", max_bytes=1 << 40)
    _store_file(store, ref_small.truth["did"], _copy(ref_small.car, tmp_path),
                ref_small.truth["commit_cid"], None, "full")
    (entry,) = store.entries(ref_small.truth["did"])
    return store, entry


def _open(stored: tuple[SnapshotStore, StoreEntry], did: str,
          collections: list[str] | None = None) -> RepoSnapshot:
    store, entry = stored
    return store.open(did, entry, collections, mem_limit_mb=64, progress=False,
                      signing_key=None, handle=None)


def test_an_opened_entry_shows_its_counts_without_walking(ref_small, stored, walks):
    did = ref_small.truth["did"]
    snap = _open(stored, did)
    text, page = repr(snap), snap._repr_html_()
    assert len(snap) == ref_small.truth["record_count"]
    assert walks == []                                    # repr, HTML and len did not walk
    assert f"records={ref_small.truth['record_count']:,}" in text
    assert f"collections={len(ref_small.truth['collections'])}" in text
    assert "source=cache" in text and "app.bsky.feed.like" in page
    assert "_decoded" not in snap.__dict__                # nor build a frame
    assert snap.records.height == ref_small.truth["record_count"]
    assert walks == [did]                                 # the records did, once
    snap.records  # noqa: B018 - asked again: the walk is not repeated
    assert walks == [did]


def test_an_opened_entry_with_collections_counts_only_those(ref_small, stored, walks):
    did = ref_small.truth["did"]
    snap = _open(stored, did, ["app.bsky.feed.*"])
    feed = {c: n for c, n in ref_small.truth["collections"].items()
            if c.startswith("app.bsky.feed.")}
    assert f"records={sum(feed.values()):,}" in repr(snap)
    assert dict(snap.collections.iter_rows()) == feed and walks == []
    assert dict(zip(*snap.records["collection"].value_counts(sort=True)
                    .sort("collection"))) == feed   # the walk agrees
    assert walks == [did]


def test_an_entry_without_counts_says_they_are_unknown(ref_small, stored, walks):
    did = ref_small.truth["did"]
    store, entry = stored
    snap = _open((store, replace(entry, collections=None)), did)   # an index of before
    assert "records=?" in repr(snap) and "collections=?" in repr(snap) and walks == []
    assert len(snap) == ref_small.truth["record_count"] and walks == [did]
    assert f"records={ref_small.truth['record_count']:,}" in repr(snap)
