"""DatasetExport: what an export does with each repository, decided against the dataset."""

from __future__ import annotations

import polars as pl
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from deltalake.table import TableOptimizer

import atrepo
from atrepo.dataset import DatasetExport, Target, open_dataset
from atrepo.errors import RepoUnavailable, TransportError
from test_dataset import PDS, POST, A, B, C, post, snap

D = "did:plc:" + "d" * 24


def _start(tmp_path) -> None:
    """A dataset holding A and B (active, from PDS) and C (deactivated)."""
    export = DatasetExport(tmp_path / "ds", hosts=[PDS])
    work = export.plan([Target(A), Target(B), Target(C, status="deactivated")])
    assert [t.name for t in work] == [A, B]
    export.fetched(snap(A, {f"{POST}/3k001": post("a")}), pds=PDS, handle="a.test")
    export.fetched(snap(B, {f"{POST}/3k002": post("b")}), pds=PDS, handle="b.test")
    report = export.finish()
    assert (report.written, report.removed, report.version, report.commits) == (2, 0, 0, 1)


def test_the_listing_decides_without_a_request_what_it_can(tmp_path):
    _start(tmp_path)
    rev = open_dataset(tmp_path / "ds").repos.filter(pl.col("did") == A).collect()["rev"][0]
    export = DatasetExport(tmp_path / "ds", hosts=[PDS + "/"], exclude=[B])
    work = export.plan([Target(A, rev=rev),                  # at the held commit: skipped
                        Target(B, rev="3kzzzzzzzzz22"),      # excluded: removed, not visited
                        Target(C, status="deactivated"),     # recorded so already: skipped
                        Target(D, rev="3kaaaaaaaaa22")])     # new: visited
    assert [t.name for t in work] == [D]
    assert export.report.skipped == 2
    assert export.holds(A, rev, None) and not export.holds(A, "3kother", None)
    assert export.is_excluded(B)
    report = export.finish()
    assert (report.removed, report.written) == (1, 0)
    assert B not in set(open_dataset(tmp_path / "ds").repos.collect()["did"])


def test_a_host_export_visits_what_the_host_no_longer_lists(tmp_path):
    _start(tmp_path)
    export = DatasetExport(tmp_path / "ds", hosts=[PDS])
    assert [t.name for t in export.plan([Target(A)])] == [A, B]   # B: gone from the listing
    export.close()
    names = DatasetExport(tmp_path / "ds")        # names: only what is named is visited
    assert [t.name for t in names.plan([Target(A)])] == [A]
    names.close()


def test_outcomes_become_rows_statuses_and_errors(tmp_path):
    _start(tmp_path)
    export = DatasetExport(tmp_path / "ds", hosts=[PDS])
    export.plan([Target(A), Target(B), Target(D), Target("nobody.test")])
    export.failed(A, RepoUnavailable("repository takendown", did=A, status="takendown"))
    export.failed(B, TransportError("timed out", url=PDS))
    export.failed("nobody.test", atrepo.ResolutionError("no such handle",
                                                         identifier="nobody.test"))
    export.fetched(snap(D, {f"{POST}/3k009": post("d")}), pds=PDS, handle=None)
    report = export.finish()
    assert (report.written, report.removed, report.records) == (1, 1, 1)
    assert report.errors["did"].to_list() == [A, B, "nobody.test"]
    assert report.errors["status"].to_list() == ["takendown", None, None]
    ds = open_dataset(tmp_path / "ds")
    repos = dict(ds.repos.select("did", "status").collect().rows())
    assert repos == {A: "takendown", B: "active", C: "deactivated", D: "active"}
    assert sorted(ds.records.collect()["did"]) == [B, D]   # B's rows stay despite the error
    assert ds.repos.filter(pl.col("did") == B).collect()["error"][0].startswith(
        "TransportError")


def test_batches_commit_at_their_bounds(tmp_path):
    export = DatasetExport(tmp_path / "ds", batch_repos=2, batch_records=3)
    export.plan([])
    export.fetched(snap(A, {f"{POST}/3k001": post("a")}), pds=PDS, handle=None)
    assert export.report.commits == 0
    export.fetched(snap(B, {f"{POST}/3k002": post("b")}), pds=PDS, handle=None)
    assert export.report.commits == 1                      # two repositories
    export.fetched(snap(C, {f"{POST}/3k{i:03d}": post("c") for i in range(3)}), pds=PDS,
                   handle=None)
    assert export.report.commits == 2                      # three rows
    report = export.finish()
    assert report.version == 1 and report.commits == 2
    assert open_dataset(tmp_path / "ds").versions["added"].to_list() == [2, 1]


def test_bad_arguments_are_refused_before_the_dataset_is_touched(tmp_path):
    with pytest.raises(atrepo.AtrepoError, match="exclude= takes DIDs"):
        DatasetExport(tmp_path / "ds", exclude=["alice.test"])
    with pytest.raises(atrepo.AtrepoError, match="at least 1"):
        DatasetExport(tmp_path / "ds", batch_repos=0)
    assert not (tmp_path / "ds").exists()


def test_the_report_says_what_the_export_did(tmp_path):
    _start(tmp_path)
    export = DatasetExport(tmp_path / "ds")
    export.plan([])
    report = export.finish()
    assert repr(report) == (f"<ExportReport {tmp_path / 'ds'} version 0: 0 repos written, "
                            "0 unchanged, 0 removed, 0 records, 0 failed>")
    assert "repos unchanged (skipped)" in report._repr_html_()


def _json_commits(table) -> list[str]:
    return sorted(p.name for p in (table / "_delta_log").glob("*.json"))


@pytest.mark.parametrize("batch_repos", [1, 3], ids=["merged", "one-commit"])
def test_an_export_ends_with_each_table_loadable_from_one_checkpoint(tmp_path, batch_repos):
    """After an export (merged after several batches, or one commit and no merge), each
    table has a checkpoint at its newest version: a load reads it alone, with the commit
    files gone."""
    export = DatasetExport(tmp_path / "ds", batch_repos=batch_repos)
    export.plan([])
    for did, rkey in ((A, "3k001"), (B, "3k002"), (C, "3k003")):
        export.fetched(snap(did, {f"{POST}/{rkey}": post(did[-3:])}), pds=PDS, handle=None)
    report = export.finish()
    assert report.commits == (3 if batch_repos == 1 else 1)
    ds = tmp_path / "ds"
    tables = [ds / "records", ds / "repos", ds / "tables" / POST]
    expected = {t: pl.scan_delta(str(t)).collect().sort("uri" if t.name != "repos" else "did")
                for t in tables}
    for table in tables:
        version = DeltaTable(table).version()
        assert (table / "_delta_log" / f"{version:020d}.checkpoint.parquet").exists()
        for name in _json_commits(table):
            (table / "_delta_log" / name).unlink()
        assert DeltaTable(table).version() == version
        rows = pl.scan_delta(str(table)).collect()
        assert rows.sort("uri" if table.name != "repos" else "did").equals(expected[table])


@pytest.mark.parametrize(("step", "batch_repos", "said"), [
    (TableOptimizer, 1, "merge"), (DeltaTable, 100, "checkpoint")])
def test_a_merge_or_checkpoint_that_fails_is_an_atrepo_error_naming_the_table(
        tmp_path, monkeypatch, step, batch_repos, said):
    """Two commits (then a merge), or one (then only the checkpoint)."""
    export = DatasetExport(tmp_path / "ds", batch_repos=batch_repos)
    export.plan([])
    export.fetched(snap(A, {f"{POST}/3k001": post("a")}), pds=PDS, handle=None)
    export.fetched(snap(B, {f"{POST}/3k002": post("b")}), pds=PDS, handle=None)

    def refused(*args: object, **kw: object) -> None:
        raise DeltaError("Generic error: No space left on device")

    monkeypatch.setattr(step, "compact" if step is TableOptimizer else "create_checkpoint",
                        refused)
    with pytest.raises(atrepo.AtrepoError, match=said) as caught:
        export.finish()
    assert caught.value.fields["path"] == tmp_path / "ds" / "records"
    monkeypatch.undo()   # the batches were committed, and the lock released
    assert open_dataset(tmp_path / "ds").records.select(pl.len()).collect().item() == 2
    DatasetExport(tmp_path / "ds").finish()
