"""export() killed (SIGKILL) at random moments, then re-run: the dataset of a clean run.

The export runs in a child process (``_killed_export.py``, forked by a server that imported
atrepo once) that reports *events* — each repository handed to the dataset, and before and
after each Delta table commit — and waits after each one for the parent's go. The parent
picks an event with a seeded RNG and either kills the child there (paused, so the state at
the kill is exact) or says go and kills at once (the kill then lands somewhere in the work
that follows, also inside a Parquet write). A re-run with the same arguments must end with
the dataset an uninterrupted run gives, row for row, and every version in between must read
as a consistent table. Moments are events, never sleeps.

A version is read once per dataset: Delta tables only grow, so a version checked before
reads the same as long as the files it was read from are unchanged and every commit added
since belongs to a newer version (see :func:`_read_alike`); otherwise every version is read
again.

Two processes exporting into one dataset: the second one fails with a clear AtrepoError
while the first holds it, and the first one's dataset is whole.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import re
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from _killed_export import run
from _loopback import client

import atrepo
from atrepo.dataset._layout import commit_meta

TRIALS = 20
BATCH = 4   # repositories per commit: a host of ~23 listed repositories is ~6 versions

# the children: forked by a server that imported _killed_export (and atrepo) once
FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(["_killed_export"])

COMMIT_FILE = re.compile(r"\d{20}\.json")   # a Delta commit's log file
CHECKPOINT_FILE = re.compile(r"(\d{20})\.checkpoint(\.\d+\.\d+)?\.parquet")   # the state there


class Child:
    """The export in a child process, stepped event by event (see the module docstring)."""

    def __init__(self, sandbox: Any, cache: Path, out: Path, *, exclude: list[str],
                 batch: int = BATCH) -> None:
        cfg = {"plc": sandbox.plc_url, "pds": sandbox.pds_url, "cache": str(cache),
               "out": str(out), "source": sandbox.pds_url, "exclude": exclude,
               "batch": batch}
        self.conn, theirs = FORKS.Pipe()
        self.proc = FORKS.Process(target=run, args=(theirs, cfg))
        self.proc.start()
        theirs.close()   # the child's end is the child's alone: its death is our EOF
        self.events = 0

    def next(self) -> str:
        """The child's next message (an event, or how it ended; "" when it is gone)."""
        try:
            message: str = self.conn.recv()
        except EOFError:
            return ""
        return message

    def go(self) -> None:
        self.conn.send("go")

    def run_to(self, event: int | None, *, race: bool = False) -> str:
        """Step through events; at number ``event`` kill (after a go when ``race``).

        Returns the last message read: the event killed at, or the child's ending.
        """
        while True:
            line = self.next()
            if not line or line.startswith(("finished", "refused")):
                self.proc.join()
                return line
            if self.events == event:
                if race:
                    self.go()
                self.kill()
                return line
            self.events += 1
            self.go()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        assert self.proc.exitcode == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


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


@dataclass(frozen=True)
class Checked:
    """The versions of a dataset found consistent, and the table files they were read from."""

    versions: frozenset[int]
    files: dict[str, bytes]   # every file of the tables, by path under the dataset: sha-256


def _table_files(out: Path) -> dict[str, bytes]:
    """The sha-256 of every file of the dataset's tables, by path under ``out``.

    But a log's ``_last_checkpoint``: it names the newest checkpoint, and a version is read
    from the newest one at or below it (see :func:`_read_alike` for those added later).
    """
    return {path.relative_to(out).as_posix(): hashlib.sha256(path.read_bytes()).digest()
            for top in ("records", "repos", "tables") if (out / top).is_dir()
            for path in sorted((out / top).rglob("*"))
            if path.is_file() and path.name != "_last_checkpoint"}


def _commit_version(log_file: Path) -> int | None:
    """The dataset version of one commit's log file (None: atrepo did not make it)."""
    for line in log_file.read_text().splitlines():
        info = json.loads(line).get("commitInfo")
        if isinstance(info, dict):
            meta = commit_meta(info)
            return None if meta is None else int(meta["version"])
    return None


def _read_alike(checked: Checked, out: Path, files: dict[str, bytes]) -> bool:
    """Whether the versions of ``checked`` still read from what they were checked on.

    So they do when every file they were read from is unchanged and every file added to a
    Delta log since is a commit of a newer dataset version (or one atrepo did not make, a
    compaction, after such a commit in its table), or a checkpoint of such a commit: a
    dataset version reads each table at its newest commit of that version or older, so
    those commits, and the log and data files they name, are the ones read before. A table
    added since reads as absent at the older versions, its frame built from their
    (checked) records.
    """
    if any(files.get(name) != digest for name, digest in checked.files.items()):
        return False
    newest = max(checked.versions, default=-1)
    added: dict[str, list[str]] = {}   # table: its new log files
    for name in sorted(files.keys() - checked.files.keys()):
        table, log, file = name.partition("/_delta_log/")
        if log:
            added.setdefault(table, []).append(file)
    for table, log_files in added.items():
        commits = [file for file in log_files if COMMIT_FILE.fullmatch(file)]
        for file in set(log_files) - set(commits):
            checkpoint = CHECKPOINT_FILE.fullmatch(file)
            if checkpoint is None or f"{checkpoint[1]}.json" not in commits:
                return False   # something else: read every version again
        newer = False   # a commit of a newer version came first in this table
        for file in commits:
            version = _commit_version(out / table / "_delta_log" / file)
            if version is None:
                if not newer:
                    return False
            elif version <= newest:
                return False
            newer = True
    return True


def assert_versions_consistent(out: Path, checked: Checked | None = None) -> Checked:
    """Every version: each active repository's rows are all there, at its rev, once.

    The versions of ``checked`` (from this dataset, or from the one it was copied from)
    are not read again while :func:`_read_alike` says they read as they did; they must
    still be there. Returns what this call found consistent.
    """
    files = _table_files(out)
    latest = atrepo.open_dataset(out)
    versions = frozenset(latest.versions["version"].to_list())
    done: frozenset[int] = frozenset()
    if checked is not None and _read_alike(checked, out, files):
        assert checked.versions <= versions, "versions checked before are gone"
        done = checked.versions
    for version in sorted(versions - done):
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
    return Checked(versions, files)


def _trials(sandbox: Any, tmp_path: Path, base: Path | None, base_cache: Path | None,
            expected: dict[str, pl.DataFrame], *, exclude: list[str], seed: int,
            batch: int = BATCH) -> int:
    """Kill a run at TRIALS random events, re-run each; return how many events a run has.

    Each run starts from ``base`` (a dataset and the cache it was exported with) or, when
    None, from nothing; ``batch`` repositories per commit. The killed runs, and the checks
    of what each left, go one after another in a thread of their own, ahead of the re-runs
    and their checks here: the two use both cores.
    """
    def killed(name: str, at: int | None, race: bool) -> tuple[Path, Path, str, int,
                                                                Checked | None]:
        """A run in a fresh copy killed at event ``at`` (None: run to its end): its dataset,
        its cache, its last message, the events it went past and the versions it left,
        checked (None when it left none)."""
        out, cache = tmp_path / name, tmp_path / f"{name}-cache"
        if base is not None and base_cache is not None:
            shutil.copytree(base, out)
            shutil.copytree(base_cache, cache)
        child = Child(sandbox, cache, out, exclude=exclude, batch=batch)
        try:
            line = child.run_to(at, race=race)
        finally:
            child.close()
        checked = base_checked
        if at is not None and (out / "repos" / "_delta_log").is_dir():
            # what the kill left reads as whole versions
            checked = assert_versions_consistent(out, checked)
        return out, cache, line, child.events, checked

    base_checked = None if base is None else assert_versions_consistent(base)
    ahead = ThreadPoolExecutor(1)
    try:
        counting = ahead.submit(killed, "count", None, False)
        *_, ending, events, _ = counting.result()
        assert ending.startswith("finished")
        assert events >= TRIALS   # room for as many different moments as trials
        rng = random.Random(seed)
        moments = [(rng.randrange(events), rng.random() < 0.5) for _ in range(TRIALS)]
        runs = [ahead.submit(killed, f"t{trial}", at, race)
                for trial, (at, race) in enumerate(moments)]
        for trial, ((at, _), run) in enumerate(zip(moments, runs)):
            out, cache, line, _, checked = run.result()
            assert line and not line.startswith("finished"), f"trial {trial}: no kill at {at}"
            _export(sandbox, cache, out, exclude=exclude, batch=batch)
            assert_same(out, expected)
            assert_versions_consistent(out, checked)
            assert not (out / "_atrepo" / "pending").exists()
    finally:
        ahead.shutdown(cancel_futures=True)
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
        assert second.proc.exitcode == 4
        first.go()
        assert first.run_to(None).startswith("finished")
    finally:
        first.close()
    _export(sb, tmp_path / "clean-cache", tmp_path / "clean")
    assert_same(out, _tables(tmp_path / "clean"))
    assert_versions_consistent(out)
    again = _export(sb, tmp_path / "cache2", out)   # once the first is done, it may run
    assert again.written == 0 and again.skipped > 20

