"""The scripts in examples/ run as documented, against a sandbox (and demo.py on its own).

Each runs as a subprocess of this interpreter with a temporary cache, pointed at the
session's sandbox with --plc-url/--handle-resolver; the tests check what they print and
write. Writes go to bulk accounts only, so alice's repository stays as seeded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import atrepo
from atrepo.sandbox import Sandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = ["resolve.py", "snapshot_to_parquet.py", "watch_diff.py", "export_host.py"]


def run(script: str, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ATREPO_PROGRESS": "0"}
    return subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def sandbox_args(sb: Sandbox, cache: Path) -> list[str | Path]:
    return ["--plc-url", sb.plc_url, "--handle-resolver", sb.pds_url, "--cache-dir", cache]


@pytest.mark.parametrize("script", SCRIPTS)
def test_short_and_documented(script: str) -> None:
    assert len((EXAMPLES / script).read_text().splitlines()) < 60
    assert "usage:" in ok(run(script, "--help"))


def test_resolve(bulk_sandbox: Sandbox, tmp_path: Path) -> None:
    alice = bulk_sandbox.account("alice.test")
    out = ok(run("resolve.py", "alice.test", alice["did"],
                 *sandbox_args(bulk_sandbox, tmp_path)))
    assert out.count(f"did          {alice['did']}") == 2
    assert out.count("alice.test (verified)") == 2
    assert bulk_sandbox.pds_url in out and "did:key:z" in out

    missing = run("resolve.py", "nobody.test", *sandbox_args(bulk_sandbox, tmp_path))
    assert missing.returncode == 1 and "nobody.test: does not resolve" in missing.stdout


def test_snapshot_to_parquet(bulk_sandbox: Sandbox, tmp_path: Path) -> None:
    alice = bulk_sandbox.account("alice.test")
    out_file = tmp_path / "alice.parquet"
    out = ok(run("snapshot_to_parquet.py", "alice.test", out_file,
                 *sandbox_args(bulk_sandbox, tmp_path / "cache")))
    assert f"wrote {alice['records']:,} records of {alice['did']}" in out
    assert "signature verified: True" in out
    frame = pl.read_parquet(out_file)
    assert frame.height == alice["records"] and set(frame["did"]) == {alice["did"]}

    posts_file = tmp_path / "posts.parquet"
    ok(run("snapshot_to_parquet.py", "alice.test", posts_file, "--collection",
           "app.bsky.feed.post", *sandbox_args(bulk_sandbox, tmp_path / "cache")))
    assert set(pl.read_parquet(posts_file)["collection"]) == {"app.bsky.feed.post"}


def test_watch_diff(bulk_sandbox: Sandbox, tmp_path: Path) -> None:
    sb, handle = bulk_sandbox, "bulk000.test"
    args = [handle, *sandbox_args(sb, tmp_path)]
    assert f"first snapshot of {handle}" in ok(run("watch_diff.py", "--times", "0", *args))

    created = [sb.post(handle, "watched post one"), sb.post(handle, "watched post two")]
    sb.delete_record(handle, "app.bsky.feed.post", created[0].rsplit("/", 1)[1])
    sb.post(handle, "watched post three")
    out = ok(run("watch_diff.py", "--times", "1", "--every", "0", *args))
    assert "snapshots in the cache: 1" in out
    assert "2 create" in out, out  # post one was created and deleted in between: not a change
    assert f"create  app.bsky.feed.post  {created[1].rsplit('/', 1)[1]}" in out

    assert "no changes" in ok(run("watch_diff.py", "--times", "1", "--every", "0", *args))


def test_export_host(bulk_sandbox: Sandbox, tmp_path: Path) -> None:
    sb, out_dir = bulk_sandbox, tmp_path / "dataset"
    active = {acc["did"] for acc in sb.accounts if acc["status"] == "active"}
    args = [sb.pds_url, out_dir, "--plc-url", sb.plc_url, "--cache-dir", tmp_path / "cache"]
    out = ok(run("export_host.py", *args))
    assert f"{len(active)} active" in out and f"{len(active)} repos written" in out
    records = atrepo.open_dataset(out_dir).records.collect()
    assert set(records["did"]) == active and records["verified"].all()
    assert f"{records.height:,} records in {out_dir}" in out

    again = ok(run("export_host.py", *args))  # nothing changed: nothing fetched
    assert "0 repos written" in again and "0 removed" in again


def test_demo() -> None:
    """`make demo`'s script: its own sandbox, every step, stopped at the end."""
    out = ok(run("demo.py", timeout=600))
    for step in range(1, 9):
        assert f"=== {step}. " in out
    assert "verified=True" in out and "create" in out and "delete" in out
    assert out.rstrip().splitlines()[-1].startswith("sandbox stopped")
