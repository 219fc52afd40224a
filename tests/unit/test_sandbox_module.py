"""atrepo.sandbox's installer: which directory it picks and when it runs ``npm ci``.

``node`` and ``npm`` are small shell scripts on a PATH of our own, so nothing is downloaded:
the fake npm records its arguments and working directory and creates the installed marker.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from atrepo import sandbox
from atrepo.errors import AtrepoError, SandboxError

FAKE_NPM = """#!/bin/sh
echo "$PWD $*" >> "{log}"
if [ -n "$NPM_FAIL" ]; then echo "npm ERR! network unreachable" >&2; exit 1; fi
{mkdir} -p node_modules/@atproto/dev-env && echo '{{}}' > node_modules/@atproto/dev-env/package.json
echo "added 1 package"
"""


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin dir with node v20 and a recording npm, alone on PATH; returns the npm log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "npm.log"
    _script(bin_dir / "node", "#!/bin/sh\necho v20.11.1\n")
    _script(bin_dir / "npm", FAKE_NPM.format(log=log, mkdir=shutil.which("mkdir")))
    monkeypatch.setenv("PATH", str(bin_dir))
    return log


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    """A copy of the node project's files, without node_modules."""
    ref = tmp_path / "ref"
    ref.mkdir()
    for name in ("package.json", "package-lock.json", "sandbox.mjs", "gen_repo.mjs"):
        (ref / name).write_text(f"// {name}\n")
    return ref


def npm_calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_installed_project_is_used_as_is(tools: Path, reference: Path) -> None:
    marker = reference / "node_modules" / "@atproto" / "dev-env" / "package.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    assert sandbox.ensure_installed(reference=reference) == reference
    assert npm_calls(tools) == []


def test_writable_project_is_installed_in_place(tools: Path, reference: Path,
                                                tmp_path: Path) -> None:
    assert sandbox.ensure_installed(tmp_path / "cache", reference=reference) == reference
    assert npm_calls(tools) == [f"{reference} ci --no-audit --no-fund"]
    assert not (tmp_path / "cache").exists()
    sandbox.ensure_installed(tmp_path / "cache", reference=reference)
    assert len(npm_calls(tools)) == 1  # installed now: no second npm ci


def test_read_only_project_is_copied_to_the_cache(tools: Path, reference: Path,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_writable", lambda directory: False)
    target = tmp_path / "cache" / "reference"
    assert sandbox.ensure_installed(tmp_path / "cache", reference=reference) == target
    assert sorted(p.name for p in target.iterdir()) == [
        "gen_repo.mjs", "node_modules", "package-lock.json", "package.json", "sandbox.mjs"]
    assert npm_calls(tools) == [f"{target} ci --no-audit --no-fund"]
    assert not (reference / "node_modules").exists()

    sandbox.ensure_installed(tmp_path / "cache", reference=reference)
    assert len(npm_calls(tools)) == 1  # same lock file: the copy is reused
    (reference / "package-lock.json").write_text("// a newer lock\n")
    sandbox.ensure_installed(tmp_path / "cache", reference=reference)
    assert len(npm_calls(tools)) == 2  # the lock changed: installed again
    assert (target / "package-lock.json").read_text() == "// a newer lock\n"


def test_default_cache_dir_is_atrepos(tools: Path, reference: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_writable", lambda directory: False)
    monkeypatch.setenv("ATREPO_CACHE_DIR", str(tmp_path / "env-cache"))
    assert sandbox.ensure_installed(reference=reference) == tmp_path / "env-cache" / "reference"


def test_npm_failure_says_what_npm_said(tools: Path, reference: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPM_FAIL", "1")
    with pytest.raises(SandboxError) as caught:
        sandbox.ensure_installed(reference=reference)
    assert "`npm ci` failed (exit code 1)" in str(caught.value)
    assert "network unreachable" in str(caught.value)


@pytest.mark.parametrize(("node_script", "expected"), [
    (None, "`node` is not on PATH"),
    ("#!/bin/sh\necho v18.19.0\n", "Node v18.19.0 is too old"),
    ("#!/bin/sh\necho oops; exit 3\n", "did not print a version"),
])
def test_node_problems_say_what_to_do(tools: Path, reference: Path, node_script: str | None,
                                      expected: str) -> None:
    node = Path(os.environ["PATH"]) / "node"
    if node_script is None:
        node.unlink()
    else:
        _script(node, node_script)
    with pytest.raises(SandboxError) as caught:
        sandbox.ensure_installed(reference=reference)
    assert isinstance(caught.value, AtrepoError)
    assert expected in str(caught.value) and "install Node.js 20 or newer" in str(caught.value)
    assert npm_calls(tools) == []


def test_missing_npm_is_reported_only_when_needed(tools: Path, reference: Path) -> None:
    (Path(os.environ["PATH"]) / "npm").unlink()
    with pytest.raises(SandboxError, match="`npm` is not on PATH"):
        sandbox.ensure_installed(reference=reference)
    marker = reference / "node_modules" / "@atproto" / "dev-env" / "package.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    assert sandbox.ensure_installed(reference=reference) == reference


def _stopped_sandbox(accounts: list[dict[str, Any]]) -> sandbox.Sandbox:
    """A Sandbox object over a process that already exited (no node needed)."""
    proc = subprocess.Popen([sys.executable, "-c", ""], stdin=subprocess.PIPE)
    proc.wait()
    thread = threading.Thread(target=lambda: None)
    thread.start()
    info = {"plc_url": "http://localhost:1", "pds_url": "http://localhost:2",
            "pds_urls": ["http://localhost:2"], "relay_url": "http://127.0.0.1:3",
            "admin_password": "admin-pass", "accounts": accounts}
    return sandbox.Sandbox(proc, info, collections.deque(), thread)


def test_unknown_handle_is_a_sandbox_error_listing_the_accounts() -> None:
    accounts = [{"handle": f"bulk{i:03}.test", "did": f"did:plc:{i}", "password": "x",
                 "status": "active", "records": 2, "pds": "http://localhost:2"}
                for i in range(20)]
    sb = _stopped_sandbox(accounts)
    for call in (lambda: sb.account("nobody.test"), lambda: sb.post("nobody.test", "hi"),
                 lambda: sb.delete_record("nobody.test", "app.bsky.feed.post", "3k")):
        with pytest.raises(SandboxError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith("no such sandbox account; handle=nobody.test; accounts=")
        assert "bulk000.test, bulk001.test" in message and "bulk011.test" in message
        assert "bulk012.test" not in message and "(20 in all)" in message
    assert sb._http is None  # refused before any request
    sb.stop()


def test_procedures_go_to_the_xrpc_url_of_the_accounts_pds() -> None:
    # the URL comes from the one XRPC URL builder: a PDS URL written with a trailing
    # slash still gives /xrpc/<method>
    account = {"handle": "alice.test", "did": "did:plc:alice", "password": "pw",
               "status": "active", "records": 0, "pds": "http://localhost:2/"}
    sb = _stopped_sandbox([account])
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.path.endswith("createSession"):
            return httpx.Response(200, json={"accessJwt": "token"})
        return httpx.Response(200, json={"uri": "at://did:plc:alice/app.bsky.feed.post/3k",
                                         "cid": "bafy"})

    sb._http = httpx.Client(transport=httpx.MockTransport(answer))
    assert sb.post("alice.test", "hi") == "at://did:plc:alice/app.bsky.feed.post/3k"
    assert asked == ["http://localhost:2/xrpc/com.atproto.server.createSession",
                     "http://localhost:2/xrpc/com.atproto.repo.createRecord"]
    sb.stop()


@pytest.mark.parametrize(("options", "message"), [
    ({"pds_count": 0}, f"pds_count must be 1..{sandbox.MAX_PDS_COUNT}"),
    ({"pds_count": sandbox.MAX_PDS_COUNT + 1}, f"pds_count must be 1..{sandbox.MAX_PDS_COUNT}"),
    ({"bulk_accounts": sandbox.MAX_BULK_ACCOUNTS + 1}, "bulk_accounts must be 0..10000"),
    ({"bulk_accounts": -1}, "bulk_accounts must be 0..10000"),
    ({"bulk_accounts": 3, "bulk_records": 1}, "with bulk_records at least 2"),
])
def test_counts_out_of_range_are_refused_before_node_starts(
        options: dict[str, int], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "Popen", None)  # starting node would fail differently
    with pytest.raises(SandboxError, match=message):
        sandbox.Sandbox.start(**options)
