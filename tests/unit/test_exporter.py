"""atrepo.export (the Exporter and ExportReport): the dataset writer's invariants, no network.

Named test_exporter so as not to share a module name with tests/client/test_export.py.
"""

from __future__ import annotations

import json

import polars as pl

import atrepo
from atrepo._io.store import dir_name
from atrepo.export import MANIFEST, Exporter, ExportReport
from atrepo.frames import ERRORS_SCHEMA, EXPORT_SCHEMA
from atrepo.testing import make_repo_car

DID = "did:plc:" + "a" * 24


def _snap(records: dict[str, int]) -> atrepo.RepoSnapshot:
    """A repository with ``records[collection]`` records in each collection."""
    car, _ = make_repo_car({f"{c}/{i:04d}": {"$type": c, "i": i}
                            for c, n in records.items() for i in range(n)}, did=DID)
    return atrepo.read_car(car)


def _files(out) -> dict[str, int]:
    return {p.parent.name: pl.read_parquet(p).height for p in out.glob("collection=*/*.parquet")}


def test_a_repository_is_one_file_per_collection_then_a_manifest_line(tmp_path):
    writer = Exporter(tmp_path / "out", resume=True)
    snap = _snap({"app.x.a": 2, "app.x.b": 3})
    assert writer.write(snap, "http://127.0.0.1:1") == 5
    assert _files(tmp_path / "out") == {"collection=app.x.a": 2, "collection=app.x.b": 3}
    (line,) = (tmp_path / "out" / MANIFEST).read_text().splitlines()
    assert json.loads(line) == {"did": DID, "rev": snap.rev, "records": 5}
    assert writer.has(DID) and Exporter(tmp_path / "out", resume=True).has(DID)
    part = pl.read_parquet(next((tmp_path / "out").glob("collection=app.x.a/*.parquet")))
    assert part.schema == pl.Schema({k: v for k, v in EXPORT_SCHEMA.items()
                                     if k != "collection"})
    assert part["pds"].to_list() == ["http://127.0.0.1:1"] * 2
    assert (tmp_path / "out" / "collection=app.x.a" / f"{dir_name(DID)}.parquet").exists()


def test_writing_a_repository_again_leaves_no_stale_collection(tmp_path):
    writer = Exporter(tmp_path / "out", resume=True)
    writer.write(_snap({"app.x.a": 2, "app.x.b": 3}), None)
    writer.write(_snap({"app.x.b": 1}), None)
    assert _files(tmp_path / "out") == {"collection=app.x.b": 1}


def test_a_cut_manifest_line_means_not_written(tmp_path):
    Exporter(tmp_path / "out", resume=True).write(_snap({"app.x.a": 1}), None)
    with (tmp_path / "out" / MANIFEST).open("a") as f:
        f.write('{"did": "did:plc:bbbb')   # a kill in the middle of the next line
    assert Exporter(tmp_path / "out", resume=True).written == {DID}


def test_leftover_temporary_files_are_removed_on_open(tmp_path):
    folder = tmp_path / "out" / "collection=app.x.a"
    folder.mkdir(parents=True)
    (folder / f".{dir_name(DID)}.parquet.tmp").write_bytes(b"half a file")
    Exporter(tmp_path / "out", resume=True)
    assert list(folder.iterdir()) == []


def test_resume_false_starts_afresh(tmp_path):
    Exporter(tmp_path / "out", resume=True).write(_snap({"app.x.a": 1}), None)
    fresh = Exporter(tmp_path / "out", resume=False)
    assert fresh.written == set() and _files(tmp_path / "out") == {}
    assert not (tmp_path / "out" / MANIFEST).exists()


def test_the_report_says_what_was_written(tmp_path):
    report = ExportReport(tmp_path, written=2, skipped=1, records=1234)
    assert report.errors.schema == ERRORS_SCHEMA
    assert repr(report) == (f"<ExportReport {tmp_path}: 2 repos written, 1 skipped, "
                            "1,234 records, 0 failed>")
    assert "repos skipped (resume)" in report._repr_html_()
