"""Fixtures for tests of network behaviour against a real local PLC + PDS (atrepo.sandbox)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atrepo.sandbox import REFERENCE, Sandbox, SandboxError


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """A running sandbox.mjs (PLC + PDS with alice/bob/carol/dave), shared by the session."""
    if not (REFERENCE / "node_modules" / "@atproto" / "dev-env").exists():
        pytest.fail("the reference implementation is not installed "
                    "(atrepo/_reference/node_modules is missing): run `make test`")
    try:
        sb = Sandbox.start(REFERENCE)
    except SandboxError as exc:
        pytest.fail(str(exc))
    try:
        yield sb
    finally:
        sb.stop()
