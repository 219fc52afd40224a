"""A sandbox (reference PLC + PDS, plus a few bulk accounts) shared by the example tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atrepo.sandbox import REFERENCE, Sandbox, SandboxError


@pytest.fixture(scope="session")
def examples_sandbox() -> Iterator[Sandbox]:
    """A running sandbox.mjs: alice/bob/carol/dave and bulk000.test .. bulk002.test."""
    if not (REFERENCE / "node_modules" / "@atproto" / "dev-env").exists():
        pytest.fail("the reference implementation is not installed "
                    "(atrepo/_reference/node_modules is missing): run `make test`")
    try:
        sb = Sandbox.start(REFERENCE, timeout=120, bulk_accounts=3, bulk_records=50)
    except SandboxError as exc:
        pytest.fail(str(exc))
    try:
        yield sb
    finally:
        sb.stop()
