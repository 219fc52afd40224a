"""One sandbox (reference PLC + PDS with bulk accounts) shared by the notebooks of a session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atrepo.sandbox import REFERENCE, Sandbox, SandboxError

# bulk-export.ipynb exports every active repository of the host: give it some to export.
BULK_ACCOUNTS = 20
BULK_RECORDS = 100


@pytest.fixture(scope="session")
def notebook_sandbox() -> Iterator[Sandbox]:
    """A running sandbox.mjs with alice/bob/carol/dave and 20 bulk accounts."""
    if not (REFERENCE / "node_modules" / "@atproto" / "dev-env").exists():
        pytest.fail("the reference implementation is not installed "
                    "(atrepo/_reference/node_modules is missing): run `make test`")
    try:
        sb = Sandbox.start(REFERENCE, timeout=120, bulk_accounts=BULK_ACCOUNTS,
                           bulk_records=BULK_RECORDS)
    except SandboxError as exc:
        pytest.fail(str(exc))
    try:
        yield sb
    finally:
        sb.stop()
