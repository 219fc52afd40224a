"""A real local PLC directory + PDS, or several (the pinned atproto reference implementation).

For trying atrepo without touching the network, and for tests: :func:`start` installs the
pinned node project on first use (:func:`ensure_installed`; Node >= 20 and npm needed), runs
``node sandbox.mjs`` (see ``atrepo/_reference/README.md``), waits for the one JSON line it
prints once its accounts are seeded, and returns a :class:`Sandbox`::

    from atrepo import sandbox

    with sandbox.start() as sb:          # or: sb = sandbox.start(); ...; sb.stop()
        alice = sb.account("alice.test") # {"handle", "did", "password", "status", "records",
                                         #  "pds"}
        client = atrepo.Client(plc_url=sb.plc_url, handle_resolver=sb.handle_resolver)
        snap = client.get_repo("alice.test")

Seeded accounts: ``alice.test`` (active, ~300 records), ``bob.test`` (deactivated),
``carol.test`` (taken down), ``dave.test`` (deleted); password ``<name>-pass``, admin
password ``admin-pass``. ``.test`` handles have no DNS, hence ``handle_resolver``: the PDS
(:attr:`Sandbox.handle_resolver` is its URL) answers ``com.atproto.identity.resolveHandle``
for its accounts. ``atrepo sandbox`` on the command line does the same and prints the URLs.

The node process serves until its stdin is closed (``stop()``, or this process dying).

Several hosts: ``sandbox.start(pds_count=3, bulk_accounts=30)`` runs three PDSes on the one
PLC (:attr:`Sandbox.pds_urls`; :attr:`Sandbox.pds_url` is the first), spreads the bulk accounts
over them (each account's ``"pds"``), and migrates ``moved.test`` from the first PDS to the
second, leaving the first PDS's copy active and stale (:attr:`Sandbox.moved`). A small relay
(:attr:`Sandbox.relay_url`) answers ``com.atproto.sync.listHosts`` for the PDSes and
``com.atproto.identity.resolveHandle`` for all their handles (:attr:`Sandbox.handle_resolver`)::

    with sandbox.start(pds_count=2) as sb:
        client = atrepo.Client(plc_url=sb.plc_url, handle_resolver=sb.handle_resolver)
        snap = client.get_repo("moved.test")   # from sb.pds_urls[1], where its DID points

Write to the seeded repositories as their owners (XRPC on loopback, one session per handle)::

    uri = sb.post("alice.test", "hello", langs=["en"])
    uri, cid = sb.create_record("alice.test", "app.bsky.feed.like", {...})
    sb.delete_record("alice.test", "app.bsky.feed.post", uri.rsplit("/", 1)[1])
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._flows.xrpc import xrpc_url
from .errors import SandboxError

if TYPE_CHECKING:  # imported where used: `atrepo sandbox --help` needs neither
    import httpx

__all__ = ["MAX_BULK_ACCOUNTS", "MAX_PDS_COUNT", "MIN_BULK_RECORDS", "MIN_NODE", "REFERENCE",
           "Sandbox", "SandboxError", "check_node", "ensure_installed", "start"]

REFERENCE = Path(__file__).resolve().parent / "_reference"
MIN_NODE = 20  # @atproto/pds and dev-env need Node 20 (package.json "engines")
# sandbox.mjs's bounds: every PDS is a whole server inside the one node process, bulk
# accounts need a post to like and repost, and a host of a few thousand accounts is what the
# export's memory is measured on (2,000 accounts of 20 records seed in about 5 minutes;
# 8,000, whether its peak levels off)
MAX_PDS_COUNT = 16
MAX_BULK_ACCOUNTS = 10_000
MIN_BULK_RECORDS = 2
_HANDLES_SHOWN = 12  # handles named in an unknown-account error; bulk sandboxes have hundreds

log = logging.getLogger(__name__)


class Sandbox:
    """Handle on a running ``sandbox.mjs``: URLs, seeded accounts, and ``stop()``.

    Attributes:
        plc_url: the PLC directory.
        pds_url: the first PDS (the only one unless ``pds_count`` was more than 1).
        pds_urls: every PDS, in the order they were started.
        relay_url: the sandbox relay: ``com.atproto.sync.listHosts`` / ``getHostStatus`` over
            :attr:`pds_urls` and ``com.atproto.identity.resolveHandle`` for all their handles.
        accounts: the seeded accounts: ``handle``, ``did``, ``password``, ``status``,
            ``records`` and ``pds`` (the PDS the DID document names); a moved account also has
            ``moved_from`` (the PDS that still lists it) and ``records_at_moved_from``.
    """

    def __init__(self, proc: subprocess.Popen[bytes], info: dict[str, Any],
                 stderr_tail: collections.deque[str], stderr_thread: threading.Thread) -> None:
        self.proc = proc
        self.info = info
        self.plc_url: str = info["plc_url"]
        self.pds_url: str = info["pds_url"]
        self.pds_urls: list[str] = info["pds_urls"]
        self.relay_url: str = info["relay_url"]
        self.admin_password: str = info["admin_password"]
        self.accounts: list[dict[str, Any]] = info["accounts"]
        self.startup_ms: int | None = info.get("startup_ms")
        self._stderr_tail = stderr_tail
        self._stderr_thread = stderr_thread
        self._http: httpx.Client | None = None
        self._tokens: dict[str, str] = {}  # handle -> accessJwt

    @classmethod
    def start(cls, cwd: str | os.PathLike[str] = REFERENCE, *, timeout: float = 60,
              plc_port: int = 0, pds_port: int = 0, node: str | None = None,
              bulk_accounts: int = 0, bulk_records: int = 0, pds_count: int = 1,
              relay_port: int = 0) -> Sandbox:
        """Start ``node sandbox.mjs`` in ``cwd`` and return once its accounts are seeded.

        ``bulk_accounts`` adds that many active accounts (``bulk000.test``, ...,
        ``bulk999.test``, ``bulk1000.test``, ...) of
        ``bulk_records`` records each (posts, likes, reposts, follows), for multi-repo tests
        and benchmarks; they are listed in :attr:`accounts` too. Seeding takes time: raise
        ``timeout`` for large sandboxes.

        ``pds_count`` (1 to :data:`MAX_PDS_COUNT`) PDSes share the PLC: bulk account *i*
        lives on PDS *i* mod ``pds_count``, and with two or more ``moved.test`` is migrated
        from the first to the second (see :attr:`moved`). ``pds_port`` is the first PDS's
        port, ``relay_port`` the relay's (0: any free port).

        Raises:
            SandboxError: a count out of range, node is missing, the script exited, or no
                JSON line came in time.
        """
        if not 1 <= pds_count <= MAX_PDS_COUNT:
            raise SandboxError(f"pds_count must be 1..{MAX_PDS_COUNT}", pds_count=pds_count)
        if not 0 <= bulk_accounts <= MAX_BULK_ACCOUNTS or (
                bulk_accounts and bulk_records < MIN_BULK_RECORDS):
            raise SandboxError(f"bulk_accounts must be 0..{MAX_BULK_ACCOUNTS}, with "
                               f"bulk_records at least {MIN_BULK_RECORDS}",
                               bulk_accounts=bulk_accounts, bulk_records=bulk_records)
        node = node or shutil.which("node")
        if node is None:
            raise SandboxError("`node` is not on PATH (Node >= 20 is needed for the sandbox)")
        cmd = [node, "sandbox.mjs", "--plc-port", str(plc_port), "--pds-port", str(pds_port),
               "--relay-port", str(relay_port)]
        if pds_count != 1:
            cmd += ["--pds-count", str(pds_count)]
        if bulk_accounts:
            cmd += ["--bulk-accounts", str(bulk_accounts), "--bulk-records", str(bulk_records)]
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        tail: collections.deque[str] = collections.deque(maxlen=60)
        # Drain stderr for the whole life of the process so node never blocks on a full pipe.
        err_thread = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True,
                                      name="sandbox-stderr")
        err_thread.start()

        lines: list[str | None] = []
        got_line = threading.Event()

        def read_stdout() -> None:
            # Read lines until the JSON one (a library could print to stdout despite the
            # script's console redirection); then keep draining so node never blocks.
            with proc.stdout:  # type: ignore[union-attr]
                for raw in proc.stdout:  # type: ignore[union-attr]
                    line = raw.decode("utf-8", "replace").strip()
                    if not got_line.is_set() and line.startswith("{") and '"pds_url"' in line:
                        lines.append(line)
                        got_line.set()
            lines.append(None)
            got_line.set()

        threading.Thread(target=read_stdout, daemon=True, name="sandbox-stdout").start()
        got_line.wait(timeout)
        line = lines[0] if lines else None
        if line is None:
            why = ("timed out after %.0f s" % timeout if not lines
                   else "exited with code %s" % proc.poll())
            _terminate(proc)
            err_thread.join(5)
            raise SandboxError(f"sandbox.mjs {why} before printing its JSON line; "
                               f"node stderr (tail):\n" + "".join(tail))
        return cls(proc, json.loads(line), tail, err_thread)

    def account(self, handle: str) -> dict[str, Any]:
        """The seeded account with this handle (``alice.test``, ``bob.test``, ...).

        Raises:
            SandboxError: the sandbox has no such account (the message lists those it has).
        """
        for acc in self.accounts:
            if acc["handle"] == handle:
                return acc
        handles = [a["handle"] for a in self.accounts]
        shown = ", ".join(handles[:_HANDLES_SHOWN])
        if len(handles) > _HANDLES_SHOWN:
            shown += f", ... ({len(handles)} in all)"
        raise SandboxError("no such sandbox account", handle=handle, accounts=shown)

    @property
    def moved(self) -> list[dict[str, Any]]:
        """The accounts that moved: listed by their ``moved_from`` PDS, served by their ``pds``.

        Empty with one PDS. With several: ``moved.test``, migrated from the first PDS to the
        second by the PDS's own migration flow, except that the first PDS's copy was left
        active: that host still lists the DID and serves the repository as it was before the
        move (signed with a key the DID document no longer names), while the PLC names the
        second PDS, which holds ``records`` records (``records_at_moved_from`` on the first).
        """
        return [acc for acc in self.accounts if "moved_from" in acc]

    @property
    def handle_resolver(self) -> str:
        """The URL to pass as ``handle_resolver``: it resolves every handle of the sandbox.

        The PDS itself with one PDS (as before multi-host sandboxes); the relay, which asks
        each PDS in turn, with several.
        """
        return self.pds_url if len(self.pds_urls) == 1 else self.relay_url

    @property
    def stderr_tail(self) -> str:
        """The last lines node wrote to stderr (for failure messages)."""
        return "".join(self._stderr_tail)

    def stop(self, timeout: float = 10) -> int | None:
        """Close node's stdin (it then closes the servers and exits); kill it if it hangs."""
        rc = _terminate(self.proc, timeout)
        self._stderr_thread.join(5)
        self._close_http()
        return rc

    # -- writing records as an account (XRPC on loopback) ----------------------------------

    def create_record(self, handle: str, collection: str, record: dict[str, Any],
                      rkey: str | None = None) -> tuple[str, str]:
        """Create ``record`` in ``handle``'s repository; returns its ``(uri, cid)``.

        ``rkey=None`` lets the PDS pick a TID. The PDS validates records of known lexicons.

        Raises:
            SandboxError: the PDS refused (the message names the XRPC method and status).
        """
        body: dict[str, Any] = {"repo": self.account(handle)["did"], "collection": collection,
                                "record": record}
        if rkey is not None:
            body["rkey"] = rkey
        return _ref(self._call(handle, "com.atproto.repo.createRecord", body))

    def put_record(self, handle: str, collection: str, rkey: str,
                   record: dict[str, Any]) -> tuple[str, str]:
        """Create or replace the record at ``collection/rkey``; returns its ``(uri, cid)``.

        Raises:
            SandboxError: the PDS refused.
        """
        body = {"repo": self.account(handle)["did"], "collection": collection, "rkey": rkey,
                "record": record}
        return _ref(self._call(handle, "com.atproto.repo.putRecord", body))

    def delete_record(self, handle: str, collection: str, rkey: str) -> None:
        """Delete the record at ``collection/rkey`` (the PDS accepts absent records too).

        Raises:
            SandboxError: the PDS refused.
        """
        body = {"repo": self.account(handle)["did"], "collection": collection, "rkey": rkey}
        self._call(handle, "com.atproto.repo.deleteRecord", body)

    def post(self, handle: str, text: str, langs: list[str] | None = None) -> str:
        """Publish an ``app.bsky.feed.post`` with ``createdAt`` now; returns its AT-URI.

        Raises:
            SandboxError: the PDS refused (for example a text over 300 graphemes).
        """
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text,
                                  "createdAt": _now()}
        if langs:
            record["langs"] = list(langs)
        uri, _cid = self.create_record(handle, "app.bsky.feed.post", record)
        return uri

    def _call(self, handle: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST an XRPC procedure as ``handle`` to its PDS; log in again on a stale token."""
        pds = self.account(handle)["pds"]
        token = self._tokens.get(handle) or self._login(handle)
        response = self._post(pds, method, body, token)
        if response.status_code in (400, 401) and _error_name(response) in _STALE_TOKEN:
            response = self._post(pds, method, body, self._login(handle))
        return _reply(method, response)

    def _login(self, handle: str) -> str:
        """Log ``handle`` in on its PDS with its seeded password; cache and return the token."""
        method = "com.atproto.server.createSession"
        account = self.account(handle)
        creds = {"identifier": handle, "password": account["password"]}
        token = _reply(method, self._post(account["pds"], method, creds, None)).get("accessJwt")
        if not isinstance(token, str):
            raise SandboxError("createSession answered without an accessJwt", method=method,
                               handle=handle)
        self._tokens[handle] = token
        return token

    def _post(self, pds: str, method: str, body: dict[str, Any],
              token: str | None) -> httpx.Response:
        import httpx

        if self._http is None:
            # trust_env=False: loopback traffic must never go through a proxy from the env
            self._http = httpx.Client(timeout=30, trust_env=False)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return self._http.post(xrpc_url(pds, method), json=body, headers=headers)
        except httpx.HTTPError as exc:
            msg = f"sandbox PDS unreachable: {exc}"
            raise SandboxError(msg, method=method, url=pds) from exc

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._tokens.clear()

    def __repr__(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        pds = self.pds_url if len(self.pds_urls) == 1 else ",".join(self.pds_urls)
        return f"<Sandbox plc={self.plc_url} pds={pds} accounts={len(self.accounts)} {state}>"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(*, cache_dir: str | os.PathLike[str] | None = None, **options: Any) -> Sandbox:
    """Start a sandbox, installing the node project first if needed.

    Args:
        cache_dir: where to install the node project when ``atrepo/_reference`` is read-only
            (None: atrepo's cache directory); see :func:`ensure_installed`.
        **options: passed to :meth:`Sandbox.start` (``plc_port``, ``pds_port``, ``timeout``, ...).

    Returns:
        The running sandbox; call ``stop()`` (or use it as a context manager) when done.

    Raises:
        SandboxError: node/npm missing or too old, ``npm ci`` failed, or the servers did not
            come up.
    """
    return Sandbox.start(ensure_installed(cache_dir), **options)


def ensure_installed(cache_dir: str | os.PathLike[str] | None = None, *,
                     reference: Path = REFERENCE) -> Path:
    """Return a directory where ``node sandbox.mjs`` runs, installing it on first use.

    ``reference`` (the copy shipped inside atrepo) is used when its ``node_modules`` is
    there, and installed in place with ``npm ci`` when the directory is writable. Otherwise
    (a read-only site-packages) the project files are copied to ``<cache_dir>/reference`` and
    installed there; a changed ``package-lock.json`` (a new atrepo) reinstalls. ``npm ci``
    downloads the pinned packages once (a few minutes, ~400 MB).

    Example::

        workdir = ensure_installed()          # fast when already installed
        sb = Sandbox.start(workdir)

    Raises:
        SandboxError: ``node`` or ``npm`` is missing, Node is older than :data:`MIN_NODE`,
            or ``npm ci`` failed (the message ends with its output).
    """
    from ._config import default_cache_dir

    check_node()
    if _installed(reference):
        return reference
    npm = _which("npm")
    if _writable(reference):
        _npm_ci(npm, reference)
        return reference
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / "reference"
    if _copy_project(reference, target) or not _installed(target):
        _npm_ci(npm, target)
    return target


def check_node() -> str:
    """Return the path of ``node``, checking that it is at least :data:`MIN_NODE`.

    Raises:
        SandboxError: node is missing, does not run, or is too old.
    """
    node = _which("node")
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"`node --version` failed: {exc}", node=node, hint=_NODE_HINT) from exc
    found = re.match(r"v(\d+)\.", done.stdout.strip())
    if done.returncode != 0 or found is None:
        raise SandboxError("`node --version` did not print a version", node=node,
                           output=(done.stdout + done.stderr).strip()[:200], hint=_NODE_HINT)
    if int(found.group(1)) < MIN_NODE:
        raise SandboxError(f"Node {done.stdout.strip()} is too old for the sandbox", node=node,
                           hint=_NODE_HINT)
    return node


_NODE_HINT = (f"install Node.js {MIN_NODE} or newer with npm (https://nodejs.org/, or e.g. "
              "`apt install nodejs npm`, `brew install node`) and make sure it is on PATH")


def _which(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise SandboxError(f"`{program}` is not on PATH; the sandbox needs Node.js "
                           f">= {MIN_NODE} and npm", hint=_NODE_HINT)
    return path


def _installed(project: Path) -> bool:
    return (project / "node_modules" / "@atproto" / "dev-env" / "package.json").is_file()


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def _copy_project(reference: Path, target: Path) -> bool:
    """Copy the node project's files to ``target``; True when ``package-lock.json`` changed."""
    target.mkdir(parents=True, exist_ok=True)
    lock = "package-lock.json"
    old_lock = (target / lock).read_bytes() if (target / lock).is_file() else None
    for source in [reference / "package.json", reference / lock, *reference.glob("*.mjs")]:
        shutil.copyfile(source, target / source.name)
    return old_lock != (target / lock).read_bytes()


def _npm_ci(npm: str, project: Path) -> None:
    """Run ``npm ci`` in ``project`` (needs the npm registry, once)."""
    log.warning("installing the reference PLC + PDS in %s (npm ci, once; needs the npm "
                "registry and takes a few minutes)", project)
    cmd = [npm, "ci", "--no-audit", "--no-fund"]
    try:
        done = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"`npm ci` failed: {exc}", directory=str(project)) from exc
    if done.returncode != 0 or not _installed(project):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise SandboxError(f"`npm ci` failed (exit code {done.returncode})",
                           directory=str(project),
                           hint=f"check network access to the npm registry; npm said:\n{tail}")


_STALE_TOKEN = frozenset({"ExpiredToken", "InvalidToken"})


def _now() -> str:
    """The current time as an atproto datetime (UTC, milliseconds, ``Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_name(response: httpx.Response) -> str | None:
    """The ``error`` field of an XRPC error body, or None when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _reply(method: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful XRPC reply (``{}`` when empty); else SandboxError."""
    if response.is_success:
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise SandboxError("sandbox PDS answered non-JSON", method=method,
                               status=response.status_code) from exc
        if isinstance(body, dict):
            return body
        raise SandboxError("sandbox PDS answered JSON that is not an object", method=method,
                           status=response.status_code)
    raise SandboxError("sandbox PDS refused the request", method=method,
                       status=response.status_code, error=_error_name(response),
                       detail=response.text[:300])


def _ref(reply: dict[str, Any]) -> tuple[str, str]:
    """The ``(uri, cid)`` of a createRecord/putRecord reply."""
    uri, cid = reply.get("uri"), reply.get("cid")
    if not isinstance(uri, str) or not isinstance(cid, str):
        raise SandboxError("sandbox PDS answered a write without uri and cid",
                           reply=str(reply)[:200])
    return uri, cid


def _drain(stream: IO[bytes], tail: collections.deque[str]) -> None:
    with stream:
        for raw in stream:
            tail.append(raw.decode("utf-8", "replace"))


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 10) -> int | None:
    if proc.poll() is None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    elif proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    return proc.returncode
