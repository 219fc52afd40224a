"""atrepo.dataset: batches committed as versions, read back as lazy frames (no network)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from deltalake import DeltaTable

import atrepo
from atrepo.dataset import CHANGES_SCHEMA, REPOS_SCHEMA, VERSIONS_SCHEMA, Batch, \
    DatasetWriter, compact, open_dataset, vacuum
from atrepo.frames import EXPORT_SCHEMA
from atrepo.testing import make_repo_car

A, B, C, D = ("did:plc:" + ch * 24 for ch in "abcd")
PDS = "http://127.0.0.1:1"
POST, LIKE, OTHER = "app.bsky.feed.post", "app.bsky.feed.like", "app.example.thing"
SUBJECT_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"


def post(text: str) -> dict[str, object]:
    return {"$type": POST, "text": text, "createdAt": "2024-05-01T12:00:00.000Z"}


def like(n: int) -> dict[str, object]:
    return {"$type": LIKE, "createdAt": "2024-05-01T12:00:00.000Z",
            "subject": {"uri": f"at://{C}/{POST}/3k{n:03d}", "cid": SUBJECT_CID}}


def snap(did: str, records: dict[str, object], rev: str = "3kaaaaaaaaa22") -> atrepo.RepoSnapshot:
    car, key = make_repo_car(records, did=did, rev=rev)
    return atrepo.read_car(car, signing_key=key)


def batch(*snaps: atrepo.RepoSnapshot) -> Batch:
    out = Batch()
    for s in snaps:
        out.add_snapshot(s, pds=PDS, handle=f"{s.did[-3:]}.test")
    return out


def first(tmp_path, **kw) -> DatasetWriter:
    """A dataset at version 0: A (2 posts, 1 like, 1 thing), B (1 post)."""
    writer = DatasetWriter(tmp_path / "ds", **kw)
    writer.commit(batch(
        snap(A, {f"{POST}/3k001": post("a1"), f"{POST}/3k002": post("a2"),
                 f"{LIKE}/3k003": like(1), f"{OTHER}/1": {"$type": OTHER, "n": 1}}),
        snap(B, {f"{POST}/3k004": post("b1")})))
    return writer


def rows(frame: pl.LazyFrame, *cols: str) -> list[tuple[object, ...]]:
    return sorted(frame.select(cols).collect().rows())


def test_a_batch_is_one_version_with_records_repos_and_typed_tables(tmp_path):
    with first(tmp_path):
        pass
    ds = open_dataset(tmp_path / "ds")
    assert ds.version == 0
    records = ds.records.collect()
    assert records.schema == EXPORT_SCHEMA and records.height == 5
    assert set(records["pds"]) == {PDS} and records["verified"].all()
    repos = ds.repos.collect()
    assert repos.schema == REPOS_SCHEMA
    assert rows(ds.repos, "did", "status", "records", "handle") == [
        (A, "active", 4, "aaa.test"), (B, "active", 1, "bbb.test")]
    assert repos.filter(pl.col("did") == A)["collections"].to_list() == [[LIKE, POST, OTHER]]
    # typed tables: one per collection with a lexicon, with the declared schema
    assert sorted(p.name for p in (tmp_path / "ds" / "tables").iterdir()) == [LIKE, POST]
    posts = ds.table(POST).collect()
    assert posts.schema == atrepo.lexicon_schema(POST)
    assert sorted(posts["text"]) == ["a1", "a2", "b1"]
    # a collection without a lexicon: inferred from the records
    assert ds.table(OTHER).collect()["n"].to_list() == [1]
    with pytest.raises(atrepo.AtrepoError, match="app.example.nothing"):
        ds.table("app.example.nothing")
    assert ds.collections == [LIKE, POST, OTHER]
    assert ds.versions.schema == VERSIONS_SCHEMA
    assert ds.versions.select("version", "added", "updated", "removed", "repos",
                              "records").rows() == [(0, 2, 0, 0, 2, 5)]


def test_records_are_delta_tables_any_reader_can_open(tmp_path):
    with first(tmp_path):
        pass
    direct = pl.scan_delta(str(tmp_path / "ds" / "records")).collect()
    assert direct.height == 5 and set(direct["collection"]) == {POST, LIKE, OTHER}
    # few files: one per collection for the batch, not one per repository
    files = list((tmp_path / "ds" / "records").glob("collection=*/*.parquet"))
    assert len(files) == 3
    # bookkeeping stays outside the tables
    assert not list((tmp_path / "ds" / "records").glob("**/*.json*")) or all(
        "_delta_log" in str(p) for p in (tmp_path / "ds" / "records").glob("**/*.json*"))


def test_a_changed_repository_has_its_rows_replaced_and_others_stay(tmp_path):
    with first(tmp_path) as writer:
        assert writer.commit(batch(snap(A, {f"{POST}/3k001": post("a1 edited")},
                                        rev="3kaaaaaaaaa33"))) == 1
    ds = open_dataset(tmp_path / "ds")
    assert rows(ds.records, "did", "collection", "rkey") == [
        (A, POST, "3k001"), (B, POST, "3k004")]
    assert sorted(ds.table(POST).collect()["text"]) == ["a1 edited", "b1"]
    assert ds.table(LIKE).collect().height == 0   # A's like went with its old rows
    assert ds.versions.select("added", "updated", "removed", "repos", "records").rows()[-1] \
        == (0, 1, 0, 2, 2)
    assert rows(ds.repos, "did", "rev") == [(A, "3kaaaaaaaaa33"), (B, "3kaaaaaaaaa22")]


def _newest_commit(table) -> dict[str, object]:
    """The ``commitInfo`` of the newest commit of the Delta table at ``table``."""
    log = sorted((table / "_delta_log").glob("*.json"))[-1]
    infos = [json.loads(line)["commitInfo"] for line in log.read_text().splitlines()
             if '"commitInfo"' in line]
    assert len(infos) == 1
    return infos[0]


def test_a_batch_of_new_repositories_is_an_append_that_reads_and_rewrites_nothing(tmp_path):
    # a fresh export commits batch after batch of repositories the dataset never held:
    # those commits are appends, with no predicate whose matches Delta would look for in
    # every file of the table, so their cost does not grow with the tables
    root = tmp_path / "ds"
    tables = [root / "records", root / "repos", root / "tables" / POST, root / "tables" / LIKE]
    with first(tmp_path) as writer:
        assert writer.commit(batch(snap(C, {f"{POST}/3k005": post("c1"),
                                            f"{LIKE}/3k006": like(2)}))) == 1
        for table in tables:
            info = _newest_commit(table)
            assert info["operationParameters"]["mode"] == "Append", table.name
            assert "predicate" not in info["operationParameters"], table.name
        # the counter-case: a changed repository's rows are replaced, by its DID alone
        assert writer.commit(batch(snap(A, {f"{POST}/3k001": post("a1 edited")},
                                        rev="3kaaaaaaaaa33"))) == 2
        for table in (root / "records", root / "repos", root / "tables" / POST):
            predicate = _newest_commit(table)["operationParameters"]["predicate"]
            assert A in predicate and B not in predicate and C not in predicate
    ds = open_dataset(root)
    assert rows(ds.records, "did", "rkey") == [(A, "3k001"), (B, "3k004"), (C, "3k005"),
                                               (C, "3k006")]
    assert rows(ds.repos, "did", "records") == [(A, 1), (B, 1), (C, 2)]
    assert sorted(ds.table(POST).collect()["text"]) == ["a1 edited", "b1", "c1"]
    assert ds.table(LIKE).collect()["did"].to_list() == [C]


def test_a_commit_of_new_repositories_loads_no_table_and_a_held_one_is_looked_up(
        tmp_path, monkeypatch):
    # a fresh export's commits neither look up repos rows (a scan of every file of the repos
    # table, one more per commit) nor ask each table which versions it holds; a DID the
    # dataset holds, also one committed earlier by the same writer or before it was
    # reopened, is looked up, so its rows are replaced and never doubled
    from atrepo.dataset import _delta

    loads: list[str] = []
    for name in ("scan", "committed"):
        real = getattr(_delta, name)

        def counted(path, *args, _real=real, _name=name):
            loads.append(f"{_name}:{getattr(path, 'name', path)}")
            return _real(path, *args)
        monkeypatch.setattr(_delta, name, counted)
    with first(tmp_path) as writer:
        loads.clear()
        assert writer.commit(batch(snap(C, {f"{POST}/3k005": post("c1")}))) == 1
        assert loads == []
        assert writer.commit(batch(snap(C, {f"{POST}/3k006": post("c2")},
                                        rev="3kaaaaaaaaa33"))) == 2
        assert loads == ["scan:repos"]
    with DatasetWriter(tmp_path / "ds") as writer:
        loads.clear()
        assert writer.commit(batch(snap(D, {f"{POST}/3k007": post("d1")}))) == 3
        assert not [load for load in loads if load.startswith("scan")]
        assert writer.commit(batch(snap(A, {f"{POST}/3k001": post("a1 edited")},
                                        rev="3kaaaaaaaaa33"))) == 4
    ds = open_dataset(tmp_path / "ds")
    assert rows(ds.records, "did", "rkey") == [(A, "3k001"), (B, "3k004"), (C, "3k006"),
                                               (D, "3k007")]
    assert rows(ds.repos, "did", "rev") == [(A, "3kaaaaaaaaa33"), (B, "3kaaaaaaaaa22"),
                                            (C, "3kaaaaaaaaa33"), (D, "3kaaaaaaaaa22")]


def test_removed_repositories_leave_the_latest_version_but_not_the_previous(tmp_path):
    with first(tmp_path) as writer:
        gone = Batch()
        gone.add_removed(B, "takendown")
        writer.commit(gone)
    ds = open_dataset(tmp_path / "ds")
    assert set(ds.records.collect()["did"]) == {A}
    assert B not in set(ds.table(POST).collect()["did"])
    assert rows(ds.repos.filter(pl.col("did") == B), "status", "records", "rev") == [
        ("takendown", 0, None)]
    before = ds.as_of(0)
    assert B in set(before.records.collect()["did"])
    assert B in set(before.table(POST).collect()["did"])
    assert ds.versions["removed"].to_list() == [0, 1]
    assert repr(ds).endswith("version 1: 1 repos, 4 records>")


def test_a_failed_fetch_keeps_the_rows_and_records_the_error(tmp_path):
    with first(tmp_path) as writer:
        failed = Batch()
        failed.add_failed(A, "TransportError: timed out")
        failed.add_failed(C, "ResolutionError: no such DID")
        writer.commit(failed)
    ds = open_dataset(tmp_path / "ds")
    assert ds.records.collect().height == 5
    assert rows(ds.repos, "did", "status", "error") == [
        (A, "active", "TransportError: timed out"), (B, "active", None),
        (C, None, "ResolutionError: no such DID")]
    assert ds.versions.select("added", "updated", "removed").rows()[-1] == (0, 0, 0)


def test_excluded_repositories_leave_no_trace_in_the_latest_version(tmp_path):
    with first(tmp_path) as writer:
        out = Batch()
        out.add_excluded(A)
        writer.commit(out)
    ds = open_dataset(tmp_path / "ds")
    assert A not in set(ds.repos.collect()["did"]) | set(ds.records.collect()["did"])
    assert all(A not in set(ds.table(c).collect()["did"]) for c in (POST, LIKE))


def test_a_batch_holds_each_repository_once(tmp_path):
    twice = Batch()
    twice.add_snapshot(snap(A, {f"{POST}/3k001": post("old")}), pds=PDS)
    twice.add_snapshot(snap(A, {f"{POST}/3k001": post("new")}), pds=PDS)
    assert (twice.repos, twice.rows) == (1, 1)
    other = Batch()
    other.add_removed(A, "deactivated")
    twice.extend(other)
    assert (twice.repos, twice.rows) == (1, 0)
    assert repr(twice) == "<Batch 0 fetched, 1 removed, 0 failed, 0 excluded; 0 rows>"


def test_resume_false_starts_afresh_and_keeps_the_history(tmp_path):
    with first(tmp_path):
        pass
    with DatasetWriter(tmp_path / "ds", resume=False) as writer:
        assert writer.known().height == 0   # everything is to be fetched again
        writer.commit(batch(snap(B, {f"{POST}/3k009": post("b9")})))
    ds = open_dataset(tmp_path / "ds")
    assert rows(ds.records, "did", "rkey") == [(B, "3k009")]
    assert ds.table(LIKE).collect().height == 0
    assert rows(ds.repos, "did") == [(B,)]
    assert ds.versions.select("operation", "added", "updated", "removed", "repos",
                              "records").rows()[-1] == ("reset", 0, 1, 1, 1, 1)
    assert ds.as_of(0).records.collect().height == 5


def test_a_reset_that_finds_nothing_still_empties_the_dataset(tmp_path):
    with first(tmp_path):
        pass
    with DatasetWriter(tmp_path / "ds", resume=False) as writer:
        assert writer.finish() == 1
    ds = open_dataset(tmp_path / "ds")
    assert ds.records.collect().height == 0 and ds.repos.collect().height == 0


def test_a_new_export_of_nothing_is_an_empty_dataset(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        assert writer.finish() == 0       # the tables, empty
        assert writer.finish() is None    # nothing more to do
        assert writer.commit(Batch()) is None
    ds = open_dataset(tmp_path / "ds")
    assert ds.records.collect().schema == EXPORT_SCHEMA and ds.records.collect().height == 0
    assert ds.collections == []


def test_other_collections_than_the_datasets_are_refused_unless_starting_afresh(tmp_path):
    with first(tmp_path, collections=[POST, LIKE]):
        pass
    with DatasetWriter(tmp_path / "ds", collections=[LIKE, POST, POST]):
        pass   # the same filter, in another order
    with pytest.raises(atrepo.AtrepoError, match="other collections") as caught:
        DatasetWriter(tmp_path / "ds", collections=None)
    assert caught.value.fields["dataset"] == f"{LIKE},{POST}"
    assert caught.value.fields["asked"] == "all"
    with DatasetWriter(tmp_path / "ds", collections=None, resume=False) as writer:
        writer.finish()
    with DatasetWriter(tmp_path / "ds"):   # the lock was released by the refusal too
        pass


def test_a_second_writer_is_refused_while_one_is_open(tmp_path):
    with first(tmp_path):
        with pytest.raises(atrepo.AtrepoError, match="another export") as caught:
            DatasetWriter(tmp_path / "ds")
        assert caught.value.fields["pid"].isdigit()
    with DatasetWriter(tmp_path / "ds") as again:
        assert again.version == 0


def test_changes_since_a_version_are_the_diff_columns_plus_did(tmp_path):
    with first(tmp_path) as writer:
        writer.commit(batch(snap(A, {f"{POST}/3k001": post("a1 edited"),
                                     f"{POST}/3k002": post("a2"),
                                     f"{POST}/3k010": post("a10")}, rev="3kaaaaaaaaa33")))
        gone = Batch()
        gone.add_removed(B, "deleted")
        writer.commit(gone)
    ds = open_dataset(tmp_path / "ds")
    changes = ds.changes(0).collect()
    assert changes.schema == CHANGES_SCHEMA
    assert changes.select("did", "collection", "rkey", "action").rows() == [
        (A, LIKE, "3k003", "delete"), (A, POST, "3k001", "update"),
        (A, POST, "3k010", "create"), (A, OTHER, "1", "delete"),
        (B, POST, "3k004", "delete")]
    update = changes.row(1, named=True)
    assert '"a1 edited"' in update["record"] and '"a1"' in update["old_record"]
    assert changes.row(4, named=True)["record"] is None
    assert ds.changes(2).collect().height == 0
    assert ds.as_of(1).changes(0).collect().height == 4   # B's delete came later


def test_as_of_a_datetime_and_unknown_versions(tmp_path):
    with first(tmp_path) as writer:
        writer.commit(batch(snap(B, {f"{POST}/3k005": post("b5")}, rev="3kaaaaaaaaa33")))
    ds = open_dataset(tmp_path / "ds")
    stamps = ds.versions["timestamp"].to_list()
    assert ds.as_of(stamps[0]).version == 0
    assert ds.as_of(stamps[1] + timedelta(days=1)).version == 1
    with pytest.raises(atrepo.AtrepoError, match="no version that old"):
        ds.as_of(datetime(2000, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(atrepo.AtrepoError, match="no such dataset version"):
        ds.as_of(7)
    old = ds.as_of(0)
    assert old.versions.height == 1 and rows(old.repos, "rev")[0] == ("3kaaaaaaaaa22",)


def test_a_table_is_read_at_its_batch_after_compactions_and_a_log_cleanup(tmp_path):
    # which batch a loaded table holds is read from its newest atrepo commit's log file;
    # commits atrepo did not make (a compaction) are passed over, and a table whose kept
    # log no longer has that file answers from its loaded transactions
    with first(tmp_path) as writer:
        writer.commit(batch(snap(C, {f"{POST}/3k005": post("c1")})))
    records = tmp_path / "ds" / "records"
    DeltaTable(records).optimize.compact()
    table = DeltaTable(records)
    assert table.history(1)[0]["operation"] == "OPTIMIZE"
    table.create_checkpoint()
    for log in (records / "_delta_log").glob("*.json"):
        log.unlink()
    ds = open_dataset(tmp_path / "ds")
    assert ds.version == 1
    assert rows(ds.records, "did", "rkey") == [(A, "1"), (A, "3k001"), (A, "3k002"),
                                               (A, "3k003"), (B, "3k004"), (C, "3k005")]


def test_open_dataset_refuses_a_directory_without_one(tmp_path):
    with pytest.raises(atrepo.AtrepoError, match="no atrepo dataset here"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(atrepo.AtrepoError, match="no atrepo dataset here"):
        open_dataset(tmp_path / "empty")


def test_the_reprs_say_what_the_version_holds_and_escape(tmp_path):
    root = tmp_path / "<ds>"
    writer = DatasetWriter(root)
    writer.commit(batch(snap(A, {f"{POST}/3k001": post("a1")})), hosts=[PDS])
    writer.close()
    ds = open_dataset(root)
    assert repr(ds) == f"<Dataset {root} version 0: 1 repos, 1 records>"
    page = ds._repr_html_()
    assert "&lt;ds&gt;" in page and "<ds>" not in page and PDS in page


def test_compact_merges_small_files_and_changes_no_row(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        for i in range(20):   # twenty commits: twenty small files in the post partition
            writer.commit(batch(snap("did:plc:" + f"{i:024d}", {f"{POST}/3k{i:03d}":
                                                                post(f"p{i}")})))
    before = open_dataset(tmp_path / "ds")
    rows_before = before.records.drop("fetched_at").sort("uri").collect()
    assert len(DeltaTable(tmp_path / "ds" / "records").file_uris()) == 20
    removed = compact(tmp_path / "ds")
    assert removed["records"] == 20
    after = open_dataset(tmp_path / "ds")
    assert len(DeltaTable(tmp_path / "ds" / "records").file_uris()) == 1
    assert after.version == before.version == 19
    assert after.records.drop("fetched_at").sort("uri").collect().equals(rows_before)
    assert after.as_of(3).records.collect().height == 4
    assert after.versions.height == 20


def test_vacuum_deletes_what_only_old_versions_read(tmp_path):
    with first(tmp_path) as writer:
        gone = Batch()
        gone.add_removed(B, "deleted")
        writer.commit(gone)
        with pytest.raises(atrepo.AtrepoError, match="another export"):
            vacuum(tmp_path / "ds")
    assert vacuum(tmp_path / "ds", older_than=timedelta(0)) > 0
    ds = open_dataset(tmp_path / "ds")
    assert set(ds.records.collect()["did"]) == {A}
    parquet = {p.name for p in (tmp_path / "ds").rglob("*.parquet")}
    live = set()
    for table in ("records", "repos", f"tables/{POST}", f"tables/{LIKE}"):
        live |= {u.rsplit("/", 1)[1] for u in DeltaTable(tmp_path / "ds" / table).file_uris()}
    assert parquet == live   # B's old rows are gone from disk
