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


def test_inspect_json_and_parquet_together(tmp_path):
    out = tmp_path / "all.parquet"
    done = run("inspect", str(SAMPLE), "--json", "--parquet", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"] == TRUTH["record_count"]
    assert pl.read_parquet(out).height == TRUTH["record_count"]
    assert f"rows to {out}" in done.stderr


def test_usage_errors_exit_2():
    assert run("repo").returncode == 2
    assert run("ls", "https://pds.example", "--limit", "many").returncode == 2


class _StoppedSandbox:
    """What sandbox.start returns when node dies right after printing its line."""

    plc_url, pds_url, admin_password = "http://localhost:1", "http://localhost:2", "admin-pass"
    accounts = [{"handle": "alice.test", "did": "did:plc:x", "password": "alice-pass",
                 "status": "active", "records": 1}]
    stderr_tail = "node: out of memory\n"

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
        self.proc.wait()
        self.stopped = False

    def stop(self):
        self.stopped = True
        return self.proc.returncode


def test_sandbox_that_dies_is_an_error(monkeypatch, capsys):
    from atrepo import cli, sandbox

    fake = _StoppedSandbox()
    monkeypatch.setattr(sandbox, "start", lambda **options: fake)
    assert cli.main(["sandbox", "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["plc_url"] == "http://localhost:1"
    assert "the sandbox stopped by itself" in err and "out of memory" in err
    assert fake.stopped


def test_signals_set_an_event_and_are_restored():
    import os
    import signal
    import threading

    from atrepo.cli import _signals_set

    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with _signals_set(stop, signal.SIGINT, signal.SIGTERM):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGTERM) is before
