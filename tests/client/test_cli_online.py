"""The ``atrepo`` commands against the real reference PLC + PDS (the ``sandbox`` fixture).

Most tests call ``main([...])`` in-process, with ``atrepo.client.Client`` swapped for one
whose HTTP refuses anything but loopback and whose DNS answers nothing (the sandbox's
``.test`` handles resolve through ``--handle-resolver``, the PDS). Subprocess tests only use
loopback URLs and DIDs with ``--no-verify``, so they need no DNS either.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from _loopback import LoopbackTransport as _LoopbackTransport
from _loopback import NoDns as _NoDns

from atrepo import client as client_module
from atrepo.cli import main
from atrepo.dataset import open_dataset
from atrepo.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["resolve", "repo", "ls", "diff", "export", "inspect", "sandbox"]

Run = Callable[..., tuple[int, str, str]]


class _LoopbackClient(client_module.Client):
    def __init__(self, **options: Any) -> None:
        http = httpx.Client(transport=_LoopbackTransport(), trust_env=False, timeout=20)
        super().__init__(http=http, dns=_NoDns(), **options)


@pytest.fixture
def cli(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*args)`` -> (exit code, stdout, stderr) of ``atrepo`` pointed at the sandbox."""
    monkeypatch.setattr(client_module, "Client", _LoopbackClient)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--plc-url", sandbox.plc_url, "--handle-resolver",
                     sandbox.pds_url, "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def atrepo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atrepo", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


# -- resolve --------------------------------------------------------------------------------


def test_resolve_shows_the_did(cli: Run, sandbox: Sandbox) -> None:
    alice = sandbox.account("alice.test")
    code, out, err = cli("resolve", "alice.test")
    assert code == 0, err
    assert alice["did"] in out and sandbox.pds_url in out and "did:key:zQ3sh" in out
    code, out, err = cli("resolve", alice["did"], "--json")
    assert code == 0, err
    plc_view = httpx.get(f"{sandbox.plc_url}/{alice['did']}/data", trust_env=False).json()
    assert json.loads(out) == {
        "did": alice["did"], "handle": "alice.test", "handle_verified": True,
        "pds": sandbox.pds_url, "signing_key": plc_view["verificationMethods"]["atproto"]}
    assert json.loads(out)["signing_key"].startswith("did:key:zQ3sh")


def test_resolve_unknown_handle_exits_5(cli: Run) -> None:
    code, out, err = cli("resolve", "nobody.test")
    assert code == 5 and out == ""
    assert err.startswith("atrepo: handle does not resolve") and "nobody.test" in err


# -- repo -----------------------------------------------------------------------------------


def test_repo_json_lines_are_the_records(cli: Run, sandbox: Sandbox) -> None:
    alice = sandbox.account("alice.test")
    code, out, err = cli("repo", "alice.test", "--json")
    assert code == 0, err
    rows = json_lines(out)
    assert len(rows) == alice["records"]
    assert {row["did"] for row in rows} == {alice["did"]}
    for row in rows:  # records come embedded as objects, typed by their collection
        assert row["record"]["$type"] == row["collection"]
        assert row["uri"] == f"at://{alice['did']}/{row['collection']}/{row['rkey']}"


def test_repo_table_collection_filter_and_parquet(cli: Run, sandbox: Sandbox,
                                                  tmp_path: Path) -> None:
    out_file = tmp_path / "posts.parquet"
    code, out, err = cli("repo", "alice.test", "--collection", "app.bsky.feed.post",
                         "--parquet", str(out_file))
    assert code == 0, err
    assert "verified=True" in out and "app.bsky.feed.post" in out
    assert "app.bsky.feed.like" not in out
    frame = pl.read_parquet(out_file)
    assert frame.height > 100 and set(frame["collection"]) == {"app.bsky.feed.post"}
    assert frame.columns == ["did", "collection", "rkey", "uri", "cid", "record"]
    assert f"wrote {frame.height:,} rows to {out_file}" in err


@pytest.mark.parametrize("handle", ["bob.test", "carol.test", "dave.test"])
def test_repo_of_unavailable_account_exits_6(cli: Run, sandbox: Sandbox, handle: str) -> None:
    # by DID: the PDS's resolveHandle no longer answers for these accounts' handles
    code, out, err = cli("repo", sandbox.account(handle)["did"])
    assert code == 6 and out == ""
    status = {"bob.test": "deactivated", "carol.test": "takendown", "dave.test": "not_found"}
    assert err.startswith("atrepo: ") and f"status={status[handle]}" in err


# -- ls -------------------------------------------------------------------------------------


def test_ls_lists_statuses(cli: Run, sandbox: Sandbox) -> None:
    code, out, err = cli("ls", sandbox.pds_url, "--json")
    assert code == 0, err
    rows = {row["did"]: row for row in json_lines(out)}
    did = {a["handle"]: a["did"] for a in sandbox.accounts}
    assert (rows[did["alice.test"]]["active"], rows[did["alice.test"]]["status"]) == (True, None)
    assert rows[did["bob.test"]]["status"] == "deactivated"
    assert rows[did["carol.test"]]["status"] == "takendown"
    assert did["dave.test"] not in rows  # deleted: gone from listRepos

    code, out, err = cli("ls", sandbox.pds_url, "--limit", "2")
    assert code == 0, err
    lines = out.splitlines()  # header, rule, two rows: no polars "shape:" line above
    assert len(lines) == 4 and lines[0].startswith("| did ") and "active" in lines[0]
    assert "shape:" not in out


def test_head_of_a_long_output_is_not_an_error(sandbox: Sandbox, tmp_path: Path) -> None:
    # `| head -1` as a shell runs it: head exits after one line, atrepo's next writes fail
    alice = sandbox.account("alice.test")["did"]
    command = (f"{sys.executable} -m atrepo repo {alice} --json --no-verify --no-progress "
               f"--plc-url {sandbox.plc_url} --cache-dir {tmp_path}")
    done = subprocess.run(["bash", "-c", command + ' | head -1; echo "atrepo=${PIPESTATUS[0]}"'],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    first, status = done.stdout.splitlines()
    assert json.loads(first)["did"] == alice and status == "atrepo=0"
    assert done.stderr == ""
    # and the whole output is far more than a pipe holds, so head really closed it early
    full = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert full.returncode == 0 and len(full.stdout.encode()) > 2 * 65536


def test_ls_as_a_subprocess(sandbox: Sandbox, tmp_path: Path) -> None:
    done = atrepo("ls", sandbox.pds_url, "--json", "--cache-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    statuses = {row["did"]: row["status"] for row in json_lines(done.stdout)}
    assert statuses[sandbox.account("carol.test")["did"]] == "takendown"
    unreachable = atrepo("ls", "http://127.0.0.1:9", "--cache-dir", str(tmp_path))
    assert unreachable.returncode == 7 and unreachable.stderr.startswith("atrepo: ")


# -- export ---------------------------------------------------------------------------------


def test_export_writes_a_partitioned_dataset(cli: Run, sandbox: Sandbox,
                                             tmp_path: Path) -> None:
    alice, bob = sandbox.account("alice.test"), sandbox.account("bob.test")
    out_dir = tmp_path / "dataset"
    code, out, err = cli("export", "alice.test", bob["did"], str(out_dir), "--json")
    assert code == 1  # bob is deactivated: reported, the rest written
    report = json.loads(out)
    assert (report["written"], report["failed"], report["records"]) == (1, 1, alice["records"])
    assert [(e["did"], e["status"], e["retry"]) for e in report["errors"]] == [
        (bob["did"], "deactivated", False)]
    assert bob["did"] in err
    # bob's host refuses his repository: no suggestion that running again would fetch it
    assert err.startswith("atrepo: 1 repository failed: 1 unavailable (1 deactivated), which "
                          "running again will not change:\n")
    assert "retries" not in err
    frame = open_dataset(out_dir).records.collect()
    assert frame.height == alice["records"] and set(frame["did"]) == {alice["did"]}
    assert frame["collection"].n_unique() >= 5

    code, out, err = cli("export", "alice.test", str(out_dir))  # resume: nothing to do
    assert code == 0, err
    assert "skipped  1" in out and "written  0" in out


def test_export_failures_say_which_a_second_run_retries(cli: Run, sandbox: Sandbox,
                                                        tmp_path: Path) -> None:
    carol = sandbox.account("carol.test")["did"]
    unknown = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"  # the PLC has never heard of it
    code, out, err = cli("export", carol, unknown, str(tmp_path / "out"))
    assert code == 1 and "failed   2" in out
    assert err.startswith("atrepo: 2 repositories failed: 1 unavailable (1 takendown), which "
                          "running again will not change; 1 other (retry=true), which running "
                          "the same command again retries:\n")
    rows = {line.split("|")[1].strip(): line for line in err.splitlines()[3:]}
    assert rows[carol].rstrip().endswith("| takendown | false |")
    assert rows[unknown].rstrip().endswith("| null      | true  |")


def test_export_a_host_without_resume(cli: Run, sandbox: Sandbox, tmp_path: Path) -> None:
    out_dir = tmp_path / "host"
    code, out, err = cli("export", sandbox.pds_url, str(out_dir), "--collection",
                         "app.bsky.actor.profile", "--no-resume")
    assert code == 0, err  # only active repositories are listed for export: alice
    assert "written  1" in out and "records  1" in out
    records = open_dataset(out_dir).records.collect()
    assert records["collection"].unique().to_list() == ["app.bsky.actor.profile"]


# -- diff -----------------------------------------------------------------------------------


def test_diff_after_a_post_shows_that_create(cli: Run, sandbox: Sandbox,
                                             tmp_path: Path) -> None:
    code, _, err = cli("repo", "alice.test", "--collection", "app.bsky.feed.post")
    assert code == 0, err  # stores the snapshot to diff against
    uri = sandbox.post("alice.test", "a post for atrepo diff", langs=["en"])
    try:
        # the stored snapshot may hold only the posts (a sparse fetch, by alice's size): the
        # diff then says it covers only those, and still shows the new post
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code, out, err = cli("diff", "alice.test", "--json", "--parquet",
                                 str(tmp_path / "diff.parquet"))
        assert all("fetched sparse" in str(w.message) for w in caught)
        assert code == 0, err
        (row,) = json_lines(out)
        assert (row["action"], row["uri"], row["old_cid"]) == ("create", uri, None)
        assert row["record"]["text"] == "a post for atrepo diff"
        assert pl.read_parquet(tmp_path / "diff.parquet")["uri"].to_list() == [uri]
        code, out, err = cli("diff", "alice.test")
        assert code == 0, err
        assert "no changes" in out
    finally:
        sandbox.delete_record("alice.test", "app.bsky.feed.post", uri.rsplit("/", 1)[1])


# -- errors, help ---------------------------------------------------------------------------


def test_unwritable_parquet_and_interrupts_exit_cleanly(cli: Run, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli("repo", "alice.test", "--parquet", str(tmp_path / "no" / "x.parquet"))
    assert code == 1 and err.startswith("atrepo: ") and "Traceback" not in err

    def interrupted(self: Any, name: str) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(_LoopbackClient, "resolve", interrupted)
    assert cli("resolve", "alice.test")[0] == 130


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: atrepo {command}") and "examples:\n  atrepo " in out
    if command not in ("inspect", "sandbox"):
        assert "--plc-url" in out and "--handle-resolver" in out and "--no-verify" in out


def test_help_as_a_subprocess() -> None:
    done = atrepo("--help")
    assert done.returncode == 0
    assert all(command in done.stdout for command in COMMANDS)


# -- sandbox --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "atrepo", "sandbox", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT, env={**os.environ, "ATREPO_CACHE_DIR": str(tmp_path)})
        started.append(proc)
        return proc

    yield start
    for proc in started:  # a failed test must not leave a sandbox behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sandbox_command_serves_until_signalled(signum: int, tmp_path: Path,
                                                sandbox_process: Any) -> None:
    # SIGTERM: fixed ports and two PDSes (a moved account, the relay as handle resolver)
    plc_port, pds_port, relay_port = _free_port(), _free_port(), _free_port()
    options = ["--plc-port", str(plc_port), "--pds-port", str(pds_port), "--relay-port",
               str(relay_port), "--pds-count", "2"] if signum == signal.SIGTERM else []
    proc = sandbox_process("--json", *options)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    name = "alice.test"
    if options:
        assert (info["plc_url"], info["pds_url"], info["relay_url"]) == (
            f"http://localhost:{plc_port}", f"http://localhost:{pds_port}",
            f"http://127.0.0.1:{relay_port}")
        assert info["pds_urls"][0] == info["pds_url"] and len(info["pds_urls"]) == 2
        assert info["handle_resolver"] == info["relay_url"]
        name = "moved.test"
    else:
        assert info["pds_urls"] == [info["pds_url"]] == [info["handle_resolver"]]
    account = next(a for a in info["accounts"] if a["handle"] == name)
    with _LoopbackClient(plc_url=info["plc_url"], handle_resolver=info["handle_resolver"],
                         cache_dir=tmp_path / "client", progress=False) as client:
        snap = client.get_repo(name)
    assert snap.did == account["did"] and snap.verified and len(snap) == account["records"]

    (node,) = _children(proc.pid)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "" and "stopping the sandbox" in err
    assert _gone(node)   # the command waits for node to exit before it exits itself
    for url in [*info["pds_urls"], info["relay_url"]]:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/xrpc/_health", timeout=5)
