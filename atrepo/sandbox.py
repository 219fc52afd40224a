"""A real local PLC directory + PDS (the pinned atproto reference implementation) for tests.

``Sandbox.start()`` runs ``node sandbox.mjs`` in ``atrepo/_reference`` (see the README there),
waits for the one JSON line it prints once its accounts are seeded, and exposes it::

    sb = Sandbox.start()
    try:
        alice = sb.account("alice.test")   # {"handle", "did", "password", "status", "records"}
        ...                                # talk to sb.plc_url / sb.pds_url over loopback
    finally:
        sb.stop()

The node process serves until its stdin is closed (``stop()``, or this process dying).
Standard library only.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

REFERENCE = Path(__file__).resolve().parent / "_reference"


class SandboxError(RuntimeError):
    """The sandbox did not come up (the message ends with the tail of node's stderr)."""


class Sandbox:
    """Handle on a running ``sandbox.mjs``: URLs, seeded accounts, and ``stop()``."""

    def __init__(self, proc: subprocess.Popen[bytes], info: dict[str, Any],
                 stderr_tail: collections.deque[str], stderr_thread: threading.Thread) -> None:
        self.proc = proc
        self.info = info
        self.plc_url: str = info["plc_url"]
        self.pds_url: str = info["pds_url"]
        self.admin_password: str = info["admin_password"]
        self.accounts: list[dict[str, Any]] = info["accounts"]
        self.startup_ms: int | None = info.get("startup_ms")
        self._stderr_tail = stderr_tail
        self._stderr_thread = stderr_thread

    @classmethod
    def start(cls, cwd: str | os.PathLike[str] = REFERENCE, *, timeout: float = 60,
              plc_port: int = 0, pds_port: int = 0, node: str | None = None,
              bulk_accounts: int = 0, bulk_records: int = 0) -> Sandbox:
        """Start ``node sandbox.mjs`` in ``cwd`` and return once its accounts are seeded.

        ``bulk_accounts`` adds that many active accounts (``bulk000.test``, ...) of
        ``bulk_records`` records each (posts, likes, reposts, follows), for multi-repo tests
        and benchmarks; they are listed in :attr:`accounts` too. Seeding takes time: raise
        ``timeout`` for large sandboxes.

        Raises:
            SandboxError: node is missing, the script exited, or no JSON line came in time.
        """
        node = node or shutil.which("node")
        if node is None:
            raise SandboxError("`node` is not on PATH (Node >= 20 is needed for the sandbox)")
        cmd = [node, "sandbox.mjs", "--plc-port", str(plc_port), "--pds-port", str(pds_port)]
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
        """The seeded account with this handle (``alice.test``, ``bob.test``, ...)."""
        for acc in self.accounts:
            if acc["handle"] == handle:
                return acc
        raise KeyError(f"no sandbox account {handle!r}; have "
                       f"{[a['handle'] for a in self.accounts]}")

    @property
    def stderr_tail(self) -> str:
        """The last lines node wrote to stderr (for failure messages)."""
        return "".join(self._stderr_tail)

    def stop(self, timeout: float = 10) -> int | None:
        """Close node's stdin (it then closes the servers and exits); kill it if it hangs."""
        rc = _terminate(self.proc, timeout)
        self._stderr_thread.join(5)
        return rc

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
