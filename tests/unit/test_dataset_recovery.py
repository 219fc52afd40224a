"""atrepo.dataset: a writer killed before or after any one table commit recovers exactly.

The kill is simulated in-process at each Delta commit the writer makes (the lock is then
released, as the kernel does for a dead process); a real SIGKILL of an export is in
tests/client/test_export_crash.py. After each kill, a new writer recovers and the batch
is committed again where it did not land, as an export's next run would; the dataset must
then equal an uninterrupted run's, and every version in between must be consistent.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest

from atrepo.dataset import Batch, DatasetWriter, open_dataset
from atrepo.errors import AtrepoError
from atrepo.dataset import _writer
from test_dataset import LIKE, POST, A, B, C, batch, like, post, snap


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


def _batches() -> list[Batch]:
    one = batch(snap(A, {f"{POST}/3k001": post("a1"), f"{LIKE}/3k002": like(1)}),
                snap(B, {f"{POST}/3k003": post("b1")}))
    two = batch(snap(A, {f"{POST}/3k001": post("a1 edited")}, rev="3kaaaaaaaaa33"),
                snap(C, {f"{LIKE}/3k004": like(2), f"{POST}/3k005": post("c1")}))
    two.add_removed(B, "deactivated")
    return [one, two]


def _landed(writer: DatasetWriter, one: Batch) -> bool:
    """Whether the dataset already reflects ``one`` (what an export's next run checks)."""
    expected = one.repos_frame().select("did", "rev", "status").sort("did")
    held = writer.known(sorted(one.dids)).select("did", "rev", "status").sort("did")
    return held.equals(expected)


def _state(root) -> dict[str, list[tuple[object, ...]]]:
    ds = open_dataset(root)
    return {"records": sorted(ds.records.drop("fetched_at").collect().rows()),
            "repos": sorted(ds.repos.drop("fetched_at").collect().rows()),
            **{c: sorted(ds.table(c).collect().rows()) for c in (POST, LIKE)}}


def check_consistent(root) -> None:
    """Every version: records agree with its repos rows, and typed tables with records."""
    latest = open_dataset(root)
    for version in latest.versions["version"]:
        ds = latest.as_of(version)
        records = ds.records.collect()
        active = ds.repos.filter(pl.col("status") == "active").collect()
        held = records.group_by("did", "rev").len().sort("did")
        assert held.rows() == sorted(
            (did, rev, n) for did, rev, n in active.select("did", "rev", "records").rows()
            if n), f"version {version}: records disagree with repos"
        for collection in (POST, LIKE):
            typed = ds.table(collection).select("uri").collect()["uri"].sort()
            assert typed.to_list() == records.filter(pl.col("collection") == collection)[
                "uri"].sort().to_list(), f"version {version}: {collection} disagrees"


def test_uninterrupted_run(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        for one in _batches():
            writer.commit(one)
    check_consistent(tmp_path / "ds")
    assert open_dataset(tmp_path / "ds").versions["version"].to_list() == [0, 1]


COMMITS = 2 * (1 + 2 + 1)   # per batch: records, the post and like tables, repos


def _uninterrupted(root, batches: list[Batch]) -> dict[str, list[tuple[object, ...]]]:
    """The state of a dataset the batches were committed to without interruption."""
    with DatasetWriter(root) as writer:
        for one in batches:
            writer.commit(one)
    return _state(root)


def _raising_at(commit: Callable[..., None], at: int, after: bool,
                error: BaseException | type[BaseException]) -> Callable[..., None]:
    """``commit`` (a table commit), raising ``error`` at its ``at``-th call: before that
    commit, or once it is done (``after``)."""
    calls = []

    def raising(*args: object, **kw: object) -> None:
        calls.append(args[0])
        if len(calls) - 1 == at and not after:
            raise error
        commit(*args, **kw)
        if len(calls) - 1 == at:
            raise error
    return raising


@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.parametrize("kill_at", range(COMMITS))
def test_a_kill_at_any_table_commit_recovers_to_the_same_dataset(tmp_path, monkeypatch,
                                                                 kill_at, after):
    batches = _batches()
    expected = _uninterrupted(tmp_path / "clean", batches)
    real = _writer._delta.commit
    monkeypatch.setattr(_writer._delta, "commit", _raising_at(real, kill_at, after, Killed))
    writer = DatasetWriter(tmp_path / "ds")
    with pytest.raises(Killed):
        for one in batches:
            writer.commit(one)
    writer._lock.release()   # the process died: the kernel drops its flock
    monkeypatch.setattr(_writer._delta, "commit", real)
    if (tmp_path / "ds" / "repos").exists():   # a reader meanwhile sees whole batches only
        check_consistent(tmp_path / "ds")

    with DatasetWriter(tmp_path / "ds") as again:   # recovers, then the export's re-run
        assert not (tmp_path / "ds" / "_atrepo" / "pending").exists()
        for one in batches:
            if not _landed(again, one):
                again.commit(one)
    assert _state(tmp_path / "ds") == expected
    check_consistent(tmp_path / "ds")


@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.parametrize("fail_at", range(COMMITS))
def test_a_writer_whose_commit_failed_settles_it_before_it_is_used_again(tmp_path, monkeypatch,
                                                                         fail_at, after):
    """A commit that raises (a full disk) instead of dying: the same writer, used again as a
    caller who retries would, ends with the uninterrupted run's dataset."""
    batches = _batches()
    expected = _uninterrupted(tmp_path / "clean", batches)
    full_disk = AtrepoError("no space left on the device")
    monkeypatch.setattr(_writer._delta, "commit",
                        _raising_at(_writer._delta.commit, fail_at, after, full_disk))
    with DatasetWriter(tmp_path / "ds") as writer:
        for one in batches:
            try:
                writer.commit(one)
            except AtrepoError:
                if not _landed(writer, one):   # settles first: the batch may be complete
                    writer.commit(one)
        assert not (tmp_path / "ds" / "_atrepo" / "pending").exists()
        assert writer.version == 1
    assert _state(tmp_path / "ds") == expected
    check_consistent(tmp_path / "ds")
    assert open_dataset(tmp_path / "ds").versions["version"].to_list() == [0, 1]
