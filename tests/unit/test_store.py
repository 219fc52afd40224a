"""The pack store (atrepo/_io/store.py): packs, indexes, entries, eviction; no frames.

Entries are written the way ``SnapshotStore.add`` writes them (append under the lock,
then commit), with the commit CIDs of repositories written by the reference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import atrepo
from atrepo import car
from atrepo._io.store import PACK, PackStore, StoreEntry, dir_name
from atrepo.cid import CID
from atrepo.snapshot import open_snapshot


def _write(store: PackStore, ref: Any, tmp_path: Path, *, key: str | None = None,
           handle: str | None = None) -> StoreEntry:
    """Append ``ref``'s CAR to its pack and record it as an entry; return the entry."""
    download = tmp_path / f"download-{ref.car.name}"
    shutil.copyfile(ref.car, download)
    truth = ref.truth
    with store.writing(truth["did"]) as writer:
        pack = writer.append(car.read_car(download, 64), 64)
        entry = writer.commit(StoreEntry(
            rev=truth["rev"], commit_cid=truth["commit_cid"], data_cid=truth["data_cid"],
            fetched_at=datetime.now(timezone.utc), records=truth["record_count"],
            source="full", bytes_downloaded=pack.size, verified=key is not None,
            pack_bytes=0, collections=truth["collections"]), handle=handle, signing_key=key,
            handle_verified=key is not None)
        pack.close()
    return entry


def test_store_index_round_trips_and_names_the_did(ref_small, tmp_path):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    did = ref_small.truth["did"]
    written = _write(store, ref_small, tmp_path, key=ref_small.truth["signing_key"],
                     handle="small.test")
    (entry,) = store.entries(did)
    assert entry == written and entry.pack_bytes == ref_small.car.stat().st_size
    assert store.newest(did) == entry
    assert (entry.rev, entry.records, entry.verified) == \
        (ref_small.truth["rev"], ref_small.truth["record_count"], True)
    assert entry.collections == ref_small.truth["collections"]
    assert store.identity(did) == ("small.test", ref_small.truth["signing_key"], True)
    assert store.entry_key(did, entry) == ref_small.truth["signing_key"]
    assert store.did_for_handle("small.test") == did
    assert store.did_for_handle("other.test") is None
    assert StoreEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry
    assert CID.decode(entry.commit_cid) == CID.decode(ref_small.truth["commit_cid"])
    index = next((tmp_path / "repos").glob("*/snapshots.json"))
    index.write_text("{not json")
    with pytest.raises(atrepo.AtrepoError, match="unreadable") as info:
        store.entries(did)
    assert info.value.fields["did"] == did


def test_an_index_without_collection_counts_still_reads(ref_small, tmp_path):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    _write(store, ref_small, tmp_path)
    index_path = next((tmp_path / "repos").glob("*/snapshots.json"))
    index = json.loads(index_path.read_text())
    del index["snapshots"][0]["collections"]   # as written before counts were recorded
    index_path.write_text(json.dumps(index))
    (entry,) = store.entries(ref_small.truth["did"])
    assert entry.collections is None and entry.records == ref_small.truth["record_count"]


def test_no_entries_for_an_unknown_did(tmp_path):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    assert store.entries("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa") == []
    assert store.newest("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa") is None
    assert store.identity("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa") == (None, None, False)


def test_a_pack_is_read_only_up_to_its_complete_length(ref_small, tmp_path):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    did = ref_small.truth["did"]
    entry = _write(store, ref_small, tmp_path)
    pack = next((tmp_path / "repos").glob(f"*/{PACK}"))
    with pack.open("ab") as out:
        out.write(b"\x99\x01half a block")  # a writer that died mid-append
    again = open_snapshot(store.open_pack(did, 64), root=entry.commit_cid)
    assert again.records.equals(atrepo.read_car(ref_small.car).records)


def test_eviction_keeps_open_packs_working(ref_small, ref_p256, tmp_path):
    one = ref_small.car.stat().st_size
    store = PackStore(tmp_path / "repos", max_bytes=one + 1)
    small = _write(store, ref_small, tmp_path)
    opened = open_snapshot(store.open_pack(ref_small.truth["did"], 0),
                           root=small.commit_cid)          # mem_limit 0: mapped from disk
    _write(store, ref_p256, tmp_path)
    assert store.entries(ref_small.truth["did"]) == []     # evicted: least recently used
    assert len(store.entries(ref_p256.truth["did"])) == 1  # the one just written stays
    assert not opened.blocks.reopenable()
    expected = atrepo.read_car(ref_small.car).records
    assert opened.records.equals(expected)
    assert opened.get(*expected.row(0)[1:3]) is not None


def test_evict_removes_least_recently_used_first(ref_small, ref_p256, tmp_path):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    _write(store, ref_small, tmp_path)
    _write(store, ref_p256, tmp_path)
    for ref, used in ((ref_small, 2_000_000_000), (ref_p256, 1_000_000_000)):  # p256: older
        os.utime(tmp_path / "repos" / dir_name(ref.truth["did"]) / "snapshots.json",
                 (used, used))
    store.max_bytes = ref_small.car.stat().st_size
    assert store.evict() == [ref_p256.truth["did"]]
    assert store.evict(keep=ref_small.truth["did"]) == []


@pytest.mark.parametrize("did", ["did:plc:abc", "did:web:example.com%3A8080",
                                 "did:web:example.com:u:alice"])
def test_dir_names_hold_no_separators(did):
    name = dir_name(did)
    assert not {":", "/", "%"} & set(name) and name.startswith("did_")


def test_the_store_loads_no_frames_layer():
    code = ("import sys, atrepo._io.store, atrepo._io.cache; "
            "print(sorted(m for m in sys.modules if m == 'polars' or m.startswith("
            "('atrepo.frames', 'atrepo.snapshot'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def _write_as(store: PackStore, ref: Any, tmp_path: Path, did: str) -> None:
    """Record ``ref``'s CAR under another DID (the store does not read the commit's DID)."""
    download = tmp_path / f"download-as-{len(did)}.car"
    shutil.copyfile(ref.car, download)
    truth = ref.truth
    with store.writing(did) as writer:
        writer.append(car.read_car(download, 64), 64).close()
        writer.commit(StoreEntry(
            rev=truth["rev"], commit_cid=truth["commit_cid"], data_cid=truth["data_cid"],
            fetched_at=datetime.now(timezone.utc), records=truth["record_count"],
            source="full", bytes_downloaded=1, verified=False, pack_bytes=0),
            handle=None, signing_key=None)


def test_long_and_case_differing_dids_get_their_own_directories(ref_small, tmp_path):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    dids = ["did:web:" + "a" * 300 + ".example", "did:web:App.example", "did:web:app.example"]
    for did in dids:
        _write_as(store, ref_small, tmp_path, did)   # the first: ENAMETOOLONG before
    folded = {path.name.casefold() for path in (tmp_path / "repos").iterdir()}
    assert len(folded) == 3 and all(len(name) <= 150 for name in folded)
    for did in dids:
        assert [e.rev for e in store.entries(did)] == [ref_small.truth["rev"]]


def test_a_directory_under_its_legacy_name_is_moved_and_keeps_working(ref_small, tmp_path):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    did, other = "did:web:localhost%3A2583", "did:web:localhost:3A2583"
    _write_as(store, ref_small, tmp_path, did)
    legacy = tmp_path / "repos" / "did_web_localhost_3A2583"   # what earlier versions named it
    (tmp_path / "repos" / dir_name(did)).rename(legacy)
    assert store.entries(other) == []                 # shares the legacy name: not moved
    assert legacy.exists()
    assert [e.rev for e in store.entries(did)] == [ref_small.truth["rev"]]
    assert not legacy.exists() and (tmp_path / "repos" / dir_name(did)).is_dir()
    assert dir_name("did:plc:ewvi7nxzyoun6zhxrhs64oiz") == "did_plc_ewvi7nxzyoun6zhxrhs64oiz"


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_pack_shorter_than_its_index_says_counts_as_absent(damage, ref_small, tmp_path):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    did = ref_small.truth["did"]
    _write(store, ref_small, tmp_path)
    pack = next((tmp_path / "repos").glob(f"*/{PACK}"))
    if damage == "missing":
        pack.unlink()
    else:
        with pack.open("r+b") as out:
            out.truncate(pack.stat().st_size - 1)
    assert store.entries(did) == [] and store.newest(did) is None
    entry = _write(store, ref_small, tmp_path)          # the next download replaces both
    assert store.entries(did) == [entry] and entry.pack_bytes == ref_small.car.stat().st_size
    again = open_snapshot(store.open_pack(did, 64), root=entry.commit_cid)
    assert len(again) == ref_small.truth["record_count"]


def test_part_files_count_against_the_budget_and_stale_ones_go(ref_small, tmp_path):
    one = ref_small.car.stat().st_size
    store = PackStore(tmp_path / "repos", max_bytes=one + 100)
    _write(store, ref_small, tmp_path)
    downloads = tmp_path / "downloads"
    downloads.mkdir(exist_ok=True)
    stale = downloads / "did_plc_gone-abc.part"          # a SIGKILLed download, an hour old
    stale.write_bytes(b"s" * (10 * one))
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert store.evict() == [] and not stale.exists()   # deleted, not counted
    with store.download_file("did:plc:live") as part:
        part.write_bytes(b"l" * 200)                   # a live download: counted
        assert store.evict() == [ref_small.truth["did"]]
        assert part.exists()


def test_commits_do_not_read_every_index_again(ref_small, tmp_path, monkeypatch):
    """Eviction after a commit uses the in-memory ledger, rescanned (by stats) only after
    as many commits as there were repositories: O(1) index reads per commit (issue 10)."""
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    reads: list[str] = []
    read_text = Path.read_text

    def counting(path: Path, *args: Any, **kwargs: Any) -> str:
        if path.name == "snapshots.json":
            reads.append(path.parent.name)
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    dids = [f"did:plc:{n:024d}" for n in range(16)]
    for did in dids:
        _write_as(store, ref_small, tmp_path, did)
    assert len(reads) == len(dids)        # each commit reads its own index, nothing else
    store.max_bytes = 3 * ref_small.car.stat().st_size
    store.evict()
    assert len(list((tmp_path / "repos").iterdir())) == 3


def test_a_full_disk_is_an_atrepo_error_and_leaves_the_store_as_it_was(
        ref_small, ref_p256, tmp_path, monkeypatch):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    first = _write(store, ref_small, tmp_path)

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)          # the append of new blocks hits ENOSPC
        download = tmp_path / "download-full.car"
        shutil.copyfile(ref_p256.car, download)
        with pytest.raises(atrepo.AtrepoError, match="cannot write to the cache") as info:
            with store.writing(ref_small.truth["did"]) as writer:
                writer.append(car.read_car(download, 64), 64)
    assert info.value.fields["did"] == ref_small.truth["did"]
    assert "No space left" in str(info.value)
    assert store.entries(ref_small.truth["did"]) == [first]      # as it was
    again = open_snapshot(store.open_pack(ref_small.truth["did"], 64), root=first.commit_cid)
    assert len(again) == ref_small.truth["record_count"]


def test_a_directory_that_cannot_be_moved_is_kept_and_eviction_goes_on(
        ref_small, ref_p256, tmp_path, monkeypatch):
    store = PackStore(tmp_path / "repos", max_bytes=1 << 40)
    _write(store, ref_small, tmp_path)
    _write(store, ref_p256, tmp_path)
    for ref, used in ((ref_small, 1_000_000_000), (ref_p256, 2_000_000_000)):  # small: older
        os.utime(tmp_path / "repos" / dir_name(ref.truth["did"]) / "snapshots.json",
                 (used, used))
    rename = Path.rename

    def refused(self: Path, target: Any) -> Any:
        if self.name == dir_name(ref_small.truth["did"]):
            raise PermissionError(13, "Permission denied", str(self))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", refused)
    store.max_bytes = 1
    assert store.evict() == [ref_p256.truth["did"]]       # the next one instead
    assert len(store.entries(ref_small.truth["did"])) == 1
