"""atrepo._bulk: what a bulk call records per repository, in input order, and how it ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import atrepo
from atrepo._bulk import ExportRun, FetchRun, named
from atrepo._config import ClientConfig
from atrepo._pipeline import Pipeline
from atrepo.frames import ERRORS_SCHEMA, RECORDS_SCHEMA
from atrepo.testing import make_repo_car

ALICE, BOB = "did:plc:" + "a" * 24, "did:plc:" + "b" * 24


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    made = Pipeline(ClientConfig(cache_dir=tmp_path / "cache", progress=False))
    yield made
    made.close()


def _snap(did: str, n: int) -> atrepo.RepoSnapshot:
    car, _ = make_repo_car({f"app.x.thing/{i}": {"$type": "app.x.thing", "i": i}
                            for i in range(n)}, did=did)
    return atrepo.read_car(car)


def test_named_takes_a_string_as_one_name_and_a_url_as_a_host():
    assert named("alice.test") == ["alice.test"]
    assert named(["alice.test", BOB]) == ["alice.test", BOB]
    assert named(iter([BOB])) == [BOB]
    assert named("http://127.0.0.1:2583") is None


def test_named_refuses_a_host_without_its_scheme():
    with pytest.raises(atrepo.UsageError, match="host must be a URL") as info:
        named("localhost:45315")
    assert info.value.argument == "dids_or_handles_or_host"
    assert "http://localhost:45315" in str(info.value)


def test_an_export_run_refuses_an_out_dir_that_is_a_file(pipeline, tmp_path):
    (tmp_path / "taken").write_text("not a dataset")
    with pytest.raises(atrepo.UsageError, match="is a file") as info:
        ExportRun(pipeline, [ALICE], tmp_path / "taken", resume=True, collections=None)
    assert info.value.argument == "out_dir"
    assert (tmp_path / "taken").read_text() == "not a dataset"


def test_fetch_run_keeps_input_order_whatever_order_outcomes_come_in(pipeline):
    run = FetchRun(pipeline, [ALICE, "nobody.test", BOB], None)
    run.record(2, _snap(BOB, 2))
    run.record(1, atrepo.ResolutionError("handle does not resolve",
                                         identifier="nobody.test"))
    run.record(0, _snap(ALICE, 3))
    records = run.result()
    assert records.schema == RECORDS_SCHEMA
    assert records["did"].to_list() == [ALICE] * 3 + [BOB] * 2
    errors = run.errors()
    assert errors.schema == ERRORS_SCHEMA
    assert errors.rows() == [("nobody.test", errors["error"][0], None)]
    assert errors["error"][0].startswith("ResolutionError: handle does not resolve")


def test_an_unavailable_repository_records_its_did_and_status(pipeline):
    run = FetchRun(pipeline, ["bob.test"], None)
    run.record(0, atrepo.RepoUnavailable("repository deactivated", did=BOB,
                                         status="deactivated"))
    assert run.errors().select("did", "status").rows() == [(BOB, "deactivated")]
    assert run.result().height == 0 and run.result().schema == RECORDS_SCHEMA


def test_anything_but_an_atrepo_error_is_a_bug_and_propagates(pipeline):
    run = FetchRun(pipeline, [ALICE], None)
    with pytest.raises(KeyError):
        run.record(0, KeyError("a bug"))
    assert run.errors().height == 0


def test_export_run_writes_skips_and_counts(pipeline, tmp_path):
    out = tmp_path / "out"
    run = ExportRun(pipeline, [ALICE, BOB], out, resume=True, collections=None)
    run.record(0, (_snap(ALICE, 3), "http://127.0.0.1:1"))
    run.record(1, atrepo.RepoUnavailable("gone", did=BOB, status="takendown"))
    report = run.result()
    assert (report.written, report.skipped, report.records) == (1, 0, 3)
    assert report.errors.rows() == [(BOB, report.errors["error"][0], "takendown")]
    again = ExportRun(pipeline, [ALICE, BOB], out, resume=True, collections=None)
    with pytest.raises(StopIteration) as stop:        # written: skipped without a request
        next(again.flow(0))
    assert stop.value.value is None
    again.record(0, None)
    assert (again.result().written, again.result().skipped) == (0, 1)


def test_an_export_report_without_failures_has_the_errors_schema(pipeline, tmp_path):
    report = ExportRun(pipeline, [], tmp_path / "out", resume=True, collections=None).result()
    assert report.errors.schema == ERRORS_SCHEMA and report.errors.height == 0
    assert repr(report).endswith("0 failed>")
