"""atrepo._bulk: what a bulk call records per repository, in input order, and how it ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import atrepo
from atrepo._bulk import Excluded, ExportRun, FetchRun, Fetched, Unchanged
from atrepo._config import ClientConfig
from atrepo._pipeline import Pipeline
from atrepo.dataset import DatasetExport, Target, open_dataset
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


def test_export_run_hands_each_outcome_to_the_dataset(pipeline, tmp_path):
    out = tmp_path / "out"
    carol = "did:plc:" + "c" * 24
    run = ExportRun(pipeline, DatasetExport(out), [Target(ALICE), Target(BOB), Target(carol)],
                    None)
    run.record(2, Excluded(carol))
    run.record(0, Fetched(_snap(ALICE, 3), "http://127.0.0.1:1", "alice.test"))
    run.record(1, atrepo.RepoUnavailable("gone", did=BOB, status="takendown"))
    report = run.result()
    assert (report.written, report.skipped, report.removed, report.records) == (1, 0, 0, 3)
    assert report.errors.rows() == [(BOB, report.errors["error"][0], "takendown")]
    assert dict(open_dataset(out).repos.select("did", "status").collect().rows()) == {
        ALICE: "active", BOB: "takendown"}
    again = ExportRun(pipeline, DatasetExport(out), [Target(ALICE)], None)
    again.record(0, Unchanged(ALICE))
    assert (again.result().written, again.result().skipped) == (0, 1)
    with pytest.raises(KeyError):   # anything but an AtrepoError is a bug
        ExportRun(pipeline, DatasetExport(out), [Target(ALICE)], None).record(0, KeyError())


def test_an_export_report_without_failures_has_the_errors_schema(pipeline, tmp_path):
    report = ExportRun(pipeline, DatasetExport(tmp_path / "out"), [], None).result()
    assert report.errors.schema == ERRORS_SCHEMA and report.errors.height == 0
    assert repr(report).endswith("0 failed>")
