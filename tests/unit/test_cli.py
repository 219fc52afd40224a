"""The command line, run as a user would: a subprocess, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "sample.car"
TRUTH = json.loads((ROOT / "examples" / "data" / "sample.json").read_text())


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atrepo", *args], capture_output=True,
                          text=True, timeout=120)


def test_inspect_json_summary():
    done = run("inspect", str(SAMPLE), "--json", "--signing-key", TRUTH["signing_key"])
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["did"] == TRUTH["did"] and summary["verified"] is True
    assert summary["records"] == TRUTH["record_count"]
    assert summary["collections"] == TRUTH["collections"]


def test_inspect_table_and_parquet(tmp_path):
    out = tmp_path / "sample.parquet"
    done = run("inspect", str(SAMPLE), "--collection", "app.bsky.feed.post", "--parquet",
               str(out))
    assert done.returncode == 0, done.stderr
    assert "app.bsky.feed.post" in done.stdout and "verified=False" in done.stdout
    frame = pl.read_parquet(out)
    assert frame.height == TRUTH["collections"]["app.bsky.feed.post"]


def test_exit_codes_tell_failures_apart(tmp_path):
    broken = tmp_path / "broken.car"
    broken.write_bytes(SAMPLE.read_bytes()[:5000])
    done = run("inspect", str(broken))
    assert done.returncode == 3 and "CarError" not in done.stdout
    assert done.stderr.startswith("atrepo: ") and "offset=" in done.stderr
    wrong_key = "did:key:zQ3shS8f98sUAMBwwgnXoWG1iDnzpy96DvrneLnRbAAayW4Pf"
    assert run("inspect", str(SAMPLE), "--signing-key", wrong_key).returncode == 4
    assert run("inspect").returncode == 2
    assert run("--help").returncode == 0
