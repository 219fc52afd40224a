"""export() killed (SIGKILL) at random moments, then re-run: the dataset of a clean run.

The export runs in a child process (``_killed_export.py``) that reports *events* — each
repository handed to the dataset, and before and after each Delta table commit — and waits
after each one for the parent's go. The parent picks an event with a seeded RNG and either
kills the child there (paused, so the state at the kill is exact) or says go and kills at
once (the kill then lands somewhere in the work that follows, also inside a Parquet write).
A re-run with the same arguments must end with the dataset an uninterrupted run gives, row
for row, and every version in between must read as a consistent table. Moments are events,
never sleeps.

Two processes exporting into one dataset: the second one fails with a clear AtrepoError
while the first holds it, and the first one's dataset is whole.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
from _loopback import client

import atrepo

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 20
BATCH = 4   # repositories per commit: a host of ~23 listed repositories is ~6 versions

CHILD = Path(__file__).with_name("_killed_export.py")  # the export, stepped by events


class Child:
    """The export in a child process, stepped event by event (see the module docstring)."""

    def __init__(self, sandbox: Any, cache: Path, out: Path, *, exclude: list[str],
                 batch: int = BATCH) -> None:
        cfg = {"plc": sandbox.plc_url, "pds": sandbox.pds_url, "cache": str(cache),
               "out": str(out), "source": sandbox.pds_url, "exclude": exclude,
               "batch": batch}
        self.proc = subprocess.Popen([sys.executable, str(CHILD), json.dumps(cfg)],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.events = 0

    def next(self) -> str:
        """The child's next line (an event, or how it ended)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def run_to(self, event: int | None, *, race: bool = False) -> str:
        """Step through events; at number ``event`` kill (after a go when ``race``).

        Returns the last line read: the event killed at, or the child's ending.
        """
        while True:
            line = self.next()
            if not line or line.startswith(("finished", "refused")):
                self.proc.wait()
                return line
            if self.events == event:
                if race:
                    self.go()
                self.kill()
                return line
            self.events += 1
            self.go()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _export(sandbox: Any, cache: Path, out: Path, *, batch: int = BATCH, **kw: Any) -> Any:
    with client("sync", sandbox, cache, max_concurrency=2) as made:
        return made.export(sandbox.pds_url, out, batch_repos=batch, **kw)


def _tables(out: Path) -> dict[str, pl.DataFrame]:
    """Every table of the newest version, sorted, without the fetch times."""
    ds = atrepo.open_dataset(out)
    tables = {"records": ds.records.drop("fetched_at").sort("uri").collect(),
              "repos": ds.repos.drop("fetched_at").sort("did").collect()}
    for path in sorted((out / "tables").iterdir()):
        tables[path.name] = ds.table(path.name).sort("uri").collect()
    return tables


def assert_same(out: Path, expected: dict[str, pl.DataFrame]) -> None:
    got = _tables(out)
    assert sorted(got) == sorted(expected)
    for name, frame in expected.items():
        assert got[name].equals(frame), f"{name} differs from the uninterrupted run"


def assert_versions_consistent(out: Path) -> None:
    """Every version: each active repository's rows are all there, at its rev, once."""
    latest = atrepo.open_dataset(out)
    for version in latest.versions["version"]:
        ds = latest.as_of(version)
        records = ds.records.collect()
        assert records.select("uri").is_unique().all(), f"version {version}: duplicates"
        held = sorted(records.group_by("did", "rev").len().rows())
        active = ds.repos.filter(pl.col("status") == "active", pl.col("records") > 0)
        assert held == sorted(active.select("did", "rev", "records").collect().rows()), \
            f"version {version}: records disagree with repos"
        for path in (out / "tables").iterdir():
            typed = ds.table(path.name).select("uri").collect().get_column("uri")
            assert typed.sort().equals(records.filter(pl.col("collection") == path.name)
                                       .get_column("uri").sort()), \
                f"version {version}: {path.name} disagrees with records"


def _trials(sandbox: Any, tmp_path: Path, base: Path | None, base_cache: Path | None,
            expected: dict[str, pl.DataFrame], *, exclude: list[str], seed: int,
            batch: int = BATCH) -> int:
    """Kill a run at TRIALS random events, re-run each; return how many events a run has.

    Each run starts from ``base`` (a dataset and the cache it was exported with) or, when
    None, from nothing; ``batch`` repositories per commit.
    """
    def fresh(name: str) -> tuple[Path, Path]:
        out, cache = tmp_path / name, tmp_path / f"{name}-cache"
        if base is not None and base_cache is not None:
            shutil.copytree(base, out)
            shutil.copytree(base_cache, cache)
        return out, cache

    counting = Child(sandbox, *reversed(fresh("count")), exclude=exclude, batch=batch)
    try:
        assert counting.run_to(None).startswith("finished")
    finally:
        counting.close()
    events = counting.events
    assert events >= TRIALS   # room for as many different moments as trials
    rng = random.Random(seed)
    for trial in range(TRIALS):
        out, cache = fresh(f"t{trial}")
        at, race = rng.randrange(events), rng.random() < 0.5
        child = Child(sandbox, cache, out, exclude=exclude, batch=batch)
        try:
            line = child.run_to(at, race=race)
        finally:
            child.close()
        assert line and not line.startswith("finished"), f"trial {trial}: no kill at {at}"
        if (out / "repos" / "_delta_log").is_dir():
            assert_versions_consistent(out)   # what the kill left reads as whole versions
        _export(sandbox, cache, out, exclude=exclude, batch=batch)
        assert_same(out, expected)
        assert_versions_consistent(out)
        assert not (out / "_atrepo" / "pending").exists()
    return events


def _seed_changes(sb: Any) -> dict[str, tuple[str, str]]:
    """Records of three bulk accounts, made for the refresh to find changed."""
    made = {}
    for handle in ("bulk001.test", "bulk002.test"):
        uri = sb.post(handle, f"crash test post of {handle}")
        made[handle] = ("app.bsky.feed.post", uri.rsplit("/", 1)[1])
    return made


def test_export_and_refresh_killed_at_random_moments_end_as_uninterrupted(bulk_sandbox,
                                                                          tmp_path):
    sb = bulk_sandbox
    made = _seed_changes(sb)
    try:
        # the export of a whole host, from nothing
        _export(sb, tmp_path / "clean-cache", tmp_path / "clean")
        expected = _tables(tmp_path / "clean")
        assert expected["repos"].filter(pl.col("status") == "active").height > 20
        _trials(sb, tmp_path / "export", None, None, expected, exclude=[], seed=10)

        # a refresh: records updated, deleted and created, one repository excluded
        base, base_cache = tmp_path / "clean", tmp_path / "clean-cache"
        post, rkey = made["bulk001.test"]
        sb.put_record("bulk001.test", post, rkey, {"$type": post, "text": "edited",
                                                   "createdAt": "2025-01-01T00:00:00.000Z"})
        sb.delete_record("bulk002.test", *made.pop("bulk002.test"))
        made["bulk003.test"] = ("app.bsky.feed.post",
                                sb.post("bulk003.test", "new").rsplit("/", 1)[1])
        excluded = [sb.account("bulk004.test")["did"]]
        shutil.copytree(base, tmp_path / "refreshed")
        shutil.copytree(base_cache, tmp_path / "refreshed-cache")
        report = _export(sb, tmp_path / "refreshed-cache", tmp_path / "refreshed",
                         exclude=excluded)
        assert (report.written, report.removed) == (3, 1)
        refreshed = _tables(tmp_path / "refreshed")
        assert excluded[0] not in set(refreshed["repos"]["did"])
        # one repository per commit, so that a small refresh has many moments to die at
        _trials(sb, tmp_path / "refresh", base, base_cache, refreshed, exclude=excluded,
                seed=11, batch=1)
    finally:
        for handle, (collection, rkey) in made.items():
            sb.delete_record(handle, collection, rkey)


def test_a_second_export_into_the_same_dataset_is_refused_while_the_first_runs(
        bulk_sandbox, tmp_path):
    sb = bulk_sandbox
    out = tmp_path / "ds"
    first = Child(sb, tmp_path / "cache1", out, exclude=[])
    try:
        for _ in range(3):   # the first one is exporting (and holds the dataset)
            line = first.next()
            assert line.startswith(("fetched", "before ", "after ")), line
            first.go()
        assert first.next()   # paused at its fourth event
        second = Child(sb, tmp_path / "cache2", out, exclude=[])
        try:
            ending = second.run_to(None)
        finally:
            second.close()
        assert ending.startswith("refused") and "another export is writing" in ending
        assert second.proc.returncode == 4
        first.go()
        assert first.run_to(None).startswith("finished")
    finally:
        first.close()
    _export(sb, tmp_path / "clean-cache", tmp_path / "clean")
    assert_same(out, _tables(tmp_path / "clean"))
    assert_versions_consistent(out)
    again = _export(sb, tmp_path / "cache2", out)   # once the first is done, it may run
    assert again.written == 0 and again.skipped > 20

