"""The command line, run as a user would: a subprocess, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from atrepo.sandbox import MAX_BULK_ACCOUNTS

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


@pytest.mark.parametrize("args", [
    ["repo"],
    ["--no-such-option"],
    ["ls", "https://pds.example", "--limit", "many"],
    ["ls", "https://pds.example", "--limit", "0"],
    ["ls", "https://pds.example", "--limit", "-5"],
    ["ls", "localhost:2583"],
    ["repo", "alice.test", "--plc-url", "plc.directory"],
    ["repo", "alice.test", "--handle-resolver", "ftp://pds.example"],
    ["repo", "alice.test", "--collection", "not an nsid"],
    ["export", "alice.test", "out", "--collection", "app.bsky."],
    ["inspect", str(SAMPLE), "--collection", "app.bsky.*.post"],
    ["inspect", str(SAMPLE), "--signing-key", "did:key:nope"],
    ["inspect", str(SAMPLE), "--did", "alice.test"],
    ["sandbox", "--pds-count", "0"],
    ["sandbox", "--pds-count", "17"],
    ["sandbox", "--plc-port", "65536"],
    ["sandbox", "--pds-port", "-1"],
    ["sandbox", "--relay-port", "x"],
    ["sandbox", "--bulk-accounts", str(MAX_BULK_ACCOUNTS + 1)],
    ["sandbox", "--bulk-records", "1"],
    ["sandbox", "--timeout", "0"],
    ["sandbox", "--timeout", "inf"],
])
def test_usage_errors_exit_2(args, tmp_path):
    # checked before any work: no network, no node, nothing written
    done = subprocess.run([sys.executable, "-m", "atrepo", *args], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "error: " in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_version():
    import atrepo

    done = run("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"atrepo {atrepo.__version__}\n",
                                                           "")


@pytest.mark.parametrize("args", [["--json"], []])
def test_closed_stdout_is_not_an_error(args):
    # The reader is gone before atrepo writes a byte, so the write must fail with EPIPE: what
    # `| head` does to a longer output. Quietly 0, as for a reader that got what it wanted.
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "atrepo", "inspect", str(SAMPLE), *args],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")


def test_tables_have_no_shape_line():
    done = run("inspect", str(SAMPLE))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert not any("shape:" in line for line in lines)
    # the summary line, then the Markdown table: header, rule, one row per collection
    assert lines[1].startswith("| collection") and lines[2].startswith("|---")
    assert len(lines) == 3 + len(TRUTH["collections"])


def test_failure_summary_says_which_a_second_run_retries():
    from atrepo.cli import _failure_summary, _with_retry

    errors = pl.DataFrame(
        [("did:plc:a", "RepoUnavailable: repository taken down", "takendown"),
         ("did:plc:b", "TransportError: connection refused", None),
         ("did:plc:c", "RepoUnavailable: repository not found", "not_found"),
         ("did:plc:d", "RepoUnavailable: repository taken down", "takendown"),
         ("did:plc:e", "RepoUnavailable: host is throttled", "throttled")],
        schema={"did": pl.String, "error": pl.String, "status": pl.String}, orient="row")
    marked = _with_retry(errors)
    assert marked["retry"].to_list() == [False, True, False, False, True]
    assert _failure_summary(marked) == (
        "5 repositories failed: 3 unavailable (1 not_found, 2 takendown), which running again "
        "will not change; 2 other (retry=true), which running the same command again retries")
    assert _failure_summary(marked.head(1)) == (
        "1 repository failed: 1 unavailable (1 takendown), which running again will not change")
    assert _failure_summary(marked.slice(1, 1)) == (
        "1 repository failed: 1 other (retry=true), which running the same command again "
        "retries")


class _StoppedSandbox:
    """What sandbox.start returns when node dies right after printing its line."""

    plc_url, pds_url, admin_password = "http://localhost:1", "http://localhost:2", "admin-pass"
    pds_urls, relay_url, handle_resolver = [pds_url], "http://127.0.0.1:3", pds_url
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


class _MultiHostSandbox:
    """What the announcement reads of a two-PDS sandbox."""

    plc_url, admin_password = "http://localhost:1", "admin-pass"
    pds_urls = ["http://localhost:2", "http://localhost:3"]
    pds_url, relay_url, handle_resolver = pds_urls[0], "http://127.0.0.1:4", "http://127.0.0.1:4"
    accounts = [
        {"handle": "alice.test", "did": "did:plc:a", "password": "alice-pass",
         "status": "active", "records": 306, "pds": pds_urls[0]},
        {"handle": "moved.test", "did": "did:plc:m", "password": "moved-pass",
         "status": "active", "records": 17, "pds": pds_urls[1], "moved_from": pds_urls[0],
         "records_at_moved_from": 12},
    ]
    moved = accounts[1:]


def test_sandbox_announcement_names_every_host(capsys):
    from atrepo.cli import _announce

    _announce(_MultiHostSandbox(), as_json=False)
    out = capsys.readouterr().out
    assert "PLC directory + 2 PDSes" in out and "shape:" not in out
    for line in ("PDS 1              http://localhost:2", "PDS 2              http://localhost:3",
                 "relay (listHosts)  http://127.0.0.1:4"):
        assert line in out
    assert "moved.test moved from http://localhost:2 to http://localhost:3" in out
    assert '| moved.test | did:plc:m | active | 17      | moved-pass | http://localhost:3 |' in out
    assert 'handle_resolver="http://127.0.0.1:4"' in out
    assert "--handle-resolver http://127.0.0.1:4" in out
    assert "atrepo ls http://localhost:2\n    atrepo ls http://localhost:3\n" in out
